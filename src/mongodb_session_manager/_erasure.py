"""Erasing every session of one user (``delete_sessions``, ``python -m mongodb_session_manager erase``).

Sessions are taken in batches of the user's session documents, expired ones included, in
whichever layout each is stored. For each batch, on the documents' ``(session_id, generation)``:

1. give their messages that carry no owner the user's (one ``update_many``; it finds nothing
   unless messages were stored before messages carried their owner, or by a writer that did not
   know it);
2. delete the documents (one ``delete_many``): each session vanishes whole, at once;
3. delete their messages (one ``delete_many``): split-layout messages, and copies a migration made.

Finally the user's messages that no session document owns any more are deleted. Messages carry
their session's owner (indexed by ``user_id``), so this finds what a run killed between steps 2
and 3 left, and what a writer still appending to an erased session added meanwhile (that writer is
refused at its next turn). A run killed before step 2 left the documents for the next run. Messages
of a session created while the erase runs are kept: their session exists. Running it again is
always safe, and a run that finds nothing sends two commands.
"""

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from itertools import islice

from pymongo.collection import Collection

from ._schema import GENERATION_FIELD, USER_ID_FIELD, Document

BATCH = 100
"""Session documents erased per round of four commands."""
OWNER_BATCH = 500
"""Session ids looked up per query by the final sweep."""


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
    while batch := list(sessions.find(owner, {GENERATION_FIELD: 1}).limit(BATCH)):  # the owner's index, no sort
        their_messages = _messages_of(batch)
        messages.update_many({**their_messages, USER_ID_FIELD: {"$exists": False}}, {"$set": owner})
        documents = {**owner, "_id": their_messages["session_id"], GENERATION_FIELD: their_messages[GENERATION_FIELD]}
        erased += sessions.delete_many(documents).deleted_count
        messages.delete_many(their_messages)
        if on_batch is not None:
            on_batch(len(batch))
    for orphans in _unowned_groups(sessions, messages, owner):
        messages.delete_many({"$or": orphans})
    return erased


def stored_for(sessions: Collection[Document], messages: Collection[Document], owner: Document) -> Stored:
    """Count what :func:`erase_sessions` would erase for ``owner`` (zero and zero once it has run)."""
    session_count = message_count = 0
    found = sessions.find(owner, {GENERATION_FIELD: 1}, batch_size=OWNER_BATCH)
    while batch := list(islice(found, OWNER_BATCH)):
        session_count += len(batch)
        message_count += messages.count_documents(_messages_of(batch))
    for orphans in _unowned_groups(sessions, messages, owner):
        message_count += messages.count_documents({"$or": orphans})
    return Stored(sessions=session_count, messages=message_count)


def _messages_of(batch: list[Document]) -> Document:
    """The filter on the messages of these session documents: their ids, in one of their generations."""
    ids = [document["_id"] for document in batch]
    generations = list(dict.fromkeys(document.get(GENERATION_FIELD) for document in batch))
    return {"session_id": {"$in": ids}, GENERATION_FIELD: {"$in": generations}}


def _unowned_groups(
    sessions: Collection[Document], messages: Collection[Document], owner: Document
) -> Iterator[list[Document]]:
    """Batches of ``{session_id, generation}`` filters: the owner's messages whose session document is gone."""
    pipeline: list[Document] = [
        {"$match": {**owner, "session_id": {"$type": "string"}}},
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
            {**owner, "session_id": group["session_id"], GENERATION_FIELD: group["generation"]}
            for group in batch
            if group["session_id"] not in current or current[group["session_id"]] != group["generation"]
        ]
        if orphans:
            yield orphans
