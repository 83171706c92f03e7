"""A process that holds a two-turn conversation persisted by SnapshotSessionManager on MongoDBStorage, then exits.

    PYTHONPATH=examples python tests/snapshot_conversation_child.py URI DATABASE SESSION_ID

Every invocation is checkpointed (``snapshot_trigger`` always fires); the agent state counts the
turns. It prints the checkpoint ids.
"""

from __future__ import annotations

import asyncio
import sys
from typing import Any

from strands import Agent
from strands.session import SnapshotSessionManager

from mongodb_session_manager import MongoDBStorage

from scripted_model import ScriptedModel

PROMPTS = ("My favourite colour is teal.", "And my cat is called Miso.")
ANSWERS = ("Teal, noted.", "Miso, noted.")


def checkpoint_every_invocation(**kwargs: Any) -> bool:
    return True


def main() -> None:
    uri, database, session_id = sys.argv[1:]
    with MongoDBStorage(uri, database) as storage:
        manager = SnapshotSessionManager(session_id, storage=storage, snapshot_trigger=checkpoint_every_invocation)
        agent = Agent(model=ScriptedModel(list(ANSWERS)), session_manager=manager, callback_handler=None)
        for turn, prompt in enumerate(PROMPTS, start=1):
            agent.state.set("turns", turn)
            agent(prompt)
        print(" ".join(asyncio.run(manager.list_snapshot_ids(agent))), flush=True)


if __name__ == "__main__":
    main()
