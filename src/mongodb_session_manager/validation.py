"""Validation of user-supplied identifiers and positions before they reach MongoDB.

Session ids are stored as values, so they only need to be plain non-empty strings: a dict such
as ``{"$gt": ""}`` would otherwise turn a lookup into a query (NoSQL injection). Agent ids,
multi-agent ids and metadata keys become parts of field paths (``agents.<agent_id>``), so they
must also be free of ``.`` (path separator), a leading ``$`` (operator) and NUL. Every string must
be encodable as UTF-8 (no lone surrogates), and every position must fit BSON's 64-bit integers.
"""

import math
from datetime import timedelta
from typing import Any

from .errors import InvalidArgumentError, InvalidIdentifierError

MAX_IDENTIFIER_LENGTH = 256
MAX_BSON_INT = 2**63 - 1
"""The largest integer BSON can hold."""


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


def _validate_plain_string(value: Any, field: str) -> str:
    if not isinstance(value, str):
        raise InvalidIdentifierError(field, value, f"must be a str, not {type(value).__name__}")
    if not value:
        raise InvalidIdentifierError(field, value, "must not be empty")
    if len(value) > MAX_IDENTIFIER_LENGTH:
        raise InvalidIdentifierError(field, value, f"must be at most {MAX_IDENTIFIER_LENGTH} characters")
    if "\x00" in value:
        raise InvalidIdentifierError(field, value, "must not contain NUL")
    if not value.isascii() and not _encodable(value):
        raise InvalidIdentifierError(field, value, "must be valid Unicode (it holds a lone surrogate)")
    return value


MAX_TITLE_LENGTH = 200
MAX_EXPIRE_AFTER_SECONDS = 100 * 365 * 24 * 3600


def validate_owner(value: Any, field: str) -> str | None:
    """Return ``value`` if it is None or a safe owner id (``user_id``, ``application_name``), else raise."""
    return None if value is None else _validate_plain_string(value, field)


def validate_expire_after(value: Any) -> float | None:
    """``expire_after`` in seconds (a positive number or ``timedelta``), or None; raise otherwise."""
    if value is None:
        return None
    seconds = value.total_seconds() if isinstance(value, timedelta) else value
    if isinstance(seconds, bool) or not isinstance(seconds, int | float) or not math.isfinite(seconds):
        raise InvalidArgumentError("expire_after", value, "must be a number of seconds or a timedelta")
    if not 0 < seconds <= MAX_EXPIRE_AFTER_SECONDS:
        raise InvalidArgumentError("expire_after", value, f"must be more than 0 and at most {MAX_EXPIRE_AFTER_SECONDS}")
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
