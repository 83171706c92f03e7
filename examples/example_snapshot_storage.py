"""Snapshots, checkpoints, a crash and time travel: SnapshotSessionManager on MongoDBStorage.

Strands' ``SnapshotSessionManager`` stores the whole agent as one snapshot per invocation
(``snapshot_latest``) plus, whenever its ``snapshot_trigger`` fires, an immutable checkpoint.
``MongoDBStorage`` keeps them in MongoDB, one document per key, next to everything else the agent
stores (``Agent(storage=...)``). This example runs two processes against one MongoDB:

1. **Process 1** talks to the agent, checkpointing every turn, and dies abruptly after
   ``--crash-after`` turns (``os._exit``: no close, no final save).
2. **Process 2** (this one) prints what process 1 left in MongoDB, resumes the conversation in a
   new Agent, then travels back in time to the first checkpoint.

Offline by default: unless ``MONGODB_URI`` (or ``--uri``) names a server it starts an embedded
MongoDB wire-protocol server (SecantusDB) with its data under ``.data/example_snapshot_storage/``
(``--in-memory`` keeps nothing), and the model is ``ScriptedModel``, which answers from the
conversation it is given. Each run starts the session over.

    uv run python examples/example_snapshot_storage.py
    uv run python examples/example_snapshot_storage.py --crash-after 1 --in-memory
    MONGODB_URI=mongodb://localhost:27017 uv run python examples/example_snapshot_storage.py
"""

import argparse
import asyncio
import json
import logging
import os
import subprocess
import sys
from pprint import pformat
from typing import Any

from strands import Agent
from strands.models.model import Model
from strands.session import SnapshotSessionManager
from strands.types.content import Messages
from strands.types.exceptions import StorageError

from mongodb_session_manager import MongoDBStorage

import local_mongodb
import model_provider
from scripted_model import Turn, last_user_text
from transcript import print_messages, shape, text_of

PROMPTS = ("My name is Ada.", "I live in Lisbon.", "I have a cat called Miso.")
QUESTION = "What do you know about me?"
CRASH_EXIT_STATUS = 3
"""How process 1 ends: ``os._exit(3)``, as abruptly as a crash."""


def recall(messages: Messages) -> Turn:
    """The scripted answer: what the user said about themselves, as found in the history the model is given."""
    said = [block["text"] for m in messages if m["role"] == "user" for block in m["content"] if "text" in block]
    facts = [text for text in said if text != QUESTION]
    if last_user_text(messages) == QUESTION:
        return f"You told me: {' '.join(facts)}" if facts else "Nothing yet."
    return f"Noted: {facts[-1]}"


def checkpoint_every_turn(**kwargs: Any) -> bool:
    """``snapshot_trigger``: an immutable checkpoint after every invocation."""
    return True


def new_agent(storage: MongoDBStorage, session_id: str, model: Model) -> tuple[Agent, SnapshotSessionManager]:
    """An Agent whose session is restored from (and saved to) ``storage``."""
    manager = SnapshotSessionManager(session_id, storage=storage, snapshot_trigger=checkpoint_every_turn)
    return Agent(model=model, session_manager=manager, callback_handler=None), manager


def process_1(args: argparse.Namespace) -> None:
    """Talk, one checkpoint per turn, and die after ``--crash-after`` turns."""
    storage = MongoDBStorage(args.uri, args.database)
    agent, _ = new_agent(storage, args.session_id, model_provider.build_model(args.provider, fallback=recall))
    for turn, prompt in enumerate(PROMPTS, start=1):
        print(f"  user      > {prompt}")
        print(f"  assistant > {str(agent(prompt)).strip()}")
        if turn == args.crash_after:
            print(f"  [process 1 (pid {os.getpid()}) crashes after turn {turn}: os._exit, nothing closed]", flush=True)
            os._exit(CRASH_EXIT_STATUS)


def print_stored(storage: MongoDBStorage, session_id: str) -> None:
    """The keys of the session, what snapshot_latest holds, and the shape of a stored document."""
    prefix = f"session/{session_id}/scopes/agent/default/snapshots/"
    keys = asyncio.run(storage.list(prefix))
    print(f"MongoDB holds {len(keys)} keys under {prefix} (collection {storage.collection.name!r}, a document each):")
    for key in keys:
        document = storage.collection.find_one({"_id": key}, {"size": 1})
        print(f"  {key.removeprefix(prefix)}  ({document['size'] if document else '?':,} bytes)")
    latest = asyncio.run(storage.read(f"{prefix}snapshot_latest.json"))
    if latest is not None:
        data = json.loads(latest)["data"]
        print(f"snapshot_latest.json: {len(data['messages'])} messages, the last: {text_of(data['messages'][-1])!r}")
    document = storage.collection.find_one({"_id": f"{prefix}snapshot_latest.json"})
    print("Its document (the snapshot's bytes are in 'value'; 'tokens' serve search):")
    print(pformat(shape(document), sort_dicts=False, width=110))


def process_2(args: argparse.Namespace, uri: str) -> None:
    """Start over, run process 1, then resume and travel back in time."""
    with MongoDBStorage(uri, args.database) as storage:
        asyncio.run(SnapshotSessionManager(args.session_id, storage=storage).delete_session())
        print(f"\nProcess 1 (a child process) talks in session {args.session_id!r}:", flush=True)
        child = subprocess.run(
            [sys.executable, __file__, "--process-1", "--uri", uri, "--database", args.database,
             "--session-id", args.session_id, "--provider", args.provider, "--crash-after", str(args.crash_after)],
            check=False,
        )  # fmt: skip
        if child.returncode != CRASH_EXIT_STATUS:
            raise SystemExit(
                f"process 1 ended with status {child.returncode}, not the planned crash; see its output above"
            )

        print(f"\nProcess 2 (pid {os.getpid()}) finds what process 1 stored before it died.")
        print_stored(storage, args.session_id)

        print("\nA new Agent with the same session id resumes from snapshot_latest:")
        agent, manager = new_agent(storage, args.session_id, model_provider.build_model(args.provider, fallback=recall))
        print_messages(agent.messages)
        print(f"  user      > {QUESTION}")
        print(f"  assistant > {str(agent(QUESTION)).strip()}")

        checkpoints = asyncio.run(manager.list_snapshot_ids(agent))
        first_key = (
            f"session/{args.session_id}/scopes/agent/default/snapshots/immutable_history/snapshot_{checkpoints[0]}.json"
        )
        first_checkpoint = asyncio.run(storage.read(first_key))
        print(f"\n{len(checkpoints)} immutable checkpoints, oldest first: {', '.join(checkpoints)}")
        print(f"Time travel: restore_snapshot(agent, snapshot_id={checkpoints[0]!r}) - the state after turn 1:")
        asyncio.run(manager.restore_snapshot(agent, snapshot_id=checkpoints[0]))
        print_messages(agent.messages)
        print(f"  user      > {QUESTION}")
        print(f"  assistant > {str(agent(QUESTION)).strip()}")
        unchanged = asyncio.run(storage.read(first_key)) == first_checkpoint
        print(
            f"\nCheckpoint {checkpoints[0]} is unchanged: {unchanged}; snapshot_latest holds the rewound conversation:"
        )
        print_stored(storage, args.session_id)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    local_mongodb.add_session_id_argument(parser, "snapshot-demo")
    local_mongodb.add_mongodb_arguments(parser, "example_snapshot_storage")
    model_provider.add_model_arguments(parser)
    parser.add_argument(
        "--crash-after", type=int, default=2, choices=range(1, len(PROMPTS) + 1), help="turns before process 1 dies"
    )
    parser.add_argument("--process-1", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING)
    try:
        if args.process_1:
            process_1(args)
            return
        with local_mongodb.mongodb_uri(args) as uri:
            process_2(args, uri)
    except StorageError as error:
        raise SystemExit(f"error: {error} (is MongoDB reachable? see --uri)") from None


if __name__ == "__main__":
    main()
