"""Listing sessions: what a page holds, the filter it is read with, and the cursor to the next page.

A page is one aggregation: the filter (the repository's scope, the caller's filters, not expired),
sorted newest ``updated_at`` first with ties broken by id, limited, and projected to a summary, so
no message is ever transferred. Pages are keyset-paginated: the cursor holds the last
``(updated_at, _id)`` shown, never an offset. It also carries a digest of the filters it was made
for and a checksum, so a cursor edited by hand, or used with other filters, is refused
(:class:`~mongodb_session_manager.errors.InvalidCursorError`). It is not a secret: the repository's
scope applies whatever the cursor says.
"""

import base64
import binascii
import hashlib
import json
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import bson

from ._documents import encoded
from ._schema import (
    APPLICATION_FIELD,
    FIRST_PROMPT_FIELD,
    GENERATION_FIELD,
    LAYOUT_FIELD,
    TITLE_FIELD,
    UPDATED_AT_FIELD,
    USER_ID_FIELD,
    Document,
)
from .errors import InvalidArgumentError, InvalidCursorError
from .validation import validate_field_name, validate_owner, validate_session_id

MAX_PAGE_SIZE = 1000
_CURSOR_VERSION = 1
_CHECKSUM_KEY = b"mongodb-session-manager listing cursor"


@dataclass(frozen=True)
class SessionSummary:
    """One session in a listing: who owns it, what it is called, how long it is, when it last moved."""

    session_id: str
    user_id: str | None
    application_name: str | None
    title: str | None
    """The title given with ``set_title``, else the start of the first user message (None before one)."""
    created_at: datetime
    updated_at: datetime
    message_count: int
    metadata: dict[str, Any]


@dataclass(frozen=True)
class SessionPage:
    """A page of sessions, newest first, and the cursor to the next one (None on the last page)."""

    sessions: list[SessionSummary]
    next_cursor: str | None


@dataclass(frozen=True)
class SessionFilter:
    """The caller's filters of a listing, validated."""

    user_id: str | None = None
    application_name: str | None = None
    metadata: tuple[tuple[str, Any], ...] = ()
    updated_after: datetime | None = None
    updated_before: datetime | None = None

    @classmethod
    def of(
        cls,
        *,
        user_id: Any = None,
        application_name: Any = None,
        metadata: Any = None,
        updated_after: Any = None,
        updated_before: Any = None,
    ) -> "SessionFilter":
        """Validate the filters as given to ``list_sessions`` and ``count_sessions``."""
        if metadata is not None and not isinstance(metadata, Mapping):
            raise InvalidArgumentError("metadata", metadata, "must be a mapping of keys to values")
        pairs = tuple(
            sorted(
                ((validate_field_name(key, "metadata key"), value) for key, value in (metadata or {}).items()),
                key=lambda pair: pair[0],
            )
        )
        encoded(dict(pairs), "metadata")  # every value must be storable, so it can be compared
        return cls(
            user_id=validate_owner(user_id, "user_id"),
            application_name=validate_owner(application_name, "application_name"),
            metadata=pairs,
            updated_after=_moment(updated_after, "updated_after"),
            updated_before=_moment(updated_before, "updated_before"),
        )

    def clauses(self) -> list[Document]:
        """The filter clauses, each an equality or a range: values are compared as data, never as operators."""
        clauses: list[Document] = []
        if self.user_id is not None:
            clauses.append({USER_ID_FIELD: self.user_id})
        if self.application_name is not None:
            clauses.append({APPLICATION_FIELD: self.application_name})
        clauses.extend({f"metadata.{key}": {"$eq": value}} for key, value in self.metadata)
        if self.updated_after is not None:
            clauses.append({UPDATED_AT_FIELD: {"$gt": self.updated_after}})
        if self.updated_before is not None:
            clauses.append({UPDATED_AT_FIELD: {"$lt": self.updated_before}})
        return clauses

    def digest(self) -> str:
        """A short fingerprint of these filters, to tie a cursor to them."""
        return hashlib.blake2b(bson.encode({"f": repr(self)}), digest_size=8).hexdigest()


def _moment(value: Any, field: str) -> datetime | None:
    if value is None:
        return None
    if not isinstance(value, datetime):
        raise InvalidArgumentError(field, value, f"must be a datetime, not {type(value).__name__}")
    return value if value.tzinfo is not None else value.replace(tzinfo=UTC)


def validate_page_size(limit: Any) -> int:
    """Return ``limit`` if it is an int from 1 to :data:`MAX_PAGE_SIZE`, else raise."""
    if isinstance(limit, bool) or not isinstance(limit, int) or not 1 <= limit <= MAX_PAGE_SIZE:
        raise InvalidArgumentError("limit", limit, f"must be an int from 1 to {MAX_PAGE_SIZE}")
    return limit


def encode_cursor(updated_at: datetime, session_id: str, filters: SessionFilter) -> str:
    """The cursor to the page after the session ``(updated_at, session_id)``."""
    position = {"v": _CURSOR_VERSION, "u": _milliseconds(updated_at), "i": session_id, "f": filters.digest()}
    payload = json.dumps(position, separators=(",", ":"), ensure_ascii=False).encode()
    token = base64.urlsafe_b64encode(payload + _checksum(payload)).decode()
    return token.rstrip("=")


def decode_cursor(cursor: Any, filters: SessionFilter) -> tuple[datetime, str]:
    """The ``(updated_at, session_id)`` a cursor points after; raise if malformed, edited or not for ``filters``."""
    if not isinstance(cursor, str) or not cursor or len(cursor) > 2048:
        raise InvalidCursorError("cursor", cursor, "is not a cursor returned by list_sessions")
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4))
        payload, checksum = raw[:-8], raw[-8:]
        if checksum != _checksum(payload):
            raise ValueError("checksum")
        position = json.loads(payload)
        updated_at = _EPOCH + timedelta(milliseconds=position["u"])
        session_id, digest, version = position["i"], position["f"], position["v"]
    except (binascii.Error, ValueError, KeyError, TypeError, OverflowError, UnicodeDecodeError):
        raise InvalidCursorError("cursor", cursor, "is malformed or was edited") from None
    if version != _CURSOR_VERSION or not isinstance(session_id, str):
        raise InvalidCursorError("cursor", cursor, "is malformed or was edited")
    try:
        validate_session_id(session_id)
    except InvalidArgumentError:
        raise InvalidCursorError("cursor", cursor, "is malformed or was edited") from None
    if digest != filters.digest():
        raise InvalidCursorError("cursor", cursor, "was made for other filters")
    return updated_at, session_id


def after(updated_at: datetime, session_id: str) -> Document:
    """The clause selecting what sorts after ``(updated_at, session_id)``, newest first."""
    return {
        "$or": [
            {UPDATED_AT_FIELD: {"$lt": updated_at}},
            {UPDATED_AT_FIELD: updated_at, "_id": {"$lt": session_id}},
        ]
    }


NEWEST_FIRST = {UPDATED_AT_FIELD: -1, "_id": -1}


def one_filter(clauses: list[Document]) -> Document:
    """``clauses`` (each a filter document) as one filter document, ``$and`` only where two clash.

    Clauses on different fields are merged, and so are operator clauses on one field that use
    different operators (``updated_after`` and ``updated_before``). MongoDB plans ``{"$and": [...]}``
    and the merged document alike, but some servers (SecantusDB) only use an index for the latter:
    a page of 20 over 20,000 sessions took 1.3 s instead of 18 ms there.
    """
    merged: Document = {}
    clashing: list[Document] = []
    for clause in clauses:
        for name, value in clause.items():
            if name not in merged:
                merged[name] = value
                continue
            present = merged[name]
            if _operators(present) and _operators(value) and not set(present) & set(value):
                merged[name] = {**present, **value}
            elif present != value:
                clashing.append({name: value})
    if clashing:
        merged["$and"] = clashing
    return merged


def _operators(value: Any) -> bool:
    """Whether ``value`` is an operator document (``{"$gt": ...}``), not a value to compare."""
    return isinstance(value, dict) and bool(value) and all(key.startswith("$") for key in value)


def summary_stages(messages_collection: str) -> list[Document]:
    """Project each session to its summary; messages are counted on the server, never sent."""
    embedded_count = {
        "$sum": {
            "$map": {
                "input": {"$objectToArray": {"$ifNull": ["$agents", {}]}},
                "in": {"$size": {"$ifNull": ["$$this.v.messages", []]}},
            }
        }
    }
    split_count = {"$sum": {"$map": {"input": "$split_messages", "in": "$$this.n"}}}
    return [
        {
            "$lookup": {
                "from": messages_collection,
                "localField": "_id",
                "foreignField": "session_id",
                "let": {"generation": f"${GENERATION_FIELD}"},
                "pipeline": [
                    {"$match": {"$expr": {"$eq": [f"${GENERATION_FIELD}", "$$generation"]}}},
                    {"$group": {"_id": None, "n": {"$sum": 1}}},
                ],
                "as": "split_messages",
            }
        },
        {
            "$project": {
                "_id": 1,
                USER_ID_FIELD: 1,
                APPLICATION_FIELD: 1,
                "title": {"$ifNull": [f"${TITLE_FIELD}", f"${FIRST_PROMPT_FIELD}.text"]},
                "created_at": 1,
                UPDATED_AT_FIELD: 1,
                "metadata": 1,
                "message_count": {"$cond": [{"$eq": [f"${LAYOUT_FIELD}", "split"]}, split_count, embedded_count]},
            }
        },
    ]


def summary(document: Document) -> SessionSummary:
    """A projected session document as a :class:`SessionSummary`."""
    return SessionSummary(
        session_id=document["_id"],
        user_id=document.get(USER_ID_FIELD),
        application_name=document.get(APPLICATION_FIELD),
        title=document.get("title"),
        created_at=document["created_at"],
        updated_at=document[UPDATED_AT_FIELD],
        message_count=int(document.get("message_count") or 0),
        metadata=document.get("metadata") or {},
    )


_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


def _milliseconds(moment: datetime) -> int:
    return (moment.replace(tzinfo=moment.tzinfo or UTC) - _EPOCH) // timedelta(milliseconds=1)


def _checksum(payload: bytes) -> bytes:
    return hashlib.blake2b(payload, key=_CHECKSUM_KEY, digest_size=8).digest()
