"""Validation of user-supplied identifiers and positions before they reach MongoDB.

Session ids are stored as values, so they only need to be plain non-empty strings: a dict such
as ``{"$gt": ""}`` would otherwise turn a lookup into a query (NoSQL injection). Agent ids,
multi-agent ids and metadata keys become parts of field paths (``agents.<agent_id>``), so they
must also be free of ``.`` (path separator), a leading ``$`` (operator) and NUL. Every string must
be encodable as UTF-8 (no lone surrogates), and every position must fit BSON's 64-bit integers.

Database and collection names given to the migration and cleanup follow MongoDB's naming rules;
collection names are also plain names here (no ``.``), like every collection this library creates.
"""

import math
from datetime import timedelta
from typing import Any

from .errors import InvalidArgumentError, InvalidIdentifierError

MAX_IDENTIFIER_LENGTH = 256
"""The longest session id, agent id, owner or metadata key accepted, in characters."""
MAX_TITLE_LENGTH = 200
"""The longest session title accepted, in characters."""
MAX_EXPIRE_AFTER_SECONDS = 100 * 365 * 24 * 3600
"""The longest duration accepted (``expire_after``, ``MongoDBStorage.sweep(older_than=...)``): 100 years."""
MAX_BSON_INT = 2**63 - 1
"""The largest integer BSON can hold."""
MAX_DATABASE_NAME_BYTES = 63
"""MongoDB's limit: a database name is shorter than 64 bytes."""
MAX_COLLECTION_NAME_BYTES = 255 - MAX_DATABASE_NAME_BYTES - len(".") - len("_messages")
"""So that ``<database>.<collection>_messages`` fits MongoDB's 255-byte namespace limit."""
DATABASE_NAME_FORBIDDEN = frozenset('/\\. "$*<>:|?')
"""Characters MongoDB refuses in a database name (the union of its Unix and Windows rules)."""


def validate_session_id(value: Any) -> str:
    """Return ``value`` if it is a safe session id, else raise :class:`InvalidIdentifierError`."""
    return _validate_plain_string(value, "session_id")


def validate_field_name(value: Any, field: str) -> str:
    """Return ``value`` if it can be used as one MongoDB field-path segment, else raise."""
    name = _validate_plain_string(value, field)
    if "." in name:
        raise InvalidIdentifierError(field, name, "must not contain '.' (it would nest the field)")
    if name.startswith("$"):
        raise InvalidIdentifierError(field, name, "must not start with '$' (it would read as an operator)")
    return name


def validate_non_negative_int(value: Any, field: str) -> int:
    """Return ``value`` if it is an int from 0 to 2**63 - 1 (not a bool), else raise."""
    if isinstance(value, bool) or not isinstance(value, int):
        raise InvalidIdentifierError(field, value, f"must be an int, not {type(value).__name__}")
    if not 0 <= value <= MAX_BSON_INT:
        raise InvalidIdentifierError(field, value, f"must be between 0 and {MAX_BSON_INT}")
    return value


def validate_database_name(value: Any, field: str = "database_name") -> str:
    """Return ``value`` if MongoDB accepts it as a database name, else raise naming ``field``."""
    name = _validate_name(value, field, MAX_DATABASE_NAME_BYTES)
    forbidden = sorted(set(name) & DATABASE_NAME_FORBIDDEN)
    if forbidden:
        shown = " ".join(repr(character) for character in forbidden)
        raise InvalidIdentifierError(field, name, f"must not contain {shown}")
    return name


def validate_collection_name(value: Any, field: str = "collection_name") -> str:
    """Return ``value`` if it is a plain collection name (not a system collection, no ``.``/``$``), else raise."""
    name = _validate_name(value, field, MAX_COLLECTION_NAME_BYTES)
    if name.startswith("system."):
        raise InvalidIdentifierError(field, name, "must not start with 'system.' (reserved for MongoDB)")
    if "$" in name:
        raise InvalidIdentifierError(field, name, "must not contain '$'")
    if "." in name:
        raise InvalidIdentifierError(field, name, "must not contain '.' (this library's collections are plain names)")
    return name


def _validate_name(value: Any, field: str, max_bytes: int) -> str:
    name = _validate_text(value, field)
    if len(name.encode()) > max_bytes:
        raise InvalidIdentifierError(field, name, f"must be at most {max_bytes} bytes")
    return name


def _validate_plain_string(value: Any, field: str) -> str:
    text = _validate_text(value, field)
    if len(text) > MAX_IDENTIFIER_LENGTH:
        raise InvalidIdentifierError(field, text, f"must be at most {MAX_IDENTIFIER_LENGTH} characters")
    return text


def _validate_text(value: Any, field: str) -> str:
    """A non-empty str of valid Unicode without NUL."""
    if not isinstance(value, str):
        raise InvalidIdentifierError(field, value, f"must be a str, not {type(value).__name__}")
    if not value:
        raise InvalidIdentifierError(field, value, "must not be empty")
    if "\x00" in value:
        raise InvalidIdentifierError(field, value, "must not contain NUL")
    if not value.isascii() and not _encodable(value):
        raise InvalidIdentifierError(field, value, "must be valid Unicode (it holds a lone surrogate)")
    return value


def validate_owner(value: Any, field: str) -> str | None:
    """Return ``value`` if it is None or a safe owner id (``user_id``, ``application_name``), else raise."""
    return None if value is None else _validate_plain_string(value, field)


def validate_expire_after(value: Any) -> float | None:
    """``expire_after`` in seconds (a positive number or ``timedelta``), or None; raise otherwise."""
    return None if value is None else validate_duration(value, "expire_after")


def validate_duration(value: Any, field: str, *, zero_allowed: bool = False) -> float:
    """``value`` (seconds, or a ``timedelta``) in seconds, at most 100 years; raise naming ``field`` otherwise."""
    seconds = value.total_seconds() if isinstance(value, timedelta) else value
    if isinstance(seconds, bool) or not isinstance(seconds, int | float) or not math.isfinite(seconds):
        raise InvalidArgumentError(field, value, "must be a number of seconds or a timedelta")
    if seconds < 0 or (seconds == 0 and not zero_allowed) or seconds > MAX_EXPIRE_AFTER_SECONDS:
        lowest = "at least 0" if zero_allowed else "more than 0"
        raise InvalidArgumentError(field, value, f"must be {lowest} and at most {MAX_EXPIRE_AFTER_SECONDS} seconds")
    return float(seconds)


def validate_title(value: Any) -> str:
    """Return ``value`` if it is a usable session title (1 to 200 characters of valid text), else raise."""
    if not isinstance(value, str):
        raise InvalidArgumentError("title", value, f"must be a str, not {type(value).__name__}")
    if not value.strip():
        raise InvalidArgumentError("title", value, "must not be blank")
    if len(value) > MAX_TITLE_LENGTH:
        raise InvalidArgumentError("title", value, f"must be at most {MAX_TITLE_LENGTH} characters")
    if "\x00" in value or (not value.isascii() and not _encodable(value)):
        raise InvalidArgumentError("title", value, "must be valid text (no NUL, no lone surrogate)")
    return value


def _encodable(value: str) -> bool:
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True
