"""Values over 16 MiB go to GridFS transparently, and no chunk outlives its value: not on overwrite,
not on delete, not on expiry, and not when the process is SIGKILLed halfway through.

The SIGKILL tests run ``storage_crash_child.py`` as a real child process that freezes right after
a chosen command succeeded (it prints ``ready``), kill it there, and check what is stored: the
value is the old or the new one, never a broken one, and the next write or delete of the key (or
``sweep`` for an upload cut short) leaves no file and no chunk that no key refers to.
"""

from __future__ import annotations

import asyncio
import datetime
import os
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from pymongo import MongoClient
from pymongo.database import Database
from strands.types.exceptions import StorageError

from mongodb_session_manager import MongoDBStorage
from mongodb_session_manager._storage_gridfs import CHUNK_SIZE

from command_counter import CommandCounter
from storage_crash_child import value_of
from storage_support import bucket_state, fail_point

Client = MongoClient[dict[str, Any]]
Db = Database[dict[str, Any]]

MiB = 1024 * 1024
LARGE = 17 * MiB
"""Over MongoDB's 16 MiB document limit: 69 chunks of 255 KiB, sent in 3 inserts of up to 32."""
CHILD = Path(__file__).resolve().parent / "storage_crash_child.py"


@pytest.fixture
def storage(mongo_client: Client, database_name: str) -> MongoDBStorage:
    return MongoDBStorage(client=mongo_client, database_name=database_name)


async def test_a_value_over_16_mib_goes_to_gridfs_and_round_trips(storage: MongoDBStorage, mongo_db: Db) -> None:
    data = value_of(LARGE)
    await storage.write("snapshots/with-images.json", data)

    assert await storage.read("snapshots/with-images.json") == data
    assert await storage.list("snapshots/") == ["snapshots/with-images.json"]
    document = mongo_db["storage"].find_one({"_id": "snapshots/with-images.json"})
    assert document is not None
    assert "value" not in document
    assert document["size"] == LARGE
    assert document["file"]["length"] == LARGE
    files = list(mongo_db["storage.gridfs.files"].find())
    assert [(f["_id"], f["filename"], f["length"], f["chunkSize"]) for f in files] == [
        (document["file"]["id"], "snapshots/with-images.json", LARGE, CHUNK_SIZE)
    ]
    chunks = list(mongo_db["storage.gridfs.chunks"].find({}, {"n": 1, "files_id": 1}).sort("n", 1))
    assert [c["n"] for c in chunks] == list(range(69))
    assert bucket_state(mongo_db).clean


async def test_a_value_just_under_the_limit_stays_inline(storage: MongoDBStorage, mongo_db: Db) -> None:
    data = value_of(15 * MiB)
    await storage.write("inline", data)
    assert await storage.read("inline") == data
    document = mongo_db["storage"].find_one({"_id": "inline"}, {"value": 1})
    assert document is not None
    assert len(document["value"]) == 15 * MiB
    assert "storage.gridfs.files" not in mongo_db.list_collection_names()


async def test_a_large_value_compressed_below_the_limit_stays_inline(
    mongo_client: Client, database_name: str, mongo_db: Db
) -> None:
    storage = MongoDBStorage(client=mongo_client, database_name=database_name, compress=True)
    data = b'{"role": "tool", "text": "the same long tool result, over and over"}\n' * (40 * MiB // 68)
    await storage.write("big-but-repetitive", data)
    assert await storage.read("big-but-repetitive") == data
    document = mongo_db["storage"].find_one({"_id": "big-but-repetitive"}, {"value": 1, "encoding": 1})
    assert document is not None
    assert document["encoding"] == "zlib"
    assert len(document["value"]) < MiB


async def test_overwrites_and_deletes_of_large_values_leave_no_chunks(storage: MongoDBStorage, mongo_db: Db) -> None:
    sequence: list[tuple[str, bytes | None]] = [
        ("write", value_of(LARGE)),
        ("write", value_of(LARGE + 1)),  # large over large
        ("write", b"small now"),  # small over large
        ("write", value_of(LARGE + 2)),  # large over small
        ("delete", None),
        ("write", value_of(LARGE + 3)),  # large over a tombstone
        ("delete", None),
    ]
    for operation, data in sequence:
        if data is None:
            await storage.delete("k")
        else:
            await storage.write("k", data)
        assert await storage.read("k") == data
        state = bucket_state(mongo_db)
        assert state.clean, (operation, state)
        assert len(state.files) == (1 if data is not None and len(data) > 16 * MiB else 0)


async def test_large_value_commands(counting_client: tuple[Client, CommandCounter], database_name: str) -> None:
    client, counter = counting_client
    storage = MongoDBStorage(client=client, database_name=database_name)
    await storage.write("k", value_of(LARGE))  # creates the indexes
    counter.reset()
    await storage.write("k", value_of(LARGE + 1))
    assert counter.names() == ["insert", "insert", "insert", "insert", "findAndModify", "delete", "delete", "update"]
    counter.reset()
    assert await storage.read("k") == value_of(LARGE + 1)
    assert counter.names() == ["find", "find", "getMore"]  # the key's document, then its chunks (replies <= 16 MiB)
    counter.reset()
    await storage.delete("k")
    assert counter.names() == ["findAndModify", "delete", "delete", "update"]


async def test_reads_during_overwrites_see_the_old_or_the_new_value(storage: MongoDBStorage, mongo_db: Db) -> None:
    values = [value_of(LARGE + n) for n in range(2)]
    await storage.write("k", values[0])

    async def overwrite() -> None:
        for n in range(1, 5):
            await storage.write("k", values[n % 2])

    async def read() -> list[bool]:
        return [await storage.read("k") in values for _ in range(6)]

    _, seen = await asyncio.gather(overwrite(), read())
    assert all(seen)
    assert await storage.read("k") == values[0]
    assert bucket_state(mongo_db).clean


async def test_concurrent_large_writes_to_one_key_keep_one_whole_value(storage: MongoDBStorage, mongo_db: Db) -> None:
    """(On SecantusDB a concurrent upsert sometimes returns no document; the write then reads what it retired.)"""
    values = [value_of(LARGE + n) for n in range(3)]
    await asyncio.gather(*(storage.write("k", value) for value in values))
    assert await storage.read("k") in values
    assert bucket_state(mongo_db).clean


async def test_sweep_removes_an_upload_cut_short_once_old_enough(
    mongo_client: Client, database_name: str, mongo_db: Db
) -> None:
    acme = MongoDBStorage(client=mongo_client, database_name=database_name, prefix="acme")
    other = MongoDBStorage(client=mongo_client, database_name=database_name, prefix="other")
    await acme.write("kept", value_of(LARGE))
    for storage in (acme, other):  # what a writer killed mid-upload leaves: a file no key refers to
        storage._values.large.ensure_indexes()
        storage._values.large.upload(storage.prefix + "abandoned", value_of(MiB), None)
    assert len(bucket_state(mongo_db).orphans) == 2

    assert await acme.sweep() == 0  # younger than an hour: it could be a write still in progress
    assert await acme.sweep(older_than=datetime.timedelta(0)) == 1
    assert len(bucket_state(mongo_db).orphans) == 1  # the other tenant's is not acme's to sweep
    assert await other.sweep(older_than=0) == 1
    assert bucket_state(mongo_db).clean
    assert await acme.read("kept") == value_of(LARGE)


async def test_a_refused_commit_leaves_no_file_and_a_failed_cleanup_is_finished_later(
    mongodb_uri: str, database_name: str, caplog: pytest.LogCaptureFixture
) -> None:
    app = f"storage-large-{uuid.uuid4().hex[:8]}"
    client: Client = MongoClient(mongodb_uri, serverSelectionTimeoutMS=5000, appName=app, retryWrites=False)
    try:
        db = client[database_name]
        storage = MongoDBStorage(client=client, database_name=database_name)
        await storage.write("k", value_of(LARGE))
        refusing = fail_point(client, {"failCommands": ["findAndModify"], "errorCode": 2, "appName": app})
        with refusing, pytest.raises(StorageError):
            await storage.write("k", value_of(LARGE + 1))
        assert await storage.read("k") == value_of(LARGE)
        assert bucket_state(db).clean  # the refused write's file was removed again

        with fail_point(client, {"failCommands": ["delete"], "errorCode": 2, "appName": app}):
            await storage.write("k", value_of(LARGE + 2))  # committed; removing the old file fails
        assert "old GridFS file stays until the next write or delete" in caplog.text
        assert await storage.read("k") == value_of(LARGE + 2)
        assert len(bucket_state(db).retired) == 1
        await storage.write("k", b"small")
        assert bucket_state(db).clean
    finally:
        client.close()


# -- SIGKILL ---------------------------------------------------------------------------------------


def kill_child_at(uri: str, database: str, key: str, size: int, operation: str, point: str) -> None:
    """Run the child until it reports it is frozen at ``point``, then SIGKILL it."""
    child = subprocess.Popen(
        [sys.executable, str(CHILD), uri, database, key, str(size), operation, point],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert child.stdout is not None
        line = child.stdout.readline().strip()
        if line != "ready":
            child.kill()
            pytest.fail(f"the child did not reach {point!r}: {line!r}\n{child.communicate()[1]}")
        os.kill(child.pid, signal.SIGKILL)
        assert child.wait(timeout=30) == -signal.SIGKILL
    finally:
        if child.poll() is None:
            child.kill()
            child.wait()


@pytest.mark.parametrize(
    ("operation", "point", "value_after", "cleaned_by"),
    [
        ("write", "upload", "old", "sweep"),
        ("write", "swap", "new", "delete"),
        ("write", "cleanup", "new", "delete"),
        ("delete", "swap", None, "write"),
        ("delete", "cleanup", None, "write"),
    ],
)
async def test_sigkill_halfway_through_a_large_overwrite_or_delete(
    mongodb_uri: str,
    storage: MongoDBStorage,
    database_name: str,
    mongo_db: Db,
    operation: str,
    point: str,
    value_after: str | None,
    cleaned_by: str,
) -> None:
    old, new = value_of(LARGE), value_of(LARGE + 1)
    await storage.write("k", old)
    old_file = bucket_state(mongo_db).referenced

    kill_child_at(mongodb_uri, database_name, "k", LARGE + 1, operation, point)

    assert await storage.read("k") == {"old": old, "new": new, None: None}[value_after]
    state = bucket_state(mongo_db)
    if point == "upload":  # a half-written file nobody refers to; the old value is intact
        (orphan,) = state.orphans
        assert 0 < mongo_db["storage.gridfs.chunks"].count_documents({"files_id": orphan}) < 69
        assert state.referenced == old_file
    else:  # the old file is listed as retired on the key's document (or tombstone)
        assert state.retired == old_file
        assert state.orphans == old_file
        assert (old_file <= state.chunk_owners) == (point == "swap")
        tombstone = mongo_db["storage"].find_one({"_id": "k"})
        assert tombstone is not None
        assert "expires_at" not in tombstone  # the TTL monitor cannot drop it while it lists retired files

    if cleaned_by == "sweep":
        assert await storage.sweep() == 0
        assert await storage.sweep(older_than=0) == 1
    elif cleaned_by == "delete":
        await storage.delete("k")
    else:
        await storage.write("k", b"small")
    assert bucket_state(mongo_db).clean
    assert await storage.read("k") == {"sweep": old, "delete": None, "write": b"small"}[cleaned_by]


# -- expiry ------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def fast_ttl_server() -> Iterator[str]:
    """A SecantusDB of its own whose TTL monitor runs every second (mongod's runs every 60 s)."""
    from secantus import SecantusDBServer  # type: ignore[import-untyped]

    server = SecantusDBServer(host="127.0.0.1", port=0, storage_path=":memory:", ttl_sweep_seconds=1)
    server.start()
    try:
        yield server.uri
    finally:
        server.stop()


async def test_the_ttl_monitor_removes_expired_large_values_with_their_chunks(fast_ttl_server: str) -> None:
    client: Client = MongoClient(fast_ttl_server, serverSelectionTimeoutMS=5000)
    try:
        db = client["ttl"]
        expiring = MongoDBStorage(client=client, database_name="ttl", expire_after=5)
        lasting = MongoDBStorage(client=client, database_name="ttl")
        await lasting.write("kept", value_of(LARGE + 1))
        await lasting.write("deleted", b"y")
        await lasting.delete("deleted")  # leaves a tombstone for the TTL monitor
        await expiring.write("small", b"x")
        await expiring.write("large", value_of(LARGE))
        assert len(bucket_state(db).files) == 2
        large = db["storage"].find_one({"_id": "large"})
        assert large is not None
        assert db["storage.gridfs.chunks"].count_documents({"expires_at": large["expires_at"]}) == 69

        deadline = time.monotonic() + 30
        while db["storage"].count_documents({}) > 1 or len(bucket_state(db).files) > 1:
            assert time.monotonic() < deadline, "the TTL monitor did not remove the expired keys"
            await asyncio.sleep(0.2)

        assert [d["_id"] for d in db["storage"].find()] == ["kept"]
        assert bucket_state(db).clean
        assert await lasting.read("kept") == value_of(LARGE + 1)
    finally:
        client.close()
