"""Retention: ``expire_after`` gives a session an ``expires_at`` that every write moves; expired is absent.

MongoDB's TTL monitor removes an expired session about once a minute, so until it runs every read,
list, count and resume treats the session as gone. In the split layout its messages become
unreadable at once, and ``cleanup`` removes them after the TTL monitor removed the session.
"""

import os
import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from pymongo import MongoClient
from pymongo.database import Database
from strands import Agent

from mongodb_session_manager import MongoDBSessionManager, MongoDBSessionManagerFactory, MongoDBSessionRepository
from mongodb_session_manager.cleanup import find_left_behind, remove_left_behind
from mongodb_session_manager.errors import InvalidArgumentError, SessionNotFoundError

from command_counter import CommandCounter
from helpers import texts
from scripted_model import ScriptedModel
from stored_sessions import MESSAGES, SESSIONS

Db = Database[dict[str, Any]]
Client = MongoClient[dict[str, Any]]
NewManager = Callable[..., MongoDBSessionManager]
HOUR = 3600.0


def expires_at(mongo_db: Db, session_id: str) -> datetime:
    document = mongo_db[SESSIONS].find_one({"_id": session_id})
    assert document is not None
    moment: datetime = document["expires_at"]
    return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment


def expire_now(mongo_db: Db, session_id: str) -> None:
    """Move the session's expiry into the past, as if its time had run out (the TTL monitor has not run)."""
    past = datetime.now(UTC) - timedelta(seconds=1)
    mongo_db[SESSIONS].update_one({"_id": session_id}, {"$set": {"expires_at": past}})


def test_every_turn_moves_the_expiry_at_no_extra_command(
    counting_client: tuple[Client, CommandCounter], database_name: str, layout: str, mongo_db: Db
) -> None:
    client, counter = counting_client
    MongoDBSessionRepository(client=client, database_name=database_name, layout=layout)  # indexes
    sent = {}
    for expire_after in (None, HOUR):
        manager = MongoDBSessionManager(
            f"s-{expire_after}", client=client, database_name=database_name, layout=layout, expire_after=expire_after
        )
        agent = Agent(model=ScriptedModel(["one", "two"]), session_manager=manager, callback_handler=None)
        agent("first")
        counter.reset()
        before = datetime.now(UTC) - timedelta(milliseconds=1)  # stored times are cut to the millisecond
        agent("second")
        sent[expire_after] = counter.names()
    assert sent[HOUR] == sent[None]
    assert timedelta(seconds=HOUR) <= expires_at(mongo_db, f"s-{HOUR}") - before < timedelta(seconds=HOUR + 60)
    assert "expires_at" not in (mongo_db[SESSIONS].find_one({"_id": "s-None"}) or {})


def test_a_manager_without_expire_after_keeps_the_sessions_own(new_manager: NewManager, mongo_db: Db) -> None:
    Agent(model=ScriptedModel(["a"]), session_manager=new_manager("s1", expire_after=HOUR), callback_handler=None)("q")
    mongo_db[SESSIONS].update_one({"_id": "s1"}, {"$set": {"expires_at": datetime.now(UTC) + timedelta(minutes=1)}})

    Agent(model=ScriptedModel(["b"]), session_manager=new_manager("s1"), callback_handler=None)("again")

    assert expires_at(mongo_db, "s1") - datetime.now(UTC) > timedelta(minutes=59)


def test_an_expired_session_is_absent_everywhere_before_the_ttl_monitor_runs(
    new_manager: NewManager, repository: MongoDBSessionRepository, mongo_db: Db, layout: str
) -> None:
    manager = new_manager("s1", expire_after=HOUR, user_id="alice")
    old = Agent(model=ScriptedModel.echo(), session_manager=manager, callback_handler=None)
    old("remember this")
    repository.update_metadata("s1", {"topic": "old"})
    expire_now(mongo_db, "s1")

    assert repository.read_session("s1") is None
    assert repository.read_agent("s1", "default") is None
    assert repository.list_sessions().sessions == []
    assert repository.count_sessions() == 0
    for call in (
        lambda: repository.get_metadata("s1"),
        lambda: repository.list_messages("s1", "default"),
        lambda: repository.get_metrics_summary("s1"),
        lambda: repository.set_title("s1", "x"),
        lambda: repository.delete_session("s1"),
    ):
        with pytest.raises(SessionNotFoundError):
            call()
    with pytest.raises(SessionNotFoundError):
        old("the old agent cannot write into it")
    # a new conversation under the same id starts afresh: the expired one is not resumed
    fresh = Agent(model=ScriptedModel.echo(), session_manager=new_manager("s1", user_id="alice"), callback_handler=None)
    assert fresh.messages == []
    fresh("new start")
    assert texts(fresh.messages) == ["new start", "echo: new start"]
    assert repository.count_sessions() == 1


@pytest.fixture(scope="module")
def sweeping_uri() -> Iterator[str]:
    """A server whose TTL monitor runs every half second (``$MONGODB_URI``'s runs about once a minute)."""
    if uri := os.environ.get("MONGODB_URI"):
        yield uri
        return
    from secantus import SecantusDBServer  # type: ignore[import-untyped]

    server = SecantusDBServer(host="127.0.0.1", port=0, storage_path=":memory:", ttl_sweep_seconds=0.5)
    server.start()
    try:
        yield server.uri
    finally:
        server.stop()


def wait_until(condition: Callable[[], bool], timeout: float = 180.0) -> bool:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.2)
    return True


@pytest.mark.parametrize("layout", ["embedded", "split"])
def test_nothing_of_an_expired_session_remains_after_the_ttl_monitor_and_one_cleanup(
    sweeping_uri: str, layout: str
) -> None:
    client: Client = MongoClient(sweeping_uri, serverSelectionTimeoutMS=5000)
    database = client[f"t_expiry_sweep_{layout}_{os.getpid()}"]
    try:
        kept = MongoDBSessionManager("kept", client=client, database_name=database.name, layout=layout)
        Agent(model=ScriptedModel.echo(), session_manager=kept, callback_handler=None)("stay")
        short = MongoDBSessionManager(
            "short", client=client, database_name=database.name, layout=layout, expire_after=1
        )
        Agent(model=ScriptedModel.echo(), session_manager=short, callback_handler=None)("go away")

        assert wait_until(lambda: database[SESSIONS].count_documents({"_id": "short"}) == 0)

        assert database[SESSIONS].count_documents({"_id": "kept"}) == 1
        if layout == "split":
            left = find_left_behind(database)
            assert left.message_count == 2
            assert remove_left_behind(database, left) == 2
            assert database[MESSAGES].count_documents({"session_id": "short"}) == 0
            assert database[MESSAGES].count_documents({"session_id": "kept"}) == 2
    finally:
        client.drop_database(database.name)
        client.close()


@pytest.mark.parametrize("expire_after", [0, -5, float("inf"), float("nan"), "1h", True, 10**12], ids=repr)
def test_expire_after_must_be_a_positive_duration(expire_after: Any, mongo_client: Client, database_name: str) -> None:
    with pytest.raises(InvalidArgumentError, match="expire_after"):
        MongoDBSessionRepository(client=mongo_client, database_name=database_name, expire_after=expire_after)
    with pytest.raises(InvalidArgumentError, match="expire_after"):
        MongoDBSessionManagerFactory(client=mongo_client, database_name=database_name, expire_after=expire_after)


def test_expire_after_takes_a_timedelta_and_the_factory_passes_it_on(
    mongo_client: Client, database_name: str, mongo_db: Db
) -> None:
    factory = MongoDBSessionManagerFactory(
        client=mongo_client, database_name=database_name, expire_after=timedelta(days=30)
    )
    Agent(model=ScriptedModel(["a"]), session_manager=factory.create_session_manager("month"), callback_handler=None)(
        "q"
    )
    short = factory.create_session_manager("day", expire_after=timedelta(days=1))
    Agent(model=ScriptedModel(["a"]), session_manager=short, callback_handler=None)("q")
    now = datetime.now(UTC)
    assert timedelta(days=29) < expires_at(mongo_db, "month") - now <= timedelta(days=30)
    assert timedelta(hours=23) < expires_at(mongo_db, "day") - now <= timedelta(days=1)
    assert mongo_db[SESSIONS].find_one({"_id": "day"})["expire_after_seconds"] == 86400  # type: ignore[index]
