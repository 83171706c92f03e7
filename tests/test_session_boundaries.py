"""No write crosses a session boundary: a writer only ever writes into the session it was initialised against.

A session deleted (and perhaps created again under the same id) is a different session to every
Agent, Graph or Swarm still holding the old one: their writes raise ``SessionNotFoundError`` and
land nowhere, on both layouts, whatever the repository forgot or learnt meanwhile.
"""

import contextlib
from collections.abc import Callable
from typing import Any

import pytest
from pymongo import MongoClient
from pymongo.database import Database
from strands import Agent, tool
from strands.types.exceptions import EventLoopException
from strands.types.session import SessionAgent

import mongodb_session_manager._known_sessions as known_sessions
from mongodb_session_manager import MongoDBSessionManager, MongoDBSessionRepository
from mongodb_session_manager.cleanup import find_left_behind, remove_left_behind
from mongodb_session_manager.errors import MongoDBSessionError, SessionNotFoundError, StaleAgentError

from helpers import echo_agent, session_with_agent, text_message, texts
from multi_agent_stand_in import FixedState
from scripted_model import ScriptedModel, ToolCall
from stored_sessions import MESSAGES, SESSIONS, StoredSessions, everything

Db = Database[dict[str, Any]]
Client = MongoClient[dict[str, Any]]
NewManager = Callable[..., MongoDBSessionManager]


def stored_texts(stored: StoredSessions, session_id: str, agent_id: str = "default") -> list[str]:
    return texts([message["message"] for message in stored.messages(session_id, agent_id)])


def raises_not_found(call: Callable[[], Any]) -> None:
    """``call`` fails with ``SessionNotFoundError``, directly or as the cause Strands wrapped."""
    with pytest.raises((SessionNotFoundError, EventLoopException, StaleAgentError)) as caught:
        call()
    error: BaseException | None = caught.value
    while error is not None and not isinstance(error, SessionNotFoundError):
        error = error.__cause__ or getattr(error, "original_exception", None)
    assert isinstance(error, SessionNotFoundError), repr(caught.value)


def test_an_agent_of_a_deleted_session_never_writes_into_the_session_created_after_it(
    new_manager: NewManager, stored: StoredSessions
) -> None:
    old_manager = new_manager("s1")
    old = echo_agent(old_manager)
    old("one")
    old("two")  # messages 0..3
    old_manager.repository.delete_session("s1")
    echo_agent(new_manager("s1"))("fresh")  # the new session: messages 0, 1

    raises_not_found(lambda: old("again"))  # would be messages 4, 5

    assert stored.message_ids("s1", "default") == [0, 1]
    assert stored_texts(stored, "s1") == ["fresh", "echo: fresh"]


def test_agents_sharing_a_manager_stay_bound_after_one_of_them_is_refused(
    new_manager: NewManager, stored: StoredSessions
) -> None:
    manager = new_manager("s1")
    x, y = echo_agent(manager, "x"), echo_agent(manager, "y")
    x("x speaks")
    y("y speaks")
    other = MongoDBSessionRepository(
        client=manager.repository.client,
        database_name=manager.repository.collection.database.name,
        layout=manager.repository.layout,
    )
    other.delete_session("s1")
    replacement = new_manager("s1")
    echo_agent(replacement, "x")("new x")
    echo_agent(replacement, "y")("new y")

    raises_not_found(lambda: x("x again"))
    raises_not_found(lambda: y("y again"))  # the repository's refusal above must not re-bind y

    assert stored_texts(stored, "s1", "x") == ["new x", "echo: new x"]
    assert stored_texts(stored, "s1", "y") == ["new y", "echo: new y"]


def test_a_repository_forgetting_or_relearning_the_session_never_rebinds_an_agent(
    new_manager: NewManager, stored: StoredSessions, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(known_sessions, "SESSIONS_KEPT", 1)
    manager = new_manager("s1")
    agent = echo_agent(manager)
    agent("one")
    repository = manager.repository
    repository.delete_session("s1")
    echo_agent(new_manager("s1"))("fresh")
    for other in ("other-a", "other-b"):  # the repository's memory of s1 is evicted ...
        echo_agent(new_manager(other))("hello")
        repository.read_session(other)
    repository.read_session("s1")  # ... and it now knows the new session

    raises_not_found(lambda: agent("again"))

    assert stored.message_ids("s1", "default") == [0, 1]
    assert stored_texts(stored, "s1") == ["fresh", "echo: fresh"]


def test_a_new_agent_on_the_same_manager_binds_to_the_session_as_it_is_now(
    new_manager: NewManager, stored: StoredSessions
) -> None:
    manager = new_manager("s1")
    old = echo_agent(manager, "old")
    old("one")
    manager.repository.delete_session("s1")
    echo_agent(new_manager("s1"), "other")("the new session")

    raises_not_found(lambda: old("again"))
    fresh = echo_agent(manager, "fresh")  # a new initialisation may bind to the new session
    fresh("hello")

    assert stored_texts(stored, "s1", "fresh") == ["hello", "echo: hello"]
    assert stored.message_ids("s1", "old") == []


def test_a_writer_of_a_deleted_session_is_refused_at_its_next_turn_and_stores_nothing(
    new_manager: NewManager, mongo_db: Db, layout: str
) -> None:
    manager = new_manager("s1")
    agent = echo_agent(manager)
    agent("one")
    MongoDBSessionRepository(
        client=manager.repository.client, database_name=mongo_db.name, layout=layout
    ).delete_session("s1")

    raises_not_found(lambda: agent("after the delete"))

    assert mongo_db[SESSIONS].count_documents({}) == 0
    assert mongo_db[MESSAGES].count_documents({}) == 0


def test_what_a_turn_racing_a_delete_leaves_is_invisible_and_cleanup_removes_it(
    new_manager: NewManager, mongo_db: Db, layout: str
) -> None:
    manager = new_manager("s1")
    deleter = MongoDBSessionRepository(client=manager.repository.client, database_name=mongo_db.name, layout=layout)

    @tool
    def erase_this_session() -> str:
        """Delete the session in the middle of the turn that called this tool."""
        deleter.delete_session("s1")
        return "deleted"

    agent = Agent(
        model=ScriptedModel([ToolCall("erase_this_session", {}), "done"]),
        tools=[erase_this_session],
        session_manager=manager,
        callback_handler=None,
    )
    # Embedded: the tool result's write is refused. Split: the tool result is inserted under the
    # deleted generation, then the agent-state sync that follows it is refused.
    raises_not_found(lambda: agent("erase it"))
    assert mongo_db[SESSIONS].count_documents({}) == 0
    left = 1 if layout == "split" else 0
    assert mongo_db[MESSAGES].count_documents({}) == left
    assert echo_agent(new_manager("s1")).messages == []  # invisible to a new session with that id

    left_behind = find_left_behind(mongo_db)
    assert left_behind.message_count == left
    assert remove_left_behind(mongo_db, left_behind, even_if_nothing_is_owned=True) == left
    assert mongo_db[MESSAGES].count_documents({}) == 0


def test_a_graph_state_sync_never_lands_in_a_session_created_after_its_own(
    new_manager: NewManager, mongo_db: Db
) -> None:
    manager = new_manager("s1")
    graph = FixedState("g1", {"status": "running"})
    manager.initialize_multi_agent(graph)  # type: ignore[arg-type]
    manager.repository.delete_session("s1")
    replacement = new_manager("s1")
    replacement.initialize_multi_agent(FixedState("g1", {"status": "new session"}))  # type: ignore[arg-type]

    raises_not_found(lambda: manager.sync_multi_agent(graph))  # type: ignore[arg-type]

    assert replacement.repository.read_multi_agent("s1", "g1") == {"status": "new session"}


# -- the repository alone: a writer that read the session before it was deleted --------------------


def test_embedded_writer_of_a_deleted_session_cannot_append_to_its_replacement(
    mongo_client: Client, mongo_db: Db
) -> None:
    old_writer = MongoDBSessionRepository(client=mongo_client, database_name=mongo_db.name)
    session_with_agent(old_writer, "s1", "default")
    for message_id in range(4):
        old_writer.create_message("s1", "default", text_message(message_id, f"old {message_id}"))
    other = MongoDBSessionRepository(client=mongo_client, database_name=mongo_db.name)
    other.delete_session("s1")
    session_with_agent(other, "s1", "default")
    other.create_message("s1", "default", text_message(0, "new 0"))
    before = everything(mongo_db)

    with contextlib.suppress(MongoDBSessionError):
        old_writer.create_message("s1", "default", text_message(4, "old 4: the in-flight answer"))

    assert everything(mongo_db) == before


def test_state_sync_of_a_deleted_session_cannot_overwrite_its_replacement(
    mongo_client: Client, mongo_db: Db, layout: str
) -> None:
    old_writer = MongoDBSessionRepository(client=mongo_client, database_name=mongo_db.name, layout=layout)
    session_with_agent(old_writer, "s1", "default")
    other = MongoDBSessionRepository(client=mongo_client, database_name=mongo_db.name, layout=layout)
    other.delete_session("s1")
    session_with_agent(other, "s1", "default")
    other.create_message("s1", "default", text_message(0, "new 0"))
    other.create_message("s1", "default", text_message(1, "new 1", "assistant"))
    before = everything(mongo_db)

    stale_state = SessionAgent(
        agent_id="default",
        state={"from": "the deleted session"},
        conversation_manager_state={"__name__": "SlidingWindowConversationManager", "removed_message_count": 40},
    )
    with contextlib.suppress(MongoDBSessionError):
        old_writer.update_agent("s1", stale_state)

    assert everything(mongo_db) == before


def test_list_messages_of_a_session_deleted_elsewhere_raises_in_both_layouts(
    mongo_client: Client, mongo_db: Db, layout: str
) -> None:
    reader = MongoDBSessionRepository(client=mongo_client, database_name=mongo_db.name, layout=layout)
    session_with_agent(reader)
    reader.create_message("s1", "a1", text_message(0, "x"))
    MongoDBSessionRepository(client=mongo_client, database_name=mongo_db.name, layout=layout).delete_session("s1")

    with pytest.raises(SessionNotFoundError):
        reader.list_messages("s1", "a1")
