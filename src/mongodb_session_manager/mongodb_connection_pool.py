"""A process-wide, thread-safe, fork-safe ``MongoClient`` shared by every session manager.

MongoClient is itself a connection pool; creating one per request costs a TCP and TLS
handshake plus server discovery. This module keeps one per process:

* :meth:`MongoDBConnectionPool.acquire` opens it on first use and returns it; later calls with
  the **same** settings share it and count one more user. Calls with **different** settings
  raise :class:`ConnectionPoolConflictError`: the open client is never closed or replaced
  under the users that hold it.
* :meth:`MongoDBConnectionPool.release` drops one user; the last release closes the client.
  A release of a client that is no longer the shared one (it was force-closed with
  :meth:`MongoDBConnectionPool.close` and re-opened since) does nothing.
* After ``os.fork()`` the child drops the parent's client (sockets cannot be shared across
  processes) and lazily opens its own with the same settings.
"""

import logging
import os
import threading
from collections import Counter
from dataclasses import dataclass
from typing import Any

from pymongo import MongoClient
from pymongo.monitoring import (
    ConnectionCheckedInEvent,
    ConnectionCheckedOutEvent,
    ConnectionCheckOutFailedEvent,
    ConnectionCheckOutStartedEvent,
    ConnectionClosedEvent,
    ConnectionCreatedEvent,
    ConnectionPoolListener,
    ConnectionReadyEvent,
    PoolClearedEvent,
    PoolClosedEvent,
    PoolCreatedEvent,
    PoolReadyEvent,
)

from ._client import create_client
from .errors import ConnectionPoolConflictError

logger = logging.getLogger(__name__)

DEFAULT_POOL_SETTINGS: dict[str, Any] = {
    "maxPoolSize": 100,
    "minPoolSize": 0,
    "maxIdleTimeMS": 300_000,
    "waitQueueTimeoutMS": 10_000,
    "serverSelectionTimeoutMS": 5_000,
    "connectTimeoutMS": 5_000,
    "retryWrites": True,
}


SECRET_OPTIONS = frozenset({"password", "authmechanismproperties", "tlscertificatekeyfilepassword"})
"""Client options (lower-cased) whose values are credentials: never shown."""
MASK = "***"


def _canonical_names(settings: dict[str, Any]) -> dict[str, Any]:
    """Spell the default options as the defaults do (pymongo option names are case-insensitive)."""
    canonical = {name.lower(): name for name in DEFAULT_POOL_SETTINGS}
    return {canonical.get(name.lower(), name): value for name, value in settings.items()}


def _comparable(settings: dict[str, Any]) -> dict[str, Any]:
    """``settings`` keyed by lower-cased option name, as pymongo reads them."""
    return {name.lower(): value for name, value in settings.items()}


def masked_settings(settings: dict[str, Any]) -> dict[str, Any]:
    """``settings`` safe to show: credential-bearing values replaced by ``***``."""
    return {name: MASK if name.lower() in SECRET_OPTIONS else value for name, value in settings.items()}


class _PoolEventCounter(ConnectionPoolListener):
    """Counts pymongo connection-pool events, for :meth:`MongoDBConnectionPool.get_pool_stats`."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._counts: Counter[str] = Counter()

    def _count(self, name: str) -> None:
        with self._lock:
            self._counts[name] += 1

    def counts(self) -> Counter[str]:
        with self._lock:
            return self._counts.copy()

    def pool_created(self, event: PoolCreatedEvent) -> None:
        self._count("pools_created")

    def pool_ready(self, event: PoolReadyEvent) -> None:
        self._count("pools_ready")

    def pool_cleared(self, event: PoolClearedEvent) -> None:
        self._count("pools_cleared")

    def pool_closed(self, event: PoolClosedEvent) -> None:
        self._count("pools_closed")

    def connection_created(self, event: ConnectionCreatedEvent) -> None:
        self._count("created")

    def connection_ready(self, event: ConnectionReadyEvent) -> None:
        self._count("ready")

    def connection_closed(self, event: ConnectionClosedEvent) -> None:
        self._count("closed")

    def connection_check_out_started(self, event: ConnectionCheckOutStartedEvent) -> None:
        self._count("check_out_started")

    def connection_check_out_failed(self, event: ConnectionCheckOutFailedEvent) -> None:
        self._count("check_out_failed")

    def connection_checked_out(self, event: ConnectionCheckedOutEvent) -> None:
        self._count("checked_out")

    def connection_checked_in(self, event: ConnectionCheckedInEvent) -> None:
        self._count("checked_in")


@dataclass
class _SharedClient:
    connection_string: str
    settings: dict[str, Any]
    acquired: MongoClient[Any]
    """The client first opened; it still identifies its acquirers in a forked child."""
    events: _PoolEventCounter
    users: int = 1
    client: MongoClient[Any] | None = None
    """The client in use in this process; None in a forked child until it is first needed."""

    @classmethod
    def open(cls, connection_string: str, settings: dict[str, Any]) -> "_SharedClient":
        events = _PoolEventCounter()
        client = _open_client(connection_string, settings, events)
        return cls(connection_string, settings, acquired=client, events=events, client=client)

    def handed_out(self, client: MongoClient[Any]) -> bool:
        """Whether ``client`` came from this shared client's :meth:`MongoDBConnectionPool.acquire`."""
        return client is self.acquired or client is self.client

    def current_client(self) -> MongoClient[Any]:
        if self.client is None:
            self.client = _open_client(self.connection_string, self.settings, self.events)
        return self.client


def _open_client(connection_string: str, settings: dict[str, Any], events: _PoolEventCounter) -> MongoClient[Any]:
    """Open a client with ``settings``, the library's pool-event counter added to any listeners given."""
    listeners = [events, *settings.get("event_listeners", ())]
    options = {name: value for name, value in settings.items() if name != "event_listeners"}
    return create_client(connection_string, event_listeners=listeners, **options)


class MongoDBConnectionPool:
    """The process-wide shared ``MongoClient`` (all methods are class methods; never instantiate)."""

    _lock = threading.Lock()
    _shared: _SharedClient | None = None

    def __init__(self) -> None:
        """Refuse instantiation: the pool is a class-level singleton."""
        raise TypeError("MongoDBConnectionPool is a process-wide singleton; use its class methods")

    @classmethod
    def acquire(cls, connection_string: str, **settings: Any) -> MongoClient[Any]:
        """Return the shared client, opening it with ``settings`` (pool sizes, timeouts) on first use.

        Raises :class:`ConnectionPoolConflictError` if it is already open with other settings.
        """
        wanted = {**DEFAULT_POOL_SETTINGS, **_canonical_names(settings)}
        with cls._lock:
            shared = cls._shared
            if shared is None:
                cls._shared = _SharedClient.open(connection_string, wanted)
                logger.info("opened shared MongoDB client (maxPoolSize=%s)", wanted["maxPoolSize"])
                return cls._shared.acquired
            if (shared.connection_string, _comparable(shared.settings)) != (connection_string, _comparable(wanted)):
                raise ConnectionPoolConflictError(
                    "the shared MongoDB client is already open with other settings; release it everywhere "
                    "(or call MongoDBConnectionPool.close()) before opening it with new ones"
                )
            shared.users += 1
            return shared.current_client()

    @classmethod
    def release(cls, client: MongoClient[Any]) -> None:
        """Drop one user of ``client`` (as returned by :meth:`acquire`); the last one closes it.

        A no-op when ``client`` is not the shared client any more (or none is open).
        """
        with cls._lock:
            shared = cls._shared
            if shared is None or not shared.handed_out(client):
                return
            shared.users -= 1
            if shared.users > 0:
                return
            cls._shared = None
        cls._close(shared)

    @classmethod
    def close(cls) -> None:
        """Close the shared client now, whatever its users (for process shutdown and tests)."""
        with cls._lock:
            shared, cls._shared = cls._shared, None
        if shared is not None:
            if shared.users > 0:
                logger.warning("closing the shared MongoDB client while %d user(s) still hold it", shared.users)
            cls._close(shared)

    @classmethod
    def get_client(cls) -> MongoClient[Any] | None:
        """The shared client, or None if it is not open (a forked child gets its own here)."""
        with cls._lock:
            return cls._shared.current_client() if cls._shared is not None else None

    @classmethod
    def client_in_this_process(cls, acquired: MongoClient[Any]) -> MongoClient[Any] | None:
        """The client to use now for one returned by :meth:`acquire` (after a fork, the child's own).

        None if ``acquired`` is no longer the shared client (it was released or force-closed).
        """
        with cls._lock:
            shared = cls._shared
            if shared is None or not shared.handed_out(acquired):
                return None
            return shared.current_client()

    @classmethod
    def is_open(cls) -> bool:
        """Whether the shared client is open."""
        with cls._lock:
            return cls._shared is not None

    @classmethod
    def get_pool_stats(cls) -> dict[str, Any]:
        """Connection figures from pymongo's pool events since the client was opened in this process."""
        with cls._lock:
            shared = cls._shared
            if shared is None:
                return {"open": False}
            counts = shared.events.counts()
            settings = masked_settings(shared.settings)
            users = shared.users
        open_connections = counts["created"] - counts["closed"]
        in_use = counts["checked_out"] - counts["checked_in"]
        return {
            "open": True,
            "users": users,
            "settings": settings,
            "connections": {
                "open": open_connections,
                "in_use": in_use,
                "idle": open_connections - in_use,
                "created": counts["created"],
                "closed": counts["closed"],
            },
            "checkouts": {
                "total": counts["checked_out"],
                "failed": counts["check_out_failed"],
                "waiting": counts["check_out_started"] - counts["checked_out"] - counts["check_out_failed"],
            },
            "pool_clears": counts["pools_cleared"],
        }

    @staticmethod
    def _close(shared: _SharedClient) -> None:
        if shared.client is not None:
            shared.client.close()
        logger.info("closed shared MongoDB client")

    @classmethod
    def _after_fork_in_child(cls) -> None:
        """Give the child a fresh lock and forget the parent's client (it opens its own on use)."""
        cls._lock = threading.Lock()
        if cls._shared is not None:
            cls._shared.client = None
            cls._shared.events = _PoolEventCounter()


os.register_at_fork(after_in_child=MongoDBConnectionPool._after_fork_in_child)
