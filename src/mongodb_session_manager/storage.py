"""``MongoDBStorage``: Strands' unified ``Storage`` protocol on MongoDB.

One document per key (``_id`` = the key) in one collection: snapshots of
``SnapshotSessionManager``, ``Agent(storage=...)``'s subsystems, the context offloader's tool
results and ``FileMemoryStore`` memories can all live in the database that already holds the
sessions. See :mod:`mongodb_session_manager._storage_documents` for the document shape and how
large values stay consistent across crashes.
"""

from __future__ import annotations

import asyncio
import builtins
import copy
import datetime
import logging
from collections.abc import Callable
from types import TracebackType
from typing import Any, Self, TypeVar

from bson.codec_options import CodecOptions
from pymongo import MongoClient
from pymongo.collection import Collection
from strands.storage.storage import _NAMESPACED, StorageSearchResult
from strands.types.exceptions import StorageError

from ._client import open_or_borrow
from ._storage_documents import StoredValues
from ._storage_keys import KeySpace
from ._storage_search import query_tokens
from .errors import InvalidArgumentError, excerpt
from .mongodb_connection_pool import MongoDBConnectionPool
from .validation import validate_duration, validate_expire_after

logger = logging.getLogger(__name__)

T = TypeVar("T")

_DETAIL_CHARS = 160
"""How much of the underlying error's first line a ``StorageError`` message repeats (all of it is chained)."""

DEFAULT_ORPHAN_AGE = datetime.timedelta(hours=1)
"""``sweep`` leaves alone a large-value upload younger than this: its writer may still be running."""


def _as_bytes(data: Any) -> bytes:
    if isinstance(data, bytes):
        return data
    if isinstance(data, bytearray | memoryview):
        return bytes(data)
    raise StorageError(f"Storage data must be bytes, not {type(data).__name__}")


class MongoDBStorage:
    """Strands' ``Storage`` protocol (``write``, ``read``, ``delete``, ``list``, ``search``) on MongoDB.

    Usable wherever Strands takes a storage::

        storage = MongoDBStorage("mongodb://localhost:27017", prefix="tenant-a")
        agent = Agent(storage=storage, session_manager=SnapshotSessionManager("s-1"))

    - **Keys** are normalised and refused exactly as Strands' own backends do (``StorageError``).
      ``prefix`` pins every operation under ``<prefix>/``: keys are read, written, listed, searched
      and deleted only there, whatever they contain. ``namespace(prefix)`` returns a view nested
      further, sharing the client.
    - **Costs**: ``read``, ``write`` (an upsert) and ``delete`` are one command each (a large value
      adds its GridFS commands); ``list`` is one
      ``find`` per 5,000 keys (an ``_id`` range, in code-point order); ``search`` is one
      ``aggregate`` that scores on the server and transfers keys and scores only (results carry
      ``data=None``; read the keys you need).
    - **Large values**: a value whose document would pass MongoDB's 16 MiB limit goes to GridFS
      (``<collection>.gridfs``) transparently; overwriting or deleting it leaves no chunks behind,
      even if the process dies halfway (see ``sweep`` for an upload cut short).
    - ``expire_after`` (seconds or a ``timedelta``): each key expires that long after its last
      write. Expired keys are absent at once; MongoDB's TTL monitor deletes them (and their GridFS
      chunks) within about a minute.
    - ``compress=True``: values of 1 KiB or more are stored zlib-compressed when that makes them
      smaller; ``read`` returns exactly the bytes written.
    - **Async**: every method runs the blocking pymongo call in a worker thread
      (``asyncio.to_thread``), so no event loop is blocked, whether it is the application's or the
      short-lived loop Strands opens per call. All callers share one ``MongoClient``.

    Failures are ``StorageError`` with the cause chained. A deleted key leaves a small tombstone
    (``{_id, expires_at}``) that the TTL monitor removes. Call ``close()`` (or use ``with``) to
    release a client opened from ``connection_string``; a ``client=`` passed in is borrowed and
    never closed.
    """

    def __init__(
        self,
        connection_string: str | None = None,
        database_name: str = "strands",
        collection_name: str = "storage",
        client: MongoClient[Any] | None = None,
        *,
        prefix: str | None = None,
        expire_after: float | datetime.timedelta | None = None,
        compress: bool = False,
        **client_kwargs: Any,
    ) -> None:
        """Connect with ``connection_string`` (or borrow ``client``); nothing is sent to the server yet."""
        space = KeySpace.under(prefix)
        seconds = validate_expire_after(expire_after)
        expiry = None if seconds is None else datetime.timedelta(seconds=seconds)
        if not isinstance(compress, bool):
            raise InvalidArgumentError("compress", compress, f"must be a bool, not {type(compress).__name__}")
        self._client, self._owns_client = self._open_client(connection_string, client, client_kwargs)
        self._space = space
        try:
            database = self._client.get_database(
                database_name, codec_options=CodecOptions(tz_aware=True, tzinfo=datetime.UTC)
            )
            self._values = StoredValues(database[collection_name], compress=compress, expire_after=expiry)
        except BaseException:
            self.close()
            raise

    @staticmethod
    def _open_client(
        connection_string: str | None, client: MongoClient[Any] | None, client_kwargs: dict[str, Any]
    ) -> tuple[MongoClient[Any], bool]:
        """The one place a client is obtained: ``(client, owned)``; an owned client is given back by ``close``.

        A connection string gets the process-wide client shared by every user of that deployment
        and those options (:class:`~mongodb_session_manager.MongoDBConnectionPool`).
        """
        return open_or_borrow(connection_string, client, client_kwargs, MongoDBConnectionPool.acquire)

    def _release_client(self) -> None:
        """The one place an owned client is let go of."""
        MongoDBConnectionPool.release(self._client)

    @property
    def client(self) -> MongoClient[Any]:
        """The ``MongoClient`` in use (owned or borrowed)."""
        return self._client

    @property
    def collection(self) -> Collection[dict[str, Any]]:
        """The collection holding one document per key (large values also use ``<collection>.gridfs``)."""
        return self._values.collection

    @property
    def prefix(self) -> str:
        """The key prefix every operation is pinned under (``""`` or ending with ``/``)."""
        return self._space.prefix

    # -- the Storage protocol --------------------------------------------------------------------

    async def write(self, key: str, data: bytes) -> None:
        """Store ``data`` under ``key``, replacing any previous value (one upsert)."""
        full_key = self._space.full_key(key)
        value = _as_bytes(data)
        await self._run(f"write {excerpt(key)}", self._values.write, full_key, value)

    async def read(self, key: str) -> bytes | None:
        """The bytes stored under ``key``, or ``None`` if there are none (or they expired)."""
        full_key = self._space.full_key(key)
        return await self._run(f"read {excerpt(key)}", self._values.read, full_key)

    async def delete(self, key: str) -> None:
        """Delete ``key``; nothing happens if it does not exist."""
        full_key = self._space.full_key(key)
        await self._run(f"delete {excerpt(key)}", self._values.delete, full_key)

    async def list(self, query: str = "") -> builtins.list[str]:
        """Keys starting with ``query`` (``""``: all), relative to this storage, sorted by code point."""
        bounds = self._space.bounds(query)
        keys = await self._run(f"list keys under {excerpt(query)}", self._values.list_keys, bounds)
        return [self._space.relative(key) for key in keys]

    async def search(self, query: str) -> builtins.list[StorageSearchResult]:
        """Keys ranked by how many distinct words of ``query`` their key or value contains, best first.

        Scores and order are those of Strands' ``KeywordSearchStrategy`` (the default ``search``
        of Strands' backends), computed on the server from tokens stored at write time. A value is
        found by its key and by the words of its first 64 KiB of UTF-8 text (a value that is not
        text, such as an image, by its key alone). Results carry ``data=None``.
        """
        if not isinstance(query, str):
            raise StorageError(f"Storage search query must be a str, not {type(query).__name__}")
        tokens = query_tokens(query)
        if not tokens:
            return []
        matches = await self._run(
            f"search for {excerpt(query)}",
            self._values.search,
            self._space.bounds(),
            tokens,
            self._space.depth,
        )
        return [StorageSearchResult(key=self._space.relative(key), score=score) for key, score in matches]

    def namespace(self, prefix: str) -> MongoDBStorage:
        """A view of this storage scoped to ``<prefix>/``, sharing its client (``close`` on it does nothing)."""
        view = copy.copy(self)
        view._space = self._space.scoped(prefix)
        view._owns_client = False
        view._namespaced = _NAMESPACED  # type: ignore[attr-defined]
        return view

    # -- maintenance and lifecycle ---------------------------------------------------------------

    async def sweep(self, *, older_than: float | datetime.timedelta = DEFAULT_ORPHAN_AGE) -> int:
        """Delete GridFS files of this storage's keys that no key uses any more; return how many.

        Overwrites and deletes clean up after themselves, and a crash after a value was replaced
        is cleaned up by the next write or delete of that key (this removes it too). What only
        this removes is a file that was never committed: its process died mid-upload, or the
        outcome of its commit was lost with the connection. It is removed once older than
        ``older_than`` (default one hour; a younger one may belong to a write still in progress).
        Run it periodically, or once after a crash with ``older_than=0`` when nothing is writing.
        """
        age = datetime.timedelta(seconds=validate_duration(older_than, "older_than", zero_allowed=True))
        return await self._run("sweep large values", self._values.sweep, self._space.bounds(), age)

    def close(self) -> None:
        """Give back the client if this storage opened it; a borrowed client is left open.

        ``close`` on a view does nothing; views use their root's client, so close the root last.
        """
        if self._owns_client:
            self._owns_client = False
            self._release_client()

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, traceback: TracebackType | None
    ) -> None:
        self.close()

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, traceback: TracebackType | None
    ) -> None:
        await asyncio.to_thread(self.close)

    # -- running pymongo off the event loop ------------------------------------------------------

    async def _run(self, action: str, operation: Callable[..., T], *args: Any) -> T:
        """Run ``operation(*args)`` in a worker thread; any failure becomes a ``StorageError`` naming ``action``."""
        try:
            return await asyncio.to_thread(self._call, operation, *args)
        except StorageError:
            raise
        except Exception as error:
            detail = str(error).splitlines()[0][:_DETAIL_CHARS] if str(error) else ""
            raise StorageError(
                f"MongoDBStorage could not {action}: {type(error).__name__} {detail}".rstrip()
            ) from error

    def _call(self, operation: Callable[..., T], *args: Any) -> T:
        self._values.ensure_indexes()
        return operation(*args)
