"""Round-trip budgets, counted with pymongo command monitoring against the real server.

These counts do not depend on the machine, so they are asserted exactly where the design fixes
them. Reads are commands that fetch data (find, aggregate, getMore); writes are everything else.
Every test runs once per layout (the ``layout`` fixture) and looks its budget up in a per-layout table.
"""

from collections.abc import Callable
from datetime import timedelta
from typing import Any

import bson
import pytest
from pymongo import MongoClient, monitoring
from pymongo.database import Database
from strands import Agent
from strands.agent.conversation_manager import SlidingWindowConversationManager
from strands.types.content import Message
from strands.types.session import SessionMessage

from mongodb_session_manager import (
    MongoDBSessionManager,
    MongoDBSessionManagerFactory,
    MongoDBSessionRepository,
    create_mongodb_session_manager,
)
from mongodb_session_manager._documents import message_document, now
from mongodb_session_manager._schema import split_message_document

from command_counter import CommandCounter
from helpers import add, texts
from multi_agent_stand_in import FixedState
from scripted_model import ScriptedModel, ToolCall
from stored_sessions import MESSAGES, SESSIONS, StoredSessions

READS = {"find", "aggregate", "getMore", "count", "countDocuments", "distinct"}
Counting = tuple[MongoClient[dict[str, Any]], CommandCounter]
Db = Database[dict[str, Any]]


def numbered_message(index: int) -> Message:
    """A Strands message ``message {index}``: from the user at even indexes, the assistant at odd ones."""
    return {"role": "user" if index % 2 == 0 else "assistant", "content": [{"text": f"message {index}"}]}


@pytest.fixture
def layout_manager_on(
    counting_client: Counting, database_name: str, layout: str
) -> Callable[[str], MongoDBSessionManager]:
    """Make managers of this test's layout on the counting client; the indexes are created first, outside the counts."""
    client, _ = counting_client
    MongoDBSessionRepository(client=client, database_name=database_name, layout=layout)

    def make(session_id: str) -> MongoDBSessionManager:
        return MongoDBSessionManager(session_id, client=client, database_name=database_name, layout=layout)

    return make


EXPECTED: dict[str, dict[str, list[str]]] = {
    "embedded": {
        # read_session, create_session (upsert returning the generation), create_agent (conditional set)
        "new session": ["aggregate", "findAndModify", "findAndModify"],
        # the user message and the answer; agent state did not change, so it is not rewritten
        "plain turn": ["findAndModify", "findAndModify"],
        # the whole session in one read, then the two new messages
        "request per turn": ["aggregate", "findAndModify", "findAndModify"],
        # the window drops old messages: the conversation manager's state is synced once
        "trimming turn": ["findAndModify"] * 3,
        # four messages (user, toolUse, toolResult, answer) plus one agent state sync
        "tool turn": ["findAndModify"] * 5,
        # the whole session document, with all 1000 messages, in one read
        "resume 1000 messages": ["aggregate"],
        # the manager's session read, then the summary
        "metrics summary": ["aggregate", "aggregate"],
    },
    "split": {
        # read_session (no session document, so no messages read), create_session (upsert), create_agent
        "new session": ["find", "findAndModify", "findAndModify"],
        # the user message, the session-document write that checks the session (and moves updated_at),
        # the answer; nothing is read
        "plain turn": ["insert", "findAndModify", "insert"],
        # the session document, every agent's messages, then the turn
        "request per turn": ["find", "find", "insert", "findAndModify", "insert"],
        "trimming turn": ["insert", "findAndModify", "insert", "findAndModify"],
        # user (+ session check), toolUse, toolResult, (agent state sync), answer
        "tool turn": ["insert", "findAndModify", "insert", "insert", "findAndModify", "insert"],
        # the session document, then every agent's messages in one reply
        "resume 1000 messages": ["find", "find"],
        # the manager's session read (the session document, then its messages), then the session's agent ids
        # and the sums over its messages
        "metrics summary": ["find", "find", "aggregate", "aggregate"],
    },
}

REPOSITORY_CALLS: dict[str, dict[str, list[str]]] = {
    # every call is one command, even on a repository's first use of the session; redacting a user
    # message also rewrites the session's first prompt, in case it holds the redacted text
    "embedded": {
        "update_message (first use)": ["findAndModify", "update"],
        "update_metadata (first use)": ["findAndModify"],
        "update_metadata": ["findAndModify"],
        "delete_metadata": ["findAndModify"],
        "get_metadata": ["find"],
        "update_message": ["findAndModify", "update"],
        "create_multi_agent": ["findAndModify"],
        "update_multi_agent": ["findAndModify"],
        "read_multi_agent": ["find"],
        "list_messages page": ["find"],
        "get_metrics_summary": ["aggregate"],
        "delete_session": ["findAndModify"],
    },
    "split": {
        # a repository that has not seen the agent yet reads the session document once, on first use
        "update_message (first use)": ["aggregate", "update", "update"],
        "update_metadata (first use)": ["findAndModify"],
        "update_metadata": ["findAndModify"],
        "delete_metadata": ["findAndModify"],
        "get_metadata": ["find"],
        "update_message": ["update", "update"],
        "create_multi_agent": ["findAndModify"],
        "update_multi_agent": ["findAndModify"],
        "read_multi_agent": ["find"],
        "list_messages page": ["find"],
        # the session's agent ids, then the sums over its messages
        "get_metrics_summary": ["aggregate", "aggregate"],
        # the session document (checking layout and generation), then that generation's messages
        "delete_session": ["findAndModify", "delete"],
    },
}

MESSAGES_LIVE_IN = {"embedded": SESSIONS, "split": MESSAGES}
"""The collection holding a layout's messages: the session documents, or one document per message."""


def test_new_session(counting_client: Counting, layout_manager_on: Any, layout: str) -> None:
    _, counter = counting_client
    counter.reset()
    Agent(model=ScriptedModel([]), session_manager=layout_manager_on("s1"), callback_handler=None)
    assert counter.names() == EXPECTED[layout]["new session"]


def test_plain_turn(counting_client: Counting, layout_manager_on: Any, layout: str) -> None:
    _, counter = counting_client
    agent = Agent(model=ScriptedModel(["one", "two"]), session_manager=layout_manager_on("s1"), callback_handler=None)
    agent("first")
    counter.reset()
    agent("second")
    assert counter.names() == EXPECTED[layout]["plain turn"]


OPTIONS: dict[str, dict[str, Any]] = {
    "no options": {},
    "owners": {"user_id": "alice", "application_name": "chat"},
    "expiry": {"expire_after": 3600},
    "owners and expiry": {"user_id": "alice", "application_name": "chat", "expire_after": timedelta(days=30)},
}


@pytest.mark.parametrize("options", list(OPTIONS))
def test_owners_titles_and_expiry_add_no_command(
    counting_client: Counting, database_name: str, layout: str, mongo_db: Db, options: str
) -> None:
    """Creation, a plain turn and a request per turn cost the same whatever the options and the title."""
    client, counter = counting_client
    MongoDBSessionRepository(client=client, database_name=database_name, layout=layout)  # indexes

    def manager() -> MongoDBSessionManager:
        return MongoDBSessionManager(
            "s1", client=client, database_name=database_name, layout=layout, **OPTIONS[options]
        )

    counter.reset()
    agent = Agent(model=ScriptedModel(["one", "two"]), session_manager=manager(), callback_handler=None)
    assert counter.names() == EXPECTED[layout]["new session"]
    agent("first")  # its text becomes the session's title, in the turn's own writes
    manager().repository.set_title("s1", "Given")
    counter.reset()
    agent("second")
    assert counter.names() == EXPECTED[layout]["plain turn"]
    counter.reset()
    Agent(model=ScriptedModel(["three"]), session_manager=manager(), callback_handler=None)("third")
    assert counter.names() == EXPECTED[layout]["request per turn"]

    document = mongo_db[SESSIONS].find_one({"_id": "s1"})
    assert document is not None
    assert (document["title"], document["first_prompt"]["text"]) == ("Given", "first")
    assert ("expires_at" in document) == ("expire_after" in OPTIONS[options])
    assert document.get("user_id") == OPTIONS[options].get("user_id")


def test_request_per_turn_resumes_then_writes_only_messages(
    counting_client: Counting, layout_manager_on: Any, layout: str
) -> None:
    """The web-app pattern: every request builds a new manager and Agent, then runs one turn."""
    _, counter = counting_client
    Agent(model=ScriptedModel(["first"]), session_manager=layout_manager_on("s1"), callback_handler=None)("hello")
    for turn in range(3):
        counter.reset()
        model = ScriptedModel([f"answer {turn}"])
        Agent(model=model, session_manager=layout_manager_on("s1"), callback_handler=None)(f"question {turn}")
        assert counter.names() == EXPECTED[layout]["request per turn"]


def test_turn_that_trims_history_syncs_the_window_once(
    counting_client: Counting, layout_manager_on: Any, layout: str
) -> None:
    _, counter = counting_client
    window = SlidingWindowConversationManager(window_size=4)
    agent = Agent(
        model=ScriptedModel.echo(),
        session_manager=layout_manager_on("s1"),
        conversation_manager=window,
        callback_handler=None,
    )
    for turn in range(3):
        agent(f"turn {turn}")
    counter.reset()
    agent("one more")
    assert counter.names() == EXPECTED[layout]["trimming turn"]


def test_tool_turn_writes_each_message_and_one_state_sync(
    counting_client: Counting, layout_manager_on: Any, layout: str
) -> None:
    _, counter = counting_client
    model = ScriptedModel(["hi", ToolCall("add", {"a": 1, "b": 2}), "3"])
    agent = Agent(model=model, tools=[add], session_manager=layout_manager_on("s1"), callback_handler=None)
    agent("hello")
    counter.reset()
    agent("add 1 and 2")
    names = counter.names()
    assert names == EXPECTED[layout]["tool turn"], names
    assert not READS & set(names), names


def store_history(database: Db, layout: str, message_ids: range) -> None:
    """Store ``numbered_message(i)`` for each of ``message_ids`` as agent ``default``'s in session ``s1``, directly."""
    entries = [message_document(SessionMessage.from_message(numbered_message(i), i), now(), {}) for i in message_ids]
    if layout == "embedded":
        database[SESSIONS].update_one({"_id": "s1"}, {"$push": {"agents.default.messages": {"$each": entries}}})
        return
    session = database[SESSIONS].find_one({"_id": "s1"})
    assert session is not None
    database[MESSAGES].insert_many(
        [split_message_document("s1", "default", session["generation"], entry, {}) for entry in entries]
    )


def test_resume_of_1000_messages_is_one_read_per_collection(
    counting_client: Counting, layout_manager_on: Any, mongo_db: Db, stored: StoredSessions, layout: str
) -> None:
    _, counter = counting_client
    Agent(model=ScriptedModel.echo(), session_manager=layout_manager_on("s1"), callback_handler=None)("seed")
    store_history(mongo_db, layout, range(2, 1000))
    stored_bytes = stored.total_bytes("s1")  # the session document, plus its message documents (split)

    counter.reset()
    resumed = Agent(model=ScriptedModel.echo(), session_manager=layout_manager_on("s1"), callback_handler=None)
    assert len(resumed.messages) == 1000
    assert texts(resumed.messages) == ["seed", "echo: seed", *(f"message {i}" for i in range(2, 1000))]
    commands = counter.commands()
    assert [command.name for command in commands] == EXPECTED[layout]["resume 1000 messages"]
    assert all(command.reply_bytes is not None for command in commands)
    assert sum(command.reply_bytes or 0 for command in commands) < stored_bytes * 1.1


def test_repository_operations_cost(counting_client: Counting, database_name: str, layout: str) -> None:
    client, counter = counting_client
    repository = MongoDBSessionRepository(client=client, database_name=database_name, layout=layout)
    fresh = MongoDBSessionRepository(client=client, database_name=database_name, layout=layout)
    manager = MongoDBSessionManager("s1", client=client, database_name=database_name, layout=layout)
    agent = Agent(model=ScriptedModel(["hi"]), session_manager=manager, callback_handler=None)
    agent("hello")
    graph_like = FixedState("g1")

    redacted = SessionMessage.from_message(numbered_message(0), 0)
    redacted.redact_message = {"role": "user", "content": [{"text": "[redacted]"}]}
    calls: dict[str, Callable[[], object]] = {
        "update_message (first use)": lambda: repository.update_message("s1", "default", redacted),
        "update_metadata (first use)": lambda: fresh.update_metadata("s1", {"c": 3}),
        "update_metadata": lambda: repository.update_metadata("s1", {"a": 1, "b": 2}),
        "delete_metadata": lambda: repository.delete_metadata("s1", ["a"]),
        "get_metadata": lambda: repository.get_metadata("s1"),
        "update_message": lambda: repository.update_message("s1", "default", redacted),
        "create_multi_agent": lambda: repository.create_multi_agent("s1", graph_like),  # type: ignore[arg-type]
        "update_multi_agent": lambda: repository.update_multi_agent("s1", graph_like),  # type: ignore[arg-type]
        "read_multi_agent": lambda: repository.read_multi_agent("s1", "g1"),
        "list_messages page": lambda: repository.list_messages("s1", "default", offset=1, limit=1),
        "get_metrics_summary": lambda: repository.get_metrics_summary("s1"),
        "delete_session": lambda: repository.delete_session("s1"),
    }
    assert list(calls) == list(REPOSITORY_CALLS[layout])
    for name, call in calls.items():
        counter.reset()
        call()
        assert counter.names() == REPOSITORY_CALLS[layout][name], name


def test_metrics_summary_is_summed_by_the_server(
    counting_client: Counting, layout_manager_on: Any, mongo_db: Db, layout: str
) -> None:
    _, counter = counting_client
    agent = Agent(model=ScriptedModel.echo(), session_manager=layout_manager_on("s1"), callback_handler=None)
    for turn in range(20):
        agent(f"question {turn} " + "padding " * 200)
    messages_bytes = sum(len(bson.encode(document)) for document in mongo_db[MESSAGES_LIVE_IN[layout]].find())

    counter.reset()
    summary = layout_manager_on("s1").get_metrics_summary()
    commands = counter.commands()
    assert [command.name for command in commands] == EXPECTED[layout]["metrics summary"]
    sums = commands[-1]
    assert sums.reply_bytes is not None
    assert sums.reply_bytes < 2_000 < messages_bytes // 10  # totals came back, not the messages
    assert summary["totals"]["model_calls"] == 20


# -- the per-conversation pattern costs what the factory costs ------------------------------------


class ConnectionsOpened(monitoring.ConnectionPoolListener):
    """Counts the connections pymongo opens (``ConnectionCreatedEvent``)."""

    def __init__(self) -> None:
        self.created = 0

    def connection_created(self, event: monitoring.ConnectionCreatedEvent) -> None:
        self.created += 1

    def pool_created(self, event: monitoring.PoolCreatedEvent) -> None: ...
    def pool_ready(self, event: monitoring.PoolReadyEvent) -> None: ...
    def pool_cleared(self, event: monitoring.PoolClearedEvent) -> None: ...
    def pool_closed(self, event: monitoring.PoolClosedEvent) -> None: ...
    def connection_ready(self, event: monitoring.ConnectionReadyEvent) -> None: ...
    def connection_closed(self, event: monitoring.ConnectionClosedEvent) -> None: ...
    def connection_check_out_started(self, event: monitoring.ConnectionCheckOutStartedEvent) -> None: ...
    def connection_check_out_failed(self, event: monitoring.ConnectionCheckOutFailedEvent) -> None: ...
    def connection_checked_out(self, event: monitoring.ConnectionCheckedOutEvent) -> None: ...
    def connection_checked_in(self, event: monitoring.ConnectionCheckedInEvent) -> None: ...


def test_a_per_conversation_manager_costs_what_a_factory_manager_costs(
    mongodb_uri: str, database_name: str, layout: str
) -> None:
    counter, connections = CommandCounter(), ConnectionsOpened()
    options: dict[str, Any] = {"database_name": database_name, "layout": layout}
    listeners = {"event_listeners": [counter, connections]}

    def converse(manager: MongoDBSessionManager, prompt: str) -> None:
        with manager:
            Agent(model=ScriptedModel(["answer"]), session_manager=manager, callback_handler=None)(prompt)

    # The first manager in the process opens the shared client and creates the indexes.
    converse(create_mongodb_session_manager("s1", connection_string=mongodb_uri, **options, **listeners), "first")

    counter.reset()
    opened_before = connections.created
    converse(create_mongodb_session_manager("s1", connection_string=mongodb_uri, **options, **listeners), "second")
    per_conversation = counter.names()
    opened = connections.created - opened_before

    factory = MongoDBSessionManagerFactory(connection_string=mongodb_uri, **options, **listeners)
    counter.reset()
    converse(factory.create_session_manager("s1"), "third")
    factory.close()

    assert per_conversation == counter.names() == EXPECTED[layout]["request per turn"]
    assert "createIndexes" not in per_conversation
    assert opened == 0
