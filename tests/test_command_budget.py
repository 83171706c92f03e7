"""Round-trip budgets, counted with pymongo command monitoring against the real server.

These counts do not depend on the machine, so they are asserted exactly where the design fixes
them. Reads are commands that fetch data (find, aggregate, getMore); writes are everything else.
"""

from collections.abc import Callable
from typing import Any

import bson
import pytest
from pymongo import MongoClient, monitoring
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
from helpers import add
from multi_agent_stand_in import FixedState
from scripted_model import ScriptedModel, ToolCall

READS = {"find", "aggregate", "getMore", "count", "countDocuments", "distinct"}
Counting = tuple[MongoClient[dict[str, Any]], CommandCounter]


def text_message(index: int) -> Message:
    return {"role": "user" if index % 2 == 0 else "assistant", "content": [{"text": f"message {index}"}]}


def managers(counting_client: Counting, database_name: str, layout: str) -> Callable[[str], MongoDBSessionManager]:
    """Make managers of ``layout`` on the counting client; the indexes are created first, outside the counts."""
    client, _ = counting_client
    MongoDBSessionRepository(client=client, database_name=database_name, layout=layout)

    def make(session_id: str) -> MongoDBSessionManager:
        return MongoDBSessionManager(session_id, client=client, database_name=database_name, layout=layout)

    return make


@pytest.fixture
def manager_on(counting_client: Counting, database_name: str) -> Callable[[str], MongoDBSessionManager]:
    return managers(counting_client, database_name, "embedded")


@pytest.fixture
def split_manager_on(counting_client: Counting, database_name: str) -> Callable[[str], MongoDBSessionManager]:
    return managers(counting_client, database_name, "split")


@pytest.fixture
def layout_manager_on(
    counting_client: Counting, database_name: str, layout: str
) -> Callable[[str], MongoDBSessionManager]:
    return managers(counting_client, database_name, layout)


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
    },
}


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


def test_resume_of_1000_messages_is_one_round_trip(
    counting_client: Counting, manager_on: Any, mongo_client: Any, database_name: str
) -> None:
    client, counter = counting_client
    agent = Agent(model=ScriptedModel.echo(), session_manager=manager_on("s1"), callback_handler=None)
    agent("seed")
    history = [message_document(SessionMessage.from_message(text_message(i), i), now(), {}) for i in range(2, 1000)]
    mongo_client[database_name]["sessions"].update_one(
        {"_id": "s1"}, {"$push": {"agents.default.messages": {"$each": history}}}
    )

    counter.reset()
    resumed = Agent(model=ScriptedModel.echo(), session_manager=manager_on("s1"), callback_handler=None)
    assert len(resumed.messages) == 1000
    [command] = counter.commands()
    assert command.name == "aggregate"
    document_bytes = client[database_name].command(
        "aggregate", "sessions", pipeline=[{"$project": {"size": {"$bsonSize": "$$ROOT"}}}], cursor={}
    )["cursor"]["firstBatch"][0]["size"]
    assert command.reply_bytes is not None
    assert command.reply_bytes < document_bytes * 1.1


def test_every_repository_write_is_one_command(counting_client: Counting, database_name: str) -> None:
    client, counter = counting_client
    repository = MongoDBSessionRepository(client=client, database_name=database_name)
    manager = MongoDBSessionManager("s1", client=client, database_name=database_name)
    agent = Agent(model=ScriptedModel(["hi"]), session_manager=manager, callback_handler=None)
    agent("hello")
    graph_like = FixedState("g1")

    redacted = SessionMessage.from_message(text_message(0), 0)
    redacted.redact_message = {"role": "user", "content": [{"text": "[redacted]"}]}
    calls: dict[str, Callable[[], object]] = {
        "update_metadata": lambda: repository.update_metadata("s1", {"a": 1, "b": 2}),
        "delete_metadata": lambda: repository.delete_metadata("s1", ["a"]),
        "get_metadata": lambda: repository.get_metadata("s1"),
        "update_message": lambda: repository.update_message("s1", "default", redacted),
        "create_multi_agent": lambda: repository.create_multi_agent("s1", graph_like),  # type: ignore[arg-type]
        "update_multi_agent": lambda: repository.update_multi_agent("s1", graph_like),  # type: ignore[arg-type]
        "read_multi_agent": lambda: repository.read_multi_agent("s1", "g1"),
        "get_metrics_summary": lambda: repository.get_metrics_summary("s1"),
        "delete_session": lambda: repository.delete_session("s1"),
    }
    for name, call in calls.items():
        counter.reset()
        call()
        assert len(counter.names()) == 1, (name, counter.names())


def test_metrics_summary_is_summed_by_the_server(
    counting_client: Counting, manager_on: Any, mongo_client: Any, database_name: str
) -> None:
    _, counter = counting_client
    agent = Agent(model=ScriptedModel.echo(), session_manager=manager_on("s1"), callback_handler=None)
    for turn in range(20):
        agent(f"question {turn} " + "padding " * 200)
    document_bytes = len(bson.encode(mongo_client[database_name]["sessions"].find_one({"_id": "s1"})))

    counter.reset()
    summary = manager_on("s1").get_metrics_summary()
    [read, command] = counter.commands()  # the manager's session read, then the summary
    assert (read.name, command.name) == ("aggregate", "aggregate")
    assert command.reply_bytes is not None
    assert command.reply_bytes < 2_000 < document_bytes // 10  # totals came back, not the messages
    assert summary["totals"]["model_calls"] == 20


# -- split layout: one document per message -----------------------------------------------------


def test_split_resume_of_1000_messages_is_two_reads(
    counting_client: Counting, split_manager_on: Any, mongo_client: Any, database_name: str
) -> None:
    _, counter = counting_client
    Agent(model=ScriptedModel.echo(), session_manager=split_manager_on("s1"), callback_handler=None)("seed")
    session = mongo_client[database_name]["sessions"].find_one({"_id": "s1"})
    history = [
        split_message_document(
            "s1",
            "default",
            session["generation"],
            message_document(SessionMessage.from_message(text_message(i), i), now(), {}),
        )
        for i in range(2, 1000)
    ]
    mongo_client[database_name]["sessions_messages"].insert_many(history)

    counter.reset()
    resumed = Agent(model=ScriptedModel.echo(), session_manager=split_manager_on("s1"), callback_handler=None)
    assert len(resumed.messages) == 1000
    assert [m["content"][0]["text"] for m in resumed.messages[2:4]] == ["message 2", "message 3"]
    # the session document, then every agent's messages in one reply
    assert counter.names() == ["find", "find"]


def test_split_repository_operations_cost(counting_client: Counting, database_name: str) -> None:
    client, counter = counting_client
    repository = MongoDBSessionRepository(client=client, database_name=database_name, layout="split")
    manager = MongoDBSessionManager("s1", client=client, database_name=database_name, layout="split")
    agent = Agent(model=ScriptedModel(["hi"]), session_manager=manager, callback_handler=None)
    agent("hello")
    graph_like = FixedState("g1")

    redacted = SessionMessage.from_message(text_message(0), 0)
    redacted.redact_message = {"role": "user", "content": [{"text": "[redacted]"}]}
    # a repository that has not seen the agent yet reads the session document once, on first use
    counter.reset()
    repository.update_message("s1", "default", redacted)
    assert counter.names() == ["aggregate", "update"]
    calls: dict[str, tuple[Callable[[], object], list[str]]] = {
        "update_metadata": (lambda: repository.update_metadata("s1", {"a": 1, "b": 2}), ["findAndModify"]),
        "delete_metadata": (lambda: repository.delete_metadata("s1", ["a"]), ["findAndModify"]),
        "get_metadata": (lambda: repository.get_metadata("s1"), ["find"]),
        "update_message": (lambda: repository.update_message("s1", "default", redacted), ["update"]),
        "create_multi_agent": (lambda: repository.create_multi_agent("s1", graph_like), ["findAndModify"]),  # type: ignore[arg-type]
        "update_multi_agent": (lambda: repository.update_multi_agent("s1", graph_like), ["findAndModify"]),  # type: ignore[arg-type]
        "read_multi_agent": (lambda: repository.read_multi_agent("s1", "g1"), ["find"]),
        "list_messages page": (lambda: repository.list_messages("s1", "default", offset=1, limit=1), ["find"]),
        # the session's agent ids, then the sums over its messages
        "get_metrics_summary": (lambda: repository.get_metrics_summary("s1"), ["aggregate", "aggregate"]),
        # the session document (checking layout and generation), then that generation's messages
        "delete_session": (lambda: repository.delete_session("s1"), ["findAndModify", "delete"]),
    }
    for name, (call, expected) in calls.items():
        counter.reset()
        call()
        assert counter.names() == expected, name


def test_split_metrics_summary_is_summed_by_the_server(
    counting_client: Counting, split_manager_on: Any, mongo_client: Any, database_name: str
) -> None:
    _, counter = counting_client
    agent = Agent(model=ScriptedModel.echo(), session_manager=split_manager_on("s1"), callback_handler=None)
    for turn in range(20):
        agent(f"question {turn} " + "padding " * 200)
    messages_bytes = sum(len(bson.encode(m)) for m in mongo_client[database_name]["sessions_messages"].find())

    manager = split_manager_on("s1")
    counter.reset()
    summary = manager.get_metrics_summary()
    agent_ids, sums = counter.commands()
    assert (agent_ids.name, sums.name) == ("aggregate", "aggregate")
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
