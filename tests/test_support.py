"""The test helpers themselves work: ScriptedModel drives a real Agent, fixtures hit a real server."""

from __future__ import annotations

from typing import Any

import pytest
from pydantic import BaseModel
from pymongo import MongoClient
from strands import Agent

from command_counter import CommandCounter
from helpers import add
from scripted_model import Raise, Reply, ScriptedModel, ScriptExhaustedError, ToolCall


class Point(BaseModel):
    x: int
    y: int


def test_plain_turn_records_usage_and_latency() -> None:
    agent = Agent(model=ScriptedModel(["Hello there, human."]), callback_handler=None)

    result = agent("hi")

    assert str(result).strip() == "Hello there, human."
    assert result.stop_reason == "end_turn"
    assistant = agent.messages[-1]
    assert assistant["role"] == "assistant"
    assert assistant["content"] == [{"text": "Hello there, human."}]
    assert assistant["metadata"]["usage"] == {
        "inputTokens": 10,
        "outputTokens": 3,
        "totalTokens": 13,
    }
    assert assistant["metadata"]["metrics"]["latencyMs"] == 100


def test_tool_turn_runs_the_tool_and_replies() -> None:
    model = ScriptedModel([Reply("Let me add.", ToolCall("add", {"a": 2, "b": 3})), "It is 5."])
    agent = Agent(model=model, tools=[add], callback_handler=None)

    result = agent("what is 2 + 3?")

    assert str(result).strip() == "It is 5."
    roles = [m["role"] for m in agent.messages]
    assert roles == ["user", "assistant", "user", "assistant"]
    tool_use = agent.messages[1]["content"][1]["toolUse"]
    assert tool_use == {
        "toolUseId": "tooluse_1_0",
        "name": "add",
        "input": {"a": 2, "b": 3},
    }
    tool_result = agent.messages[2]["content"][0]["toolResult"]
    assert tool_result["toolUseId"] == "tooluse_1_0"
    assert tool_result["status"] == "success"
    assert tool_result["content"] == [{"text": "5"}]
    # the second call saw the whole conversation, including the tool result
    assert len(model.calls) == 2
    assert len(model.calls[1]) == 3
    assert agent.messages[3]["metadata"]["usage"]["inputTokens"] == 30
    assert model.remaining == 0


def test_several_tool_calls_in_one_turn() -> None:
    model = ScriptedModel(
        [
            Reply("", ToolCall("add", {"a": 1, "b": 1}), ToolCall("add", {"a": 2, "b": 2})),
            "done",
        ]
    )
    agent = Agent(model=model, tools=[add], callback_handler=None)

    agent("add twice")

    results = [block["toolResult"]["content"] for block in agent.messages[2]["content"]]
    assert sorted(results, key=str) == [[{"text": "2"}], [{"text": "4"}]]


@pytest.mark.asyncio
async def test_stream_async() -> None:
    agent = Agent(
        model=ScriptedModel([ToolCall("add", {"a": 1, "b": 2}), "three"]),
        tools=[add],
        callback_handler=None,
    )

    events = [event async for event in agent.stream_async("1 + 2?")]

    assert [e["data"] for e in events if "data" in e] == ["three"]
    assert str(events[-1]["result"]).strip() == "three"


def test_exhausted_script_raises() -> None:
    agent = Agent(model=ScriptedModel(["only one"]), callback_handler=None)
    agent("first")

    with pytest.raises(ScriptExhaustedError, match="1 scripted turn"):
        agent("second")


def test_raise_turn_fails_that_call_only() -> None:
    model = ScriptedModel([Raise(ConnectionError("model down")), "recovered"])
    agent = Agent(model=model, callback_handler=None)

    with pytest.raises(ConnectionError, match="model down"):
        agent("first")
    assert str(agent("second")).strip() == "recovered"


def test_echo_answers_forever() -> None:
    agent = Agent(model=ScriptedModel.echo(["scripted first"]), callback_handler=None)

    replies = [str(agent(f"message {i}")).strip() for i in range(5)]

    assert replies == ["scripted first"] + [f"echo: message {i}" for i in range(1, 5)]
    assert len(agent.messages) == 10


@pytest.mark.asyncio
async def test_structured_output() -> None:
    model = ScriptedModel([Reply('{"x": 1, "y": 2}'), ToolCall("Point", {"x": 3, "y": 4})])

    from_text = [event async for event in model.structured_output(Point, [])]
    from_tool_call = [event async for event in model.structured_output(Point, [])]

    assert from_text[-1]["output"] == Point(x=1, y=2)
    assert from_tool_call[-1]["output"] == Point(x=3, y=4)


def test_agent_structured_output_is_a_tool_call() -> None:
    agent = Agent(
        model=ScriptedModel([ToolCall("Point", {"x": 5, "y": 6})]),
        callback_handler=None,
    )

    result = agent("where?", structured_output_model=Point)

    assert result.structured_output == Point(x=5, y=6)


def test_database_name_is_unique_and_usable(mongo_client: MongoClient[dict[str, Any]], database_name: str) -> None:
    assert database_name.startswith("t_test_database_name_is_unique")
    mongo_client[database_name]["c"].insert_one({"_id": 1})
    assert database_name in mongo_client.list_database_names()


def test_counter_counts_insert_and_find(
    counting_client: tuple[MongoClient[dict[str, Any]], CommandCounter],
    database_name: str,
) -> None:
    client, counter = counting_client
    collection = client[database_name]["items"]

    collection.insert_one({"_id": 1, "name": "one"})
    assert collection.find_one({"_id": 1}) == {"_id": 1, "name": "one"}

    assert counter.names() == ["insert", "find"]
    assert counter.count() == 2
    assert counter.count("find") == 1
    assert {c.database for c in counter.commands()} == {database_name}
    assert all(c.reply_bytes and c.reply_bytes > 0 for c in counter.commands())

    counter.reset()
    assert counter.count() == 0
