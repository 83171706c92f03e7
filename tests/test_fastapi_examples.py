"""The FastAPI examples (examples/example_fastapi.py, examples/example_fastapi_streaming.py) against the test server.

Real apps through FastAPI's TestClient (lifespan included), real strands Agents driven by
ScriptedModel, and the stored documents checked in MongoDB. Both connection modes are exercised.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

import httpx
import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient
from pymongo.database import Database

from mongodb_session_manager import MongoDBSessionRepository
from mongodb_session_manager.errors import (
    FactoryNotInitializedError,
    InvalidIdentifierError,
    SessionConflictError,
    SessionNotFoundError,
    StaleAgentError,
)

import example_fastapi
import example_fastapi_streaming
from chat_api import DEFAULT_AGENT_ID, error_status, scripted_chat_responder
from example_processes import free_port, run_example, stop, wait_until_up
from scripted_model import Raise, ScriptedModel

MODES = ["factory", "client-per-request"]
PLAYGROUND_ORIGIN = "http://127.0.0.1:8881"


def scripted(*script: Any, word_delay_ms: float = 0) -> Callable[[], ScriptedModel]:
    """A model factory: a fresh ScriptedModel per request, answering with the chat examples' responder."""
    return lambda: ScriptedModel(script, fallback=scripted_chat_responder, word_delay_ms=word_delay_ms)


@pytest.fixture(params=MODES)
def mode(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture
def make_client(mongodb_uri: str, database_name: str) -> Iterator[Callable[..., TestClient]]:
    """Start an app (``"plain"`` or ``"streaming"``) with its lifespan; closed after the test."""
    clients: list[TestClient] = []

    def make(kind: str = "plain", connection_mode: str = "factory", **kwargs: Any) -> TestClient:
        module = example_fastapi if kind == "plain" else example_fastapi_streaming
        kwargs.setdefault("model_factory", scripted())
        app: FastAPI = module.create_app(mongodb_uri, database_name, connection_mode=connection_mode, **kwargs)
        client = TestClient(app)
        client.__enter__()
        clients.append(client)
        return client

    yield make
    for client in clients:
        client.__exit__(None, None, None)


def stored_session(mongo_db: Database[dict[str, Any]], session_id: str) -> dict[str, Any]:
    document = mongo_db["sessions"].find_one({"_id": session_id})
    assert document is not None, f"session {session_id!r} is not stored"
    return document


def sse_events(body: str) -> list[tuple[str, dict[str, Any]]]:
    """Parse a text/event-stream body into (event, data) pairs."""
    events = []
    for block in body.split("\n\n"):
        if not block.strip():
            continue
        fields = dict(line.split(": ", 1) for line in block.splitlines())
        events.append((fields["event"], json.loads(fields["data"])))
    return events


# -- plain JSON chat -------------------------------------------------------------------------------


def test_chat_twice_resumes_the_session_and_stores_it(
    make_client: Callable[..., TestClient], mongo_db: Database[dict[str, Any]], mode: str
) -> None:
    client = make_client("plain", mode)

    first = client.post("/sessions/user-1/chat", json={"message": "Hello there"})
    second = client.post("/sessions/user-1/chat", json={"message": "Still there?"})

    assert first.status_code == second.status_code == 200
    assert first.json()["answer"].startswith('You said: "Hello there".')
    assert "received 0 earlier messages" in first.json()["answer"]
    # A new Agent per request: the second one got the first turn back from MongoDB.
    assert "received 2 earlier messages" in second.json()["answer"]
    words = len(first.json()["answer"].split())  # ScriptedModel: one output token per word
    assert first.json()["metrics"]["usage"] == {"inputTokens": 10, "outputTokens": words, "totalTokens": 10 + words}
    assert second.json()["metrics"]["usage"]["inputTokens"] == 30
    assert second.json()["metrics"]["messages_in_session"] == 4

    history = client.get("/sessions/user-1/history").json()
    assert [(m["message_id"], m["role"]) for m in history["messages"]] == [
        (0, "user"),
        (1, "assistant"),
        (2, "user"),
        (3, "assistant"),
    ]
    assert history["messages"][2]["text"] == "Still there?"
    assert history["messages"][3]["text"] == second.json()["answer"]
    assert history["messages"][3]["metrics"]["usage"]["inputTokens"] == 30
    assert "metrics" not in history["messages"][0]

    document = stored_session(mongo_db, "user-1")
    messages = document["agents"][DEFAULT_AGENT_ID]["messages"]
    assert [m["message"]["role"] for m in messages] == ["user", "assistant", "user", "assistant"]
    assert messages[1]["message"]["content"][0]["text"] == first.json()["answer"]
    assert messages[3]["event_loop_metrics"]["usage"] == second.json()["metrics"]["usage"]


def test_metadata_partial_update_delete_and_read(
    make_client: Callable[..., TestClient], mongo_db: Database[dict[str, Any]], mode: str
) -> None:
    client = make_client("plain", mode)
    client.post("/sessions/meta-1/chat", json={"message": "hi"}).raise_for_status()

    assert client.get("/sessions/meta-1/metadata").json() == {"session_id": "meta-1", "metadata": {}}
    updated = client.put("/sessions/meta-1/metadata", json={"metadata": {"priority": "high", "tags": ["a", "b"]}})
    assert updated.json()["metadata"] == {"priority": "high", "tags": ["a", "b"]}
    partial = client.put("/sessions/meta-1/metadata", json={"metadata": {"assigned_to": "ana", "priority": "low"}})
    assert partial.json()["metadata"] == {"priority": "low", "tags": ["a", "b"], "assigned_to": "ana"}

    deleted = client.delete("/sessions/meta-1/metadata", params={"keys": ["tags", "assigned_to"]})
    assert deleted.status_code == 200
    assert deleted.json()["metadata"] == {"priority": "low"}
    assert client.get("/sessions/meta-1/metadata").json()["metadata"] == {"priority": "low"}
    assert stored_session(mongo_db, "meta-1")["metadata"] == {"priority": "low"}


def test_session_stats_and_connection_stats(make_client: Callable[..., TestClient], mode: str) -> None:
    client = make_client("plain", mode)
    for text in ("one", "two"):
        client.post("/sessions/stats-1/chat", json={"message": text}).raise_for_status()

    stats = client.get("/sessions/stats-1/stats").json()
    assert stats["message_count"] == 4
    assert stats["model_calls"] == 2
    assert stats["tokens"]["inputTokens"] == 10 + 30
    assert stats["latency_ms"]["mean"] == 100
    assert stats["created_at"] <= stats["updated_at"]
    assert stats["agents"][DEFAULT_AGENT_ID]["messages"] == 4

    server = client.get("/stats").json()
    assert server["connection_mode"] == mode
    if mode == "factory":
        assert server["factory"]["managers_created"] == 2
        assert server["factory"]["pool"]["connections"]["open"] >= 1
    else:
        assert "factory" not in server


def test_error_codes(make_client: Callable[..., TestClient], mongo_db: Database[dict[str, Any]], mode: str) -> None:
    client = make_client("plain", mode)
    client.post("/sessions/known/chat", json={"message": "hi"}).raise_for_status()
    client.put("/sessions/known/metadata", json={"metadata": {"keep": 1}}).raise_for_status()
    before = stored_session(mongo_db, "known")

    too_long = "x" * 300
    assert client.post(f"/sessions/{too_long}/chat", json={"message": "hi"}).status_code == 422
    assert client.get(f"/sessions/{too_long}/history").status_code == 422
    assert client.get("/sessions/bad%00id/metadata").status_code == 422
    assert client.post("/sessions/known/chat", json={"message": ""}).status_code == 422
    assert client.post("/sessions/known/chat", json={}).status_code == 422
    assert client.put("/sessions/known/metadata", json={"metadata": {"a.b": 1}}).status_code == 422
    assert client.put("/sessions/known/metadata", json={"metadata": {"$set": 1}}).status_code == 422
    assert client.delete("/sessions/known/metadata", params={"keys": ["$bad"]}).status_code == 422
    assert client.delete("/sessions/known/metadata").status_code == 422  # no keys given

    for method, path in [
        ("GET", "/sessions/unknown/history"),
        ("GET", "/sessions/unknown/metadata"),
        ("GET", "/sessions/unknown/stats"),
        ("DELETE", "/sessions/unknown/metadata?keys=a"),
    ]:
        response = client.request(method, path)
        assert response.status_code == 404, (method, path, response.text)
        assert "not found" in response.json()["detail"]
    assert client.put("/sessions/unknown/metadata", json={"metadata": {"a": 1}}).status_code == 404

    # Refused requests changed nothing and created nothing.
    assert stored_session(mongo_db, "known") == before
    assert mongo_db["sessions"].count_documents({}) == 1


@pytest.mark.parametrize(
    ("error", "status"),
    [
        (InvalidIdentifierError("session_id", "", "must not be empty"), 422),
        (SessionNotFoundError("gone"), 404),
        (SessionConflictError("message 4 already stored"), 409),
        (StaleAgentError("stale"), 409),
        (FactoryNotInitializedError("not yet"), 503),
        (RuntimeError("boom"), 500),
    ],
)
def test_error_status_mapping(error: Exception, status: int) -> None:
    assert error_status(error)[0] == status


# -- streaming ---------------------------------------------------------------------------------------


def test_streaming_chat_sends_chunks_then_metrics_and_stores_the_turn(
    make_client: Callable[..., TestClient], mongo_db: Database[dict[str, Any]], mode: str
) -> None:
    client = make_client("streaming", mode, model_factory=scripted(word_delay_ms=1))

    first = client.post("/sessions/stream-1/chat/stream", json={"message": "Hello streaming world"})
    assert first.status_code == 200
    assert first.headers["content-type"].startswith("text/event-stream")
    events = sse_events(first.text)
    names = [name for name, _ in events]
    assert names[0] == "start"
    assert names[-1] == "done"
    assert set(names[1:-1]) == {"chunk"}
    assert len(names) - 2 > 10  # one chunk per word
    assert events[0][1] == {"session_id": "stream-1", "restored_messages": 0}
    answer = "".join(data["text"] for name, data in events if name == "chunk")
    assert answer.startswith('You said: "Hello streaming world".')
    metrics = events[-1][1]["metrics"]
    words = len(answer.split())
    assert metrics["usage"] == {"inputTokens": 10, "outputTokens": words, "totalTokens": 10 + words}
    assert metrics["model_latency_ms"] == 100
    assert metrics["messages_in_session"] == 2
    assert 0 < metrics["time_to_first_chunk_ms"] <= metrics["duration_ms"]

    # The turn was persisted, with the same metrics on the stored answer.
    messages = stored_session(mongo_db, "stream-1")["agents"][DEFAULT_AGENT_ID]["messages"]
    assert [m["message"]["role"] for m in messages] == ["user", "assistant"]
    assert messages[1]["message"]["content"][0]["text"] == answer
    assert messages[1]["event_loop_metrics"]["usage"] == metrics["usage"]

    # The next request resumes it.
    second = sse_events(client.post("/sessions/stream-1/chat/stream", json={"message": "again"}).text)
    assert second[0][1]["restored_messages"] == 2
    assert "received 2 earlier messages" in "".join(d["text"] for n, d in second if n == "chunk")
    assert second[-1][1]["metrics"]["usage"]["inputTokens"] == 30
    history = client.get("/sessions/stream-1/history").json()["messages"]
    assert len(history) == 4
    assert client.get("/sessions/stream-1/stats").json()["message_count"] == 4


def test_streaming_turn_touches_mongodb_off_the_event_loop_thread(
    make_client: Callable[..., TestClient], monkeypatch: pytest.MonkeyPatch, mode: str
) -> None:
    """The design the streaming example documents: session reads and writes run in worker threads."""
    threads: dict[str, set[int]] = {}

    def recording(name: str) -> None:
        original = getattr(MongoDBSessionRepository, name)

        def wrapper(self: MongoDBSessionRepository, *args: Any, **kwargs: Any) -> Any:
            threads.setdefault(name, set()).add(threading.get_ident())
            return original(self, *args, **kwargs)

        monkeypatch.setattr(MongoDBSessionRepository, name, wrapper)

    for name in ("read_session", "create_session", "create_agent", "create_message", "update_agent"):
        recording(name)
    client = make_client("streaming", mode, model_factory=scripted(word_delay_ms=1))

    app = client.app
    assert isinstance(app, FastAPI)

    @app.get("/loop-thread")
    async def loop_thread() -> int:  # an async endpoint runs on the event-loop thread
        return threading.get_ident()

    loop_thread_id = client.get("/loop-thread").json()
    for text in ("one", "two"):
        assert sse_events(client.post("/sessions/threads/chat/stream", json={"message": text}).text)[-1][0] == "done"

    assert {"read_session", "create_session", "create_message"} <= threads.keys()
    used = set().union(*threads.values())
    assert loop_thread_id not in used


@pytest.mark.parametrize("kind", ["plain", "streaming"])
def test_a_second_turn_while_one_is_running_gets_409_and_stores_nothing(
    make_client: Callable[..., TestClient], mongo_db: Database[dict[str, Any]], kind: str
) -> None:
    client = make_client(kind, model_factory=scripted(word_delay_ms=20))  # about half a second per answer
    path = "/sessions/busy/chat" if kind == "plain" else "/sessions/busy/chat/stream"
    responses: list[httpx.Response] = []
    first = threading.Thread(target=lambda: responses.append(client.post(path, json={"message": "first"})))
    first.start()
    deadline = time.monotonic() + 10
    while mongo_db["sessions"].count_documents({"_id": "busy", "agents.assistant.messages.0": {"$exists": True}}) == 0:
        assert time.monotonic() < deadline, "the first turn never stored its user message"
        time.sleep(0.01)

    second = client.post(path, json={"message": "second"})
    first.join()

    assert second.status_code == 409
    assert "already running" in second.json()["detail"]
    assert responses[0].status_code == 200
    messages = stored_session(mongo_db, "busy")["agents"][DEFAULT_AGENT_ID]["messages"]
    assert [(m["message"]["role"], m["message"]["content"][0]["text"][:5]) for m in messages] == [
        ("user", "first"),
        ("assistant", "You s"),
    ]
    # Once the first turn is over, the session takes turns again.
    assert client.post(path, json={"message": "third"}).status_code == 200
    assert len(stored_session(mongo_db, "busy")["agents"][DEFAULT_AGENT_ID]["messages"]) == 4


def test_streaming_errors(make_client: Callable[..., TestClient], mongo_db: Database[dict[str, Any]]) -> None:
    client = make_client("streaming", model_factory=scripted(Raise(RuntimeError("model down"))))

    assert client.post(f"/sessions/{'x' * 300}/chat/stream", json={"message": "hi"}).status_code == 422
    assert client.post("/sessions/ok/chat/stream", json={"message": ""}).status_code == 422

    response = client.post("/sessions/failing/chat/stream", json={"message": "hi"})
    assert response.status_code == 200  # the stream had started; the failure is an event
    events = sse_events(response.text)
    assert [name for name, _ in events] == ["start", "error"]
    assert events[-1][1] == {"status": 500, "detail": "internal error"}
    # Strands stored the user message before the model call failed; no answer was stored.
    messages = stored_session(mongo_db, "failing")["agents"][DEFAULT_AGENT_ID]["messages"]
    assert [m["message"]["role"] for m in messages] == ["user"]


def test_streaming_app_shares_metadata_endpoints(make_client: Callable[..., TestClient]) -> None:
    client = make_client("streaming")
    client.post("/sessions/panel/chat/stream", json={"message": "hi"}).raise_for_status()
    client.put("/sessions/panel/metadata", json={"metadata": {"topic": "tests", "n": 1}}).raise_for_status()
    assert client.delete("/sessions/panel/metadata", params={"keys": "n"}).json()["metadata"] == {"topic": "tests"}
    assert client.get("/sessions/panel/metadata").json()["metadata"] == {"topic": "tests"}


def test_cors_allows_the_configured_origins_only(make_client: Callable[..., TestClient]) -> None:
    client = make_client("streaming")
    preflight = {"Access-Control-Request-Method": "POST", "Access-Control-Request-Headers": "content-type"}

    allowed = client.options("/sessions/s/chat/stream", headers={"Origin": PLAYGROUND_ORIGIN, **preflight})
    assert allowed.status_code == 200
    assert allowed.headers["access-control-allow-origin"] == PLAYGROUND_ORIGIN
    assert "POST" in allowed.headers["access-control-allow-methods"]
    assert "access-control-allow-credentials" not in allowed.headers

    other = client.options("/sessions/s/chat/stream", headers={"Origin": "http://evil.example", **preflight})
    assert other.status_code == 400
    assert "access-control-allow-origin" not in other.headers

    simple = client.get("/health", headers={"Origin": "http://localhost:8881"})
    assert simple.headers["access-control-allow-origin"] == "http://localhost:8881"
    assert "access-control-allow-origin" not in client.get("/health", headers={"Origin": "http://evil.example"}).headers

    # A second app in the same process: the global factory is taken, so this one opens clients per request.
    custom = make_client("streaming", "client-per-request", allowed_origins=["http://example.test:9000"])
    answer = custom.options("/sessions/s/chat/stream", headers={"Origin": "http://example.test:9000", **preflight})
    assert answer.headers["access-control-allow-origin"] == "http://example.test:9000"
    assert custom.options("/health", headers={"Origin": PLAYGROUND_ORIGIN, **preflight}).status_code == 400


# -- the command line ----------------------------------------------------------------------------------


def test_example_fastapi_command_line_client_per_request(
    mongodb_uri: str, database_name: str, mongo_db: Database[dict[str, Any]]
) -> None:
    port = free_port()
    process = run_example(
        "example_fastapi.py",
        *("--uri", mongodb_uri, "--database", database_name, "--port", str(port)),
        *("--connection-mode", "client-per-request"),
    )
    try:
        base = f"http://127.0.0.1:{port}"
        wait_until_up(process, f"{base}/health")
        assert httpx.get(f"{base}/health").json() == {"status": "ok", "connection_mode": "client-per-request"}
        answer = httpx.post(f"{base}/sessions/cli/chat", json={"message": "from the command line"}, timeout=30)
        assert answer.status_code == 200
        assert 'You said: "from the command line"' in answer.json()["answer"]
    finally:
        output = stop(process)
    assert "Model: ScriptedModel" in output
    assert len(stored_session(mongo_db, "cli")["agents"][DEFAULT_AGENT_ID]["messages"]) == 2
