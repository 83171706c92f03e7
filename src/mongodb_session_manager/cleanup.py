"""Removing split-layout messages that no session owns any more.

A split-layout delete removes the session document first, then that generation's messages. If the
process stops in between, or a writer still holding the deleted session appends afterwards, those
messages stay in the messages collection: never shown (every read filters on the session's current
generation), but stored. This finds every ``(session id, generation)`` in the messages collection
that no session document has, and deletes those messages.

It is safe while applications run: a session document is written before any message of its
generation, and a generation is never reused, so messages without an owner now never get one.
Messages the migration copied for a session that is still embedded are owned (the session
document has their generation), so they are kept.
"""

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from pymongo.database import Database

from ._documents import GENERATION_FIELD, Document
from ._split_layout import default_messages_collection_name

OWNER_BATCH = 500
"""Session ids looked up per query."""

Owner = tuple[str, Any]
"""``(session id, generation)`` of a group of stored messages."""


@dataclass
class LeftBehind:
    """Messages no session owns, grouped by the session id and generation they were written for."""

    messages: dict[Owner, int]
    """``(session id, generation)`` -> how many messages."""

    @property
    def message_count(self) -> int:
        """All the messages left behind."""
        return sum(self.messages.values())


def find_left_behind(
    database: Database[Document], collection_name: str = "sessions", messages_collection_name: str | None = None
) -> LeftBehind:
    """The messages of ``messages_collection_name`` whose session document (with their generation) is gone."""
    messages = database[messages_collection_name or default_messages_collection_name(collection_name)]
    counts: dict[Owner, int] = {}
    owner = {"session_id": "$session_id", "generation": f"${GENERATION_FIELD}"}
    grouped = messages.aggregate([{"$group": {"_id": owner, "count": {"$sum": 1}}}], allowDiskUse=True)
    for row in grouped:
        counts[(row["_id"]["session_id"], row["_id"].get("generation"))] = row["count"]
    session_ids = sorted({session_id for session_id, _generation in counts})
    current: dict[str, Any] = {}
    for start in range(0, len(session_ids), OWNER_BATCH):
        batch = session_ids[start : start + OWNER_BATCH]
        for document in database[collection_name].find({"_id": {"$in": batch}}, {GENERATION_FIELD: 1}):
            current[document["_id"]] = document.get(GENERATION_FIELD)
    return LeftBehind(
        {
            (session_id, generation): count
            for (session_id, generation), count in counts.items()
            if session_id not in current or current[session_id] != generation
        }
    )


def remove_left_behind(
    database: Database[Document],
    left_behind: LeftBehind,
    collection_name: str = "sessions",
    messages_collection_name: str | None = None,
    *,
    on_owner_done: Callable[[int], None] | None = None,
) -> int:
    """Delete the messages ``find_left_behind`` found; returns how many were deleted.

    ``on_owner_done`` gets the number deleted for each ``(session id, generation)`` (for a progress bar).
    """
    messages = database[messages_collection_name or default_messages_collection_name(collection_name)]
    deleted = 0
    for session_id, generation in left_behind.messages:
        count = messages.delete_many({"session_id": session_id, GENERATION_FIELD: generation}).deleted_count
        deleted += count
        if on_owner_done is not None:
            on_owner_done(count)
    return deleted
