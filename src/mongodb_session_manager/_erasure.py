"""Erasing every session of one user (``delete_sessions``, ``python -m mongodb_session_manager erase``).

Sessions are taken in batches of the user's session documents, expired ones included, in
whichever layout each is stored. For each batch:

1. mark them expired (one ``update_many``): from then on every reader and writer finds them absent;
2. delete their messages from the messages collection (one ``delete_many`` on the documents'
   ``(session_id, generation)``): split-layout messages, and copies a migration made;
3. delete the documents (one ``delete_many``, on the same ids and generations).

The documents go last, so a run killed at any point leaves them for the next run to find.
Finally the user's messages that no session document owns any more are deleted: split-layout
messages carry their session's owner fields (and are indexed by ``user_id``), so this finds what
a writer still appending to an erased session added meanwhile, and what a killed run left if the
TTL monitor removed its expired documents before the next run. Messages of a session created
while the erase runs are kept: their session exists. Running it again is always safe, and a run
that finds nothing sends two commands.
"""

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from pymongo.collection import Collection

from ._schema import EXPIRES_AT_FIELD, GENERATION_FIELD, Document

BATCH = 100
"""Session documents erased per round of three commands."""
OWNER_BATCH = 500
"""Session ids looked up per query by the final sweep."""
ERASED_AT = datetime(1970, 1, 1, tzinfo=UTC)
"""The ``expires_at`` a session being erased gets: long past, so it is absent at once."""


@dataclass(frozen=True)
class Stored:
    """What is stored for a user."""

    sessions: int
    messages: int
    """In the messages collection: those of the user's sessions, and those tagged with the user that no session owns."""


def erase_sessions(
    sessions: Collection[Document],
    messages: Collection[Document],
    owner: Document,
    *,
    on_batch: Callable[[int], None] | None = None,
) -> int:
    """Erase every session matching ``owner`` (``user_id``, maybe ``application_name``) and its messages.

    Returns how many session documents were deleted. ``on_batch`` gets the size of each batch done.
    """
    erased = 0
    while True:
        batch = list(sessions.find(owner, {GENERATION_FIELD: 1}).sort("_id", 1).limit(BATCH))
        if not batch:
            break
        ids = [document["_id"] for document in batch]
        generations = list(dict.fromkeys(document.get(GENERATION_FIELD) for document in batch))
        chosen = {**owner, "_id": {"$in": ids}, GENERATION_FIELD: {"$in": generations}}
        sessions.update_many(chosen, {"$set": {EXPIRES_AT_FIELD: ERASED_AT}})
        messages.delete_many({"session_id": {"$in": ids}, GENERATION_FIELD: {"$in": generations}})
        erased += sessions.delete_many(chosen).deleted_count
        if on_batch is not None:
            on_batch(len(batch))
    for orphans in _unowned_groups(sessions, messages, owner):
        messages.delete_many({"$or": orphans})
    return erased


def stored_for(sessions: Collection[Document], messages: Collection[Document], owner: Document) -> Stored:
    """Count what :func:`erase_sessions` would erase for ``owner`` (zero and zero once it has run)."""
    session_count = message_count = 0
    last: Any = None
    while True:
        query = owner if last is None else {**owner, "_id": {"$gt": last}}
        batch = list(sessions.find(query, {GENERATION_FIELD: 1}).sort("_id", 1).limit(OWNER_BATCH))
        if not batch:
            break
        session_count += len(batch)
        ids = [document["_id"] for document in batch]
        generations = [document.get(GENERATION_FIELD) for document in batch]
        message_count += messages.count_documents({"session_id": {"$in": ids}, GENERATION_FIELD: {"$in": generations}})
        last = ids[-1]
    for orphans in _unowned_groups(sessions, messages, owner):
        message_count += messages.count_documents({"$or": orphans})
    return Stored(sessions=session_count, messages=message_count)


def _unowned_groups(
    sessions: Collection[Document], messages: Collection[Document], owner: Document
) -> Iterator[list[Document]]:
    """Batches of ``{session_id, generation}`` filters: the owner's messages whose session document is gone."""
    pipeline: list[Document] = [
        {"$match": owner},
        {"$group": {"_id": {"session_id": "$session_id", "generation": {"$ifNull": [f"${GENERATION_FIELD}", None]}}}},
    ]
    groups = [row["_id"] for row in messages.aggregate(pipeline)]
    for start in range(0, len(groups), OWNER_BATCH):
        batch = groups[start : start + OWNER_BATCH]
        ids = list({group["session_id"] for group in batch})
        current = {
            document["_id"]: document.get(GENERATION_FIELD)
            for document in sessions.find({"_id": {"$in": ids}}, {GENERATION_FIELD: 1})
        }
        orphans = [
            {"session_id": group["session_id"], GENERATION_FIELD: group["generation"]}
            for group in batch
            if group["session_id"] not in current or current[group["session_id"]] != group["generation"]
        ]
        if orphans:
            yield orphans
