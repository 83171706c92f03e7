"""The private parts of Strands this library relies on are all still there (``_strands_internals``).

When a Strands upgrade changes one of them, this fails with a message naming the attribute: see
CLAUDE.md, "Checking a new Strands release".
"""

from collections.abc import Callable
from typing import Any

from pymongo import MongoClient
from strands import Agent

from mongodb_session_manager import MongoDBSessionManager
from mongodb_session_manager import _strands_internals as internals

from command_counter import CommandCounter
from scripted_model import ScriptedModel


def test_every_strands_internal_this_library_uses_is_still_there(
    new_manager: Callable[..., MongoDBSessionManager],
) -> None:
    manager = new_manager("s1")
    agent = Agent(model=ScriptedModel(["hi"]), session_manager=manager, callback_handler=None)
    agent("hello")
    problems = internals.problems(manager, agent.agent_id)
    assert not problems, "Strands changed what this library relies on:\n" + "\n".join(problems)


def test_a_changed_internal_is_named(new_manager: Callable[..., MongoDBSessionManager]) -> None:
    manager = new_manager("s1")
    agent = Agent(model=ScriptedModel([]), session_manager=manager, callback_handler=None)
    del manager._held_records  # what a Strands release renaming it would look like
    manager._last_synced_internal_state.clear()  # ... or no longer recording the sync baseline

    problems = internals.problems(manager, agent.agent_id)

    assert any("RepositorySessionManager._held_records" in problem for problem in problems), problems
    assert any("_last_synced_internal_state" in problem for problem in problems), problems


def test_the_sync_baseline_saves_the_first_state_write_of_a_resumed_agent(
    counting_client: tuple[MongoClient[dict[str, Any]], CommandCounter], database_name: str
) -> None:
    client, counter = counting_client
    first = MongoDBSessionManager("s1", client=client, database_name=database_name)
    Agent(model=ScriptedModel(["hi"]), session_manager=first, callback_handler=None)("hello")
    resumed = MongoDBSessionManager("s1", client=client, database_name=database_name)
    agent = Agent(model=ScriptedModel([]), session_manager=resumed, callback_handler=None)
    counter.reset()
    resumed.sync_agent(agent)  # nothing changed since it was restored: nothing is written
    assert counter.names() == []
