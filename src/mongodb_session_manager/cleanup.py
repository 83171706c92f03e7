"""Removing split-layout messages that no session owns any more.

A split-layout delete removes the session document first, then that generation's messages. If the
process stops in between, or a writer still holding the deleted session appends afterwards, those
messages stay in the messages collection: never shown (every read filters on the session's current
generation), but stored. This finds every ``(session id, generation)`` in the messages collection
that no session document has, and deletes those messages.

It is safe while applications run, given the collections the application uses: a session document
is written before any message of its generation, and a generation is never reused, so messages
without an owner now never get one. Both reads go to the primary, so they cannot see a secondary's
older state. Messages the migration copied for a session that is still embedded are owned (the
session document has their generation), so they are kept. Messages without a ``session_id`` were
not written by this library and are left alone.

Both functions validate the names first and refuse a messages collection that holds documents
which are not messages (a wrong ``--messages-collection``, such as the session collection):
:class:`ForeignDocumentsError`, nothing deleted.
"""

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from pymongo import ReadPreference
from pymongo.collection import Collection
from pymongo.database import Database

from ._schema import GENERATION_FIELD, Document
from ._target_collections import checked_names, require_messages
from .errors import ForeignDocumentsError, MongoDBSessionError

__all__ = ["CleanupRefusedError", "ForeignDocumentsError", "LeftBehind", "find_left_behind", "remove_left_behind"]

OWNER_BATCH = 500
"""Session ids looked up per query."""

Owner = tuple[Any, Any]
"""``(session id, generation)`` of a group of stored messages."""


class CleanupRefusedError(MongoDBSessionError):
    """Every stored message looked left behind, which usually means the wrong session collection."""


@dataclass
class LeftBehind:
    """What ``find_left_behind`` found."""

    counts: dict[Owner, int]
    """``(session id, generation)`` no session document has -> how many messages it has."""
    owned_groups: int
    """``(session id, generation)`` groups that a session document does own."""

    @property
    def message_count(self) -> int:
        """All the messages left behind."""
        return sum(self.counts.values())


def _on_primary(database: Database[Document], name: str) -> Collection[Document]:
    return database.get_collection(name, read_preference=ReadPreference.PRIMARY)


def find_left_behind(
    database: Database[Document], collection_name: str = "sessions", messages_collection_name: str | None = None
) -> LeftBehind:
    """Group the messages of ``messages_collection_name`` by owner and keep the groups whose session is gone.

    ``collection_name`` must be the session collection the application writes those messages for:
    against another one, every message looks left behind (``remove_left_behind`` refuses that).
    Raises :class:`InvalidIdentifierError` for an invalid name and :class:`ForeignDocumentsError`
    when the messages collection holds documents that are not messages.
    """
    messages = _on_primary(database, checked_names(database, collection_name, messages_collection_name))
    require_messages(messages)
    owner = {"session_id": "$session_id", "generation": {"$ifNull": [f"${GENERATION_FIELD}", None]}}
    counts: dict[Owner, int] = {}
    for row in messages.aggregate([{"$group": {"_id": owner, "count": {"$sum": 1}}}], allowDiskUse=True):
        session_id, generation = row["_id"].get("session_id"), row["_id"].get("generation")
        if session_id is not None:
            counts[(session_id, generation)] = counts.get((session_id, generation), 0) + row["count"]
    session_ids = list({session_id for session_id, _generation in counts})
    current: dict[Any, Any] = {}
    sessions = _on_primary(database, collection_name)
    for start in range(0, len(session_ids), OWNER_BATCH):
        batch = session_ids[start : start + OWNER_BATCH]
        for document in sessions.find({"_id": {"$in": batch}}, {GENERATION_FIELD: 1}):
            current[document["_id"]] = document.get(GENERATION_FIELD)
    left_behind = {
        (session_id, generation): count
        for (session_id, generation), count in counts.items()
        if session_id not in current or current[session_id] != generation
    }
    return LeftBehind(left_behind, owned_groups=len(counts) - len(left_behind))


def remove_left_behind(
    database: Database[Document],
    left_behind: LeftBehind,
    collection_name: str = "sessions",
    messages_collection_name: str | None = None,
    *,
    even_if_nothing_is_owned: bool = False,
    on_owner_done: Callable[[int], None] | None = None,
) -> int:
    """Delete the messages of every ``(session id, generation)`` in ``left_behind``; returns how many.

    That is what ``find_left_behind`` counted, plus anything a writer still holding one of those
    deleted sessions appended since. Raises :class:`CleanupRefusedError`, deleting nothing, when no
    group was owned (unless ``even_if_nothing_is_owned``): that is what a wrong session collection
    looks like. ``on_owner_done`` gets the number deleted for each group (for a progress bar).
    Raises, deleting nothing, what :func:`find_left_behind` raises for the names and the collection.
    """
    messages = _on_primary(database, checked_names(database, collection_name, messages_collection_name))
    require_messages(messages)
    if left_behind.counts and not left_behind.owned_groups and not even_if_nothing_is_owned:
        raise CleanupRefusedError(
            f"no session in {database.name}.{collection_name} owns any of the {left_behind.message_count} stored "
            "messages; check the session collection name"
        )
    deleted = 0
    for session_id, generation in left_behind.counts:
        count = messages.delete_many({"session_id": session_id, GENERATION_FIELD: generation}).deleted_count
        deleted += count
        if on_owner_done is not None:
            on_owner_done(count)
    return deleted
