"""The FastAPI examples (examples/example_fastapi.py, examples/example_fastapi_streaming.py) against the test server.

Real apps through FastAPI's TestClient (lifespan included), real strands Agents driven by
ScriptedModel, and the stored documents checked in MongoDB. Both connection modes are exercised.
Every request names its user in ``X-User-Id`` (the examples' stand-in for authentication).
"""

from __future__ import annotations

import argparse
import json
import logging
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import timedelta
from typing import Any, ClassVar

import httpx
import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient
from pymongo import MongoClient
from pymongo.database import Database
from pymongo.errors import ConnectionFailure, OperationFailure
from strands.types.content import Messages
from strands.types.exceptions import EventLoopException
from strands.types.session import SessionMessage

from mongodb_session_manager import MongoDBSessionRepository
from mongodb_session_manager.errors import (
    FactoryNotInitializedError,
    InvalidArgumentError,
    InvalidIdentifierError,
    SessionConflictError,
    SessionExistsError,
    SessionNotFoundError,
    SessionTooLargeError,
    StaleAgentError,
)
from mongodb_session_manager.mongodb_connection_pool import DEFAULT_POOL_SETTINGS

import chat_api
import example_fastapi
import example_fastapi_streaming
from chat_agent import scripted_chat_responder
from chat_api import DEFAULT_AGENT_ID, error_status, expire_after_seconds
from example_processes import free_port, run_example, stop, wait_until_up
from scripted_model import Raise, ScriptedModel, Turn

MODES = ["factory", "client-per-request"]
PLAYGROUND_ORIGIN = "http://127.0.0.1:8881"
ANA = {"X-User-Id": "ana"}
BOB = {"X-User-Id": "bob"}


def scripted(*script: Any, word_delay_ms: float = 0) -> Callable[[], ScriptedModel]:
    """A model factory: a fresh ScriptedModel per request, answering with the chat examples' responder."""
    return lambda: ScriptedModel(script, fallback=scripted_chat_responder, word_delay_ms=word_delay_ms)


@pytest.fixture(params=MODES)
def mode(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture
def make_client(mongodb_uri: str, database_name: str) -> Iterator[Callable[..., TestClient]]:
    """Start an app (``"plain"`` or ``"streaming"``) with its lifespan, calling as ``user``; closed after the test."""
    clients: list[TestClient] = []

    def make(
        kind: str = "plain", connection_mode: str = "factory", user: str | None = "ana", **kwargs: Any
    ) -> TestClient:
        module = example_fastapi if kind == "plain" else example_fastapi_streaming
        kwargs.setdefault("model_factory", scripted())
        app: FastAPI = module.create_app(mongodb_uri, database_name, connection_mode=connection_mode, **kwargs)
        client = TestClient(app, headers={"X-User-Id": user} if user is not None else None)
        client.__enter__()
        clients.append(client)
        return client

    yield make
    for client in clients:
        client.__exit__(None, None, None)


def stored_session(mongo_db: Database[dict[str, Any]], session_id: str, user: str = "ana") -> dict[str, Any]:
    """The document of ``user``'s session ``session_id`` (stored as ``<user>/<session_id>``)."""
    document = mongo_db["sessions"].find_one({"_id": f"{user}/{session_id}"})
    assert document is not None, f"session {session_id!r} of {user!r} is not stored"
    return document


def stored_texts(mongo_db: Database[dict[str, Any]], session_id: str, user: str = "ana") -> list[tuple[str, str]]:
    messages = stored_session(mongo_db, session_id, user)["agents"][DEFAULT_AGENT_ID]["messages"]
    return [
        (m["message"]["role"], " ".join(b.get("text", f"<{next(iter(b))}>") for b in m["message"]["content"]))
        for m in messages
    ]


def sse_events(body: str) -> list[tuple[str, dict[str, Any]]]:
    """Parse a text/event-stream body into (event, data) pairs."""
    events = []
    for block in body.split("\n\n"):
        if not block.strip():
            continue
        fields = dict(line.split(": ", 1) for line in block.splitlines())
        events.append((fields["event"], json.loads(fields["data"])))
    return events


def chat(client: TestClient, session_id: str, text: str, headers: dict[str, str] | None = None) -> httpx.Response:
    response = client.post(f"/sessions/{session_id}/chat", json={"message": text}, headers=headers)
    assert response.status_code == 200, response.text
    return response


# -- plain JSON chat -------------------------------------------------------------------------------


def test_chat_twice_resumes_the_session_and_stores_it(
    make_client: Callable[..., TestClient], mongo_db: Database[dict[str, Any]], mode: str
) -> None:
    client = make_client("plain", mode)

    first = chat(client, "user-1", "Hello there")
    second = chat(client, "user-1", "Still there?")

    assert first.json()["answer"].startswith('You said: "Hello there".')
    assert "received 0 earlier messages" in first.json()["answer"]
    # A new Agent per request: the second one got the first turn back from MongoDB.
    assert "received 2 earlier messages" in second.json()["answer"]
    assert [first.json()["user_message_id"], second.json()["user_message_id"]] == [0, 2]
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
    assert history["messages"][2]["content"] == [{"type": "text", "text": "Still there?"}]
    assert history["messages"][3]["text"] == second.json()["answer"]
    assert "event_loop_metrics" not in history["messages"][0]

    document = stored_session(mongo_db, "user-1")
    assert document["user_id"] == "ana"
    messages = document["agents"][DEFAULT_AGENT_ID]["messages"]
    assert [m["message"]["role"] for m in messages] == ["user", "assistant", "user", "assistant"]
    assert messages[1]["message"]["content"][0]["text"] == first.json()["answer"]
    assert messages[3]["event_loop_metrics"]["usage"] == second.json()["metrics"]["usage"]
    # The history returns what is stored on each assistant message, as stored.
    assert history["messages"][1]["event_loop_metrics"] == messages[1]["event_loop_metrics"]
    assert history["messages"][3]["event_loop_metrics"] == messages[3]["event_loop_metrics"]


def test_history_shows_tool_calls_and_results_as_blocks(
    make_client: Callable[..., TestClient], mongo_db: Database[dict[str, Any]]
) -> None:
    client = make_client("plain")
    answer = chat(client, "tools", "count the letters in strawberry").json()
    assert answer["answer"] == "The `count_characters` tool counted **10 characters, 10 letters, 1 word**."
    assert answer["metrics"]["cycles"] == 2

    messages = client.get("/sessions/tools/history").json()["messages"]
    assert [m["content"] for m in messages] == [
        [{"type": "text", "text": "count the letters in strawberry"}],
        [
            {
                "type": "tool_use",
                "tool_use_id": "tooluse_1_0",
                "name": "count_characters",
                "input": {"text": "strawberry"},
            }
        ],
        [
            {
                "type": "tool_result",
                "tool_use_id": "tooluse_1_0",
                "status": "success",
                "text": "10 characters, 10 letters, 1 word",
            }
        ],
        [{"type": "text", "text": answer["answer"]}],
    ]
    assert [m["text"] for m in messages[1:3]] == ["[calls count_characters]", "[tool result]"]
    assert [m["event_loop_metrics"]["usage"]["inputTokens"] for m in messages if m["role"] == "assistant"] == [10, 30]
    assert stored_texts(mongo_db, "tools")[1] == ("assistant", "<toolUse>")


def test_metadata_partial_update_delete_and_read(
    make_client: Callable[..., TestClient], mongo_db: Database[dict[str, Any]], mode: str
) -> None:
    client = make_client("plain", mode)
    chat(client, "meta-1", "hi")

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
        chat(client, "stats-1", text)

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
        assert "clients_opened" not in server
    else:
        assert "factory" not in server
        assert server["clients_opened"] == 3  # two turns, one statistics read


class RecordingClient(MongoClient[dict[str, Any]]):
    """A real MongoClient that records its creation and its closing."""

    opened: ClassVar[list[RecordingClient]] = []
    closed: ClassVar[list[RecordingClient]] = []

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        RecordingClient.opened.append(self)

    def close(self) -> None:
        RecordingClient.closed.append(self)
        super().close()


def test_client_per_request_opens_and_closes_a_client_for_every_request(
    make_client: Callable[..., TestClient], monkeypatch: pytest.MonkeyPatch, mode: str
) -> None:
    """The anti-pattern is genuine: a MongoClient of its own per request (the library would share one per URI)."""
    monkeypatch.setattr(chat_api, "MongoClient", RecordingClient)
    monkeypatch.setattr(RecordingClient, "opened", [])
    monkeypatch.setattr(RecordingClient, "closed", [])
    client = make_client("streaming", mode)

    assert sse_events(client.post("/sessions/cpr/chat/stream", json={"message": "hi"}).text)[-1][0] == "done"
    client.get("/sessions/cpr/history").raise_for_status()
    client.get("/sessions").raise_for_status()
    client.patch("/sessions/cpr", json={"title": "per request"}).raise_for_status()

    if mode == "factory":
        assert RecordingClient.opened == []
        return
    assert len(RecordingClient.opened) == 4
    assert len(set(map(id, RecordingClient.opened))) == 4
    assert [id(c) for c in RecordingClient.closed] == [id(c) for c in RecordingClient.opened]
    assert client.get("/stats").json()["clients_opened"] == 4


# -- who is calling ------------------------------------------------------------------------------------

SESSION_ENDPOINTS = [
    ("GET", "/sessions", None),
    ("PATCH", "/sessions/s1", {"title": "t"}),
    ("DELETE", "/sessions/s1", None),
    ("POST", "/sessions/s1/fork", {"up_to_message_id": 0}),
    ("GET", "/sessions/s1/export", None),
    ("GET", "/sessions/s1/history", None),
    ("GET", "/sessions/s1/metadata", None),
    ("PUT", "/sessions/s1/metadata", {"metadata": {"a": 1}}),
    ("DELETE", "/sessions/s1/metadata?keys=a", None),
    ("GET", "/sessions/s1/stats", None),
    ("POST", "/sessions/s1/chat/stream", {"message": "hi"}),
]


@pytest.mark.parametrize(("method", "path", "body"), SESSION_ENDPOINTS)
def test_a_request_without_a_user_gets_401_and_an_invalid_user_422(
    make_client: Callable[..., TestClient],
    mongo_db: Database[dict[str, Any]],
    method: str,
    path: str,
    body: dict[str, Any] | None,
) -> None:
    client = make_client("streaming", user=None)

    anonymous = client.request(method, path, json=body)
    assert anonymous.status_code == 401
    assert anonymous.json()["detail"].startswith("missing X-User-Id header")
    assert anonymous.headers["www-authenticate"] == "X-User-Id"

    for invalid in ("", "a" * 300, "nul\x00byte"):
        response = client.request(method, path, json=body, headers={"X-User-Id": invalid})
        assert response.status_code == 422, (invalid, response.text)
        assert response.json()["detail"].startswith("invalid user_id")
        assert len(response.json()["detail"]) <= 200

    assert mongo_db["sessions"].count_documents({}) == 0  # refused requests stored nothing
    assert client.get("/health").status_code == 200  # server-level endpoints need no user
    assert client.get("/stats").status_code == 200


@pytest.mark.parametrize(
    "user", ["tab\there", "ctl\x01char", "$gt", '{"$ne": 1}', "ana/evil", "with space", "café", "u" * 65]
)
def test_a_user_id_outside_the_safe_characters_is_422(
    make_client: Callable[..., TestClient], mongo_db: Database[dict[str, Any]], user: str
) -> None:
    client = make_client("plain", user=None)
    response = client.post("/sessions/s1/chat", json={"message": "hi"}, headers={"X-User-Id": user.encode()})
    assert response.status_code == 422, response.text
    assert response.json()["detail"].startswith("invalid user_id")
    assert response.json()["detail"].endswith("must be 1 to 64 of the characters A-Z a-z 0-9 . _ @ -")
    assert mongo_db["sessions"].count_documents({}) == 0


def test_the_longest_user_and_session_ids_fit_the_librarys_limit(
    make_client: Callable[..., TestClient], mongo_db: Database[dict[str, Any]]
) -> None:
    """A session id shown by the API is at most 191 characters: qualified by a 64-character user it is 256."""
    user = "u" * 64
    client = make_client("plain", user=user)
    longest = "s" * 191
    assert client.post(f"/sessions/{longest}/chat", json={"message": "hi"}).status_code == 200
    assert mongo_db["sessions"].find_one({"_id": f"{user}/{longest}"}) is not None
    assert client.get("/sessions").json()["sessions"][0]["session_id"] == longest

    too_long = client.post(f"/sessions/{'s' * 192}/chat", json={"message": "hi"})
    assert too_long.status_code == 422
    assert too_long.json()["detail"].startswith("invalid session_id")
    assert too_long.json()["detail"].endswith("must be at most 191 characters")
    assert mongo_db["sessions"].count_documents({}) == 1


def test_another_users_session_is_404_like_a_missing_one_on_every_endpoint(
    make_client: Callable[..., TestClient], mongo_db: Database[dict[str, Any]], mode: str
) -> None:
    client = make_client("streaming", mode)
    assert sse_events(client.post("/sessions/s1/chat/stream", json={"message": "ana's"}).text)[-1][0] == "done"
    client.put("/sessions/s1/metadata", json={"metadata": {"keep": 1}}).raise_for_status()
    before = stored_session(mongo_db, "s1")

    for method, path, body in SESSION_ENDPOINTS:
        if path == "/sessions":
            continue
        as_bob = client.request(method, path, json=body, headers=BOB)
        missing = client.request(method, path.replace("s1", "s9"), json=body, headers=BOB)
        if path.endswith("/chat/stream"):
            # A chat starts bob's own session of that id, exactly as it does with an id nobody holds.
            assert [as_bob.status_code, missing.status_code] == [200, 200], (as_bob.text, missing.text)
            assert [name for name, _ in sse_events(as_bob.text)] == [name for name, _ in sse_events(missing.text)]
            continue
        assert as_bob.status_code == 404, (method, path, as_bob.text)
        assert as_bob.json()["detail"] == "session 's1' not found"
        assert missing.status_code == 404, (method, path, missing.text)
        assert missing.json()["detail"] == "session 's9' not found"

    assert [s["session_id"] for s in client.get("/sessions", headers=BOB).json()["sessions"]] == ["s9", "s1"]
    assert stored_texts(mongo_db, "s1", "bob")[0] == ("user", "hi")  # bob's own s1, holding only his turn
    assert len(stored_texts(mongo_db, "s1", "bob")) == 2
    assert stored_session(mongo_db, "s1") == before  # nothing of ana's changed
    assert client.get("/sessions/s1/history").status_code == 200  # ana still sees it


@pytest.mark.parametrize("kind", ["plain", "streaming"])
def test_a_chat_in_an_id_another_user_holds_starts_the_callers_own_session(
    make_client: Callable[..., TestClient], mongo_db: Database[dict[str, Any]], kind: str
) -> None:
    """Ids are the caller's own (stored as ``<user>/<id>``): no answer says whether another user holds an id,
    and nobody can take an id away from another user by using it first."""
    client = make_client(kind)
    path = "/sessions/{}/chat" if kind == "plain" else "/sessions/{}/chat/stream"
    assert client.post(path.format("mine"), json={"message": "hello"}).status_code == 200
    before = stored_session(mongo_db, "mine")
    squatted = client.post(path.format("user-42-chat"), json={"message": "mine now"}, headers={"X-User-Id": "mallory"})
    assert squatted.status_code == 200

    taken = client.post(path.format("mine"), json={"message": "hijack"}, headers=BOB)
    free = client.post(path.format("nobodys"), json={"message": "hijack"}, headers=BOB)
    after_squatter = client.post(path.format("user-42-chat"), json={"message": "my id too"})

    assert [taken.status_code, free.status_code, after_squatter.status_code] == [200, 200, 200]
    if kind == "plain":
        assert "received 0 earlier messages" in taken.json()["answer"]
        assert taken.json()["user_message_id"] == free.json()["user_message_id"] == 0
    else:
        assert sse_events(taken.text)[0][1] == {"session_id": "mine", "restored_messages": 0, "user_message_id": 0}
    assert stored_session(mongo_db, "mine") == before
    assert stored_texts(mongo_db, "mine", "bob")[0] == ("user", "hijack")
    assert stored_texts(mongo_db, "user-42-chat", "mallory")[0] == ("user", "mine now")
    assert stored_texts(mongo_db, "user-42-chat")[0] == ("user", "my id too")
    assert stored_session(mongo_db, "user-42-chat")["user_id"] == "ana"
    assert mongo_db["sessions"].count_documents({"_id": {"$in": ["mine", "nobodys", "user-42-chat"]}}) == 0


@pytest.mark.parametrize("kind", ["plain", "streaming"])
def test_a_chat_that_must_continue_a_session_is_404_when_it_is_gone(
    make_client: Callable[..., TestClient], mongo_db: Database[dict[str, Any]], kind: str
) -> None:
    """``"create": false``: a conversation deleted meanwhile (in another tab, say) is not silently re-created."""
    client = make_client(kind)
    path = "/sessions/{}/chat" if kind == "plain" else "/sessions/{}/chat/stream"
    assert client.post(path.format("kept"), json={"message": "one"}).status_code == 200
    assert client.post(path.format("kept"), json={"message": "two", "create": False}).status_code == 200
    assert len(stored_texts(mongo_db, "kept")) == 4
    assert client.post(path.format("gone"), json={"message": "one"}).status_code == 200
    assert client.delete("/sessions/gone").status_code == 204

    for session_id in ("gone", "never"):
        response = client.post(path.format(session_id), json={"message": "again", "create": False})
        assert response.status_code == 404
        assert response.json() == {"detail": f"session {session_id!r} not found"}
    assert mongo_db["sessions"].count_documents({"_id": {"$in": ["ana/gone", "ana/never"]}}) == 0
    assert client.post(path.format("x"), json={"message": "hi", "create": "no"}).status_code == 422


# -- the caller's sessions: list, title, delete, fork, export ------------------------------------------


def test_sessions_are_listed_newest_first_in_pages_through_a_cursor(
    make_client: Callable[..., TestClient], mode: str
) -> None:
    client = make_client("plain", mode)
    for number in range(5):
        chat(client, f"list-{number}", f"Question {number}")
    chat(client, "bobs", "Bob's question", headers=BOB)

    pages, cursor = [], None
    while True:
        response = client.get("/sessions", params={"limit": 2, **({"cursor": cursor} if cursor else {})})
        assert response.status_code == 200
        body = response.json()
        pages.append([summary["session_id"] for summary in body["sessions"]])
        cursor = body["next_cursor"]
        if cursor is None:
            break
    assert pages == [["list-4", "list-3"], ["list-2", "list-1"], ["list-0"]]

    first = client.get("/sessions", params={"limit": 1}).json()["sessions"][0]
    assert first["title"] == "Question 4"
    assert first["message_count"] == 2
    assert first["metadata"] == {}
    assert first["created_at"] <= first["updated_at"]
    assert set(first) == {"session_id", "title", "created_at", "updated_at", "message_count", "metadata"}

    # A new turn moves a conversation to the top; bob sees only his own.
    chat(client, "list-1", "Back to this one")
    assert [s["session_id"] for s in client.get("/sessions").json()["sessions"]] == [
        "list-1",
        "list-4",
        "list-3",
        "list-2",
        "list-0",
    ]
    assert [s["session_id"] for s in client.get("/sessions", headers=BOB).json()["sessions"]] == ["bobs"]


@pytest.mark.parametrize(
    ("params", "field"),
    [
        ({"limit": 0}, "query.limit"),
        ({"limit": 101}, "query.limit"),
        ({"limit": "many"}, "query.limit"),
        ({"cursor": "not-a-cursor"}, "invalid cursor"),
        ({"cursor": "x" * 3000}, "query.cursor"),
    ],
)
def test_invalid_listing_parameters_get_a_short_422(
    make_client: Callable[..., TestClient], params: dict[str, Any], field: str
) -> None:
    client = make_client("plain")
    response = client.get("/sessions", params=params)
    assert response.status_code == 422
    assert response.json()["detail"].startswith(field)
    assert len(response.json()["detail"]) <= 200


def test_patch_sets_the_title(make_client: Callable[..., TestClient], mongo_db: Database[dict[str, Any]]) -> None:
    client = make_client("plain")
    chat(client, "titled", "What is the capital of France?")
    assert client.get("/sessions").json()["sessions"][0]["title"] == "What is the capital of France?"

    response = client.patch("/sessions/titled", json={"title": "Geography"})
    assert response.status_code == 200
    assert response.json() == {"session_id": "titled", "title": "Geography"}
    assert stored_session(mongo_db, "titled")["title"] == "Geography"
    assert client.get("/sessions").json()["sessions"][0]["title"] == "Geography"

    for body in ({"title": "   "}, {"title": "x" * 201}, {"title": 5}, {}):
        refused = client.patch("/sessions/titled", json=body)
        assert refused.status_code == 422, body
        assert len(refused.json()["detail"]) <= 200
    assert client.patch("/sessions/nowhere", json={"title": "t"}).status_code == 404
    assert stored_session(mongo_db, "titled")["title"] == "Geography"


def test_delete_removes_the_session(
    make_client: Callable[..., TestClient], mongo_db: Database[dict[str, Any]], mode: str
) -> None:
    client = make_client("plain", mode)
    chat(client, "doomed", "hello")
    chat(client, "kept", "hello")

    response = client.delete("/sessions/doomed")
    assert response.status_code == 204
    assert response.content == b""
    assert mongo_db["sessions"].find_one({"_id": "ana/doomed"}) is None
    assert client.get("/sessions/doomed/history").status_code == 404
    assert client.delete("/sessions/doomed").status_code == 404
    assert [s["session_id"] for s in client.get("/sessions").json()["sessions"]] == ["kept"]


def test_delete_while_a_turn_is_running_is_409(
    make_client: Callable[..., TestClient], mongo_db: Database[dict[str, Any]]
) -> None:
    client = make_client("plain", model_factory=scripted(word_delay_ms=20))  # about half a second per answer
    responses: list[httpx.Response] = []
    turn = threading.Thread(target=lambda: responses.append(chat(client, "busy", "a long answer please")))
    turn.start()
    wait_for_stored_user_message(mongo_db, "busy")

    refused = client.delete("/sessions/busy")
    turn.join()

    assert refused.status_code == 409
    assert refused.json()["detail"] == "a turn is in progress in session 'busy'; try again when it finishes"
    assert responses[0].status_code == 200
    assert len(stored_session(mongo_db, "busy")["agents"][DEFAULT_AGENT_ID]["messages"]) == 2
    assert client.delete("/sessions/busy").status_code == 204


def test_fork_copies_the_conversation_up_to_a_message_into_a_new_session(
    make_client: Callable[..., TestClient], mongo_db: Database[dict[str, Any]], mode: str
) -> None:
    client = make_client("plain", mode)
    first = chat(client, "source", "First question").json()["answer"]
    chat(client, "source", "Second question")
    client.put("/sessions/source/metadata", json={"metadata": {"topic": "forks"}}).raise_for_status()
    before = stored_session(mongo_db, "source")

    response = client.post("/sessions/source/fork", json={"up_to_message_id": 1})
    assert response.status_code == 201
    fork = response.json()
    assert fork["forked_from"] == "source"
    assert fork["up_to_message_id"] == 1
    fork_id = fork["session_id"]
    assert fork_id.startswith("fork-")

    assert stored_texts(mongo_db, fork_id) == [("user", "First question"), ("assistant", first)]
    assert stored_session(mongo_db, fork_id)["user_id"] == "ana"
    assert stored_session(mongo_db, "source") == before
    assert client.get(f"/sessions/{fork_id}/metadata").json()["metadata"] == {"topic": "forks"}
    listed = client.get("/sessions").json()["sessions"]
    assert [(s["session_id"], s["title"]) for s in listed] == [
        (fork_id, "First question (fork)"),
        ("source", "First question"),
    ]
    # The fork continues on its own: its next turn sees the two copied messages.
    answer = chat(client, fork_id, "Second question, edited").json()
    assert answer["user_message_id"] == 2
    assert "received 2 earlier messages" in answer["answer"]
    assert stored_session(mongo_db, "source") == before

    whole = client.post("/sessions/source/fork", json={})
    assert whole.status_code == 201
    assert len(stored_texts(mongo_db, whole.json()["session_id"])) == 4

    for body in ({"up_to_message_id": -1}, {"up_to_message_id": "two"}):
        refused = client.post("/sessions/source/fork", json=body)
        assert refused.status_code == 422, body
        assert refused.json()["detail"].startswith("body.up_to_message_id")
    beyond = client.post("/sessions/source/fork", json={"up_to_message_id": 4})
    assert beyond.status_code == 404
    assert beyond.json()["detail"] == "message 4 of agent 'assistant' not found in session 'source'"
    assert client.post("/sessions/nowhere/fork", json={"up_to_message_id": 0}).status_code == 404
    assert client.post("/sessions/source/fork", json={"up_to_message_id": 0}, headers=BOB).status_code == 404


def test_export_is_a_json_download_of_everything_stored(
    make_client: Callable[..., TestClient], mongo_db: Database[dict[str, Any]], mode: str
) -> None:
    client = make_client("plain", mode)
    chat(client, "to export:1", "Export me")
    client.put("/sessions/to export:1/metadata", json={"metadata": {"kept": True}}).raise_for_status()

    response = client.get("/sessions/to export:1/export")
    assert response.status_code == 200
    assert response.headers["content-type"] == "application/json"
    assert response.headers["content-disposition"] == 'attachment; filename="session-to_export_1.json"'
    exported = response.json()
    text = json.dumps(exported)
    assert "Export me" in text
    assert '"kept": true' in text
    stored = stored_session(mongo_db, "to export:1")["agents"][DEFAULT_AGENT_ID]["messages"][1]
    assert json.dumps(stored["event_loop_metrics"]["usage"], sort_keys=True) in json.dumps(exported, sort_keys=True)
    assert client.get("/sessions/nowhere/export").status_code == 404


@pytest.mark.parametrize("value", ["1", 1.0, True])
def test_fork_takes_a_message_id_as_a_json_integer_only(
    make_client: Callable[..., TestClient], mongo_db: Database[dict[str, Any]], value: Any
) -> None:
    client = make_client("plain")
    chat(client, "source", "hi")
    refused = client.post("/sessions/source/fork", json={"up_to_message_id": value})
    assert refused.status_code == 422
    assert refused.json()["detail"] == "body.up_to_message_id: Input should be a valid integer"
    assert mongo_db["sessions"].count_documents({}) == 1


def test_export_and_fork_speak_of_session_ids_as_the_caller_knows_them(
    make_client: Callable[..., TestClient], mongo_db: Database[dict[str, Any]]
) -> None:
    client = make_client("plain")
    chat(client, "source", "hi")
    fork_id = client.post("/sessions/source/fork", json={"up_to_message_id": 1}).json()["session_id"]

    exported = client.get(f"/sessions/{fork_id}/export").json()
    assert exported["session_id"] == fork_id
    assert exported["forked_from"]["session_id"] == "source"
    assert exported["user_id"] == "ana"
    assert "ana/" not in json.dumps(exported)
    assert stored_session(mongo_db, fork_id)["forked_from"]["session_id"] == "ana/source"  # as MongoDB holds it
    assert [s["session_id"] for s in client.get("/sessions").json()["sessions"]] == [fork_id, "source"]


# -- errors ----------------------------------------------------------------------------------------------------


def test_error_codes(make_client: Callable[..., TestClient], mongo_db: Database[dict[str, Any]], mode: str) -> None:
    client = make_client("plain", mode)
    chat(client, "known", "hi")
    client.put("/sessions/known/metadata", json={"metadata": {"keep": 1}}).raise_for_status()
    before = stored_session(mongo_db, "known")

    too_long = "x" * 300
    refused = [
        client.post(f"/sessions/{too_long}/chat", json={"message": "hi"}),
        client.get(f"/sessions/{too_long}/history"),
        client.get("/sessions/bad%00id/metadata"),
        client.post("/sessions/known/chat", json={"message": ""}),
        client.post("/sessions/known/chat", json={"message": "x" * 20_001}),
        client.post("/sessions/known/chat", json={}),
        client.post("/sessions/known/chat", content=b"{not json", headers={"content-type": "application/json"}),
        client.put("/sessions/known/metadata", json={"metadata": {"a.b": 1}}),
        client.put("/sessions/known/metadata", json={"metadata": {"$set": 1}}),
        client.put("/sessions/known/metadata", json={"metadata": {"huge": 2**70}}),  # not storable in BSON
        client.put("/sessions/known/metadata", json={"metadata": {"y" * 5000: 1}}),
        client.delete("/sessions/known/metadata", params={"keys": ["$bad"]}),
        client.delete("/sessions/known/metadata"),  # no keys given
    ]
    for response in refused:
        assert response.status_code == 422, response.text
        detail = response.json()["detail"]
        assert isinstance(detail, str)
        assert len(detail) <= 200, detail  # short, and never the whole refused value
    assert refused[9].json()["detail"].startswith("invalid metadata.huge")

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


@contextmanager
def failing(mongo_client: MongoClient[dict[str, Any]], command: str, **failure: Any) -> Iterator[None]:
    """The test server fails the next runs of ``command`` as ``failure`` says (``configureFailPoint failCommand``)."""
    mode = {"times": 2}  # pymongo retries a read once
    data = {"failCommands": [command], **failure}
    mongo_client.admin.command({"configureFailPoint": "failCommand", "mode": mode, "data": data})
    try:
        yield
    finally:
        mongo_client.admin.command({"configureFailPoint": "failCommand", "mode": "off"})


@pytest.mark.parametrize(
    ("failure", "status", "detail"),
    [
        ({"closeConnection": True}, 503, "the database is unavailable; try again"),
        (
            {"errorCode": 8000, "errmsg": "secret server detail"},
            502,
            "the database could not complete the request; try again",
        ),
    ],
)
def test_mongodb_failures_reach_the_client_as_a_short_generic_message_and_the_log_in_full(
    make_client: Callable[..., TestClient],
    mongo_client: MongoClient[dict[str, Any]],
    mongodb_uri: str,
    caplog: pytest.LogCaptureFixture,
    mode: str,
    failure: dict[str, Any],
    status: int,
    detail: str,
) -> None:
    client = make_client("plain", mode)
    chat(client, "s1", "hi")
    with failing(mongo_client, "aggregate", **failure), caplog.at_level(logging.ERROR, logger="chat_api"):
        response = client.get("/sessions")
    assert response.status_code == status
    assert response.json() == {"detail": detail}  # no host, port, topology, server reply or $clusterTime
    logged = next(record for record in caplog.records if record.name == "chat_api")
    assert logged.getMessage() == "GET /sessions failed"
    assert logged.exc_info is not None
    error = logged.exc_info[1]
    assert isinstance(error, ConnectionFailure if status == 503 else OperationFailure)
    assert str(error)[:40] not in response.text


def test_a_per_request_client_gives_up_on_mongodb_as_soon_as_the_shared_pool(
    make_client: Callable[..., TestClient], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(chat_api, "MongoClient", RecordingClient)
    monkeypatch.setattr(RecordingClient, "opened", [])
    monkeypatch.setattr(RecordingClient, "closed", [])
    client = make_client("plain", "client-per-request")
    client.get("/sessions").raise_for_status()
    (opened,) = RecordingClient.opened
    shared_pool = {
        name: DEFAULT_POOL_SETTINGS[name] / 1000 for name in ("serverSelectionTimeoutMS", "connectTimeoutMS")
    }
    assert shared_pool == {"serverSelectionTimeoutMS": 5, "connectTimeoutMS": 5}
    assert opened.options.server_selection_timeout == shared_pool["serverSelectionTimeoutMS"]
    assert opened.options.pool_options.connect_timeout == shared_pool["connectTimeoutMS"]


def test_request_bodies_are_bounded_in_size_and_nesting(
    make_client: Callable[..., TestClient], mongo_db: Database[dict[str, Any]]
) -> None:
    client = make_client("plain")
    chat(client, "s1", "hi")
    before = stored_session(mongo_db, "s1")
    as_json = {"content-type": "application/json"}

    padding = b'{"message": "hi", "padding": "' + b"x" * chat_api.MAX_BODY_BYTES + b'"}'
    too_large = client.post("/sessions/big/chat", content=padding, headers=as_json)
    assert too_large.status_code == 413
    assert too_large.json() == {"detail": "request body too large (at most 1,048,576 bytes)"}
    chunked = client.post("/sessions/big/chat", content=iter([padding[:600_000], padding[600_000:]]), headers=as_json)
    assert chunked.status_code == 413  # no Content-Length: counted as it arrives

    for depth in (65, 1000, 100_000):
        deep = b'{"message": "hi", "extra": ' + b"[" * depth + b"]" * depth + b"}"
        refused = client.post("/sessions/deep/chat", content=deep, headers=as_json)
        assert refused.status_code == 422, depth
        assert refused.json() == {"detail": "body: JSON nested more than 64 levels deep"}

    def nested(levels: int) -> bytes:
        return b'{"metadata": {"a": ' + b"[" * levels + b"1" + b"]" * levels + b"}}"

    assert client.put("/sessions/s1/metadata", content=nested(32), headers=as_json).status_code == 200
    too_deep = client.put("/sessions/s1/metadata", content=nested(33), headers=as_json)
    assert too_deep.status_code == 422
    assert too_deep.json()["detail"] == "body.metadata: metadata.a is nested more than 32 levels deep"
    brackets_in_text = b'{"metadata": {"b": "' + b"[{" * 1000 + b'\\"]"}}'
    assert client.put("/sessions/s1/metadata", content=brackets_in_text, headers=as_json).status_code == 200

    assert mongo_db["sessions"].count_documents({"_id": {"$in": ["ana/big", "ana/deep"]}}) == 0
    stored = stored_session(mongo_db, "s1")
    assert stored["metadata"]["b"] == "[{" * 1000 + '"]'
    assert {key: value for key, value in stored.items() if key not in ("metadata", "updated_at", "revision")} == {
        key: value for key, value in before.items() if key not in ("metadata", "updated_at", "revision")
    }


@pytest.mark.parametrize("number", [b"NaN", b"Infinity", b"-Infinity", b"1e400"])
def test_metadata_numbers_must_be_finite(
    make_client: Callable[..., TestClient], mongo_db: Database[dict[str, Any]], number: bytes
) -> None:
    client = make_client("plain")
    chat(client, "s1", "hi")
    body = b'{"metadata": {"ok": 1, "score": {"values": [1, ' + number + b"]}}}"
    response = client.put("/sessions/s1/metadata", content=body, headers={"content-type": "application/json"})
    assert response.status_code == 422
    assert response.json() == {
        "detail": "body.metadata: metadata.score.values[1] must be a finite number, not NaN or Infinity"
    }
    assert stored_session(mongo_db, "s1")["metadata"] == {}


@pytest.mark.parametrize(
    ("body", "detail"),
    [
        (b'{"metadata": {"a": {"\\ud800": 1}}}', "invalid metadata.a.\\ud800 '\\ud800': is a key BSON cannot hold"),
        (b'{"metadata": {"\\ud800": NaN}}', "body.metadata: metadata.\\ud800 must be a finite number"),
    ],
)
def test_a_metadata_key_with_a_lone_surrogate_is_a_422_naming_it_escaped(
    make_client: Callable[..., TestClient], mongo_db: Database[dict[str, Any]], body: bytes, detail: str
) -> None:
    client = make_client("plain")
    chat(client, "s1", "hi")
    response = client.put("/sessions/s1/metadata", content=body, headers={"content-type": "application/json"})
    assert response.status_code == 422
    assert response.json()["detail"].startswith(detail)
    assert stored_session(mongo_db, "s1")["metadata"] == {}


@pytest.mark.parametrize(
    ("error", "status"),
    [
        (InvalidIdentifierError("session_id", "", "must not be empty"), 422),
        (InvalidArgumentError("title", "", "must not be blank"), 422),
        (SessionNotFoundError("gone"), 404),
        (SessionConflictError("message 4 already stored"), 409),
        (StaleAgentError("stale"), 409),
        (SessionExistsError("session 'x' exists already"), 409),
        (SessionTooLargeError("s", 16_000_000, 1_000_000, 16_777_216), 413),
        (FactoryNotInitializedError("not yet"), 503),
        (RuntimeError("boom"), 500),
        # What fails while Strands stores the answer arrives wrapped in its EventLoopException.
        (EventLoopException(SessionConflictError("message 3 already stored")), 409),
        (EventLoopException(EventLoopException(SessionTooLargeError("s", 1, 2, 3))), 413),
        (EventLoopException(RuntimeError("model down")), 500),
    ],
)
def test_error_status_mapping(error: Exception, status: int) -> None:
    code, detail = error_status(error)
    assert code == status
    assert len(detail) <= 200


def test_a_failing_model_is_a_json_500(mongodb_uri: str, database_name: str) -> None:
    app = example_fastapi.create_app(mongodb_uri, database_name, scripted(Raise(RuntimeError("model down"))))
    with TestClient(app, headers=ANA, raise_server_exceptions=False) as client:
        response = client.post("/sessions/failing/chat", json={"message": "hi"})
    assert response.status_code == 500
    assert response.json() == {"detail": "internal error"}


def test_an_unexpected_error_wrapped_by_strands_is_a_logged_500(caplog: pytest.LogCaptureFixture) -> None:
    app = FastAPI()
    chat_api.install_error_handlers(app)

    @app.get("/wrapped")
    def wrapped() -> None:
        raise EventLoopException(RuntimeError("a bug while storing the answer"))

    with caplog.at_level(logging.ERROR, logger="chat_api"), TestClient(app) as client:
        response = client.get("/wrapped")
    assert response.status_code == 500
    assert response.json() == {"detail": "internal error"}
    failure = next(record for record in caplog.records if record.name == "chat_api")
    assert failure.getMessage() == "GET /wrapped failed"
    assert failure.exc_info is not None
    assert "a bug while storing the answer" in str(failure.exc_info[1])


def conflicting_writer(mongo_client: MongoClient[dict[str, Any]], database: str, stored_id: str) -> Callable[..., Turn]:
    """A responder that, while the model answers, lets another writer store the message the answer will need.

    ``stored_id`` is the session's id in MongoDB (``<user>/<session id>``).
    """

    def respond(messages: Messages) -> Turn:
        with MongoDBSessionRepository(client=mongo_client, database_name=database) as other_writer:
            other_writer.create_message(
                stored_id,
                DEFAULT_AGENT_ID,
                SessionMessage(message={"role": "assistant", "content": [{"text": "other"}]}, message_id=len(messages)),
            )
        return "an answer that can no longer be stored"

    return respond


@pytest.mark.parametrize("kind", ["plain", "streaming"])
def test_a_conflict_while_storing_the_answer_is_409_not_500(
    make_client: Callable[..., TestClient],
    mongo_client: MongoClient[dict[str, Any]],
    database_name: str,
    mongo_db: Database[dict[str, Any]],
    kind: str,
) -> None:
    responder = conflicting_writer(mongo_client, database_name, "ana/raced")
    client = make_client(kind, model_factory=lambda: ScriptedModel(fallback=responder))
    if kind == "plain":
        response = client.post("/sessions/raced/chat", json={"message": "hi"})
        assert response.status_code == 409
        detail = response.json()["detail"]
    else:
        events = sse_events(client.post("/sessions/raced/chat/stream", json={"message": "hi"}).text)
        assert [name for name, _ in events] == ["start", "chunk", "error"]
        assert events[-1][1]["status"] == 409
        detail = events[-1][1]["detail"]
    assert "Another turn of this session got there first" in detail
    assert "in session 'raced'" in detail  # the id as the caller knows it, not as MongoDB stores it
    assert "ana/" not in detail
    assert stored_texts(mongo_db, "raced") == [("user", "hi"), ("assistant", "other")]


@pytest.mark.parametrize("kind", ["plain", "streaming"])
def test_a_user_message_another_writer_stored_first_is_refused_before_anything_is_announced(
    make_client: Callable[..., TestClient],
    mongo_client: MongoClient[dict[str, Any]],
    database_name: str,
    mongo_db: Database[dict[str, Any]],
    monkeypatch: pytest.MonkeyPatch,
    kind: str,
) -> None:
    """Another process stores the next message between this turn's resume and its user message: a plain 409.

    The stream's ``start`` event says the user message is stored, so it is sent only once it is.
    """
    client = make_client(kind)
    path = "/sessions/raced/chat" if kind == "plain" else "/sessions/raced/chat/stream"
    assert client.post(path, json={"message": "first"}).status_code == 200
    build_agent = chat_api.Sessions.new_agent

    def resumed_then_overtaken(sessions: chat_api.Sessions, *args: Any, **kwargs: Any) -> Any:
        agent = build_agent(sessions, *args, **kwargs)
        with MongoDBSessionRepository(client=mongo_client, database_name=database_name) as other_process:
            overtaking = SessionMessage(message={"role": "user", "content": [{"text": "from elsewhere"}]}, message_id=2)
            other_process.create_message("ana/raced", DEFAULT_AGENT_ID, overtaking)
        return agent

    monkeypatch.setattr(chat_api.Sessions, "new_agent", resumed_then_overtaken)
    response = client.post(path, json={"message": "lost"})

    assert response.status_code == 409
    assert response.headers["content-type"] == "application/json"
    assert response.json()["detail"].startswith(
        "message 2 of agent 'assistant' in session 'raced' was already written by another writer"
    )
    assert [text for _, text in stored_texts(mongo_db, "raced")][2:] == ["from elsewhere"]


def test_messages_in_session_counts_the_whole_conversation_past_the_window(
    make_client: Callable[..., TestClient],
) -> None:
    """Strands' sliding window keeps the last 40 messages in the Agent; the conversation has more."""
    client = make_client("plain")
    for turn in range(21):
        answer = chat(client, "long", f"turn {turn}").json()
    assert answer["user_message_id"] == 40
    assert answer["metrics"]["messages_in_session"] == 42
    assert client.get("/sessions/long/stats").json()["message_count"] == 42


# -- expiry ------------------------------------------------------------------------------------------------------


def test_sessions_are_created_with_the_servers_expire_after(
    make_client: Callable[..., TestClient], mongo_db: Database[dict[str, Any]], mode: str
) -> None:
    client = make_client("plain", mode, expire_after=3600)
    chat(client, "expiring", "hi")
    document = stored_session(mongo_db, "expiring")
    assert document["expire_after_seconds"] == 3600
    assert abs(document["expires_at"] - document["updated_at"] - timedelta(hours=1)) < timedelta(seconds=1)


def test_without_expire_after_sessions_never_expire(
    make_client: Callable[..., TestClient], mongo_db: Database[dict[str, Any]]
) -> None:
    chat(make_client("plain"), "forever", "hi")
    assert "expires_at" not in stored_session(mongo_db, "forever")


@pytest.mark.parametrize(("value", "seconds"), [("60", 60.0), ("0.5", 0.5), ("86400", 86400.0)])
def test_expire_after_option_accepts_positive_seconds(value: str, seconds: float) -> None:
    assert expire_after_seconds(value) == seconds


@pytest.mark.parametrize("value", ["0", "-5", "nan", "inf", "soon"])
def test_expire_after_option_refuses_anything_else(value: str) -> None:
    with pytest.raises(argparse.ArgumentTypeError, match=f"a positive number of seconds, not '{value}'"):
        expire_after_seconds(value)


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
    assert events[0][1] == {"session_id": "stream-1", "restored_messages": 0, "user_message_id": 0}
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
    assert second[0][1] == {"session_id": "stream-1", "restored_messages": 2, "user_message_id": 2}
    assert "received 2 earlier messages" in "".join(d["text"] for n, d in second if n == "chunk")
    assert second[-1][1]["metrics"]["usage"]["inputTokens"] == 30
    history = client.get("/sessions/stream-1/history").json()["messages"]
    assert len(history) == 4
    assert client.get("/sessions/stream-1/stats").json()["message_count"] == 4


def test_streaming_announces_tool_calls_and_their_results(make_client: Callable[..., TestClient]) -> None:
    client = make_client("streaming")
    events = sse_events(client.post("/sessions/tool-stream/chat/stream", json={"message": "count: hello"}).text)
    assert [name for name, _ in events] == ["start", "tool_use", "tool_result", "chunk", "done"]
    assert events[1][1] == {
        "type": "tool_use",
        "tool_use_id": "tooluse_1_0",
        "name": "count_characters",
        "input": {"text": "hello"},
    }
    assert events[2][1] == {
        "type": "tool_result",
        "tool_use_id": "tooluse_1_0",
        "status": "success",
        "text": "5 characters, 5 letters, 1 word",
    }
    assert events[-1][1]["metrics"]["cycles"] == 2


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


def wait_for_stored_user_message(mongo_db: Database[dict[str, Any]], session_id: str) -> None:
    deadline = time.monotonic() + 10
    query = {"_id": f"ana/{session_id}", f"agents.{DEFAULT_AGENT_ID}.messages.0": {"$exists": True}}
    while mongo_db["sessions"].count_documents(query) == 0:
        assert time.monotonic() < deadline, "the first turn never stored its user message"
        time.sleep(0.01)


@pytest.mark.parametrize("kind", ["plain", "streaming"])
def test_a_second_turn_while_one_is_running_gets_409_and_stores_nothing(
    make_client: Callable[..., TestClient], mongo_db: Database[dict[str, Any]], kind: str
) -> None:
    client = make_client(kind, model_factory=scripted(word_delay_ms=20))  # about half a second per answer
    path = "/sessions/busy/chat" if kind == "plain" else "/sessions/busy/chat/stream"
    responses: list[httpx.Response] = []
    first = threading.Thread(target=lambda: responses.append(client.post(path, json={"message": "first"})))
    first.start()
    wait_for_stored_user_message(mongo_db, "busy")

    second = client.post(path, json={"message": "second"})
    other_user = client.post(path, json={"message": "bob's"}, headers=BOB)
    first.join()

    assert second.status_code == 409
    assert second.json()["detail"] == "a turn is in progress in session 'busy'; try again when it finishes"
    assert other_user.status_code == 200  # bob's "busy" is a session of his own: ana's running turn is not in it
    assert stored_texts(mongo_db, "busy", "bob")[0] == ("user", "bob's")
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


@pytest.mark.parametrize("kind", ["plain", "streaming"])
def test_retry_answers_the_stored_unanswered_message_without_storing_it_twice(
    make_client: Callable[..., TestClient], mongo_db: Database[dict[str, Any]], kind: str
) -> None:
    first_model = [ScriptedModel([Raise(RuntimeError("model down"))])]  # then the usual answers
    client = make_client(kind, "client-per-request", model_factory=lambda: (first_model or [scripted()()]).pop())
    path = "/sessions/again/chat" if kind == "plain" else "/sessions/again/chat/stream"
    failing = TestClient(client.app, headers=ANA, raise_server_exceptions=False)
    failed = failing.post(path, json={"message": "first try"})
    assert failed.status_code == (500 if kind == "plain" else 200)
    assert stored_texts(mongo_db, "again") == [("user", "first try")]  # stored, unanswered

    # Only the stored message itself can be retried.
    other = client.post(path, json={"message": "another text", "retry": True})
    assert other.status_code == 409
    assert other.json()["detail"].startswith("nothing to retry")
    assert stored_texts(mongo_db, "again") == [("user", "first try")]

    retried = client.post(path, json={"message": "first try", "retry": True, "create": False})
    assert retried.status_code == 200
    if kind == "plain":
        assert retried.json()["user_message_id"] == 0
        assert retried.json()["answer"].startswith('You said: "first try".')
    else:
        events = sse_events(retried.text)
        assert events[0] == ("start", {"session_id": "again", "restored_messages": 1, "user_message_id": 0})
        assert events[-1][0] == "done"
    texts = stored_texts(mongo_db, "again")
    assert [role for role, _ in texts] == ["user", "assistant"]
    assert texts[0] == ("user", "first try")

    # Answered now: nothing to retry any more, and a retry never creates a session.
    assert client.post(path, json={"message": "first try", "retry": True}).status_code == 409
    assert client.post(path.replace("again", "never"), json={"message": "x", "retry": True}).status_code == 404
    assert mongo_db["sessions"].count_documents({"_id": "ana/never"}) == 0


def test_streaming_app_shares_metadata_endpoints(make_client: Callable[..., TestClient]) -> None:
    client = make_client("streaming")
    client.post("/sessions/panel/chat/stream", json={"message": "hi"}).raise_for_status()
    client.put("/sessions/panel/metadata", json={"metadata": {"topic": "tests", "n": 1}}).raise_for_status()
    assert client.delete("/sessions/panel/metadata", params={"keys": "n"}).json()["metadata"] == {"topic": "tests"}
    assert client.get("/sessions/panel/metadata").json()["metadata"] == {"topic": "tests"}


def test_cors_allows_the_configured_origins_only(make_client: Callable[..., TestClient]) -> None:
    client = make_client("streaming")
    preflight = {"Access-Control-Request-Method": "POST", "Access-Control-Request-Headers": "content-type,x-user-id"}

    allowed = client.options("/sessions/s/chat/stream", headers={"Origin": PLAYGROUND_ORIGIN, **preflight})
    assert allowed.status_code == 200
    assert allowed.headers["access-control-allow-origin"] == PLAYGROUND_ORIGIN
    assert "POST" in allowed.headers["access-control-allow-methods"]
    assert "x-user-id" in allowed.headers["access-control-allow-headers"].lower()
    assert "access-control-allow-credentials" not in allowed.headers
    rename = {"Access-Control-Request-Method": "PATCH", "Access-Control-Request-Headers": "content-type,x-user-id"}
    assert client.options("/sessions/s", headers={"Origin": PLAYGROUND_ORIGIN, **rename}).status_code == 200
    export = client.get("/health", headers={"Origin": PLAYGROUND_ORIGIN})
    assert export.headers["access-control-expose-headers"] == "Content-Disposition"

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


@pytest.mark.parametrize(
    ("host", "origin", "allowed"),
    [
        ("192.168.1.5:18880", "http://192.168.1.5:8881", True),  # `make playground HOST=0.0.0.0`, from a phone
        ("[fd00::5]:18880", "http://[fd00::5]:8881", True),
        ("localhost:8880", "http://localhost:8881", True),
        ("192.168.1.5:18880", "http://192.168.1.6:8881", False),  # another machine's page
        ("192.168.1.5:18880", "http://192.168.1.5:8882", False),  # another port
        ("192.168.1.5:18880", "http://192.168.1.5", False),
        ("rebound.example:18880", "http://rebound.example:8881", False),  # a name DNS could point anywhere
        ("192.168.1.5:18880", "http://192.168.1.5:notaport", False),
    ],
)
def test_cors_lets_in_the_playground_page_on_the_address_the_api_is_reached_at(
    make_client: Callable[..., TestClient], host: str, origin: str, allowed: bool
) -> None:
    client = make_client("streaming", playground_port=8881)
    preflight = {"Access-Control-Request-Method": "POST", "Access-Control-Request-Headers": "content-type,x-user-id"}
    answer = client.options("/sessions/s/chat/stream", headers={"Host": host, "Origin": origin, **preflight})
    simple = client.get("/health", headers={"Host": host, "Origin": origin})
    if allowed:
        assert answer.status_code == 200
        assert answer.headers["access-control-allow-origin"] == origin
        assert simple.headers["access-control-allow-origin"] == origin
    else:
        assert answer.status_code == 400
        assert "access-control-allow-origin" not in simple.headers
    without = make_client("streaming", "client-per-request")  # no playground_port: the listed origins only
    refused = without.options("/sessions/s/chat/stream", headers={"Host": host, "Origin": origin, **preflight})
    assert refused.status_code == (200 if origin in example_fastapi_streaming.PLAYGROUND_ORIGINS else 400)


# -- the command line ----------------------------------------------------------------------------------


def test_example_fastapi_command_line_client_per_request_with_expiry(
    mongodb_uri: str, database_name: str, mongo_db: Database[dict[str, Any]]
) -> None:
    port = free_port()
    process = run_example(
        "example_fastapi.py",
        *("--uri", mongodb_uri, "--database", database_name, "--port", str(port)),
        *("--connection-mode", "client-per-request", "--expire-after", "600"),
    )
    try:
        base = f"http://127.0.0.1:{port}"
        wait_until_up(process, f"{base}/health")
        assert httpx.get(f"{base}/health").json() == {"status": "ok", "connection_mode": "client-per-request"}
        assert httpx.post(f"{base}/sessions/cli/chat", json={"message": "anonymous"}).status_code == 401
        answer = httpx.post(
            f"{base}/sessions/cli/chat", json={"message": "from the command line"}, headers=ANA, timeout=30
        )
        assert answer.status_code == 200
        assert 'You said: "from the command line"' in answer.json()["answer"]
        assert httpx.get(f"{base}/sessions", headers=ANA).json()["sessions"][0]["session_id"] == "cli"
    finally:
        output = stop(process)
    assert "Model: ScriptedModel" in output
    assert "Connection mode: client-per-request; sessions expire 600 s after their last write." in output
    document = stored_session(mongo_db, "cli")
    assert len(document["agents"][DEFAULT_AGENT_ID]["messages"]) == 2
    assert document["user_id"] == "ana"
    assert document["expire_after_seconds"] == 600


def test_expire_after_on_the_command_line_must_be_positive(mongodb_uri: str, database_name: str) -> None:
    process = run_example(
        "example_fastapi_streaming.py", *("--uri", mongodb_uri, "--database", database_name, "--expire-after", "0")
    )
    output, _ = process.communicate(timeout=60)
    assert process.returncode == 2
    assert "argument --expire-after: must be a positive number of seconds, not '0'" in output
    assert "Traceback" not in output
