"""Conversion between Strands' session dataclasses and the stored BSON documents.

Timestamps are stored as BSON dates (Strands keeps ISO strings). Messages, agent state and
multi-agent state are stored as BSON as they are, bytes as BSON binary, and come back equal: no
wrapper is added on write or decoded on read, so a value that happens to look like Strands'
base64 wrapper stays what it was. Payloads are encoded to BSON right away (:func:`encoded`), so
what is written is fixed at the moment of the call even though Strands later edits message dicts
in place (redaction), and a value BSON cannot hold is refused before anything is sent.
"""

from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

import bson
from bson import ObjectId
from bson.errors import InvalidDocument
from bson.raw_bson import RawBSONDocument
from strands.types.session import Session, SessionAgent, SessionMessage, SessionType

from ._schema import FIRST_PROMPT_FIELD, GENERATION_FIELD, Document
from ._strands_internals import internal_state_of, session_agent
from .errors import UnstorableValueError

_ENCODING_ERRORS = (InvalidDocument, OverflowError, UnicodeEncodeError, TypeError, ValueError)


def encoded(document: Mapping[str, Any], field: str) -> RawBSONDocument:
    """``document`` encoded to BSON now; pymongo sends the bytes as they are, and ``len(.raw)`` is its size.

    Raises :class:`UnstorableValueError` naming the path (under ``field``) of the first value BSON
    cannot hold.
    """
    try:
        return RawBSONDocument(bson.encode(document))
    except RecursionError:
        raise UnstorableValueError(field or "value", "...", "is nested too deeply to store") from None
    except _ENCODING_ERRORS as error:
        try:
            path, value, reason = _first_unstorable(document, field)
        except RecursionError:
            path, value, reason = field or "value", "...", "is nested too deeply to store"
        raise UnstorableValueError(path, value, reason) from error


def _first_unstorable(value: Any, path: str) -> tuple[str, Any, str]:
    """Find, below ``value``, the first value or key BSON refuses (only called once encoding failed)."""
    if isinstance(value, Mapping):
        for key, item in value.items():
            if not isinstance(key, str):
                return path, key, f"has a key of type {type(key).__name__}; keys must be str"
            item_path = f"{path}.{key}" if path else key
            if not _encodable({key: None}):
                return item_path, key, "is a key BSON cannot hold (NUL or a lone surrogate)"
            if not _encodable({"": item}):
                return _first_unstorable(item, item_path)
    elif isinstance(value, list | tuple):
        for index, item in enumerate(value):
            if not _encodable({"": item}):
                return _first_unstorable(item, f"{path}[{index}]")
    if isinstance(value, int) and not isinstance(value, bool):
        return path, value, "is outside BSON's 64-bit integer range"
    if isinstance(value, str):
        return path, value, "is not valid Unicode (it holds a lone surrogate)"
    return path, value, f"is a {type(value).__name__}, which BSON cannot store"


def _encodable(document: Mapping[str, Any]) -> bool:
    try:
        bson.encode(document)
    except _ENCODING_ERRORS:
        return False
    return True


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
        "internal_state": internal_state_of(agent),
    }


def new_agent_document(agent: SessionAgent, moment: datetime) -> Document:
    """A new agent entry (the layout adds where its messages go)."""
    return {
        **agent_state_fields(agent),
        "created_at": to_datetime(agent.created_at),
        "updated_at": moment,
    }


def agent_from_document(document: Document) -> SessionAgent:
    """Rebuild a Strands ``SessionAgent`` from its stored entry, values exactly as stored."""
    return session_agent(
        agent_id=document["agent_id"],
        state=document.get("state") or {},
        conversation_manager_state=document.get("conversation_manager_state") or {},
        internal_state=document.get("internal_state") or {},
        created_at=to_iso(document["created_at"]),
        updated_at=to_iso(document["updated_at"]),
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


TITLE_CHARACTERS = 80
"""How much of the first user message becomes the session's title until one is given."""


def opens_turn(message: Mapping[str, Any]) -> bool:
    """Whether ``message`` starts a turn: a user message that is not a tool result."""
    return message.get("role") == "user" and not any("toolResult" in block for block in message.get("content") or ())


def title_text(message: Mapping[str, Any]) -> str:
    """The text of ``message`` as a title: its text blocks, whitespace collapsed, cut to 80 characters."""
    text = " ".join(block["text"] for block in message.get("content") or () if "text" in block)
    return " ".join(text.split())[:TITLE_CHARACTERS]


def turn_opening(message: SessionMessage, agent_id: str) -> Document | None:
    """What storing ``message`` adds to the session document: None unless it opens a turn.

    A turn's first message offers its text as the session's first prompt (the title until one is
    given): ``$min`` on ``{at, agent_id, message_id, text}`` keeps the earliest one, whatever the
    order writes land in. The message's identity lets a redaction rewrite the text too.
    """
    if not opens_turn(message.message):
        return None
    text = title_text(message.message)
    if not text:
        return {}
    at = to_datetime(message.created_at)
    prompt = {"at": at, "agent_id": agent_id, "message_id": message.message_id, "text": text}
    return {"$min": {FIRST_PROMPT_FIELD: prompt}}


def message_from_document(document: Document) -> SessionMessage:
    """Rebuild a Strands ``SessionMessage`` as stored; extra stored fields (metrics) are left out.

    Built directly rather than through ``SessionMessage.from_dict``, which inspects the class
    signature for every key of every message (a tenth of the time on long resumes) and would
    decode values shaped like its base64 wrapper.
    """
    return SessionMessage(
        message=document["message"],
        message_id=document["message_id"],
        redact_message=document.get("redact_message"),
        created_at=to_iso(document["created_at"]),
        updated_at=to_iso(document["updated_at"]),
    )
