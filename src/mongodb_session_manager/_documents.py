"""Conversion between Strands' session dataclasses and the stored BSON documents.

Timestamps are stored as BSON dates (Strands keeps ISO strings). Bytes are stored as BSON
binary, which is smaller than Strands' base64 wrapper; the wrapper is still decoded on read.
Payloads are encoded to BSON right away (:func:`encoded`), so what is written is fixed at the
moment of the call even though Strands later edits message dicts in place (redaction).
"""

from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

import bson
from bson import ObjectId
from bson.raw_bson import RawBSONDocument
from strands.types.session import Session, SessionAgent, SessionMessage, SessionType, decode_bytes_values

Document = dict[str, Any]


def encoded(document: Document) -> RawBSONDocument:
    """``document`` encoded to BSON now; pymongo sends the bytes as they are, and ``len(.raw)`` is its size."""
    return RawBSONDocument(bson.encode(document))


def now() -> datetime:
    """The current time, as stored (UTC, millisecond precision like BSON dates)."""
    moment = datetime.now(UTC)
    return moment.replace(microsecond=moment.microsecond // 1000 * 1000)


def to_datetime(value: str | datetime) -> datetime:
    """Parse Strands' ISO timestamp (or pass a datetime through) as an aware UTC datetime."""
    moment = datetime.fromisoformat(value) if isinstance(value, str) else value
    return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)


def to_iso(value: Any) -> str:
    """Render a stored date as the ISO string Strands expects."""
    if isinstance(value, datetime):
        return to_datetime(value).isoformat()
    return str(value)


GENERATION_FIELD = "generation"
"""Session-document field telling this session apart from earlier ones that had the same id."""


def new_session_document(session: Session) -> Document:
    """The fields a session document gets when it is first inserted (with a new generation)."""
    return {
        "session_id": session.session_id,
        GENERATION_FIELD: ObjectId(),
        "session_type": SessionType(session.session_type).value,
        "created_at": to_datetime(session.created_at),
        "metadata": {},
        "agents": {},
        "multi_agents": {},
    }


def session_from_document(document: Document) -> Session:
    """Rebuild a Strands ``Session`` from its stored document."""
    return Session(
        session_id=document["session_id"],
        session_type=SessionType(document.get("session_type", SessionType.AGENT.value)),
        created_at=to_iso(document["created_at"]),
        updated_at=to_iso(document["updated_at"]),
    )


def agent_state_fields(agent: SessionAgent) -> Document:
    """The agent's mutable fields, as stored (everything but its messages and creation time)."""
    return {
        "agent_id": agent.agent_id,
        "state": agent.state,
        "conversation_manager_state": agent.conversation_manager_state,
        "internal_state": agent._internal_state,
    }


def new_agent_document(agent: SessionAgent, moment: datetime) -> Document:
    """A new agent entry (the layout adds where its messages go)."""
    return {
        **agent_state_fields(agent),
        "created_at": to_datetime(agent.created_at),
        "updated_at": moment,
    }


def agent_from_document(document: Document) -> SessionAgent:
    """Rebuild a Strands ``SessionAgent`` from its stored entry."""
    return SessionAgent.from_dict(
        {
            "agent_id": document["agent_id"],
            "state": document.get("state") or {},
            "conversation_manager_state": document.get("conversation_manager_state") or {},
            "_internal_state": document.get("internal_state") or {},
            "created_at": to_iso(document["created_at"]),
            "updated_at": to_iso(document["updated_at"]),
        }
    )


def removed_message_count(agent: Document) -> int:
    """Messages of the agent its conversation manager already dropped: where a resume starts."""
    count = (agent.get("conversation_manager_state") or {}).get("removed_message_count")
    return count if isinstance(count, int) and not isinstance(count, bool) and count > 0 else 0


MESSAGE_FIELDS = ("message_id", "message", "redact_message", "created_at", "updated_at")
"""The fields every stored message has (see :func:`message_document`)."""


def message_document(message: SessionMessage, moment: datetime, extra_fields: Mapping[str, Any]) -> Document:
    """A stored message entry, plus any extra fields (such as metrics)."""
    return {
        "message_id": message.message_id,
        "message": message.message,
        "redact_message": message.redact_message,
        "created_at": to_datetime(message.created_at),
        "updated_at": moment,
        **extra_fields,
    }


def message_from_document(document: Document) -> SessionMessage:
    """Rebuild a Strands ``SessionMessage``; extra stored fields (metrics) are left out.

    Built directly rather than through ``SessionMessage.from_dict``, which inspects the class
    signature for every key of every message: a tenth of the time on long resumes.
    """
    redact_message = document.get("redact_message")
    return SessionMessage(
        message=decode_bytes_values(document["message"]),
        message_id=document["message_id"],
        redact_message=decode_bytes_values(redact_message) if redact_message is not None else None,
        created_at=to_iso(document["created_at"]),
        updated_at=to_iso(document["updated_at"]),
    )
