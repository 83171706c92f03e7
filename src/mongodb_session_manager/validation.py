"""Validation of user-supplied identifiers and positions before they reach MongoDB.

Session ids are stored as values, so they only need to be plain non-empty strings: a dict such
as ``{"$gt": ""}`` would otherwise turn a lookup into a query (NoSQL injection). Agent ids,
multi-agent ids and metadata keys become parts of field paths (``agents.<agent_id>``), so they
must also be free of ``.`` (path separator), a leading ``$`` (operator) and NUL. Every string must
be encodable as UTF-8 (no lone surrogates), and every position must fit BSON's 64-bit integers.
"""

from typing import Any

from .errors import InvalidIdentifierError

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
    if not value.isascii():
        try:
            value.encode("utf-8")
        except UnicodeEncodeError:
            raise InvalidIdentifierError(field, value, "must be valid Unicode (it holds a lone surrogate)") from None
    return value
