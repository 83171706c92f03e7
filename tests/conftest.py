"""Shared fixtures: a real MongoDB wire-protocol server and per-test databases.

Set ``MONGODB_URI`` to run against an existing server; otherwise one SecantusDB server, on a
scratch directory, is started on a free loopback port for the whole test session.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
import uuid
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from typing import Any

import pytest
from pymongo import MongoClient
from pymongo.database import Database

from mongodb_session_manager import (
    MongoDBConnectionPool,
    MongoDBSessionManager,
    MongoDBSessionRepository,
    close_global_factory,
)

from command_counter import CommandCounter
from stored_sessions import LAYOUTS, StoredSessions

Client = MongoClient[dict[str, Any]]

SERVER_SELECTION_TIMEOUT_MS = 5000


def make_client(uri: str, **kwargs: Any) -> Client:
    """A client to the test server that fails fast when the server is unreachable."""
    return MongoClient(uri, serverSelectionTimeoutMS=SERVER_SELECTION_TIMEOUT_MS, **kwargs)


@pytest.fixture(scope="session")
def mongodb_uri(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """URI of the test server: ``$MONGODB_URI``, or an in-process SecantusDB on a scratch directory.

    The server keeps its data on disk, not in memory: an in-memory WiredTiger cache holds every
    write and its oplog entry until the end of the run, and a whole run of this suite overflows it
    (``WT_CACHE_FULL``). The journal is off because the directory is thrown away afterwards.
    """
    if uri := os.environ.get("MONGODB_URI"):
        yield uri
        return
    from secantus import SecantusDBServer  # type: ignore[import-untyped]

    server = SecantusDBServer(
        host="127.0.0.1",
        port=0,
        storage_path=str(tmp_path_factory.mktemp("secantus")),
        durable=False,
    )
    server.start()
    try:
        yield server.uri
    finally:
        server.stop()


@pytest.fixture(autouse=True)
def _isolated_pool() -> Iterator[None]:
    """Every test starts and ends with no global factory and no shared process-wide client."""
    close_global_factory()
    MongoDBConnectionPool.close()
    yield
    close_global_factory()
    MongoDBConnectionPool.close()


@pytest.fixture(scope="session")
def mongo_client(mongodb_uri: str) -> Iterator[Client]:
    """A client shared by the whole session (do not close it in a test)."""
    client = make_client(mongodb_uri)
    try:
        yield client
    finally:
        client.close()


@pytest.fixture
def database_name(request: pytest.FixtureRequest, mongo_client: Client) -> Iterator[str]:
    """A database name unique to this test, dropped afterwards."""
    test_name = re.sub(r"[^A-Za-z0-9_]", "_", request.node.name)[:40]
    name = f"t_{test_name}_{uuid.uuid4().hex[:8]}"
    yield name
    mongo_client.drop_database(name)


@pytest.fixture
def mongo_db(mongo_client: Client, database_name: str) -> Database[dict[str, Any]]:
    """This test's own database, on the shared client."""
    return mongo_client[database_name]


@pytest.fixture
def counting_client(mongodb_uri: str) -> Iterator[tuple[Client, CommandCounter]]:
    """A fresh client with a ``CommandCounter`` registered; closed after the test."""
    counter = CommandCounter()
    client = make_client(mongodb_uri, event_listeners=[counter])
    try:
        yield client, counter
    finally:
        client.close()


@pytest.fixture(params=LAYOUTS)
def layout(request: pytest.FixtureRequest) -> str:
    """The message layout under test: every test using it runs once per layout."""
    layout_name: str = request.param
    return layout_name


@pytest.fixture
def stored(mongo_db: Database[dict[str, Any]], layout: str) -> StoredSessions:
    """Read what this test's layout stored, straight from the database."""
    return StoredSessions(mongo_db, layout)


@pytest.fixture
def repository(mongo_client: Client, database_name: str, layout: str) -> MongoDBSessionRepository:
    """A repository on this test's database and layout, borrowing the shared client."""
    return MongoDBSessionRepository(client=mongo_client, database_name=database_name, layout=layout)


@pytest.fixture
def new_manager(mongo_client: Client, database_name: str, layout: str) -> Callable[..., MongoDBSessionManager]:
    """Make managers on this test's database and layout, borrowing the shared client: ``new_manager("s1")``."""

    def make(session_id: str, **kwargs: Any) -> MongoDBSessionManager:
        kwargs.setdefault("client", mongo_client)
        kwargs.setdefault("layout", layout)
        return MongoDBSessionManager(session_id, database_name=database_name, **kwargs)

    return make


EXAMPLES = Path(__file__).resolve().parent.parent / "examples"
NOT_OFFLINE = ("MODEL_PROVIDER", "OPENAI_API_KEY", "OLLAMA_HOST", "SESSION_ID", "MONGODB_DATABASE", "MONGODB_DATA_DIR")


def run_example_process(
    name: str, *args: str, uri: str | None, env: Mapping[str, str | None] | None = None, timeout: float = 120
) -> subprocess.CompletedProcess[str]:
    """Run ``examples/<name>.py``: ``MONGODB_URI`` = ``uri`` (``None``: unset), other variables changed by ``env``.

    ``None`` in ``env`` unsets the variable. None of the variables that would pick a real model, a session id,
    database or data folder are passed on.
    """
    environment = {key: value for key, value in os.environ.items() if key not in (*NOT_OFFLINE, "MONGODB_URI")}
    if uri is not None:
        environment["MONGODB_URI"] = uri
    for key, value in (env or {}).items():
        if value is None:
            environment.pop(key, None)
        else:
            environment[key] = value
    return subprocess.run(
        [sys.executable, str(EXAMPLES / f"{name}.py"), *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        env=environment,
        check=False,
    )


@pytest.fixture
def run_example(mongodb_uri: str) -> Callable[..., str]:
    """Run ``examples/<name>.py`` offline in a subprocess and return its stdout: ``run_example("quickstart")``.

    The example gets ``MONGODB_URI`` = the test server (``uri=None``: unset, so it starts its own embedded
    server) and none of the variables that would pick a real model, a session id, database or data folder.
    """

    def run(name: str, *args: str, uri: str | None = mongodb_uri) -> str:
        result = run_example_process(name, *args, uri=uri)
        assert result.returncode == 0, f"{name} failed:\n{result.stdout}\n{result.stderr}"
        return result.stdout

    return run


@pytest.fixture
def run_failing_example(mongodb_uri: str) -> Callable[..., str]:
    """Run an example that must fail; assert it exits 1 with one line on stderr, no traceback; return that line.

    Takes ``run_example_process``'s arguments; ``uri`` defaults to the test server.
    """

    def run(name: str, *args: str, uri: str | None = mongodb_uri, **kwargs: Any) -> str:
        result = run_example_process(name, *args, uri=uri, **kwargs)
        output = f"{name} exited with {result.returncode}:\n{result.stdout}\n{result.stderr}"
        assert result.returncode == 1, output
        assert "Traceback" not in result.stderr, output
        assert len(result.stderr.splitlines()) == 1, output
        assert result.stderr.startswith("error: "), output
        return result.stderr.strip()

    return run
