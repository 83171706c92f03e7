"""The shared connection pool, the session-manager factory, the global factory and client ownership.

Everything runs against the real test server: the pool's figures come from pymongo's own pool
events and the command counts from a ``CommandCounter`` listener on a real client.
"""

from __future__ import annotations

import gc
import os
import signal
import socket
import sys
import threading
import traceback
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import pytest
from pymongo import MongoClient, monitoring
from pymongo.database import Database
from pymongo.errors import InvalidOperation, ServerSelectionTimeoutError
from strands import Agent

from mongodb_session_manager import (
    MongoDBConnectionPool,
    MongoDBSessionManager,
    MongoDBSessionManagerFactory,
    MongoDBSessionRepository,
    __version__,
    close_global_factory,
    create_mongodb_session_manager,
    get_global_factory,
    initialize_global_factory,
)
from mongodb_session_manager.errors import (
    FactoryAlreadyInitializedError,
    FactoryNotInitializedError,
    InvalidArgumentError,
    MongoDBSessionError,
)
from mongodb_session_manager.mongodb_connection_pool import masked_settings

from command_counter import HANDSHAKE_COMMANDS, CommandCounter
from helpers import run_in_threads
from scripted_model import ScriptedModel
from stored_sessions import StoredSessions

Client = MongoClient[dict[str, Any]]
T = TypeVar("T")

LIBRARY_NAME = "mongodb-session-manager"
CHILD_TIMEOUT_S = 20
"""A forked child that has not finished by then is killed by SIGALRM (so a hang fails, not blocks)."""


def new_client(uri: str, **kwargs: Any) -> Client:
    return MongoClient(uri, serverSelectionTimeoutMS=5000, **kwargs)


@pytest.fixture(autouse=True)
def _closed_by_the_last_release(monkeypatch: pytest.MonkeyPatch) -> None:
    """Here a client nobody holds is closed at once, so that each test can see when it is (see the idle tests)."""
    monkeypatch.setattr(MongoDBConnectionPool, "idle_close_seconds", 0)


def stats(client: Client | None = None) -> dict[str, Any]:
    return MongoDBConnectionPool.get_pool_stats(client)


def stored_texts(db: Database[dict[str, Any]], session_id: str, agent_id: str = "default") -> list[tuple[str, str]]:
    """(role, text) of every message stored for the agent, in order."""
    document = db["sessions"].find_one({"_id": session_id})
    assert document is not None, f"session {session_id!r} is not stored"
    messages = document["agents"][agent_id]["messages"]
    return [(m["message"]["role"], m["message"]["content"][0]["text"]) for m in messages]


def run_turn(manager: MongoDBSessionManager, prompt: str, answer: str = "hi") -> str:
    agent = Agent(model=ScriptedModel([answer]), session_manager=manager, callback_handler=None)
    return str(agent(prompt)).strip()


def wait_for_child(pid: int) -> int:
    _, status = os.waitpid(pid, 0)
    return os.waitstatus_to_exitcode(status)


def child_main(body: Callable[[], None]) -> None:
    """In a forked child: run ``body``, exit 0 if it returned, 1 (with its traceback on stderr) if not."""
    code = 1
    try:
        signal.alarm(CHILD_TIMEOUT_S)
        warnings.simplefilter("ignore")
        body()
        code = 0
    except BaseException:
        os.write(2, traceback.format_exc().encode())
    finally:
        os._exit(code)


# -- the shared pool ---------------------------------------------------------------------------------


def test_acquire_from_16_threads_shares_one_client_and_last_release_closes_it(
    mongodb_uri: str, database_name: str
) -> None:
    clients = run_in_threads(16, lambda _: MongoDBConnectionPool.acquire(mongodb_uri, maxPoolSize=20))

    client = clients[0]
    assert all(c is client for c in clients)
    assert stats()["users"] == 16
    assert stats()["settings"]["maxPoolSize"] == 20
    assert client.options.pool_options.max_pool_size == 20

    collection = client[database_name]["items"]
    for i in range(15):
        MongoDBConnectionPool.release(client)
        assert MongoDBConnectionPool.is_open()
        assert stats()["users"] == 16 - (i + 1)
        assert MongoDBConnectionPool.get_client() is client
        collection.insert_one({"_id": i})
    assert collection.count_documents({}) == 15

    MongoDBConnectionPool.release(client)

    assert not MongoDBConnectionPool.is_open()
    assert MongoDBConnectionPool.get_client() is None
    assert stats() == {"open": False}
    with pytest.raises(InvalidOperation):
        collection.find_one({"_id": 0})
    MongoDBConnectionPool.release(client)  # a release with nothing open is a no-op
    assert not MongoDBConnectionPool.is_open()


def test_acquire_with_other_settings_opens_another_shared_client_and_leaves_the_first_alone(
    mongodb_uri: str, database_name: str
) -> None:
    client = MongoDBConnectionPool.acquire(mongodb_uri, maxPoolSize=20)

    bigger = MongoDBConnectionPool.acquire(mongodb_uri, maxPoolSize=21)
    named = MongoDBConnectionPool.acquire(mongodb_uri.rstrip("/") + "/?appname=other", maxPoolSize=20)
    factory = MongoDBSessionManagerFactory(connection_string=mongodb_uri, database_name=database_name, maxPoolSize=5)

    assert len({id(client), id(bigger), id(named), id(factory.client)}) == 4
    assert MongoDBConnectionPool.open_clients() == 4
    assert [stats(c)["settings"]["maxPoolSize"] for c in (client, bigger, named, factory.client)] == [20, 21, 20, 5]
    assert bigger.options.pool_options.max_pool_size == 21

    # Same settings, explicit or defaulted, in the URI or as keywords, in any case: the same client.
    assert MongoDBConnectionPool.acquire(mongodb_uri, maxPoolSize=20, retryWrites=True) is client
    assert MongoDBConnectionPool.acquire(mongodb_uri.rstrip("/") + "/?maxpoolsize=20&retryWrites=true") is client
    assert stats(client)["users"] == 3

    for other in (bigger, named):
        MongoDBConnectionPool.release(other)
    factory.close()
    assert MongoDBConnectionPool.open_clients() == 1
    assert client.admin.command("ping")["ok"] == 1
    client[database_name]["items"].insert_one({"_id": "still-open"})
    assert client[database_name]["items"].find_one({"_id": "still-open"}) == {"_id": "still-open"}
    with pytest.raises(InvalidOperation):
        bigger.admin.command("ping")


def test_pool_cannot_be_instantiated() -> None:
    with pytest.raises(TypeError, match="singleton"):
        MongoDBConnectionPool()
    assert not MongoDBConnectionPool.is_open()


def test_pool_stats_report_real_connection_figures(mongodb_uri: str, database_name: str) -> None:
    assert stats() == {"open": False}
    client = MongoDBConnectionPool.acquire(mongodb_uri, maxPoolSize=8)
    assert stats()["connections"]["created"] == 0  # nothing used yet
    collection = client[database_name]["items"]

    def work(i: int) -> None:
        for j in range(5):
            collection.insert_one({"_id": f"{i}-{j}"})
            assert collection.find_one({"_id": f"{i}-{j}"}) is not None

    run_in_threads(8, work)
    operations = 8 * 5 * 2

    figures = stats()
    assert collection.count_documents({}) == 40
    assert figures["open"] is True
    assert figures["users"] == 1
    assert figures["settings"]["maxPoolSize"] == 8
    assert 1 <= figures["connections"]["created"] <= 8
    assert figures["connections"]["in_use"] == 0
    assert figures["connections"]["open"] == figures["connections"]["created"] - figures["connections"]["closed"]
    assert figures["connections"]["idle"] == figures["connections"]["open"]
    assert figures["checkouts"]["total"] >= operations
    assert figures["checkouts"]["failed"] == 0
    assert figures["checkouts"]["waiting"] == 0


def test_clients_the_library_opens_identify_it(mongodb_uri: str, database_name: str) -> None:
    pooled = MongoDBConnectionPool.acquire(mongodb_uri)
    repository = MongoDBSessionRepository(connection_string=mongodb_uri, database_name=database_name)
    try:
        for client in (pooled, repository.client):
            driver = client.options.pool_options.driver
            assert driver is not None
            assert (driver.name, driver.version) == (LIBRARY_NAME, __version__)
            handshake = client.options.pool_options.metadata["driver"]
            assert LIBRARY_NAME in handshake["name"]
            assert __version__ in handshake["version"]
        # A client the caller built is borrowed untouched.
        plain = new_client(mongodb_uri)
        try:
            borrowed = MongoDBSessionRepository(client=plain, database_name=database_name)
            assert borrowed.client is plain
            assert plain.options.pool_options.driver is None
        finally:
            plain.close()
    finally:
        repository.close()


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs os.fork()")
@pytest.mark.filterwarnings("ignore::DeprecationWarning", "ignore::UserWarning", "ignore::RuntimeWarning")
def test_forked_child_opens_its_own_client_and_parent_keeps_its_own(
    mongodb_uri: str, database_name: str, layout: str, stored: StoredSessions
) -> None:
    factory = initialize_global_factory(
        connection_string=mongodb_uri, database_name=database_name, layout=layout, maxPoolSize=5
    )
    parent_client = MongoDBConnectionPool.get_client()
    assert parent_client is factory.client
    parent_items = parent_client[database_name]["items"]
    parent_items.insert_one({"_id": "before-fork"})
    assert run_turn(factory.create_session_manager("parent-session"), "before the fork", "one") == "one"
    assert stats()["connections"]["created"] >= 1

    def texts(agent: Agent) -> list[tuple[str, str]]:
        return [(m["role"], m["content"][0]["text"]) for m in agent.messages]

    def stored_pairs(session_id: str) -> list[tuple[str, str]]:
        """(role, text) of the stored messages, read straight from the database in this test's layout."""
        return [
            (m["message"]["role"], m["message"]["content"][0]["text"]) for m in stored.messages(session_id, "default")
        ]

    def resume(session_id: str) -> Agent:
        manager = get_global_factory().create_session_manager(session_id)
        return Agent(model=ScriptedModel(["resumed"]), session_manager=manager, callback_handler=None)

    def in_child() -> None:
        assert get_global_factory() is factory
        child_client = MongoDBConnectionPool.get_client()
        assert child_client is not None
        assert child_client is not parent_client
        assert MongoDBConnectionPool.get_client() is child_client  # opened once, then shared
        assert factory.client is child_client
        assert stats()["connections"]["created"] == 0  # the child's figures start afresh
        # It writes a session through the global factory, on its own client and the factory's layout ...
        manager = factory.create_session_manager("child-session")
        assert manager.repository.client is child_client
        assert manager.repository.layout == layout
        assert run_turn(manager, "hello from the child", "hi child") == "hi child"
        child_client[database_name]["items"].insert_one({"_id": "from-child", "pid": os.getpid()})
        # ... and reads sessions back: its own, and the one the parent stored before the fork.
        assert texts(resume("child-session")) == [("user", "hello from the child"), ("assistant", "hi child")]
        assert texts(resume("parent-session")) == [("user", "before the fork"), ("assistant", "one")]
        assert stats()["connections"]["created"] >= 1  # connections of its own, counted in its own figures
        assert stats()["connections"]["in_use"] == 0

    pid = os.fork()
    if pid == 0:  # pragma: no cover - runs in the child
        child_main(in_child)  # a SIGALRM watchdog kills it after CHILD_TIMEOUT_S, so a hang fails the test

    assert wait_for_child(pid) == 0, "the child failed; its traceback is in the captured stderr"

    # The parent still has its own client, and it works: it reads what the child stored and writes more.
    assert MongoDBConnectionPool.get_client() is parent_client
    assert factory.client is parent_client
    assert get_global_factory() is factory
    parent_items.insert_one({"_id": "after-fork"})
    child_document = parent_items.find_one({"_id": "from-child"})
    assert child_document is not None
    assert child_document["pid"] == pid
    assert {d["_id"] for d in parent_items.find()} == {"before-fork", "from-child", "after-fork"}
    assert stored.document("child-session")["message_layout"] == layout
    assert stored_pairs("child-session") == [("user", "hello from the child"), ("assistant", "hi child")]
    continued = resume("child-session")
    assert str(continued("and from the parent")).strip() == "resumed"
    assert stored.message_ids("child-session", "default") == [0, 1, 2, 3]
    parent_agent = resume("parent-session")
    assert texts(parent_agent) == [("user", "before the fork"), ("assistant", "one")]
    parent_agent("after the fork")
    assert stored_pairs("parent-session") == [
        ("user", "before the fork"),
        ("assistant", "one"),
        ("user", "after the fork"),
        ("assistant", "resumed"),
    ]
    assert stats()["connections"]["in_use"] == 0


# -- the factory ----------------------------------------------------------------------------------


def test_pooled_factory_uses_the_shared_pool(mongodb_uri: str, database_name: str) -> None:
    first = MongoDBSessionManagerFactory(connection_string=mongodb_uri, database_name=database_name, maxPoolSize=7)
    client = MongoDBConnectionPool.get_client()
    assert client is not None
    assert first.client is client
    assert stats()["users"] == 1
    assert stats()["settings"]["maxPoolSize"] == 7
    assert first.create_session_manager("s").repository.client is client

    second = MongoDBSessionManagerFactory(connection_string=mongodb_uri, database_name=database_name, maxPoolSize=7)
    assert second.client is client
    assert stats()["users"] == 2

    first.close()
    first.close()  # twice is safe and releases once
    assert MongoDBConnectionPool.is_open()
    assert stats()["users"] == 1
    assert second.create_session_manager("s2").repository.client is client

    second.close()
    assert not MongoDBConnectionPool.is_open()
    with pytest.raises(InvalidOperation):
        client.admin.command("ping")


def test_twenty_managers_cost_only_session_reads_and_creations(
    counting_client: tuple[Client, CommandCounter], database_name: str
) -> None:
    # The index cache entry may belong to an equal, dead client from an earlier test (see
    # test_index_cache_belongs_to_each_client): collect those first, or one may die mid-test and a
    # manager would re-send createIndexes.
    gc.collect()
    client, counter = counting_client
    factory = MongoDBSessionManagerFactory(client=client, database_name=database_name)
    assert counter.names() == ["createIndexes"]
    counter.reset()

    managers = [factory.create_session_manager(f"s{i}") for i in range(20)]

    # Each new session: one aggregate (read_session) then one upsert (create_session). No index command,
    # and no other command at all (excluding=() also shows driver housekeeping).
    assert counter.names(excluding=()) == ["aggregate", "findAndModify"] * 20
    assert all(m.repository.client is client for m in managers)
    assert client[database_name]["sessions"].count_documents({}) == 20

    counter.reset()
    [factory.create_session_manager(f"s{i}") for i in range(20)]
    # Existing sessions are only read.
    assert counter.names(excluding=()) == ["aggregate"] * 20
    assert factory.get_connection_stats()["managers_created"] == 40


def test_pooled_managers_reuse_connections(mongodb_uri: str, mongo_db: Database[dict[str, Any]]) -> None:
    max_pool_size = 5
    factory = MongoDBSessionManagerFactory(
        connection_string=mongodb_uri, database_name=mongo_db.name, maxPoolSize=max_pool_size
    )
    before = stats()

    def work(i: int) -> str:
        manager = factory.create_session_manager(f"p{i}")
        return run_turn(manager, f"hello {i}")

    answers = run_in_threads(4, lambda t: [work(t * 5 + k) for k in range(5)])

    after = stats()
    assert [a for chunk in answers for a in chunk] == ["hi"] * 20
    created = after["connections"]["created"]
    assert before["connections"]["created"] <= 1  # index creation only
    assert 1 <= created <= max_pool_size, after
    assert after["connections"]["in_use"] == 0
    # Each manager+turn makes at least: read, create session, create agent, two messages.
    assert after["checkouts"]["total"] - before["checkouts"]["total"] >= 20 * 5
    assert after["checkouts"]["failed"] == 0
    for i in range(20):
        assert stored_texts(mongo_db, f"p{i}") == [("user", f"hello {i}"), ("assistant", "hi")]


# -- indexes ----------------------------------------------------------------------------------------


def test_indexes_are_created_once_per_database_and_collection(
    counting_client: tuple[Client, CommandCounter], database_name: str
) -> None:
    gc.collect()  # as above: no dying client may take the index cache entry with it during this test
    client, counter = counting_client
    db = client[database_name]

    MongoDBSessionRepository(client=client, database_name=database_name)
    MongoDBSessionRepository(client=client, database_name=database_name)
    MongoDBSessionManagerFactory(client=client, database_name=database_name)
    MongoDBSessionManager("s1", client=client, database_name=database_name)
    assert counter.count("createIndexes") == 1

    MongoDBSessionRepository(client=client, database_name=database_name, collection_name="other")
    MongoDBSessionManagerFactory(client=client, database_name=database_name, collection_name="other")
    assert counter.count("createIndexes") == 2

    # Threads racing on a fresh collection may each send it (the server treats repeats as no-ops, and
    # _indexes.py holds no lock across the round trip), but none fails and none is sent afterwards.
    run_in_threads(
        8, lambda _: MongoDBSessionRepository(client=client, database_name=database_name, collection_name="raced")
    )
    raced = counter.count("createIndexes") - 2
    assert 1 <= raced <= 8
    assert not any(c.failed for c in counter.commands())
    MongoDBSessionRepository(client=client, database_name=database_name, collection_name="raced")
    MongoDBSessionManagerFactory(client=client, database_name=database_name, collection_name="raced")
    assert counter.count("createIndexes") == 2 + raced

    for name in ("sessions", "other", "raced"):
        indexes = db[name].index_information()
        assert indexes["created_at_1"]["key"] == [("created_at", 1)]
        assert indexes["updated_at_1"]["key"] == [("updated_at", 1)]


# -- borrowed and owned clients ----------------------------------------------------------------------


def test_factory_never_closes_a_borrowed_client(mongodb_uri: str, database_name: str) -> None:
    client = new_client(mongodb_uri)
    try:
        factory = MongoDBSessionManagerFactory(client=client, database_name=database_name)
        assert factory.client is client
        assert not MongoDBConnectionPool.is_open()  # a borrowing factory does not touch the pool
        manager = factory.create_session_manager("b1")
        manager.close()

        factory.close()
        factory.close()

        client[database_name]["items"].insert_one({"_id": 1})
        assert client[database_name]["items"].find_one({"_id": 1}) == {"_id": 1}
        assert client[database_name]["sessions"].find_one({"_id": "b1"}) is not None
        with pytest.raises(MongoDBSessionError, match="closed"):
            factory.create_session_manager("b2")
        with pytest.raises(MongoDBSessionError):
            _ = factory.client
        assert client[database_name]["sessions"].find_one({"_id": "b2"}) is None
    finally:
        client.close()


def test_closed_pooled_factory_refuses_new_managers(mongodb_uri: str, database_name: str) -> None:
    factory = MongoDBSessionManagerFactory(connection_string=mongodb_uri, database_name=database_name)
    factory.close()
    factory.close()
    assert not MongoDBConnectionPool.is_open()
    with pytest.raises(MongoDBSessionError):
        factory.create_session_manager("x")
    assert factory.get_connection_stats()["closed"] is True


def test_repository_owns_the_client_it_opens(mongodb_uri: str, database_name: str) -> None:
    repository = MongoDBSessionRepository(connection_string=mongodb_uri, database_name=database_name)
    assert repository.owns_client
    repository.collection.insert_one({"_id": "x"})
    repository.close()
    with pytest.raises(InvalidOperation):
        repository.collection.find_one({"_id": "x"})

    with MongoDBSessionRepository(connection_string=mongodb_uri, database_name=database_name) as scoped:
        assert scoped.collection.find_one({"_id": "x"}) == {"_id": "x"}
    with pytest.raises(InvalidOperation):
        scoped.collection.find_one({"_id": "x"})


def test_repository_and_manager_leave_a_borrowed_client_open(mongodb_uri: str, database_name: str) -> None:
    client = new_client(mongodb_uri)
    try:
        repository = MongoDBSessionRepository(client=client, database_name=database_name)
        assert not repository.owns_client
        repository.close()
        with MongoDBSessionManager("m1", client=client, database_name=database_name) as manager:
            assert not manager.repository.owns_client
        manager.close()
        assert client[database_name]["sessions"].find_one({"_id": "m1"})["_id"] == "m1"
    finally:
        client.close()


@pytest.mark.parametrize("cls", [MongoDBSessionRepository, MongoDBSessionManagerFactory])
def test_client_and_client_options_are_exclusive(
    cls: type[Any], mongodb_uri: str, mongo_client: Client, database_name: str
) -> None:
    with pytest.raises(InvalidArgumentError, match="only apply without one"):
        cls(client=mongo_client, connection_string=mongodb_uri, database_name=database_name)
    with pytest.raises(InvalidArgumentError, match="only apply without one"):
        cls(client=mongo_client, database_name=database_name, maxPoolSize=5)
    with pytest.raises(InvalidArgumentError, match="either connection_string or client"):
        cls(database_name=database_name)
    with pytest.raises(InvalidArgumentError, match="either connection_string or client"):
        MongoDBSessionManager("s", database_name=database_name)
    assert not MongoDBConnectionPool.is_open()
    assert database_name not in mongo_client.list_database_names()  # nothing was written anywhere


# -- the global factory ---------------------------------------------------------------------------------


def test_global_factory_lifecycle(mongodb_uri: str, database_name: str) -> None:
    with pytest.raises(FactoryNotInitializedError):
        get_global_factory()

    factory = initialize_global_factory(connection_string=mongodb_uri, database_name=database_name)
    assert get_global_factory() is factory
    assert factory.database_name == database_name
    client = MongoDBConnectionPool.get_client()
    assert factory.client is client
    assert stats()["users"] == 1

    with pytest.raises(FactoryAlreadyInitializedError):
        initialize_global_factory(connection_string=mongodb_uri, database_name=database_name)
    assert get_global_factory() is factory
    assert stats()["users"] == 1  # the refused initialisation did not acquire the pool

    close_global_factory()
    assert not MongoDBConnectionPool.is_open()  # it was the only user
    with pytest.raises(InvalidOperation):
        client.admin.command("ping")
    with pytest.raises(FactoryNotInitializedError):
        get_global_factory()
    close_global_factory()  # twice is fine
    with pytest.raises(MongoDBSessionError):
        factory.create_session_manager("late")

    reopened = initialize_global_factory(connection_string=mongodb_uri, database_name=database_name)
    assert reopened is not factory
    assert reopened.client is not client
    assert reopened.client.admin.command("ping")["ok"] == 1


def test_closing_the_global_factory_keeps_a_pool_other_users_hold(mongodb_uri: str, database_name: str) -> None:
    other = MongoDBSessionManagerFactory(connection_string=mongodb_uri, database_name=database_name)
    initialize_global_factory(connection_string=mongodb_uri, database_name=database_name)
    assert stats()["users"] == 2
    close_global_factory()
    assert MongoDBConnectionPool.is_open()
    assert stats()["users"] == 1
    assert other.create_session_manager("still-works").repository.client.admin.command("ping")["ok"] == 1


def test_global_factory_serves_agents_in_many_threads(mongodb_uri: str, mongo_db: Database[dict[str, Any]]) -> None:
    initialize_global_factory(connection_string=mongodb_uri, database_name=mongo_db.name, maxPoolSize=8)

    def work(i: int) -> str:
        manager = get_global_factory().create_session_manager(f"g{i}")
        return run_turn(manager, f"hello {i}")

    assert run_in_threads(8, work) == ["hi"] * 8

    assert mongo_db["sessions"].count_documents({}) == 8
    for i in range(8):
        assert stored_texts(mongo_db, f"g{i}") == [("user", f"hello {i}"), ("assistant", "hi")]
    assert get_global_factory().get_connection_stats()["managers_created"] == 8
    assert stats()["connections"]["in_use"] == 0
    assert 1 <= stats()["connections"]["created"] <= 8


def test_factory_connection_stats(mongodb_uri: str, mongo_client: Client, database_name: str) -> None:
    factory = MongoDBSessionManagerFactory(connection_string=mongodb_uri, database_name=database_name, maxPoolSize=9)
    for i in range(3):
        factory.create_session_manager(f"c{i}")

    figures = factory.get_connection_stats()
    assert figures["closed"] is False
    assert figures["database_name"] == database_name
    assert figures["collection_name"] == "sessions"
    assert figures["managers_created"] == 3
    pool = figures["pool"]
    assert pool["open"] is True
    assert pool["users"] == 1
    assert pool["settings"]["maxPoolSize"] == 9
    assert pool["connections"]["created"] >= 1
    assert pool["connections"]["in_use"] == 0
    assert pool["checkouts"]["total"] >= 1 + 3 * 2  # indexes, then a read and a creation per manager

    borrowed = MongoDBSessionManagerFactory(client=mongo_client, database_name=database_name)
    borrowed.create_session_manager("c0")
    assert borrowed.get_connection_stats()["pool"] == {"borrowed_client": True}
    assert borrowed.get_connection_stats()["managers_created"] == 1

    factory.close()
    closed = factory.get_connection_stats()
    assert closed["closed"] is True
    assert closed["managers_created"] == 3
    assert closed["pool"] == {"open": False}


def test_per_conversation_managers_share_one_client_and_the_last_close_closes_it(
    mongodb_uri: str, mongo_db: Database[dict[str, Any]], database_name: str
) -> None:
    manager = create_mongodb_session_manager("own", connection_string=mongodb_uri, database_name=database_name)
    assert isinstance(manager, MongoDBSessionManager)
    assert manager.repository.owns_client
    assert manager.repository.client.options.pool_options.driver.name == LIBRARY_NAME
    assert run_turn(manager, "hello") == "hi"
    assert stored_texts(mongo_db, "own") == [("user", "hello"), ("assistant", "hi")]

    second = create_mongodb_session_manager("two", connection_string=mongodb_uri, database_name=database_name)
    factory = MongoDBSessionManagerFactory(connection_string=mongodb_uri, database_name=database_name)
    assert second.repository.client is manager.repository.client is factory.client
    assert stats()["users"] == 3

    manager.close()
    manager.close()  # giving the client back twice counts once
    second.close()
    assert stats()["users"] == 1
    assert run_turn(factory.create_session_manager("three"), "still open") == "hi"
    factory.close()
    assert not MongoDBConnectionPool.is_open()
    with pytest.raises(InvalidOperation):
        manager.repository.collection.find_one({"_id": "own"})


# -- regressions: defects found in the pool and index cache -------------------------------------------


def test_failed_acquire_does_not_poison_the_pool(mongodb_uri: str, database_name: str) -> None:
    # Was: acquire() published the shared entry before MongoClient() ran, so a refused option left the
    # pool "open" with no client.
    with pytest.raises(InvalidArgumentError, match="Unknown option"):
        MongoDBConnectionPool.acquire(mongodb_uri, maxPoolSizee=10)  # a typo: pymongo refuses the option
    with pytest.raises(InvalidArgumentError, match="Unknown option"):
        MongoDBSessionManagerFactory(connection_string=mongodb_uri, database_name=database_name, maxPoolSizee=10)
    assert not MongoDBConnectionPool.is_open()
    assert stats() == {"open": False}

    factory = MongoDBSessionManagerFactory(connection_string=mongodb_uri, database_name=database_name, maxPoolSize=10)
    assert stats()["users"] == 1
    assert factory.client.admin.command("ping")["ok"] == 1


def test_release_by_a_holder_of_a_force_closed_client_spares_the_new_one(mongodb_uri: str, database_name: str) -> None:
    stale = MongoDBSessionManagerFactory(connection_string=mongodb_uri, database_name=database_name)
    MongoDBConnectionPool.close()  # e.g. a shutdown hook, documented as "whatever its users"
    current = MongoDBSessionManagerFactory(connection_string=mongodb_uri, database_name=database_name)
    client = current.client

    # Was: release() decremented whatever client was shared, so this closed the one `current` holds.
    stale.close()

    assert MongoDBConnectionPool.is_open()
    assert stats()["users"] == 1
    assert client.admin.command("ping")["ok"] == 1
    with pytest.raises(MongoDBSessionError):
        stale.create_session_manager("x")
    current.close()
    assert not MongoDBConnectionPool.is_open()


class _BlockCreateIndexes(monitoring.CommandListener):
    """Holds any thread that starts ``createIndexes`` on its client until ``release`` is set."""

    def __init__(self) -> None:
        self.entered = threading.Event()
        self.release = threading.Event()

    def started(self, event: monitoring.CommandStartedEvent) -> None:
        if event.command_name == "createIndexes":
            self.entered.set()
            self.release.wait(timeout=60)

    def succeeded(self, event: monitoring.CommandSucceededEvent) -> None:
        pass

    def failed(self, event: monitoring.CommandFailedEvent) -> None:
        pass


@pytest.mark.skipif(not hasattr(os, "fork") or sys.platform == "darwin", reason="needs os.fork()")
@pytest.mark.filterwarnings("ignore::DeprecationWarning", "ignore::UserWarning", "ignore::RuntimeWarning")
def test_fork_while_another_thread_creates_indexes_does_not_deadlock_the_child(
    mongodb_uri: str, database_name: str
) -> None:
    factory = MongoDBSessionManagerFactory(connection_string=mongodb_uri, database_name=database_name)
    blocker = _BlockCreateIndexes()
    slow_client = new_client(mongodb_uri, event_listeners=[blocker])
    thread = threading.Thread(
        target=MongoDBSessionRepository,
        kwargs={"client": slow_client, "database_name": database_name, "collection_name": "slow"},
    )
    thread.start()
    try:
        # That thread is now mid-createIndexes. Was: _indexes.py held its module lock across the round
        # trip and never reset it after fork(), so the child hung forever on its first manager.
        assert blocker.entered.wait(timeout=30)

        def in_child() -> None:
            signal.alarm(CHILD_TIMEOUT_S)  # a deadlocked child dies of SIGALRM
            factory.create_session_manager("child")  # ensure_session_indexes takes the index lock
            MongoDBSessionRepository(client=factory.client, database_name=database_name, collection_name="fresh")

        pid = os.fork()
        if pid == 0:  # pragma: no cover - runs in the child
            child_main(in_child)
        exit_code = wait_for_child(pid)
    finally:
        blocker.release.set()
        thread.join(timeout=30)
        slow_client.close()
    assert exit_code == 0, f"child exit code {exit_code} (-{int(signal.SIGALRM)} = deadlocked, killed by SIGALRM)"


def test_indexes_are_created_once_per_deployment_whichever_client_comes_first(
    mongodb_uri: str, counting_client: tuple[Client, CommandCounter], database_name: str
) -> None:
    # Was: a record per client (id(client)), so every per-conversation client re-sent createIndexes.
    client, counter = counting_client
    first_counter = CommandCounter()
    first = new_client(mongodb_uri, event_listeners=[first_counter])  # another client to the same server
    MongoDBSessionRepository(client=first, database_name=database_name)
    MongoDBSessionRepository(client=client, database_name=database_name)
    MongoDBSessionManager("s1", connection_string=mongodb_uri, database_name=database_name).close()

    first.close()
    del first
    gc.collect()  # the record outlives the client that made it
    MongoDBSessionRepository(client=client, database_name=database_name)
    MongoDBSessionRepository(client=client, database_name=database_name, layout="split")  # other indexes

    assert first_counter.count("createIndexes") == 1
    assert counter.names(excluding={*HANDSHAKE_COMMANDS}) == ["createIndexes"]  # the split layout's messages


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs os.fork()")
@pytest.mark.filterwarnings("ignore::DeprecationWarning", "ignore::UserWarning", "ignore::RuntimeWarning")
def test_acquire_in_a_forked_child_returns_the_childs_own_client(mongodb_uri: str, database_name: str) -> None:
    parent_client = MongoDBConnectionPool.acquire(mongodb_uri, maxPoolSize=5)
    parent_client[database_name]["items"].insert_one({"_id": "parent"})

    def in_child() -> None:
        acquired = MongoDBConnectionPool.acquire(mongodb_uri, maxPoolSize=5)
        acquired[database_name]["items"].insert_one({"_id": "child"})
        # The client the pool measures, closes and hands to factories is the child's own ...
        own = MongoDBConnectionPool.get_client()
        assert own is not parent_client
        # ... so an acquirer must get that one: the parent's copy is a second, unmeasured client
        # that close() never closes.
        assert acquired is own, "acquire() returned the parent's client"
        assert stats()["checkouts"]["total"] >= 1

    pid = os.fork()
    if pid == 0:  # pragma: no cover - runs in the child
        child_main(in_child)
    assert wait_for_child(pid) == 0, "the child failed; its traceback is in the captured stderr"


def test_option_names_are_matched_case_insensitively_like_pymongo(mongodb_uri: str) -> None:
    client = MongoDBConnectionPool.acquire(mongodb_uri, maxpoolsize=7)
    assert stats()["settings"]["maxPoolSize"] == 7
    assert client.options.pool_options.max_pool_size == 7
    assert MongoDBConnectionPool.acquire(mongodb_uri, maxPoolSize=7) is client
    assert stats()["users"] == 2


def test_users_event_listeners_are_kept_beside_the_pools_own(mongodb_uri: str, database_name: str) -> None:
    counter = CommandCounter()
    client = MongoDBConnectionPool.acquire(mongodb_uri, event_listeners=[counter])
    client.admin.command("ping")
    client[database_name]["c"].find_one()
    assert counter.count("find") == 1
    assert stats()["checkouts"]["total"] >= 1  # the library's pool counter still sees the traffic


def test_factory_that_cannot_reach_the_server_releases_the_pool() -> None:
    with socket.socket() as probe:  # a loopback port nothing listens on
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    with pytest.raises(ServerSelectionTimeoutError):
        MongoDBSessionManagerFactory(connection_string=f"mongodb://127.0.0.1:{port}/", serverSelectionTimeoutMS=200)
    assert not MongoDBConnectionPool.is_open()
    with pytest.raises(FactoryNotInitializedError):
        get_global_factory()


def test_any_option_name_is_matched_case_insensitively(mongodb_uri: str) -> None:
    client = MongoDBConnectionPool.acquire(mongodb_uri, appName="chat")
    assert MongoDBConnectionPool.acquire(mongodb_uri, appname="chat") is client
    assert MongoDBConnectionPool.acquire(mongodb_uri, APPNAME="chat") is client
    assert stats()["users"] == 3


def test_stats_never_show_credentials(mongodb_uri: str, mongo_client: Client, database_name: str) -> None:
    secret = "s3cr3t-pa55word"
    database = mongo_client[database_name]
    database.command("createUser", "reader", pwd=secret, roles=[{"role": "readWrite", "db": database_name}])
    try:
        factory = MongoDBSessionManagerFactory(
            connection_string=mongodb_uri,
            database_name=database_name,
            username="reader",
            Password=secret,  # option names are case-insensitive: masked whatever the spelling
            authSource=database_name,
            authMechanism="SCRAM-SHA-256",
        )
        run_turn(factory.create_session_manager("s1"), "hello")  # authenticated for real
        shown = repr([factory.get_connection_stats(), stats()])
    finally:
        database.command("dropUser", "reader")
    assert secret not in shown
    assert "'Password': '***'" in shown
    assert "'username': 'reader'" in shown


@pytest.mark.parametrize("option", ["tlsCAFile=/nonexistent/ca.pem", "tlsCAFile={junk}"])
def test_a_tls_file_that_cannot_be_used_is_an_invalid_argument(option: str, tmp_path: Path) -> None:
    junk = tmp_path / "junk.pem"
    junk.write_text("not a certificate\n")
    uri = f"mongodb://app:pa55word@127.0.0.1:1/?tls=true&{option.format(junk=junk)}"
    with pytest.raises(InvalidArgumentError) as refused:
        create_mongodb_session_manager("s1", connection_string=uri, database_name="any")
    assert "pa55word" not in str(refused.value)


def test_a_tls_file_option_that_cannot_be_used_is_an_invalid_argument(mongodb_uri: str) -> None:
    with pytest.raises(InvalidArgumentError) as refused:
        create_mongodb_session_manager(
            "s1", connection_string=mongodb_uri, database_name="any", tls=True, tlsCAFile="/nonexistent/ca.pem"
        )
    assert refused.value.field == "client options"
    assert "/nonexistent/ca.pem" in str(refused.value)


def test_credential_bearing_options_are_masked() -> None:
    settings = {
        "password": "a",
        "authMechanismProperties": {"AWS_SESSION_TOKEN": "b"},
        "tlsCertificateKeyFilePassword": "c",
        "maxPoolSize": 5,
    }
    assert masked_settings(settings) == {
        "password": "***",
        "authMechanismProperties": "***",
        "tlsCertificateKeyFilePassword": "***",
        "maxPoolSize": 5,
    }


def test_a_client_nobody_holds_waits_for_the_next_user_then_closes(
    mongodb_uri: str, database_name: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(MongoDBConnectionPool, "idle_close_seconds", 0.2)
    first = create_mongodb_session_manager("s1", connection_string=mongodb_uri, database_name=database_name)
    client = first.repository.client
    first.close()
    assert stats(client)["users"] == 0
    second = create_mongodb_session_manager("s1", connection_string=mongodb_uri, database_name=database_name)
    assert second.repository.client is client  # the next conversation found it open
    assert run_turn(second, "hello") == "hi"
    second.close()

    closed = threading.Event()
    really_close = client.close

    def close_and_tell() -> None:
        really_close()
        closed.set()

    assert MongoDBConnectionPool.acquire(mongodb_uri) is client
    client.close = close_and_tell  # type: ignore[method-assign]
    MongoDBConnectionPool.release(client)
    assert closed.wait(timeout=30)  # closed by its idle timer, nobody having taken it meanwhile
    assert not MongoDBConnectionPool.is_open()
