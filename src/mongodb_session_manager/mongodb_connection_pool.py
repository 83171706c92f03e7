"""Process-wide, thread-safe, fork-safe MongoClients shared by everything this library opens.

A MongoClient is itself a connection pool; opening one per conversation costs a TCP and TLS
handshake plus server discovery. This module keeps one client per deployment and options in a
process, however many managers, repositories, factories and storages ask for it:

* :meth:`MongoDBConnectionPool.acquire` returns the shared client for a connection string and
  options, opening it on first use; each call counts one more user. Two requests share a client
  when they name the same deployment, credentials and options, compared as pymongo reads them
  (option names case-insensitive, URI options and keyword options alike, see
  :mod:`._connection_key`). Requests that differ get a client of their own, shared in turn.
* :meth:`MongoDBConnectionPool.release` drops one user. A client nobody holds stays open for
  :attr:`MongoDBConnectionPool.idle_close_seconds` (default 30 s), so that the next conversation
  of a process that creates one manager per conversation finds it ready, and is closed once it has
  been unused that long. A client is never closed or replaced while users hold it (only
  :meth:`MongoDBConnectionPool.close`, for shutdown and tests, closes everything at once).
* After ``os.fork()`` the child drops the parent's clients (sockets cannot be shared across
  processes) and lazily opens its own with the same settings.

Every client gets the library's defaults (:data:`DEFAULT_POOL_SETTINGS`) unless given otherwise.
"""

import logging
import os
import threading
from collections.abc import Hashable
from dataclasses import dataclass
from typing import Any

from pymongo import MongoClient

from ._client import create_checked_client
from ._connection_key import connection_key, masked_settings, uri_option_names
from ._pool_events import PoolEventCounter

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


def _with_defaults(connection_string: str, settings: dict[str, Any]) -> dict[str, Any]:
    """``settings`` plus the defaults neither they nor the URI set, spelt as the defaults spell them."""
    canonical = {name.lower(): name for name in DEFAULT_POOL_SETTINGS}
    given = {canonical.get(name.lower(), name): value for name, value in settings.items()}
    in_uri = uri_option_names(connection_string)
    defaults = {name: value for name, value in DEFAULT_POOL_SETTINGS.items() if name.lower() not in in_uri}
    return {**defaults, **given}


@dataclass
class _SharedClient:
    connection_string: str
    settings: dict[str, Any]
    acquired: MongoClient[Any]
    """The client first opened; it still identifies its acquirers in a forked child."""
    events: PoolEventCounter
    users: int = 1
    client: MongoClient[Any] | None = None
    """The client in use in this process; None in a forked child until it is first needed."""
    idle_timer: threading.Timer | None = None
    """Closes the client once nobody has held it for ``idle_close_seconds``."""

    @classmethod
    def open(cls, connection_string: str, settings: dict[str, Any]) -> "_SharedClient":
        events = PoolEventCounter()
        client = _open_client(connection_string, settings, events)
        return cls(connection_string, settings, acquired=client, events=events, client=client)

    def handed_out(self, client: MongoClient[Any]) -> bool:
        """Whether ``client`` came from this shared client's :meth:`MongoDBConnectionPool.acquire`."""
        return client is self.acquired or client is self.client

    def current_client(self) -> MongoClient[Any]:
        if self.client is None:
            self.client = _open_client(self.connection_string, self.settings, self.events)
        return self.client

    def stats(self) -> dict[str, Any]:
        counts = self.events.counts()
        open_connections = counts["created"] - counts["closed"]
        in_use = counts["checked_out"] - counts["checked_in"]
        return {
            "open": True,
            "users": self.users,
            "settings": masked_settings(self.settings),
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


def _open_client(connection_string: str, settings: dict[str, Any], events: PoolEventCounter) -> MongoClient[Any]:
    """Open a client with ``settings``, the library's pool-event counter added to any listeners given."""
    listeners = [events, *settings.get("event_listeners", ())]
    options = {name: value for name, value in settings.items() if name != "event_listeners"}
    return create_checked_client(connection_string, event_listeners=listeners, **options)


class MongoDBConnectionPool:
    """The process-wide shared MongoClients (all methods are class methods; never instantiate)."""

    idle_close_seconds: float = 30.0
    """How long a client nobody holds stays open for the next user (0: closed by the last release)."""
    _lock = threading.Lock()
    _shared: dict[Hashable, _SharedClient] = {}  # noqa: RUF012 - class-level registry, guarded by _lock

    def __init__(self) -> None:
        """Refuse instantiation: the pool is a class-level singleton."""
        raise TypeError("MongoDBConnectionPool is a process-wide singleton; use its class methods")

    @classmethod
    def acquire(cls, connection_string: str, **settings: Any) -> MongoClient[Any]:
        """Return the shared client for ``connection_string`` and ``settings``, opening it on first use.

        Requests for the same deployment with the same options (pool sizes, timeouts, ...) share
        one client; each call counts one user, to be given back with :meth:`release`.
        """
        wanted = _with_defaults(connection_string, settings)
        key = connection_key(connection_string, wanted)
        with cls._lock:
            shared = cls._shared.get(key)
            if shared is None:
                shared = cls._shared[key] = _SharedClient.open(connection_string, wanted)
                logger.info("opened a shared MongoDB client (%d open)", len(cls._shared))
                return shared.acquired
            shared.users += 1
            if shared.idle_timer is not None:
                shared.idle_timer.cancel()
                shared.idle_timer = None
            return shared.current_client()

    @classmethod
    def release(cls, client: MongoClient[Any]) -> None:
        """Drop one user of ``client`` (as returned by :meth:`acquire`).

        Once nobody holds it, it is closed after :attr:`idle_close_seconds` unless acquired again
        meanwhile. A no-op when ``client`` is not a shared client any more (or none is open).
        """
        with cls._lock:
            key, shared = cls._find(client)
            if shared is None or shared.users == 0:
                return
            shared.users -= 1
            if shared.users > 0:
                return
            if cls.idle_close_seconds > 0:
                shared.idle_timer = threading.Timer(cls.idle_close_seconds, cls._close_if_idle, (key, shared))
                shared.idle_timer.daemon = True
                shared.idle_timer.start()
                return
            del cls._shared[key]
        cls._close(shared)

    @classmethod
    def _close_if_idle(cls, key: Hashable, shared: _SharedClient) -> None:
        with cls._lock:
            if cls._shared.get(key) is not shared or shared.users > 0:
                return
            del cls._shared[key]
        cls._close(shared)

    @classmethod
    def close(cls) -> None:
        """Close every shared client now, whatever its users (for process shutdown and tests)."""
        with cls._lock:
            everything, cls._shared = list(cls._shared.values()), {}
        for shared in everything:
            if shared.users > 0:
                logger.warning("closing a shared MongoDB client while %d user(s) still hold it", shared.users)
            cls._close(shared)

    @classmethod
    def get_client(cls) -> MongoClient[Any] | None:
        """The shared client opened first that is still open, or None (a forked child gets its own here)."""
        with cls._lock:
            first = next(iter(cls._shared.values()), None)
            return first.current_client() if first is not None else None

    @classmethod
    def client_in_this_process(cls, acquired: MongoClient[Any]) -> MongoClient[Any] | None:
        """The client to use now for one returned by :meth:`acquire` (after a fork, the child's own).

        None if ``acquired`` is no longer a shared client (it was released or force-closed).
        """
        with cls._lock:
            _, shared = cls._find(acquired)
            return shared.current_client() if shared is not None else None

    @classmethod
    def is_open(cls) -> bool:
        """Whether any shared client is open."""
        with cls._lock:
            return bool(cls._shared)

    @classmethod
    def open_clients(cls) -> int:
        """How many shared clients are open."""
        with cls._lock:
            return len(cls._shared)

    @classmethod
    def get_pool_stats(cls, client: MongoClient[Any] | None = None) -> dict[str, Any]:
        """Connection figures of the shared ``client`` (default: the one opened first), from pymongo's pool events.

        Settings are shown with credentials masked. ``{"open": False}`` when there is no such client.
        """
        with cls._lock:
            if client is None:
                shared = next(iter(cls._shared.values()), None)
            else:
                _, shared = cls._find(client)
            return shared.stats() if shared is not None else {"open": False}

    @classmethod
    def _find(cls, client: MongoClient[Any]) -> tuple[Hashable, _SharedClient | None]:
        for key, shared in cls._shared.items():
            if shared.handed_out(client):
                return key, shared
        return None, None

    @staticmethod
    def _close(shared: _SharedClient) -> None:
        if shared.idle_timer is not None:
            shared.idle_timer.cancel()
        if shared.client is not None:
            shared.client.close()
        logger.info("closed a shared MongoDB client")

    @classmethod
    def _after_fork_in_child(cls) -> None:
        """Give the child a fresh lock and forget the parent's clients (it opens its own on use).

        Clients nobody held are dropped: their idle timers did not survive the fork.
        """
        cls._lock = threading.Lock()
        cls._shared = {key: shared for key, shared in cls._shared.items() if shared.users > 0}
        for shared in cls._shared.values():
            shared.client = None
            shared.idle_timer = None
            shared.events = PoolEventCounter()


os.register_at_fork(after_in_child=MongoDBConnectionPool._after_fork_in_child)
