"""Moving sessions from the embedded layout to the split layout without losing a message.

Before anything is written, the names are validated (the messages collection must be another
collection than the sessions) and both collections are checked to hold only what this library
writes there: one query each, answered with at most one ``_id`` (see ``_target_collections``).
A run pointed at the wrong collection raises and changes nothing.

Then, for each embedded session, one at a time:

1. copy every agent's messages into the messages collection, as upserts keyed by
   ``(session_id, agent_id, message_id)``, so copying again (a re-run, a retry) changes nothing;
2. verify, per agent, that the messages collection holds exactly as many messages as the session
   document (and, so, every one of its ids);
3. only then remove the arrays from the session document and mark it ``split``, in one update
   whose filter says the document is still the one that was copied (the same ``revision``, which
   every write of this library increments).

If a live writer changed the session meanwhile, the next attempt reads it again and copies only
the messages that are new or changed (a redaction rewrites a message in place) since its last
copy, verifies again and retries the switch. Attempts are cheap, so the window a writer can hit is
short; the migration keeps trying while attempts find new or changed messages (up to
``max_attempts``), and gives up after ``STALLED_ATTEMPTS`` attempts in a row in which only other
fields changed.

A session created before generations existed first gets one (conditionally, so concurrent runs
agree on it); copies are tagged with it. Sessions already split are skipped, so an interrupted
migration is resumed by running it again. A session that fails verification is left untouched
(still embedded) and reported, and the run ends by counting the sessions still embedded.
"""

import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from bson import ObjectId
from pymongo import ReplaceOne
from pymongo.collection import Collection
from pymongo.database import Database

from ._indexes import ensure_indexes
from ._schema import (
    GENERATION_FIELD,
    LAYOUT_FIELD,
    REVISION_FIELD,
    Document,
    layout_condition,
    message_slot,
    owner_of,
    split_message_document,
    stored_layout,
)
from ._split_layout import MESSAGE_INDEXES
from ._target_collections import (
    checked_names,
    require_messages,
    require_sessions,
    session_filter,
)
from .errors import ForeignDocumentsError, InvalidIdentifierError, MongoDBSessionError, excerpt
from .validation import validate_field_name

__all__ = [
    "ForeignDocumentsError",
    "MigrationError",
    "MigrationReport",
    "check_migration_targets",
    "count_embedded_sessions",
    "migrate_to_split",
]

logger = logging.getLogger(__name__)

COPY_BATCH = 500
"""Messages per ``bulkWrite`` while copying."""
MAX_ATTEMPTS = 100
"""Attempts per session, by default, while a live writer keeps changing it."""
STALLED_ATTEMPTS = 3
"""Attempts in a row, for one session, in which a writer changed it but none of its messages."""


class MigrationError(MongoDBSessionError):
    """A session could not be migrated; it was left as it was."""


@dataclass
class MigrationReport:
    """What a migration did."""

    migrated: int = 0
    messages_copied: int = 0
    failed: dict[str, str] = field(default_factory=dict)
    """Session id -> why it was left in the embedded layout."""
    still_embedded: int = 0
    """Sessions in the embedded layout when the run ended: the failed ones, and any created meanwhile."""


@dataclass
class _Copies:
    """What this run stored in the messages collection for one agent of one session."""

    messages: dict[int, Document] = field(default_factory=dict)
    """``message_id`` -> the message as it was copied."""
    written: int = 0
    """Messages written so far, over every attempt."""


def count_embedded_sessions(sessions: Collection[Document]) -> int:
    """How many sessions in ``sessions`` are stored in the embedded layout."""
    return sessions.count_documents(layout_condition("embedded"))


def check_migration_targets(
    database: Database[Document], collection_name: str = "sessions", messages_collection_name: str | None = None
) -> tuple[Collection[Document], Collection[Document]]:
    """Return the session and messages collections if a migration may write to them; raise otherwise.

    Raises :class:`InvalidIdentifierError` for an invalid name (or one collection given twice) and
    :class:`ForeignDocumentsError` when a collection holds documents this library did not write
    there. Reads only.
    """
    messages_name = checked_names(database, collection_name, messages_collection_name)
    sessions, messages = database[collection_name], database[messages_name]
    require_sessions(sessions)
    require_messages(messages)
    return sessions, messages


def migrate_to_split(
    database: Database[Document],
    collection_name: str = "sessions",
    messages_collection_name: str | None = None,
    *,
    batch_size: int = 100,
    max_attempts: int = MAX_ATTEMPTS,
    on_session_done: Callable[[str], None] | None = None,
) -> MigrationReport:
    """Move every embedded session of ``collection_name`` to the split layout (see the module docstring).

    Raises, before writing anything, what :func:`check_migration_targets` raises.
    ``on_session_done`` is called after each session, migrated or not (for a progress bar).
    """
    sessions, messages = check_migration_targets(database, collection_name, messages_collection_name)
    report = MigrationReport()
    embedded = layout_condition("embedded")
    last_id: Any = None
    while True:
        query = embedded if last_id is None else {**embedded, "_id": {"$gt": last_id}}
        batch = [document["_id"] for document in sessions.find(query, {"_id": 1}).sort("_id", 1).limit(batch_size)]
        if not batch:
            report.still_embedded = count_embedded_sessions(sessions)
            return report
        ensure_indexes(messages, MESSAGE_INDEXES)  # once per process, and only when there is work
        for session_id in batch:
            try:
                copied = _migrate_session(sessions, messages, session_id, max_attempts)
                if copied is not None:
                    report.messages_copied += copied
                    report.migrated += 1
            except MigrationError as error:
                logger.error("session_id=<%s> | not migrated: %s", session_id, error)
                report.failed[str(session_id)] = str(error)
            if on_session_done is not None:
                on_session_done(str(session_id))
        last_id = batch[-1]


def _migrate_session(
    sessions: Collection[Document], messages: Collection[Document], session_id: Any, max_attempts: int
) -> int | None:
    """Copy, verify and switch one session; return how many messages it holds, or None if it went away."""
    this_session = session_filter(session_id)  # in every filter: never write to another kind of document
    # A session from before generations gets one, conditionally, so concurrent runs agree on it.
    sessions.update_one(
        {**this_session, GENERATION_FIELD: {"$exists": False}}, {"$set": {GENERATION_FIELD: ObjectId()}}
    )
    generation: Any = None
    copies: dict[str, _Copies] = {}
    stalled = 0
    for attempt in range(1, max_attempts + 1):
        document = sessions.find_one(this_session)
        if document is None and sessions.find_one({"_id": session_id}, {"_id": 1}) is not None:
            raise MigrationError("is not a session document of this library; left untouched")
        if document is None or (attempt > 1 and document.get(GENERATION_FIELD) != generation):
            # Deleted (and perhaps created again) meanwhile: the copies made for it belong to no session.
            messages.delete_many({"session_id": session_id, GENERATION_FIELD: generation})
            return None
        generation = document.get(GENERATION_FIELD)
        if stored_layout(document) != "embedded":
            return None  # another run of the migration finished it
        agents: dict[str, Document] = document.get("agents") or {}
        written_before = sum(agent.written for agent in copies.values())
        counts = {
            agent_id: _copy_agent(
                messages,
                session_id,
                agent_id,
                generation,
                entry,
                owner_of(document),
                copies.setdefault(agent_id, _Copies()),
            )
            for agent_id, entry in agents.items()
        }
        unchanged = {
            **this_session,
            **layout_condition("embedded"),
            GENERATION_FIELD: generation,
            REVISION_FIELD: document.get(REVISION_FIELD),  # every library write increments it
        }
        switch: Document = {"$set": {LAYOUT_FIELD: "split"}, "$inc": {REVISION_FIELD: 1}}
        if agents:
            switch["$unset"] = {f"agents.{agent_id}.messages": "" for agent_id in agents}
        if sessions.update_one(unchanged, switch).matched_count == 1:
            logger.info(
                "session_id=<%s> | migrated %d messages in %d attempt(s)", session_id, sum(counts.values()), attempt
            )
            return sum(counts.values())
        progressed = attempt == 1 or sum(agent.written for agent in copies.values()) > written_before
        stalled = 0 if progressed else stalled + 1
        if stalled >= STALLED_ATTEMPTS:
            raise MigrationError(
                f"kept changing while being migrated ({attempt} attempts, the last {stalled} without a new or "
                "changed message); run the migration again when its writers are idle"
            )
        logger.info("session_id=<%s> | changed during attempt %d; copying what changed", session_id, attempt)
    raise MigrationError(
        f"kept changing while being migrated ({max_attempts} attempts); run the migration again when its "
        "writers are idle"
    )


def _copy_agent(
    messages: Collection[Document],
    session_id: Any,
    agent_id: str,
    generation: Any,
    entry: Document,
    owner: Document,
    copies: _Copies | None = None,
) -> int:
    """Upsert the agent's messages into ``messages`` and verify they are all there; return the count.

    Only messages that are new or changed since ``copies`` recorded them are written. If the count
    then disagrees (a copy made earlier was removed meanwhile), everything is copied again before
    judging. A message already stored under the same key (an earlier, interrupted copy, or one
    left behind by an earlier session with this id) is replaced.
    """
    try:
        validate_field_name(agent_id, "agent_id")
    except InvalidIdentifierError as error:
        raise MigrationError(str(error)) from None
    stored: list[Document] = entry.get("messages") or []
    ids = [message.get("message_id") for message in stored]
    if not all(isinstance(i, int) and not isinstance(i, bool) and i >= 0 for i in ids):
        raise MigrationError(f"agent {excerpt(agent_id)} has messages without a valid message_id")
    if len(set(ids)) != len(ids):
        raise MigrationError(
            f"agent {excerpt(agent_id)} has {len(ids)} messages but {len(set(ids))} distinct message ids"
        )
    copies = copies if copies is not None else _Copies()
    changed = [message for message in stored if copies.messages.get(message["message_id"]) != message]
    _upsert(messages, session_id, agent_id, generation, owner, changed, copies)
    copied = _count(messages, session_id, agent_id, generation)
    if copied != len(stored) and len(changed) < len(stored):
        _upsert(messages, session_id, agent_id, generation, owner, stored, copies)
        copied = _count(messages, session_id, agent_id, generation)
    if copied != len(stored):
        raise MigrationError(
            f"agent {excerpt(agent_id)}: the session document holds {len(stored)} messages but the messages collection "
            f"holds {copied}; nothing was removed"
        )
    return len(stored)


def _upsert(
    messages: Collection[Document],
    session_id: Any,
    agent_id: str,
    generation: Any,
    owner: Document,
    batch: Sequence[Document],
    copies: _Copies,
) -> None:
    for start in range(0, len(batch), COPY_BATCH):
        part = batch[start : start + COPY_BATCH]
        messages.bulk_write(
            [
                ReplaceOne(
                    message_slot(session_id, agent_id, message["message_id"]),
                    split_message_document(session_id, agent_id, generation, message, owner),
                    upsert=True,
                )
                for message in part
            ],
            ordered=False,
        )
        copies.messages.update((message["message_id"], message) for message in part)
        copies.written += len(part)


def _count(messages: Collection[Document], session_id: Any, agent_id: str, generation: Any) -> int:
    return messages.count_documents({"session_id": session_id, "agent_id": agent_id, GENERATION_FIELD: generation})
