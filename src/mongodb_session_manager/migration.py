"""Moving sessions from the embedded layout to the split layout without losing a message.

For each embedded session, one at a time:

1. copy every agent's messages into the messages collection, as upserts keyed by
   ``(session_id, agent_id, message_id)``, so copying again (a re-run, a retry) changes nothing;
2. verify, per agent, that the messages collection holds exactly as many messages as the session
   document (and, so, every one of its ids);
3. only then remove the arrays from the session document and mark it ``split``, in one update
   whose filter says the document is still the one that was copied (the same ``revision``, which
   every write of this library increments). If a live writer changed it meanwhile, the session is
   copied again, up to ``max_attempts`` times.

A session created before generations existed first gets one (conditionally, so concurrent runs
agree on it); copies are tagged with it. Sessions already split are skipped, so an interrupted
migration is resumed by running it again. A session that fails verification is left untouched
(still embedded) and reported, and the run ends by counting the sessions still embedded.
"""

import logging
from collections.abc import Callable
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
    default_messages_collection_name,
    layout_condition,
    owner_of,
    split_message_document,
    stored_layout,
)
from ._split_layout import MESSAGE_INDEXES
from .errors import InvalidIdentifierError, MongoDBSessionError
from .validation import validate_field_name

logger = logging.getLogger(__name__)

COPY_BATCH = 500
"""Messages per ``bulkWrite`` while copying."""


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


def count_embedded_sessions(sessions: Collection[Document]) -> int:
    """How many sessions in ``sessions`` are stored in the embedded layout."""
    return sessions.count_documents(layout_condition("embedded"))


def migrate_to_split(
    database: Database[Document],
    collection_name: str = "sessions",
    messages_collection_name: str | None = None,
    *,
    batch_size: int = 100,
    max_attempts: int = 3,
    on_session_done: Callable[[str], None] | None = None,
) -> MigrationReport:
    """Move every embedded session of ``collection_name`` to the split layout (see the module docstring).

    ``on_session_done`` is called after each session, migrated or not (for a progress bar).
    """
    sessions = database[collection_name]
    messages = database[messages_collection_name or default_messages_collection_name(collection_name)]
    ensure_indexes(messages, MESSAGE_INDEXES)
    report = MigrationReport()
    embedded = layout_condition("embedded")
    last_id: Any = None
    while True:
        query = embedded if last_id is None else {**embedded, "_id": {"$gt": last_id}}
        batch = [document["_id"] for document in sessions.find(query, {"_id": 1}).sort("_id", 1).limit(batch_size)]
        if not batch:
            report.still_embedded = count_embedded_sessions(sessions)
            return report
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
    # A session from before generations gets one, conditionally, so concurrent runs agree on it.
    without_one = {"_id": session_id, GENERATION_FIELD: {"$exists": False}}
    sessions.update_one(without_one, {"$set": {GENERATION_FIELD: ObjectId()}})
    generation: Any = None
    for attempt in range(1, max_attempts + 1):
        document = sessions.find_one({"_id": session_id})
        if document is None or (attempt > 1 and document.get(GENERATION_FIELD) != generation):
            # Deleted (and perhaps created again) meanwhile: the copies made for it belong to no session.
            messages.delete_many({"session_id": session_id, GENERATION_FIELD: generation})
            return None
        generation = document.get(GENERATION_FIELD)
        if stored_layout(document) != "embedded":
            return None  # another run of the migration finished it
        agents: dict[str, Document] = document.get("agents") or {}
        counts = {
            agent_id: _copy_agent(messages, session_id, agent_id, generation, entry, owner_of(document))
            for agent_id, entry in agents.items()
        }
        unchanged = {
            "_id": session_id,
            **layout_condition("embedded"),
            GENERATION_FIELD: generation,
            REVISION_FIELD: document.get(REVISION_FIELD),  # every library write increments it
        }
        switch: Document = {"$set": {LAYOUT_FIELD: "split"}, "$inc": {REVISION_FIELD: 1}}
        if agents:
            switch["$unset"] = {f"agents.{agent_id}.messages": "" for agent_id in agents}
        if sessions.update_one(unchanged, switch).matched_count == 1:
            logger.info("session_id=<%s> | migrated %d messages", session_id, sum(counts.values()))
            return sum(counts.values())
        logger.warning("session_id=<%s> | changed during attempt %d; copying again", session_id, attempt)
    raise MigrationError(f"kept changing while being migrated ({max_attempts} attempts); run the migration again")


def _copy_agent(
    messages: Collection[Document], session_id: Any, agent_id: str, generation: Any, entry: Document, owner: Document
) -> int:
    """Upsert the agent's messages into ``messages`` and verify they are all there; return the count.

    A message already stored under the same key (an earlier, interrupted copy, or one left behind
    by an earlier session with this id) is replaced.
    """
    try:
        validate_field_name(agent_id, "agent_id")
    except InvalidIdentifierError as error:
        raise MigrationError(str(error)) from None
    stored: list[Document] = entry.get("messages") or []
    ids = [message.get("message_id") for message in stored]
    if not all(isinstance(i, int) and not isinstance(i, bool) and i >= 0 for i in ids):
        raise MigrationError(f"agent {agent_id!r} has messages without a valid message_id")
    if len(set(ids)) != len(ids):
        raise MigrationError(f"agent {agent_id!r} has {len(ids)} messages but {len(set(ids))} distinct message ids")
    for start in range(0, len(stored), COPY_BATCH):
        messages.bulk_write(
            [
                ReplaceOne(
                    {"session_id": session_id, "agent_id": agent_id, "message_id": message["message_id"]},
                    split_message_document(session_id, agent_id, generation, message, owner),
                    upsert=True,
                )
                for message in stored[start : start + COPY_BATCH]
            ],
            ordered=False,
        )
    copied = messages.count_documents({"session_id": session_id, "agent_id": agent_id, GENERATION_FIELD: generation})
    if copied != len(stored):
        raise MigrationError(
            f"agent {agent_id!r}: the session document holds {len(stored)} messages but the messages collection "
            f"holds {copied}; nothing was removed"
        )
    return len(stored)
