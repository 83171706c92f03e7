"""Strands ``SessionRepository`` stored in MongoDB, one document per session.

Document shape (``_id`` is the session id)::

    {
      "_id": "<session_id>", "session_id": "<session_id>", "session_type": "AGENT",
      "created_at": <date>, "updated_at": <date>,
      "metadata": {...},
      "agents": {
        "<agent_id>": {
          "agent_id": ..., "state": {...}, "conversation_manager_state": {...},
          "internal_state": {...}, "created_at": <date>, "updated_at": <date>,
          "messages": [{"message_id": 0, "message": {...}, "redact_message": null,
                        "created_at": <date>, "updated_at": <date>,
                        "event_loop_metrics": {...}}]   # metrics on assistant messages only
        }
      },
      "multi_agents": {"<multi_agent_id>": {"multi_agent_id": ..., "state": {...}, ...}}
    }

Every write the session manager asks for is one MongoDB command whose filter carries its own
preconditions (the agent exists, the message id is new, the document stays under 16 MiB), so
nothing is read first. Only when a write is refused does one extra read find out why, to raise
the right typed error.
"""

import logging
from collections.abc import Iterable, Iterator, Mapping
from contextlib import AbstractContextManager, contextmanager
from contextvars import ContextVar
from dataclasses import dataclass
from datetime import UTC, datetime
from types import MappingProxyType, TracebackType
from typing import TYPE_CHECKING, Any, TypeVar

import bson
from bson.codec_options import CodecOptions
from bson.raw_bson import RawBSONDocument
from pymongo import MongoClient, ReturnDocument
from pymongo.collection import Collection
from pymongo.errors import DuplicateKeyError
from strands.session.session_repository import SessionRepository
from strands.types.session import Session, SessionAgent, SessionMessage

from . import metrics
from ._client import create_client, open_or_borrow
from ._documents import (
    MESSAGE_FIELDS,
    Document,
    agent_from_document,
    agent_state_fields,
    encoded,
    message_document,
    message_from_document,
    new_agent_document,
    new_session_document,
    now,
    session_from_document,
)
from ._indexes import ensure_session_indexes
from ._resume import END_OF_ARRAY, ResumeSnapshots, resume_pipeline
from .errors import InvalidIdentifierError, SessionConflictError, SessionNotFoundError, SessionTooLargeError
from .validation import validate_field_name, validate_session_id

if TYPE_CHECKING:
    from strands.multiagent.base import MultiAgentBase

logger = logging.getLogger(__name__)
T = TypeVar("T")

MAX_DOCUMENT_BYTES = 16 * 1024 * 1024
"""MongoDB's BSON document limit."""
WARN_DOCUMENT_BYTES = 8 * 1024 * 1024
"""Past this size every write logs a warning: the session is half-way to the limit."""
WRITE_HEADROOM_BYTES = 1024
"""Room kept for what a write adds besides its payload (array index keys, timestamps)."""

AGENT_FIELDS = ("agent_id", "state", "conversation_manager_state", "internal_state", "created_at", "updated_at")

_extra_message_fields: ContextVar[Mapping[str, Any]] = ContextVar(
    "mongodb_session_manager_extra_message_fields", default=MappingProxyType({})
)
_agent_already_stored: ContextVar[bool] = ContextVar("mongodb_session_manager_agent_already_stored", default=False)


@contextmanager
def _scoped(variable: ContextVar[T], value: T) -> Iterator[None]:
    """Set ``variable`` to ``value`` for the block (this thread or task only)."""
    token = variable.set(value)
    try:
        yield
    finally:
        variable.reset(token)


def agent_already_stored() -> AbstractContextManager[None]:
    """Inside this block ``update_agent`` writes nothing: the caller knows the stored agent is current.

    The session manager uses it right after an agent was created or restored, so that Strands
    records its sync baseline without rewriting what was just read or written.
    """
    return _scoped(_agent_already_stored, True)


@dataclass(frozen=True)
class _Probe:
    """Why a conditional write was refused: the document as it is now."""

    size: int
    has_entry: bool = False
    """The agent or multi-agent addressed exists."""
    has_message: bool = False


class MongoDBSessionRepository(SessionRepository):
    """Stores Strands sessions, agents, messages and multi-agent state in a MongoDB collection.

    Pass ``client`` to borrow a ``MongoClient`` (it is never closed here), or a
    ``connection_string`` (plus any ``MongoClient`` options) to own one that :meth:`close` closes.
    """

    def __init__(
        self,
        connection_string: str | None = None,
        database_name: str = "strands",
        collection_name: str = "sessions",
        client: MongoClient[Any] | None = None,
        **client_kwargs: Any,
    ) -> None:
        """Connect (or borrow ``client``) and make sure the session indexes exist."""
        self._client, self._owns_client = open_or_borrow(connection_string, client, client_kwargs, create_client)
        self._collection: Collection[Document] = self._client[database_name].get_collection(
            collection_name, codec_options=CodecOptions(tz_aware=True, tzinfo=UTC)
        )
        self._snapshots = ResumeSnapshots()
        try:
            ensure_session_indexes(self._collection)
        except BaseException:
            self.close()
            raise

    @property
    def client(self) -> MongoClient[Any]:
        """The ``MongoClient`` in use (owned or borrowed)."""
        return self._client

    @property
    def collection(self) -> Collection[Document]:
        """The collection holding the session documents."""
        return self._collection

    @property
    def owns_client(self) -> bool:
        """Whether :meth:`close` closes the client (True when this repository created it)."""
        return self._owns_client

    def close(self) -> None:
        """Close the client if this repository owns it; a borrowed client is left open."""
        if self._owns_client:
            self._client.close()

    def __enter__(self) -> "MongoDBSessionRepository":
        """Use the repository as a context manager that closes it on exit."""
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        """Close the repository."""
        self.close()

    def annotate_messages(self, **fields: Any) -> AbstractContextManager[None]:
        """Store ``fields`` alongside every message created inside this block (same thread or task).

        Field names must be safe field names and may not replace a message's own fields.
        """
        for name in fields:
            validate_field_name(name, "message annotation")
            if name in MESSAGE_FIELDS:
                raise InvalidIdentifierError("message annotation", name, "is a field of every stored message")
        return _scoped(_extra_message_fields, {**_extra_message_fields.get(), **fields})

    # Sessions

    def create_session(self, session: Session, **kwargs: Any) -> Session:
        """Create the session unless it exists; an existing one is left as it is (idempotent)."""
        session_id = validate_session_id(session.session_id)
        insert_only = {**new_session_document(session), "updated_at": now()}
        try:
            with self._snapshots.writing(session_id):
                self._collection.update_one({"_id": session_id}, {"$setOnInsert": insert_only}, upsert=True)
        except DuplicateKeyError:
            # Two upserts raced to insert the same _id; the other one created it, which is all we want.
            logger.debug("session_id=<%s> | concurrent creation, session already exists", session_id)
        return session

    def read_session(self, session_id: str, **kwargs: Any) -> Session | None:
        """Read the session, keeping what an agent's resume needs so it costs no further round trip."""
        validate_session_id(session_id)
        writes_before_read = self._snapshots.writes_so_far()
        documents = list(self._collection.aggregate(resume_pipeline(session_id)))
        if not documents:
            return None
        self._snapshots.keep(session_id, documents[0], writes_before_read)
        return session_from_document(documents[0])

    def delete_session(self, session_id: str, **kwargs: Any) -> None:
        """Delete the session and everything stored for it; raise if it does not exist."""
        validate_session_id(session_id)
        with self._snapshots.writing(session_id):
            deleted = self._collection.delete_one({"_id": session_id}).deleted_count
        if deleted == 0:
            raise SessionNotFoundError(f"session {session_id!r} not found")

    # Agents

    def create_agent(self, session_id: str, session_agent: SessionAgent, **kwargs: Any) -> None:
        """Add the agent to the session; an agent that already exists is left untouched."""
        validate_session_id(session_id)
        agent_id = validate_field_name(session_agent.agent_id, "agent_id")
        moment = now()
        entry = encoded(new_agent_document(session_agent, moment))
        self._create_entry(session_id, f"agents.{agent_id}", entry, moment)

    def read_agent(self, session_id: str, agent_id: str, **kwargs: Any) -> SessionAgent | None:
        """Read the agent (without its messages), or None if the session or agent does not exist."""
        validate_session_id(session_id)
        validate_field_name(agent_id, "agent_id")
        answered, entry = self._snapshots.agent(session_id, agent_id)
        if not answered:
            path = f"agents.{agent_id}"
            document = self._collection.find_one({"_id": session_id}, {f"{path}.{name}": 1 for name in AGENT_FIELDS})
            entry = ((document or {}).get("agents") or {}).get(agent_id)
        return agent_from_document(entry) if entry else None

    def update_agent(self, session_id: str, session_agent: SessionAgent, **kwargs: Any) -> None:
        """Replace the agent's state, conversation-manager state and internal state."""
        validate_session_id(session_id)
        agent_id = validate_field_name(session_agent.agent_id, "agent_id")
        if _agent_already_stored.get():
            return
        fields = encoded(agent_state_fields(session_agent))
        self._update_entry(session_id, f"agents.{agent_id}", fields, f"agent {agent_id!r}")

    # Messages

    def create_message(self, session_id: str, agent_id: str, session_message: SessionMessage, **kwargs: Any) -> None:
        """Append the message; a ``message_id`` the agent already has raises :class:`SessionConflictError`."""
        validate_session_id(session_id)
        validate_field_name(agent_id, "agent_id")
        message_id = _validate_message_id(session_message.message_id)
        moment = now()
        entry = encoded(message_document(session_message, moment, _extra_message_fields.get()))
        path = f"agents.{agent_id}"
        conditions = {path: {"$exists": True}, f"{path}.messages.message_id": {"$ne": message_id}}
        update = {"$push": {f"{path}.messages": entry}, "$set": {"updated_at": moment}}
        if self._write(session_id, conditions, update, added_bytes=len(entry.raw)):
            return
        probe = self._probe(session_id, entry_path=path, message_id=message_id)
        if not probe.has_entry:
            raise SessionNotFoundError(f"agent {agent_id!r} not found in session {session_id!r}")
        if probe.has_message:
            raise SessionConflictError(
                f"message {message_id} of agent {agent_id!r} in session {session_id!r} was already written "
                "by another writer; nothing was changed"
            )
        raise self._refusal(session_id, probe, len(entry.raw))

    def read_message(self, session_id: str, agent_id: str, message_id: int, **kwargs: Any) -> SessionMessage | None:
        """Read one message, or None if the session, agent or message does not exist."""
        validate_session_id(session_id)
        validate_field_name(agent_id, "agent_id")
        _validate_message_id(message_id)
        matching = {
            "$filter": {
                "input": {"$ifNull": [f"$agents.{agent_id}.messages", []]},
                "cond": {"$eq": ["$$this.message_id", message_id]},
            }
        }
        pipeline: list[Document] = [{"$match": {"_id": session_id}}, {"$project": {"_id": 0, "found": matching}}]
        found = [message for document in self._collection.aggregate(pipeline) for message in document["found"]]
        return message_from_document(found[0]) if found else None

    def update_message(self, session_id: str, agent_id: str, session_message: SessionMessage, **kwargs: Any) -> None:
        """Rewrite a stored message (Strands does this to redact it after a guardrail intervened)."""
        validate_session_id(session_id)
        validate_field_name(agent_id, "agent_id")
        message_id = _validate_message_id(session_message.message_id)
        moment = now()
        body = encoded({"message": session_message.message, "redact_message": session_message.redact_message})
        path = f"agents.{agent_id}.messages"
        update = {
            "$set": {
                f"{path}.$[target].message": body["message"],
                f"{path}.$[target].redact_message": body["redact_message"],
                f"{path}.$[target].updated_at": moment,
                "updated_at": moment,
            }
        }
        conditions = {f"{path}.message_id": message_id}
        array_filters = [{"target.message_id": message_id}]
        if self._write(session_id, conditions, update, added_bytes=len(body.raw), array_filters=array_filters):
            return
        probe = self._probe(session_id, entry_path=f"agents.{agent_id}", message_id=message_id)
        if not probe.has_message:
            raise SessionNotFoundError(
                f"message {message_id} of agent {agent_id!r} not found in session {session_id!r}"
            )
        raise self._refusal(session_id, probe, len(body.raw))

    def list_messages(
        self, session_id: str, agent_id: str, limit: int | None = None, offset: int = 0, **kwargs: Any
    ) -> list[SessionMessage]:
        """List the agent's messages from position ``offset``, at most ``limit`` of them."""
        validate_session_id(session_id)
        validate_field_name(agent_id, "agent_id")
        if isinstance(offset, bool) or not isinstance(offset, int) or offset < 0:
            raise ValueError(f"offset must be a non-negative int, not {offset!r}")
        if limit is not None and (isinstance(limit, bool) or not isinstance(limit, int) or limit < 0):
            raise ValueError(f"limit must be None or a non-negative int, not {limit!r}")
        stored = self._snapshots.take_messages(session_id, agent_id, offset) if limit is None else None
        if stored is None:
            stored = self._read_messages(session_id, agent_id, offset, limit)
        return [message_from_document(message) for message in stored[:limit]]

    def _read_messages(self, session_id: str, agent_id: str, offset: int, limit: int | None) -> list[Document]:
        path = f"agents.{agent_id}"
        count = END_OF_ARRAY if limit is None else max(limit, 1)
        projection = {f"{path}.messages": {"$slice": [offset, count]}, f"{path}.agent_id": 1}
        document = self._collection.find_one({"_id": session_id}, projection)
        if document is None:
            raise SessionNotFoundError(f"session {session_id!r} not found")
        entry = (document.get("agents") or {}).get(agent_id)
        if entry is None:
            raise SessionNotFoundError(f"agent {agent_id!r} not found in session {session_id!r}")
        messages: list[Document] = entry.get("messages") or []
        return messages

    # Multi-agent (Graph, Swarm)

    def create_multi_agent(self, session_id: str, multi_agent: "MultiAgentBase", **kwargs: Any) -> None:
        """Store the multi-agent's state; one that already exists is left untouched."""
        validate_session_id(session_id)
        multi_agent_id = validate_field_name(multi_agent.id, "multi_agent_id")
        moment = now()
        entry = encoded(
            {
                "multi_agent_id": multi_agent_id,
                "state": multi_agent.serialize_state(),
                "created_at": moment,
                "updated_at": moment,
            }
        )
        self._create_entry(session_id, f"multi_agents.{multi_agent_id}", entry, moment)

    def read_multi_agent(self, session_id: str, multi_agent_id: str, **kwargs: Any) -> dict[str, Any] | None:
        """Read the multi-agent's serialized state, or None if it was never stored."""
        validate_session_id(session_id)
        validate_field_name(multi_agent_id, "multi_agent_id")
        path = f"multi_agents.{multi_agent_id}"
        document = self._collection.find_one({"_id": session_id}, {f"{path}.state": 1})
        entry = ((document or {}).get("multi_agents") or {}).get(multi_agent_id)
        state: dict[str, Any] | None = entry.get("state") if entry else None
        return state

    def update_multi_agent(self, session_id: str, multi_agent: "MultiAgentBase", **kwargs: Any) -> None:
        """Replace the multi-agent's stored state with its current ``serialize_state()``."""
        validate_session_id(session_id)
        multi_agent_id = validate_field_name(multi_agent.id, "multi_agent_id")
        fields = encoded({"state": multi_agent.serialize_state()})
        self._update_entry(session_id, f"multi_agents.{multi_agent_id}", fields, f"multi-agent {multi_agent_id!r}")

    # Metadata and metrics

    def update_metadata(self, session_id: str, metadata: Mapping[str, Any]) -> None:
        """Set the given metadata fields, keeping every other field as it is."""
        validate_session_id(session_id)
        for key in metadata:
            validate_field_name(key, "metadata key")
        if not metadata:
            self._probe(session_id)
            return
        moment = now()
        values = encoded(dict(metadata))
        update = {"$set": {**{f"metadata.{key}": value for key, value in values.items()}, "updated_at": moment}}
        if not self._write(session_id, {}, update, added_bytes=len(values.raw)):
            raise self._refusal(session_id, self._probe(session_id), len(values.raw))

    def delete_metadata(self, session_id: str, keys: Iterable[str]) -> None:
        """Remove the given metadata fields (missing ones are ignored)."""
        validate_session_id(session_id)
        if isinstance(keys, str):
            raise InvalidIdentifierError("metadata keys", keys, "pass a list of keys, not a single string")
        paths = {f"metadata.{validate_field_name(key, 'metadata key')}": "" for key in keys}
        update: Document = {"$set": {"updated_at": now()}}
        if paths:
            update["$unset"] = paths
        with self._snapshots.writing(session_id):
            matched = self._collection.update_one({"_id": session_id}, update).matched_count
        if matched == 0:
            raise SessionNotFoundError(f"session {session_id!r} not found")

    def get_metadata(self, session_id: str) -> dict[str, Any]:
        """Return the session's metadata."""
        validate_session_id(session_id)
        document = self._collection.find_one({"_id": session_id}, {"metadata": 1})
        if document is None:
            raise SessionNotFoundError(f"session {session_id!r} not found")
        stored: dict[str, Any] = document.get("metadata") or {}
        return stored

    def get_metrics_summary(self, session_id: str) -> dict[str, Any]:
        """Token and latency totals per agent and for the whole session, summed inside MongoDB.

        Returns ``{"session_id", "agents": {agent_id: figures}, "totals": figures}`` where figures
        are ``messages``, ``model_calls``, ``tokens`` (input/output/total/cache) and
        ``latency_ms`` (``total``, ``mean`` per model call, ``max``).
        """
        validate_session_id(session_id)
        rows = list(self._collection.aggregate(metrics.agent_totals_pipeline(session_id)))
        if not rows:
            raise SessionNotFoundError(f"session {session_id!r} not found")
        return metrics.summarise(session_id, rows)

    # Conditional writes

    def _write(
        self,
        session_id: str,
        conditions: Document,
        update: Document,
        *,
        added_bytes: int,
        array_filters: list[Document] | None = None,
    ) -> bool:
        """Apply ``update`` in one command if ``conditions`` hold and the document stays under the limit.

        Returns whether it was applied. A refused write changes nothing.
        """
        room = MAX_DOCUMENT_BYTES - WRITE_HEADROOM_BYTES - added_bytes
        if room < 0:
            return False
        within_limit = {"$expr": {"$lte": [{"$bsonSize": "$$ROOT"}, room]}}
        with self._snapshots.writing(session_id):
            result = self._collection.find_one_and_update(
                {"_id": session_id, **conditions, **within_limit},
                update,
                projection={"_id": 0, "size": {"$bsonSize": "$$ROOT"}},
                return_document=ReturnDocument.AFTER,
                array_filters=array_filters,
            )
        if result is None:
            return False
        # A retried write (retryWrites) is answered with the whole stored post-image, unprojected.
        size = result.get("size")
        if not isinstance(size, int):
            size = len(bson.encode(result))
        if size > WARN_DOCUMENT_BYTES:
            logger.warning(
                "session_id=<%s> | document is %d bytes, past %d of MongoDB's %d-byte limit",
                session_id,
                size,
                WARN_DOCUMENT_BYTES,
                MAX_DOCUMENT_BYTES,
            )
        return True

    def _create_entry(self, session_id: str, path: str, entry: RawBSONDocument, moment: datetime) -> None:
        """Store ``entry`` at ``path`` (an agent or multi-agent) unless one is there: creation is idempotent."""
        update = {"$set": {path: entry, "updated_at": moment}}
        if self._write(session_id, {path: {"$exists": False}}, update, added_bytes=len(entry.raw)):
            return
        probe = self._probe(session_id, entry_path=path)
        if probe.has_entry:
            logger.debug("session_id=<%s> | %s already exists; left as it is", session_id, path)
            return
        raise self._refusal(session_id, probe, len(entry.raw))

    def _update_entry(self, session_id: str, path: str, fields: RawBSONDocument, description: str) -> None:
        """Set ``fields`` in the existing entry at ``path``; raise :class:`SessionNotFoundError` if there is none."""
        moment = now()
        values = {f"{path}.{name}": value for name, value in fields.items()}
        update = {"$set": {**values, f"{path}.updated_at": moment, "updated_at": moment}}
        if self._write(session_id, {path: {"$exists": True}}, update, added_bytes=len(fields.raw)):
            return
        probe = self._probe(session_id, entry_path=path)
        if not probe.has_entry:
            raise SessionNotFoundError(f"{description} not found in session {session_id!r}")
        raise self._refusal(session_id, probe, len(fields.raw))

    def _probe(self, session_id: str, *, entry_path: str | None = None, message_id: int | None = None) -> _Probe:
        """Read what a refused write needs explained; raise if the session itself is missing.

        ``entry_path`` addresses an agent or multi-agent; ``message_id`` a message of that agent.
        """
        fields: Document = {"_id": 0, "size": {"$bsonSize": "$$ROOT"}}
        if entry_path is not None:
            fields["has_entry"] = {"$eq": [{"$type": f"${entry_path}"}, "object"]}
        if entry_path is not None and message_id is not None:
            messages = {"$ifNull": [f"${entry_path}.messages", []]}
            fields["has_message"] = {"$in": [message_id, {"$map": {"input": messages, "in": "$$this.message_id"}}]}
        found = list(self._collection.aggregate([{"$match": {"_id": session_id}}, {"$project": fields}]))
        if not found:
            raise SessionNotFoundError(f"session {session_id!r} not found")
        return _Probe(**found[0])

    def _refusal(self, session_id: str, probe: _Probe, added_bytes: int) -> Exception:
        """The error for a refused write that the document's existence did not explain."""
        if probe.size + added_bytes + WRITE_HEADROOM_BYTES > MAX_DOCUMENT_BYTES:
            return SessionTooLargeError(session_id, probe.size, added_bytes, MAX_DOCUMENT_BYTES)
        return SessionConflictError(f"session {session_id!r} changed while it was being written; nothing was changed")


def _validate_message_id(message_id: Any) -> int:
    if isinstance(message_id, bool) or not isinstance(message_id, int) or message_id < 0:
        raise InvalidIdentifierError("message_id", message_id, "must be a non-negative int")
    return message_id
