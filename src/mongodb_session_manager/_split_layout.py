"""The split layout: one document per message, in a collection beside the sessions.

The session document keeps only what is bounded (session, metadata, agent and multi-agent
state); messages live in ``<collection>_messages`` under a unique ``(session_id, agent_id,
message_id)`` index. An append is one insert whatever the conversation's length, a page is a
range on ``message_id`` (Strands numbers each agent's messages 0, 1, 2, ..., so a position is an
id), and a resume is two reads: the session document, then every agent's messages at once.

Messages carry no back-reference the server could check on insert, so an append checks that the
agent exists only the first time this repository sees that agent. Deleting a session removes its
messages first and the session document last, so an interrupted delete leaves the session in
place (with fewer messages) for a retry, never messages without a session. A writer elsewhere that
keeps appending to a session while it is deleted can still leave messages behind: delete sessions
that are no longer in use.
"""

import threading
from collections import OrderedDict
from collections.abc import Mapping
from typing import Any

from bson.raw_bson import RawBSONDocument
from pymongo import ASCENDING, IndexModel
from pymongo.collection import Collection
from pymongo.errors import DuplicateKeyError

from . import metrics
from ._documents import Document, now
from ._indexes import ensure_indexes
from ._session_documents import MAX_DOCUMENT_BYTES, WRITE_HEADROOM_BYTES, SessionDocuments, stored_layout
from .errors import LayoutMismatchError, SessionConflictError, SessionNotFoundError, SessionTooLargeError

MESSAGE_INDEXES = (
    IndexModel(
        [("session_id", ASCENDING), ("agent_id", ASCENDING), ("message_id", ASCENDING)],
        name="session_agent_message_unique",
        unique=True,
    ),
)
KNOWN_AGENTS_KEPT = 1024
"""How many (session, agent) pairs a repository remembers as existing."""
_STORED_MESSAGE = {"_id": 0, "session_id": 0}
"""Projection: a stored message as the repository converts it (``agent_id`` is kept for grouping)."""


def default_messages_collection_name(collection_name: str) -> str:
    """The default messages collection for the sessions in ``collection_name``."""
    return f"{collection_name}_messages"


def split_message_document(session_id: str, agent_id: str, entry: Mapping[str, Any]) -> Document:
    """A message's own document: its key, then the entry the embedded layout would store."""
    return {"session_id": session_id, "agent_id": agent_id, **entry}


class _KnownAgents:
    """A bounded, thread-safe set of (session_id, agent_id) pairs known to exist."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._pairs: OrderedDict[tuple[str, str], None] = OrderedDict()

    def add(self, session_id: str, agent_id: str) -> None:
        with self._lock:
            self._pairs[(session_id, agent_id)] = None
            self._pairs.move_to_end((session_id, agent_id))
            while len(self._pairs) > KNOWN_AGENTS_KEPT:
                self._pairs.popitem(last=False)

    def __contains__(self, pair: tuple[str, str]) -> bool:
        with self._lock:
            return pair in self._pairs

    def forget_session(self, session_id: str) -> None:
        with self._lock:
            for pair in [pair for pair in self._pairs if pair[0] == session_id]:
                del self._pairs[pair]


class SplitLayout:
    """Messages as documents of their own in ``messages``."""

    def __init__(self, sessions: SessionDocuments, messages: Collection[Document]) -> None:
        """Keep messages in ``messages`` (its unique index is created once per process)."""
        self._sessions = sessions
        self.new_agent_fields: Document = {}
        self._messages = messages
        self._known_agents = _KnownAgents()
        ensure_indexes(messages, MESSAGE_INDEXES)

    @property
    def messages(self) -> Collection[Document]:
        """The collection holding one document per message."""
        return self._messages

    def agent_exists(self, session_id: str, agent_id: str) -> None:
        """Remember the agent, so appends to it need no existence check."""
        self._known_agents.add(session_id, agent_id)

    def create_message(self, session_id: str, agent_id: str, message_id: int, entry: RawBSONDocument) -> None:
        """One insert; the unique index turns a second writer of ``message_id`` into a conflict."""
        if len(entry.raw) + WRITE_HEADROOM_BYTES > MAX_DOCUMENT_BYTES:
            raise SessionTooLargeError(session_id, 0, len(entry.raw), MAX_DOCUMENT_BYTES, document="a new message")
        if (session_id, agent_id) not in self._known_agents:
            self._require_agent(session_id, agent_id)
        try:
            self._messages.insert_one(split_message_document(session_id, agent_id, entry))
        except DuplicateKeyError:
            raise SessionConflictError(
                f"message {message_id} of agent {agent_id!r} in session {session_id!r} was already written "
                "by another writer; nothing was changed"
            ) from None

    def update_message(self, session_id: str, agent_id: str, message_id: int, body: RawBSONDocument) -> None:
        """Rewrite the message's document."""
        if len(body.raw) + WRITE_HEADROOM_BYTES > MAX_DOCUMENT_BYTES:
            raise SessionTooLargeError(session_id, 0, len(body.raw), MAX_DOCUMENT_BYTES, document="the message")
        update = {"$set": {"message": body["message"], "redact_message": body["redact_message"], "updated_at": now()}}
        key = {"session_id": session_id, "agent_id": agent_id, "message_id": message_id}
        if self._messages.update_one(key, update).matched_count == 0:
            raise SessionNotFoundError(
                f"message {message_id} of agent {agent_id!r} not found in session {session_id!r}"
            )

    def read_message(self, session_id: str, agent_id: str, message_id: int) -> Document | None:
        """Find the message by its key."""
        key = {"session_id": session_id, "agent_id": agent_id, "message_id": message_id}
        found: Document | None = self._messages.find_one(key, _STORED_MESSAGE)
        return found

    def read_messages(self, session_id: str, agent_id: str, offset: int, limit: int | None) -> list[Document]:
        """A range on ``message_id`` from ``offset`` (sorted by the index when ``limit`` pages it)."""
        query = {"session_id": session_id, "agent_id": agent_id, "message_id": {"$gte": offset}}
        if limit is None:
            found = sorted(self._messages.find(query, _STORED_MESSAGE), key=_message_id)
        elif limit > 0:
            found = list(self._messages.find(query, _STORED_MESSAGE).sort("message_id", ASCENDING).limit(limit))
        else:
            found = []
        if not found:
            self._require_agent(session_id, agent_id)
        return found

    def read_for_resume(self, session_id: str) -> Document | None:
        """Two reads: the session document, then every agent's messages from its offset in one query."""
        document = self._sessions.find(session_id)
        if document is None or stored_layout(document) != self._sessions.layout:
            return document
        agents: dict[str, Document] = document.get("agents") or {}
        ranges = []
        for agent_id, entry in agents.items():
            entry["messages_offset"] = _removed_message_count(entry)
            entry["messages"] = []
            ranges.append({"agent_id": agent_id, "message_id": {"$gte": entry["messages_offset"]}})
            self._known_agents.add(session_id, agent_id)
        if ranges:
            for message in self._messages.find({"session_id": session_id, "$or": ranges}, _STORED_MESSAGE):
                agents[message["agent_id"]]["messages"].append(message)
            for entry in agents.values():
                entry["messages"].sort(key=_message_id)
        return document

    def metrics_rows(self, session_id: str) -> list[Document]:
        """The session's agent ids, then one aggregation over its messages."""
        agent_ids_of = {"$map": {"input": {"$objectToArray": {"$ifNull": ["$agents", {}]}}, "in": "$$this.k"}}
        found = list(
            self._sessions.collection.aggregate(
                [{"$match": {"_id": session_id}}, {"$project": {"_id": 0, "agent_ids": agent_ids_of}}]
            )
        )
        if not found:
            raise SessionNotFoundError(f"session {session_id!r} not found")
        pipeline: list[Document] = [
            {"$match": {"session_id": session_id}},
            {"$project": {"agent_id": 1, "message": "$$ROOT"}},
            *metrics.totals_per_agent_stages(),
        ]
        rows = {row["_id"]: row for row in self._messages.aggregate(pipeline)}
        return [rows.get(agent_id) or metrics.empty_row(agent_id) for agent_id in sorted(found[0]["agent_ids"])]

    def delete_session(self, session_id: str) -> bool:
        """Delete the messages, then the session document."""
        self._known_agents.forget_session(session_id)
        self._messages.delete_many({"session_id": session_id})
        return self._sessions.collection.delete_one({"_id": session_id}).deleted_count == 1

    def _require_agent(self, session_id: str, agent_id: str) -> None:
        """Raise unless the session exists in this layout and has the agent; remember it if so."""
        document = self._sessions.find(session_id, {f"agents.{agent_id}.agent_id": 1, "message_layout": 1})
        if document is None:
            raise SessionNotFoundError(f"session {session_id!r} not found")
        if stored_layout(document) != self._sessions.layout:
            raise LayoutMismatchError(session_id, stored_layout(document), self._sessions.layout)
        if agent_id not in (document.get("agents") or {}):
            raise SessionNotFoundError(f"agent {agent_id!r} not found in session {session_id!r}")
        self._known_agents.add(session_id, agent_id)


def _message_id(message: Document) -> Any:
    return message["message_id"]


def _removed_message_count(agent: Document) -> int:
    count = (agent.get("conversation_manager_state") or {}).get("removed_message_count")
    return count if isinstance(count, int) and not isinstance(count, bool) and count > 0 else 0
