"""The split layout: one document per message, in a collection beside the sessions.

The session document keeps only what is bounded (session, metadata, agent and multi-agent
state); messages live in ``<collection>_messages`` under a unique ``(session_id, agent_id,
message_id)`` index. An append is one insert whatever the conversation's length, a page is a
range on ``message_id`` (Strands numbers each agent's messages 0, 1, 2, ..., so a position is an
id), and a resume is two reads: the session document, then every agent's messages at once.

Each session document has a ``generation`` (an ObjectId chosen when it is created) and every
message carries the generation it was written in; messages are only read in their session's
generation. A session deleted while another process was still appending to it, then created
again under the same id, therefore never shows the old messages: they are invisible, and one that
holds a ``message_id`` the new session needs is removed when the new message is written.

Each message also carries its session's owner fields (``user_id``, ``application_name``), when the
writer knows them (always for a scoped repository; otherwise learnt from the session document with
no extra command), so that ``delete_sessions`` can sweep a user's messages whatever happened to
their session documents.

Messages carry no back-reference the server could check on insert. So that a writer learns that
its session is gone, the message that opens a turn (a user message that is not a tool result) is
followed by one conditional write to the session document: it moves ``updated_at`` and succeeds
only while the session exists in the writer's generation with that agent; if it is refused, the
message just inserted is deleted again and the writer gets the error (``SessionNotFoundError``).
A writer of a deleted session is therefore refused at its next turn at the latest. What it can
still leave is the rest of a turn that raced the delete (the answer and tool messages written
after the delete, before the next turn), or a message whose take-back was interrupted: tagged
with the deleted generation, never read by anyone, and removed by ``cleanup``. Other appends
check that the agent exists only the first time the writer sees it (a session manager's Agents
know it from their initialisation).

Deleting a session removes the session document first, in one command that checks its layout and
generation, then the messages of that generation. If the process stops in between, those messages
stay behind, invisible to any later session with the same id (and replaced if one needs their ids)
until ``cleanup`` removes them.
"""

from typing import Any

import bson
from bson.raw_bson import RawBSONDocument
from pymongo import ASCENDING, IndexModel
from pymongo.collection import Collection
from pymongo.errors import DocumentTooLarge, DuplicateKeyError, WriteError

from . import metrics
from ._documents import now, removed_message_count
from ._indexes import ensure_indexes
from ._schema import (
    GENERATION_FIELD,
    SPLIT_MESSAGE_KEYS,
    UPDATED_AT_FIELD,
    USER_ID_FIELD,
    Document,
    message_key,
    message_owner,
    message_slot,
    messages_from,
    split_message_document,
    stored_layout,
)
from ._session_documents import MAX_DOCUMENT_BYTES, Expect, SessionDocuments
from .errors import MongoDBSessionError, SessionConflictError, SessionNotFoundError, SessionTooLargeError

MESSAGE_INDEXES = (
    IndexModel(
        [("session_id", ASCENDING), ("agent_id", ASCENDING), ("message_id", ASCENDING)],
        name="session_agent_message_unique",
        unique=True,
    ),
    # a user's messages, for delete_sessions' final sweep; only messages of owned sessions have the
    # field. Sparse rather than partial: equivalent for one field, and SecantusDB's planner uses it.
    IndexModel([(USER_ID_FIELD, ASCENDING)], name="user_id_sparse", sparse=True),
)
DOCUMENT_TOO_LARGE_CODES = frozenset({10334, 17419})
"""Server error codes for a document that would pass the BSON size limit."""
ONE_BATCH = 2**31 - 1
"""A ``batchSize`` asking for every result in the first reply (the server still caps it at 16 MiB)."""
STORED_MESSAGE = {"_id": 0, **{key: 0 for key in SPLIT_MESSAGE_KEYS if key != "agent_id"}}
"""Projection: a stored message as the embedded layout stores it, plus ``agent_id`` (kept for grouping)."""


class SplitLayout:
    """Messages as documents of their own in ``messages``."""

    def __init__(self, sessions: SessionDocuments, messages: Collection[Document]) -> None:
        """Keep messages in ``messages`` (its unique index is created once per process)."""
        self._sessions = sessions
        self._messages = messages
        self.new_agent_fields: Document = {}
        ensure_indexes(messages, MESSAGE_INDEXES)

    def create_message(
        self, session_id: str, agent_id: str, message_id: int, entry: RawBSONDocument, *, opening: Document | None
    ) -> None:
        """One insert; when it opens a turn, followed by the session-document write that checks the session."""
        generation = self._sessions.generation_for(session_id, agent_id)
        document = split_message_document(session_id, agent_id, generation, entry, self._sessions.owner(session_id))
        if not self._insert(session_id, document) and not (
            self._remove_left_behind(session_id, agent_id, message_id, generation)
            and self._insert(session_id, document)
        ):
            raise SessionConflictError(
                f"message {message_id} of agent {agent_id!r} in session {session_id!r} was already written "
                "by another writer; nothing was changed"
            )
        if opening is not None:
            self._open_turn(session_id, agent_id, opening, message_key(session_id, agent_id, message_id, generation))

    def _open_turn(self, session_id: str, agent_id: str, opening: Document, written: Document) -> None:
        """Move the session's ``updated_at``, if it still exists as the writer knows it; else take back ``written``."""
        update = {"$set": {UPDATED_AT_FIELD: now()}, **opening}
        try:
            self._sessions.write(session_id, update, added_bytes=0, expect=Expect.agent(agent_id))
        except MongoDBSessionError:
            self._messages.delete_one(written)
            raise

    def update_message(self, session_id: str, agent_id: str, message_id: int, body: RawBSONDocument) -> None:
        """Rewrite the message's document."""
        key = message_key(session_id, agent_id, message_id, self._sessions.generation_for(session_id, agent_id))
        update = {"$set": {"message": body["message"], "redact_message": body["redact_message"], "updated_at": now()}}
        try:
            matched = self._messages.update_one(key, update).matched_count
        except WriteError as error:
            if error.code not in DOCUMENT_TOO_LARGE_CODES:
                raise
            raise SessionTooLargeError(
                session_id, 0, len(body.raw), MAX_DOCUMENT_BYTES, document=f"message {message_id}"
            ) from None
        if matched == 0:
            raise SessionNotFoundError(
                f"message {message_id} of agent {agent_id!r} not found in session {session_id!r}"
            )

    def read_message(self, session_id: str, agent_id: str, message_id: int) -> Document | None:
        """Find the message by its key (None if the session or agent does not exist either)."""
        try:
            generation = self._sessions.generation_for(session_id, agent_id)
        except SessionNotFoundError:
            return None
        found: Document | None = self._messages.find_one(
            message_key(session_id, agent_id, message_id, generation), STORED_MESSAGE
        )
        return found

    def read_messages(self, session_id: str, agent_id: str, offset: int, limit: int | None) -> list[Document]:
        """A range on ``message_id`` from ``offset`` (sorted by the index when ``limit`` pages it)."""
        was_known, _ = self._sessions.expected_generation(session_id, agent_id)
        generation = self._sessions.generation_for(session_id, agent_id)
        query = messages_from(session_id, agent_id, offset, generation)
        if limit is None:
            found = sorted(self._messages.find(query, STORED_MESSAGE, batch_size=ONE_BATCH), key=_message_id)
        elif limit > 0:
            found = list(self._messages.find(query, STORED_MESSAGE).sort("message_id", ASCENDING).limit(limit))
        else:
            found = []
        if not found and was_known:  # nothing found in the generation expected: is the session still there?
            self._sessions.read_checked(session_id, {})
        return found

    def read_for_resume(self, session_id: str) -> Document | None:
        """Two reads: the session document, then every agent's messages from its offset in one query."""
        document = self._sessions.find(session_id)
        if document is None or stored_layout(document) != "split":
            return document
        agents: dict[str, Document] = document.get("agents") or {}
        generation = document.get(GENERATION_FIELD)
        ranges = []
        for agent_id, entry in agents.items():
            entry["messages"] = []
            ranges.append(messages_from(session_id, agent_id, removed_message_count(entry), generation))
        if ranges:
            # One agent: a plain range on the index. Several: one indexed range per agent.
            query = ranges[0] if len(ranges) == 1 else {"$or": ranges}
            for message in self._messages.find(query, STORED_MESSAGE, batch_size=ONE_BATCH):
                agents[message["agent_id"]]["messages"].append(message)
            for entry in agents.values():
                entry["messages"].sort(key=_message_id)
        return document

    def metrics_rows(self, session_id: str) -> list[Document]:
        """The session's agents and generation, then one aggregation over its messages."""
        agent_ids_of = {"$map": {"input": {"$objectToArray": {"$ifNull": ["$agents", {}]}}, "in": "$$this.k"}}
        document = self._sessions.read_checked(session_id, {"agent_ids": agent_ids_of})
        agent_ids = sorted(document["agent_ids"])
        pipeline: list[Document] = [
            {"$match": message_owner(session_id, document.get(GENERATION_FIELD))},
            {"$project": {"agent_id": 1, "message": "$$ROOT"}},
            *metrics.totals_per_agent_stages(),
        ]
        rows = {row["_id"]: row for row in self._messages.aggregate(pipeline)}
        return [rows.get(agent_id) or metrics.empty_row(agent_id) for agent_id in agent_ids]

    def delete_session(self, session_id: str) -> None:
        """Delete the session document (checking its layout and generation), then that generation's messages."""
        generation = self._sessions.delete(session_id)
        self._messages.delete_many(message_owner(session_id, generation))

    def _insert(self, session_id: str, document: Document) -> bool:
        """Insert ``document``; False if its key is taken."""
        try:
            self._messages.insert_one(document)
        except DuplicateKeyError:
            return False
        except (DocumentTooLarge, WriteError) as error:
            if isinstance(error, WriteError) and error.code not in DOCUMENT_TOO_LARGE_CODES:
                raise
            raise SessionTooLargeError(
                session_id, 0, len(bson.encode(document)), MAX_DOCUMENT_BYTES, document="a new message"
            ) from None
        return True

    def _remove_left_behind(self, session_id: str, agent_id: str, message_id: int, generation: Any) -> bool:
        """Delete the message holding this key if an earlier generation of the session left it behind.

        Only on this refused path is the session's current generation read: if it is no longer
        the one this writer writes in, the session was deleted and created again meanwhile, and
        nothing may be written into (or removed from) the new one.
        """
        self._sessions.read_checked(session_id, {})  # raises if the session was replaced since
        slot = message_slot(session_id, agent_id, message_id)
        return self._messages.delete_one({**slot, GENERATION_FIELD: {"$ne": generation}}).deleted_count == 1


def _message_id(message: Document) -> Any:
    return message["message_id"]
