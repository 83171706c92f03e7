"""The server goes away mid-conversation: the turn fails fast and nothing is half-written.

This test owns its server (on disk, so it survives a restart); it cannot run against
``MONGODB_URI`` because it has to stop the server.
"""

from __future__ import annotations

import os
import socket
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from pymongo import MongoClient
from pymongo.errors import PyMongoError
from secantus import SecantusDBServer  # type: ignore[import-untyped]
from strands import Agent

from mongodb_session_manager import MongoDBSessionManager
from mongodb_session_manager.errors import StaleAgentError

from scripted_model import ScriptedModel

pytestmark = pytest.mark.skipif(
    bool(os.environ.get("MONGODB_URI")),
    reason="stops and restarts its own SecantusDB server; cannot stop the server given by MONGODB_URI",
)

DATABASE = "network_failure"
SESSION = "net-1"
FAIL_FAST_MS = 500
"""serverSelectionTimeoutMS of the manager under test."""


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


class Servers:
    """Starts SecantusDB on one fixed port and storage path; stops whatever is still running at teardown."""

    def __init__(self, storage: Path) -> None:
        self.port = free_port()
        self.storage = str(storage)
        self.running: SecantusDBServer | None = None

    def start(self) -> str:
        assert self.running is None
        server = SecantusDBServer(host="127.0.0.1", port=self.port, storage_path=self.storage)
        server.start()
        self.running = server
        uri: str = server.uri
        return uri

    def stop(self) -> float:
        """Stop the server and return how long ``stop()`` took.

        A client stays connected while the server stops: SecantusDB closes its listening socket
        while its accept thread is blocked in ``accept()``, which on Linux does not wake that
        thread. With no client around, ``stop()`` waits out its 2 s join timeout and the port
        keeps listening afterwards; a connected client reconnects, which wakes the thread, and
        ``stop()`` then returns in about 0.3 s with the port closed.
        """
        assert self.running is not None
        server, self.running = self.running, None
        with MongoClient(server.uri, serverSelectionTimeoutMS=FAIL_FAST_MS) as waker:
            waker.admin.command("ping")
            started = time.monotonic()
            server.stop()
            elapsed = time.monotonic() - started
        return elapsed

    def refuses_connections(self) -> bool:
        try:
            socket.create_connection(("127.0.0.1", self.port), timeout=1).close()
        except ConnectionRefusedError:
            return True
        return False


@pytest.fixture
def servers(tmp_path: Path) -> Iterator[Servers]:
    servers = Servers(tmp_path / "secantus-data")
    try:
        yield servers
    finally:
        if servers.running is not None:
            servers.stop()


def pymongo_error_in_chain(error: BaseException) -> PyMongoError | None:
    """The first pymongo error in ``error``'s cause/context chain (Strands may wrap it)."""
    seen: set[int] = set()
    current: BaseException | None = error
    while current is not None and id(current) not in seen:
        if isinstance(current, PyMongoError):
            return current
        seen.add(id(current))
        current = current.__cause__ or current.__context__
    return None


def stored_document(uri: str) -> dict[str, Any]:
    with MongoClient(uri, serverSelectionTimeoutMS=5000) as client:
        document = client[DATABASE]["sessions"].find_one({"_id": SESSION})
    assert document is not None
    return document


def stored_messages(uri: str) -> list[dict[str, Any]]:
    messages: list[dict[str, Any]] = stored_document(uri)["agents"]["default"]["messages"]
    return messages


def summary(messages: list[dict[str, Any]]) -> list[tuple[int, str, list[dict[str, Any]]]]:
    return [(m["message_id"], m["message"]["role"], m["message"]["content"]) for m in messages]


def test_stopping_the_server_mid_conversation_fails_fast_and_leaves_only_complete_turns(servers: Servers) -> None:
    uri = servers.start()
    manager = MongoDBSessionManager(
        SESSION, connection_string=uri, database_name=DATABASE, serverSelectionTimeoutMS=FAIL_FAST_MS
    )
    model = ScriptedModel(["first answer", "never given"])
    agent = Agent(model=model, session_manager=manager, callback_handler=None)
    try:
        assert str(agent("first question")).strip() == "first answer"
        before_failure = stored_document(uri)

        stop_seconds = servers.stop()
        assert stop_seconds < 10, f"SecantusDBServer.stop() took {stop_seconds:.2f}s"
        assert servers.refuses_connections()

        started = time.monotonic()
        with pytest.raises(BaseException) as failed:  # noqa: PT011 - asserted below: a pymongo error in the chain
            agent("second question")
        elapsed = time.monotonic() - started

        cause = pymongo_error_in_chain(failed.value)
        assert cause is not None, f"expected a pymongo error, got {failed.value!r}"
        assert elapsed < 10, f"the failed turn took {elapsed:.2f}s to raise"
        # The user message could not be stored, so the turn stopped before the model was called.
        assert len(model.calls) == 1
        # The agent's memory now holds a message the store does not: it refuses to go on, before any I/O
        # (a write attempt would have raised a pymongo timeout instead).
        with pytest.raises(StaleAgentError, match="create a new Agent"):
            agent("third question")
        assert len(model.calls) == 1
    finally:
        manager.close()

    # Restart on the same port and storage path: what was acknowledged before the stop is all there is.
    assert servers.start() == uri
    assert stored_document(uri) == before_failure
    messages = stored_messages(uri)
    assert summary(messages) == [
        (0, "user", [{"text": "first question"}]),
        (1, "assistant", [{"text": "first answer"}]),
    ]
    assert [m["message_id"] for m in messages] == list(range(len(messages)))
    assert "event_loop_metrics" in messages[1]

    # A new manager and agent resume exactly those messages, and the next turn works and is stored.
    resumed_model = ScriptedModel(["second answer"])
    with MongoDBSessionManager(
        SESSION, connection_string=uri, database_name=DATABASE, serverSelectionTimeoutMS=5000
    ) as resumed_manager:
        resumed = Agent(model=resumed_model, session_manager=resumed_manager, callback_handler=None)
        assert [(m["role"], m["content"]) for m in resumed.messages] == [
            ("user", [{"text": "first question"}]),
            ("assistant", [{"text": "first answer"}]),
        ]

        assert str(resumed("second question")).strip() == "second answer"

    assert [m["content"] for m in resumed_model.calls[0]] == [
        [{"text": "first question"}],
        [{"text": "first answer"}],
        [{"text": "second question"}],
    ]
    messages = stored_messages(uri)
    assert summary(messages) == [
        (0, "user", [{"text": "first question"}]),
        (1, "assistant", [{"text": "first answer"}]),
        (2, "user", [{"text": "second question"}]),
        (3, "assistant", [{"text": "second answer"}]),
    ]
    assert len({m["message_id"] for m in messages}) == len(messages)
