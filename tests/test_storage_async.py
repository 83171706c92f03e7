"""MongoDBStorage never blocks an event loop and works from every loop Strands or an application runs.

Strands calls storage from sync code through ``strands._async.run_async`` (a fresh event loop in a
worker thread per call); applications call it from their own running loop. Both share one client.
"""

from __future__ import annotations

import asyncio
import uuid
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from pymongo import MongoClient, monitoring
from strands._async import run_async

from mongodb_session_manager import MongoDBStorage

from command_counter import CommandCounter
from storage_support import fail_point

Client = MongoClient[dict[str, Any]]

BLOCK_MS = 500


class ConnectionsCreated(monitoring.ConnectionPoolListener):
    """Counts the connections a client opens."""

    def __init__(self) -> None:
        self.created = 0

    def connection_created(self, event: monitoring.ConnectionCreatedEvent) -> None:
        self.created += 1

    def pool_created(self, event: Any) -> None: ...
    def pool_ready(self, event: Any) -> None: ...
    def pool_cleared(self, event: Any) -> None: ...
    def pool_closed(self, event: Any) -> None: ...
    def connection_ready(self, event: Any) -> None: ...
    def connection_closed(self, event: Any) -> None: ...
    def connection_check_out_started(self, event: Any) -> None: ...
    def connection_check_out_failed(self, event: Any) -> None: ...
    def connection_checked_out(self, event: Any) -> None: ...
    def connection_checked_in(self, event: Any) -> None: ...


async def test_a_read_the_server_holds_does_not_block_the_event_loop(mongodb_uri: str, database_name: str) -> None:
    """The server holds a ``find`` for 500 ms; meanwhile the loop keeps running and a write completes."""
    app = f"storage-async-{uuid.uuid4().hex[:8]}"
    counter = CommandCounter()
    client: Client = MongoClient(mongodb_uri, serverSelectionTimeoutMS=5000, appName=app, event_listeners=[counter])
    try:
        storage = MongoDBStorage(client=client, database_name=database_name)
        await storage.write("held", b"read while held")
        finished: list[str] = []
        ticks_while_held = 0

        async def read_held() -> bytes | None:
            value = await storage.read("held")
            finished.append("read")
            return value

        async def write_meanwhile() -> None:
            nonlocal ticks_while_held
            while counter.count("find") == 0:  # the read has reached the server
                ticks_while_held += 1
                await asyncio.sleep(0.001)
            await storage.write("meanwhile", b"written while the read was held")
            finished.append("write")

        blocking = {"failCommands": ["find"], "blockConnection": True, "blockTimeMS": BLOCK_MS, "appName": app}
        with fail_point(client, blocking, mode={"times": 1}):
            counter.reset()
            value, _ = await asyncio.gather(read_held(), write_meanwhile())

        assert value == b"read while held"
        assert finished == ["write", "read"]
        assert ticks_while_held > 0
        assert await storage.read("meanwhile") == b"written while the read was held"
    finally:
        client.close()


def test_strands_run_async_from_sync_code_shares_one_client(mongodb_uri: str, database_name: str) -> None:
    """Each ``run_async`` call runs on a new event loop in a new thread; they all use one pool."""
    pool = ConnectionsCreated()
    client: Client = MongoClient(mongodb_uri, serverSelectionTimeoutMS=5000, event_listeners=[pool])
    try:
        storage = MongoDBStorage(client=client, database_name=database_name)
        for n in range(20):
            run_async(lambda n=n: storage.write(f"sync/{n}", str(n).encode()))  # type: ignore[misc]
        values = [run_async(lambda n=n: storage.read(f"sync/{n}")) for n in range(20)]  # type: ignore[misc]
        assert values == [str(n).encode() for n in range(20)]
        assert run_async(lambda: storage.list("sync/")) == sorted(f"sync/{n}" for n in range(20))
        assert pool.created == 1  # one connection, reused by every loop: not a client (or a pool) per loop
    finally:
        client.close()


async def test_a_running_loop_and_run_async_threads_at_once(mongo_client: Client, database_name: str) -> None:
    storage = MongoDBStorage(client=mongo_client, database_name=database_name)

    def sync_worker(worker: int) -> list[bytes | None]:
        for n in range(10):
            run_async(lambda n=n: storage.write(f"thread/{worker}/{n}", f"{worker}:{n}".encode()))  # type: ignore[misc]
        return [run_async(lambda n=n: storage.read(f"thread/{worker}/{n}")) for n in range(10)]  # type: ignore[misc]

    loop = asyncio.get_running_loop()
    with ThreadPoolExecutor(max_workers=3) as threads:
        in_threads = [loop.run_in_executor(threads, sync_worker, worker) for worker in range(3)]
        await asyncio.gather(*(storage.write(f"loop/{n}", str(n).encode()) for n in range(30)))
        from_loop = await asyncio.gather(*(storage.read(f"loop/{n}") for n in range(30)))
        thread_results = await asyncio.gather(*in_threads)

    assert from_loop == [str(n).encode() for n in range(30)]
    assert thread_results == [[f"{w}:{n}".encode() for n in range(10)] for w in range(3)]
    assert len(await storage.list("thread/")) == 30
