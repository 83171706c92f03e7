"""Index creation, done once per (client, database, collection) in a process."""

import logging
import threading
import weakref
from typing import Any

from pymongo import ASCENDING, IndexModel, MongoClient
from pymongo.collection import Collection

logger = logging.getLogger(__name__)

SESSION_INDEXES = (
    IndexModel([("created_at", ASCENDING)], name="created_at_1"),
    IndexModel([("updated_at", ASCENDING)], name="updated_at_1"),
)

_lock = threading.Lock()
_done: "weakref.WeakKeyDictionary[MongoClient[Any], set[tuple[str, str]]]" = weakref.WeakKeyDictionary()


def ensure_session_indexes(collection: Collection[Any]) -> None:
    """Create the session indexes with one command, unless this process already did for this client."""
    client = collection.database.client
    key = (collection.database.name, collection.name)
    with _lock:
        if key in _done.get(client, ()):
            return
        collection.create_indexes(list(SESSION_INDEXES))
        _done.setdefault(client, set()).add(key)
    logger.debug("created session indexes on %s.%s", *key)
