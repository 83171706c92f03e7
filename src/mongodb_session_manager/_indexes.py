"""Index creation, done once per process for each deployment, database, collection and set of indexes.

Whichever client reaches a collection first sends ``createIndexes``; any other client of the same
deployment (the same servers) skips it. A deployment is recognised by the servers its client was
given (``MongoClient.topology_description``); a client whose servers are not known yet (a
``mongodb+srv`` URI before its DNS lookup) counts as a deployment of its own. The bookkeeping lock
is never held across a network round trip, and a forked child starts with a fresh record. Two
threads that race on the very first use may both send ``createIndexes``, which the server treats
as a no-op for indexes that already exist.
"""

import logging
import os
import threading
import weakref
from collections.abc import Hashable, Sequence
from typing import Any

from pymongo import ASCENDING, DESCENDING, IndexModel, MongoClient
from pymongo.collection import Collection

logger = logging.getLogger(__name__)

SESSION_INDEXES = (
    IndexModel([("created_at", ASCENDING)], name="created_at_1"),
    IndexModel([("updated_at", ASCENDING)], name="updated_at_1"),
    # a user's sessions, newest first (list_sessions by user, with or without an application)
    IndexModel([("user_id", ASCENDING), ("updated_at", DESCENDING), ("_id", DESCENDING)], name="user_updated"),
    IndexModel(
        [("application_name", ASCENDING), ("user_id", ASCENDING), ("updated_at", DESCENDING), ("_id", DESCENDING)],
        name="application_user_updated",
    ),
    # MongoDB's TTL monitor removes a session once its expires_at has passed
    IndexModel([("expires_at", ASCENDING)], name="expires_at_ttl", expireAfterSeconds=0),
)

_lock = threading.Lock()
_done: set[Hashable] = set()
"""(deployment, database, collection, index names) created so far in this process."""
_deployments: "weakref.WeakKeyDictionary[MongoClient[Any], Hashable]" = weakref.WeakKeyDictionary()


def _deployment(client: MongoClient[Any]) -> Hashable:
    """What identifies ``client``'s deployment: its servers, or the client itself while they are unknown."""
    with _lock:
        known = _deployments.get(client)
    if known is not None:
        return known
    servers = tuple(sorted(client.topology_description.server_descriptions()))
    identity: Hashable = ("servers", servers) if servers else ("client", object())
    with _lock:
        return _deployments.setdefault(client, identity)


def ensure_indexes(collection: Collection[Any], indexes: Sequence[IndexModel]) -> None:
    """Create ``indexes`` with one command, unless this process already did on this deployment."""
    names = tuple(sorted(index.document["name"] for index in indexes))
    key = (_deployment(collection.database.client), collection.database.name, collection.name, names)
    with _lock:
        if key in _done:
            return
    collection.create_indexes(list(indexes))
    with _lock:
        _done.add(key)
    logger.debug("created indexes %s on %s.%s", ", ".join(names), collection.database.name, collection.name)


def ensure_session_indexes(collection: Collection[Any]) -> None:
    """Create the session collection's indexes (once per process and deployment)."""
    ensure_indexes(collection, SESSION_INDEXES)


def _reset_after_fork() -> None:
    global _lock
    _lock = threading.Lock()
    _done.clear()
    _deployments.clear()


os.register_at_fork(after_in_child=_reset_after_fork)
