"""A real ``strands.Agent`` persisting through ``MongoDBSessionManager`` and resuming from it."""

import contextlib
import time
from collections.abc import Callable
from typing import Any

import pytest
from pymongo.errors import AutoReconnect
from strands import Agent
from strands.agent.conversation_manager import SlidingWindowConversationManager

from mongodb_session_manager import MongoDBSessionManager, MongoDBSessionRepository, _resume
from mongodb_session_manager._schema import SessionFacts
from mongodb_session_manager.errors import StaleAgentError

from command_counter import CommandCounter
from helpers import add, texts
from scripted_model import Reply, ScriptedModel, ToolCall
from stored_sessions import StoredSessions

NewManager = Callable[..., MongoDBSessionManager]


def test_plain_turns_are_stored_in_order(new_manager: NewManager, stored: StoredSessions) -> None:
    agent = Agent(model=ScriptedModel(["hello!", "fine"]), session_manager=new_manager("s1"), callback_handler=None)
    agent("hi")
    agent("how are you?")
    messages = stored.messages("s1", "default")
    assert [m["message_id"] for m in messages] == [0, 1, 2, 3]
    assert [m["message"]["role"] for m in messages] == ["user", "assistant", "user", "assistant"]
    assert texts([m["message"] for m in messages]) == ["hi", "hello!", "how are you?", "fine"]


def test_metrics_are_recorded_on_assistant_messages(new_manager: NewManager, stored: StoredSessions) -> None:
    model = ScriptedModel(["one two three", "four"], latency_ms=250)
    agent = Agent(model=model, session_manager=new_manager("s1"), callback_handler=None)
    agent("first")
    agent("second")

    messages = stored.messages("s1", "default")
    assert len(messages) == 4
    assert all("event_loop_metrics" not in m for m in messages if m["message"]["role"] == "user")
    first, second = (m["event_loop_metrics"] for m in messages if m["message"]["role"] == "assistant")
    # per-call usage: input = 10 per message sent, output = words
    assert first["usage"] == {"inputTokens": 10, "outputTokens": 3, "totalTokens": 13}
    assert second["usage"] == {"inputTokens": 30, "outputTokens": 1, "totalTokens": 31}
    assert first["latencyMs"] == second["latencyMs"] == 250
    # the agent's running totals at write time exclude the call that produced the message
    assert first["agent_totals_before_this_call"]["usage"]["totalTokens"] == 0
    assert second["agent_totals_before_this_call"]["usage"]["totalTokens"] == 13
    assert second["agent_totals_before_this_call"]["latencyMs"] == 250
    # what is recorded matches what the agent itself reports
    assert agent.event_loop_metrics.accumulated_usage["totalTokens"] == 13 + 31


def test_metrics_summary_sums_per_call_usage_across_agent_objects(new_manager: NewManager) -> None:
    first = Agent(
        model=ScriptedModel(["a b"], latency_ms=100), session_manager=new_manager("s1"), callback_handler=None
    )
    first("x")
    # a new Agent object restarts its running totals; the summary must not double count or lose anything
    manager = new_manager("s1")
    second = Agent(model=ScriptedModel(["c"], latency_ms=300), session_manager=manager, callback_handler=None)
    second("y")
    helper = Agent(
        model=ScriptedModel(["d e f"], latency_ms=50), agent_id="helper", session_manager=manager, callback_handler=None
    )
    helper("z")

    summary = manager.get_metrics_summary()
    default = summary["agents"]["default"]
    assert default["model_calls"] == 2
    assert default["messages"] == 4
    assert default["tokens"]["inputTokens"] == 10 + 30
    assert default["tokens"]["outputTokens"] == 2 + 1
    assert default["latency_ms"] == {"total": 400, "mean": 200, "max": 300}
    assert summary["agents"]["helper"]["tokens"]["totalTokens"] == 10 + 3
    totals = summary["totals"]
    assert totals["model_calls"] == 3
    assert totals["tokens"]["totalTokens"] == (10 + 2) + (30 + 1) + (10 + 3)
    assert totals["latency_ms"] == {"total": 450, "mean": 150, "max": 300}


def test_resume_with_new_manager_and_new_agent(new_manager: NewManager) -> None:
    agent = Agent(model=ScriptedModel(["noted"]), session_manager=new_manager("s1"), callback_handler=None)
    agent.state.set("user_name", "Ana")
    agent("my name is Ana")

    resumed = Agent(model=ScriptedModel(["hi Ana"]), session_manager=new_manager("s1"), callback_handler=None)
    assert texts(resumed.messages) == ["my name is Ana", "noted"]
    assert resumed.state.get("user_name") == "Ana"
    resumed("who am I?")
    again = Agent(model=ScriptedModel([]), session_manager=new_manager("s1"), callback_handler=None)
    assert texts(again.messages) == ["my name is Ana", "noted", "who am I?", "hi Ana"]


def test_tool_call_turn(new_manager: NewManager, stored: StoredSessions) -> None:
    model = ScriptedModel([ToolCall("add", {"a": 2, "b": 3}), "2 + 3 = 5"])
    agent = Agent(model=model, tools=[add], session_manager=new_manager("s1"), callback_handler=None)
    agent("add 2 and 3")

    messages = [m["message"] for m in stored.messages("s1", "default")]
    assert [m["role"] for m in messages] == ["user", "assistant", "user", "assistant"]
    assert messages[1]["content"][0]["toolUse"]["input"] == {"a": 2, "b": 3}
    assert messages[2]["content"][0]["toolResult"]["content"] == [{"text": "5"}]
    resumed = Agent(model=ScriptedModel([]), tools=[add], session_manager=new_manager("s1"), callback_handler=None)
    assert resumed.messages[1]["content"][0]["toolUse"]["name"] == "add"
    assert resumed.messages[2]["content"][0]["toolResult"]["status"] == "success"


def test_several_agents_keep_separate_histories(new_manager: NewManager, stored: StoredSessions) -> None:
    manager = new_manager("s1")
    writer = Agent(model=ScriptedModel(["draft"]), agent_id="writer", session_manager=manager, callback_handler=None)
    critic = Agent(model=ScriptedModel(["meh"]), agent_id="critic", session_manager=manager, callback_handler=None)
    writer("write")
    critic("judge")

    assert texts([m["message"] for m in stored.messages("s1", "writer")]) == ["write", "draft"]
    assert texts([m["message"] for m in stored.messages("s1", "critic")]) == ["judge", "meh"]
    manager = new_manager("s1")
    critic_again = Agent(model=ScriptedModel([]), agent_id="critic", session_manager=manager, callback_handler=None)
    writer_again = Agent(model=ScriptedModel([]), agent_id="writer", session_manager=manager, callback_handler=None)
    assert texts(critic_again.messages) == ["judge", "meh"]
    assert texts(writer_again.messages) == ["write", "draft"]


def test_sliding_window_resumes_from_its_offset(
    counting_client: tuple[Any, CommandCounter],
    new_manager: NewManager,
    stored: StoredSessions,
    layout: str,
    database_name: str,
) -> None:
    def window() -> SlidingWindowConversationManager:
        return SlidingWindowConversationManager(window_size=4, should_truncate_results=False)

    agent = Agent(
        model=ScriptedModel.echo(),
        session_manager=new_manager("s1"),
        conversation_manager=window(),
        callback_handler=None,
    )
    for turn in range(6):
        agent(f"turn {turn}" + " padding" * (200 if turn < 4 else 0))
    assert len(stored.messages("s1", "default")) == 12
    stored_bytes = stored.total_bytes("s1")
    removed = agent.conversation_manager.removed_message_count
    assert removed == 8

    client, counter = counting_client
    MongoDBSessionRepository(client=client, database_name=database_name, layout=layout)  # indexes, outside the count
    counter.reset()
    manager = new_manager("s1", client=client)
    resumed = Agent(
        model=ScriptedModel.echo(), session_manager=manager, conversation_manager=window(), callback_handler=None
    )
    assert resumed.conversation_manager.removed_message_count == removed
    assert texts(resumed.messages) == ["turn 4", "echo: turn 4", "turn 5", "echo: turn 5"]
    # the resume was one read (embedded) or the session plus one messages read (split),
    # and it carried only the messages past the offset
    reads = counter.commands()
    assert [read.name for read in reads] == (["aggregate"] if layout == "embedded" else ["find", "find"])
    assert all(read.reply_bytes is not None for read in reads)
    assert sum(read.reply_bytes or 0 for read in reads) < stored_bytes / 4
    resumed("turn 6")
    assert stored.message_ids("s1", "default") == list(range(14))


def test_guardrail_redaction_is_persisted(new_manager: NewManager, stored: StoredSessions) -> None:
    model = ScriptedModel([Reply("I cannot help with that.", redact_user_input="[User input redacted.]")])
    agent = Agent(model=model, session_manager=new_manager("s1"), callback_handler=None)
    agent("my card number is 4111 1111 1111 1111")

    messages = stored.messages("s1", "default")
    user = messages[0]
    assert user["redact_message"]["content"] == [{"text": "[User input redacted.]"}]
    # like Strands' own repositories, the rewrite replaces the stored original: the guardrail's point
    assert "4111" not in str(stored.document("s1"))
    assert "4111" not in str(messages)
    assert "redacted" in str(messages)  # the check above looked where the messages are
    resumed = Agent(model=ScriptedModel([]), session_manager=new_manager("s1"), callback_handler=None)
    assert texts(resumed.messages)[0] == "[User input redacted.]"
    assert "4111" not in str(resumed.messages)


def test_an_agent_whose_redaction_failed_goes_stale(new_manager: NewManager) -> None:
    manager = new_manager("s1")
    model = ScriptedModel.echo([Reply("I cannot help with that.", redact_user_input="[User input redacted.]")])
    agent = Agent(model=model, session_manager=manager, callback_handler=None)
    real_update = manager.repository.update_message
    calls = {"n": 0}

    def network_blip(*args: Any, **kwargs: Any) -> None:
        calls["n"] += 1
        if calls["n"] == 1:
            raise AutoReconnect("connection reset while redacting")
        real_update(*args, **kwargs)

    manager.repository.update_message = network_blip  # type: ignore[method-assign]
    with contextlib.suppress(Exception):
        agent("my card number is 4111 1111 1111 1111")
    assert calls["n"] == 1

    with pytest.raises(StaleAgentError):
        agent("next question")  # carrying on would bury the unredacted input under new messages


async def test_stream_async_persists_the_streamed_turn(new_manager: NewManager, stored: StoredSessions) -> None:
    agent = Agent(model=ScriptedModel(["streamed answer"]), session_manager=new_manager("s1"), callback_handler=None)
    chunks = [event["data"] async for event in agent.stream_async("stream please") if "data" in event]
    assert "".join(chunks) == "streamed answer"
    messages = stored.messages("s1", "default")
    assert texts([m["message"] for m in messages]) == ["stream please", "streamed answer"]
    assert messages[1]["event_loop_metrics"]["usage"]["outputTokens"] == 2


def test_agent_built_long_after_its_manager_reads_the_current_conversation(
    new_manager: NewManager, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(_resume, "SNAPSHOT_TTL_SECONDS", 0.05)
    Agent(model=ScriptedModel(["one"]), session_manager=new_manager("s1"), callback_handler=None)("first")
    early = new_manager("s1")  # reads the session now ...
    Agent(model=ScriptedModel(["two"]), session_manager=new_manager("s1"), callback_handler=None)("second")
    time.sleep(0.1)
    # ... but its Agent, built later, restores what is stored by then and carries on without a conflict
    late = Agent(model=ScriptedModel(["three"]), session_manager=early, callback_handler=None)
    assert texts(late.messages) == ["first", "one", "second", "two"]
    late("third")
    again = Agent(model=ScriptedModel([]), session_manager=new_manager("s1"), callback_handler=None)
    assert texts(again.messages)[-2:] == ["third", "three"]


def test_a_read_that_overlaps_a_write_is_not_kept() -> None:
    snapshots = _resume.ResumeSnapshots()
    document = {"agents": {"a": {"messages": [{"message_id": 0}]}}}
    marker = snapshots.writes_so_far()
    with snapshots.writing("s1"):
        pass  # a write to the session lands while the read is in flight
    snapshots.keep("s1", document, marker)
    assert snapshots.agent("s1", "a") == (False, None, None)
    snapshots.keep("s1", document, snapshots.writes_so_far())
    assert snapshots.agent("s1", "a") == (True, document["agents"]["a"], SessionFacts(generation=None))
    assert snapshots.take_messages("s1", "a", offset=0) == [{"message_id": 0}]
    assert snapshots.take_messages("s1", "a", offset=0) is None  # handed out once
