"""Index creation, done once per (client, database, collection) in a process.

The bookkeeping lock is never held across a network round trip, and a forked child starts
with a fresh one. Two threads that race on the very first use may both send ``createIndexes``,
which the server treats as a no-op for indexes that already exist.
"""

import logging
import os
import threading
import weakref
from collections.abc import Sequence
from typing import Any

from pymongo import ASCENDING, IndexModel, MongoClient
from pymongo.collection import Collection

logger = logging.getLogger(__name__)

SESSION_INDEXES = (
    IndexModel([("created_at", ASCENDING)], name="created_at_1"),
    IndexModel([("updated_at", ASCENDING)], name="updated_at_1"),
)

_lock = threading.Lock()
_done: dict[int, set[tuple[str, str]]] = {}
"""Collections indexed so far, keyed by ``id()`` of the client (forgotten when it is collected)."""


def _forget(client_id: int) -> None:
    with _lock:
        _done.pop(client_id, None)


def _remember(client: MongoClient[Any], key: tuple[str, str]) -> None:
    with _lock:
        if id(client) not in _done:
            _done[id(client)] = set()
            weakref.finalize(client, _forget, id(client))
        _done[id(client)].add(key)


def ensure_indexes(collection: Collection[Any], indexes: Sequence[IndexModel]) -> None:
    """Create ``indexes`` with one command, unless this process already did for this collection and client."""
    client = collection.database.client
    key = (collection.database.name, collection.name)
    with _lock:
        if key in _done.get(id(client), ()):
            return
    collection.create_indexes(list(indexes))
    _remember(client, key)
    logger.debug("created indexes on %s.%s", *key)


def ensure_session_indexes(collection: Collection[Any]) -> None:
    """Create the session collection's indexes (once per process and client)."""
    ensure_indexes(collection, SESSION_INDEXES)


def _reset_after_fork() -> None:
    global _lock
    _lock = threading.Lock()


os.register_at_fork(after_in_child=_reset_after_fork)
