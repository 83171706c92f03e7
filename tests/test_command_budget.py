"""Round-trip budgets, counted with pymongo command monitoring against the real server.

These counts do not depend on the machine, so they are asserted exactly where the design fixes
them. Reads are commands that fetch data (find, aggregate, getMore); writes are everything else.
"""

from collections.abc import Callable
from typing import Any

import pytest
from pymongo import MongoClient
from strands import Agent, tool
from strands.agent.conversation_manager import SlidingWindowConversationManager
from strands.types.content import Message
from strands.types.session import SessionMessage

from mongodb_session_manager import MongoDBSessionManager, MongoDBSessionRepository
from mongodb_session_manager._documents import message_document, now

from command_counter import CommandCounter
from scripted_model import ScriptedModel, ToolCall

READS = {"find", "aggregate", "getMore", "count", "countDocuments", "distinct"}
Counting = tuple[MongoClient[dict[str, Any]], CommandCounter]


@tool
def add(a: int, b: int) -> int:
    """Add two integers."""
    return a + b


def text_message(index: int) -> Message:
    return {"role": "user" if index % 2 == 0 else "assistant", "content": [{"text": f"message {index}"}]}


@pytest.fixture
def manager_on(counting_client: Counting, database_name: str) -> Callable[[str], MongoDBSessionManager]:
    client, _ = counting_client
    MongoDBSessionRepository(client=client, database_name=database_name)  # indexes, once, outside the counts

    def make(session_id: str) -> MongoDBSessionManager:
        return MongoDBSessionManager(session_id, client=client, database_name=database_name)

    return make


def test_new_session_costs_three_commands(counting_client: Counting, manager_on: Any) -> None:
    _, counter = counting_client
    counter.reset()
    Agent(model=ScriptedModel([]), session_manager=manager_on("s1"), callback_handler=None)
    # read_session, create_session (upsert), create_agent (conditional set)
    assert counter.names() == ["aggregate", "update", "findAndModify"]


def test_plain_turn_costs_at_most_three_writes_and_no_read(counting_client: Counting, manager_on: Any) -> None:
    _, counter = counting_client
    agent = Agent(model=ScriptedModel(["one", "two"]), session_manager=manager_on("s1"), callback_handler=None)
    agent("first")
    counter.reset()
    agent("second")
    # the user message and the answer; agent state did not change, so it is not rewritten
    assert counter.names() == ["findAndModify", "findAndModify"]


def test_request_per_turn_resumes_in_one_read_and_writes_only_messages(
    counting_client: Counting, manager_on: Any
) -> None:
    """The web-app pattern: every request builds a new manager and Agent, then runs one turn."""
    _, counter = counting_client
    Agent(model=ScriptedModel(["first"]), session_manager=manager_on("s1"), callback_handler=None)("hello")
    for turn in range(3):
        counter.reset()
        agent = Agent(model=ScriptedModel([f"answer {turn}"]), session_manager=manager_on("s1"), callback_handler=None)
        agent(f"question {turn}")
        assert counter.names() == ["aggregate", "findAndModify", "findAndModify"]


def test_turn_that_trims_history_costs_three_writes(counting_client: Counting, manager_on: Any) -> None:
    _, counter = counting_client
    window = SlidingWindowConversationManager(window_size=4)
    agent = Agent(
        model=ScriptedModel.echo(), session_manager=manager_on("s1"), conversation_manager=window, callback_handler=None
    )
    for turn in range(3):
        agent(f"turn {turn}")
    counter.reset()
    agent("one more")  # the window drops old messages: the conversation manager's state is synced once
    names = counter.names()
    assert names == ["findAndModify"] * 3, names


def test_tool_turn_costs_one_write_per_message_and_state_sync(counting_client: Counting, manager_on: Any) -> None:
    _, counter = counting_client
    model = ScriptedModel(["hi", ToolCall("add", {"a": 1, "b": 2}), "3"])
    agent = Agent(model=model, tools=[add], session_manager=manager_on("s1"), callback_handler=None)
    agent("hello")
    counter.reset()
    agent("add 1 and 2")
    names = counter.names()
    # four messages (user, toolUse, toolResult, answer) plus at most one agent state sync
    assert 4 <= len(names) <= 5, names
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
