"""The script examples run offline and store what they say they store."""

import json
import re
from collections.abc import Callable
from typing import Any

from pymongo.database import Database


def stored_messages(db: Database[dict[str, Any]], session_id: str) -> list[dict[str, Any]]:
    document = db["sessions"].find_one({"_id": session_id})
    assert document is not None, f"session {session_id!r} was not stored"
    return list(document["agents"]["default"]["messages"])


def test_calculator_tool_example(
    run_example: Callable[..., str], database_name: str, mongo_db: Database[dict[str, Any]]
) -> None:
    out = run_example("example_calculator_tool", "--database", database_name)

    assert "Model: ScriptedModel" in out
    assert "assistant > The calculator says: sqrt(1764) * 3 -> 126." in out
    assert "assistant > The calculator says: x**3 * sin(x) (derive) -> x**3*cos(x) + 3*x**2*sin(x)." in out
    restored = out.split("messages restored from MongoDB:")[1]
    assert "<calls calculator({'expression': 'sqrt(1764) * 3'})>" in restored
    assert "<tool result: Result: 126>" in restored
    assert "I can see 2 calculator calls in our conversation: sqrt(1764) * 3 -> 126;" in restored
    assert "'model_calls': 5" in restored

    stored = stored_messages(mongo_db, "calculator")
    assert len(stored) == 10
    tool_uses = [b["toolUse"] for s in stored for b in s["message"]["content"] if "toolUse" in b]
    assert [t["name"] for t in tool_uses] == ["calculator", "calculator"]
    assert tool_uses[1]["input"] == {"expression": "x**3 * sin(x)", "mode": "derive", "wrt": "x"}
    results = [b["toolResult"] for s in stored for b in s["message"]["content"] if "toolResult" in b]
    assert [r["status"] for r in results] == ["success", "success"]
    assert results[0]["content"] == [{"text": "Result: 126"}]
    assert sum("event_loop_metrics" in s for s in stored) == 5


def test_stream_async_example(
    run_example: Callable[..., str], database_name: str, mongo_db: Database[dict[str, Any]]
) -> None:
    out = run_example("example_stream_async", "--database", database_name, "--word-delay-ms", "1")

    stored = stored_messages(mongo_db, "stream-async")
    texts = [s["message"]["content"][0]["text"] for s in stored]
    assert [s["message"]["role"] for s in stored] == ["user", "assistant", "user", "assistant"]
    assert texts[0] == "What does streaming change for a user?"
    assert texts[1] in out
    assert texts[3] in out
    words = [len(texts[1].split()), len(texts[3].split())]
    assert min(words) > 10
    metrics = [s["event_loop_metrics"] for s in stored if s["message"]["role"] == "assistant"]
    assert [m["usage"]["outputTokens"] for m in metrics] == words
    assert [m["latencyMs"] for m in metrics] == [100, 100]

    assert "Model: ScriptedModel" in out
    assert f"[model call: {words[0]} chunks, first after" in out
    assert f"tokens in 10 / out {words[0]} / total {10 + words[0]}" in out
    assert f"[model call: {words[1]} chunks, first after" in out
    assert "[assistant message complete: MongoDB already holds 2 messages]" in out
    assert "[assistant message complete: MongoDB already holds 4 messages]" in out
    assert "[turn 2:" in out
    assert "cycle_count 2" in out
    assert f"event_loop_metrics: {metrics[1]}" in out
    assert f"'outputTokens': {sum(words)}" in out


def test_performance_example(
    run_example: Callable[..., str], database_name: str, mongo_db: Database[dict[str, Any]]
) -> None:
    out = run_example("example_performance", "--database", database_name, "--requests", "3", "--keep-sessions")

    assert "3 timed requests per approach" in out
    for approach in ("new client", "shared pool"):
        assert re.search(rf"^  {approach} +\d+\.\d +\d+\.\d \| +\d+\.\d +\d+\.\d +\d+\.\d$", out, re.MULTILINE), out
    assert re.search(r"median request, new client / shared pool: \d+\.\dx", out)
    assert re.search(r"the shared pool handed out 6 managers over \d+ connection", out)
    assert "the new-client requests opened (and closed) 6 clients" in out  # one per request, warm-up included

    sessions = list(mongo_db["sessions"].find({}, {"agents.default.messages.message.role": 1}))
    assert len(sessions) == 2 * (3 + 3)
    assert sum(s["_id"].split("-")[2] == "shared" for s in sessions) == 6
    for session in sessions:
        assert [m["message"]["role"] for m in session["agents"]["default"]["messages"]] == ["user", "assistant"]
    assert "Read back from MongoDB after each request: 12 sessions, 24 messages" in out


def test_snapshot_storage_example(
    run_example: Callable[..., str], database_name: str, mongo_db: Database[dict[str, Any]]
) -> None:
    out = run_example("example_snapshot_storage", "--database", database_name, "--crash-after", "2")

    assert "Model: ScriptedModel" in out
    process_1, process_2 = out.split("Process 2 (pid")
    assert "assistant > Noted: I live in Lisbon." in process_1
    assert "crashes after turn 2: os._exit, nothing closed]" in process_1
    assert "I have a cat called Miso." not in out  # process 1 died before turn 3
    assert "MongoDB holds 3 keys under session/snapshot-demo/" in process_2
    resumed, rewound = process_2.split("Time travel:")
    assert "assistant > You told me: My name is Ada. I live in Lisbon." in resumed
    assert "assistant > You told me: My name is Ada.\n" in rewound
    assert re.search(r"Checkpoint [0-9a-f-]{36} is unchanged: True", rewound)

    prefix = "session/snapshot-demo/scopes/agent/default/snapshots/"
    keys = sorted(d["_id"] for d in mongo_db["storage"].find({"size": {"$exists": True}}))
    assert [key.removeprefix(prefix).split("_")[0] for key in keys] == ["immutable"] * 4 + ["snapshot"]
    latest = json.loads(mongo_db["storage"].find_one({"_id": f"{prefix}snapshot_latest.json"})["value"])  # type: ignore[index]
    assert [m["content"][0]["text"] for m in latest["data"]["messages"]] == [
        "My name is Ada.",
        "Noted: My name is Ada.",
        "What do you know about me?",
        "You told me: My name is Ada.",
    ]
