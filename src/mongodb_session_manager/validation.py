"""Validation of user-supplied identifiers before they reach MongoDB.

Session ids are stored as values, so they only need to be plain non-empty strings: a dict such
as ``{"$gt": ""}`` would otherwise turn a lookup into a query (NoSQL injection). Agent ids,
multi-agent ids and metadata keys become parts of field paths (``agents.<agent_id>``), so they
must also be free of ``.`` (path separator), a leading ``$`` (operator) and NUL.
"""

from typing import Any

from .errors import InvalidIdentifierError

MAX_IDENTIFIER_LENGTH = 256


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


def _validate_plain_string(value: Any, field: str) -> str:
    if not isinstance(value, str):
        raise InvalidIdentifierError(field, value, f"must be a str, not {type(value).__name__}")
    if not value:
        raise InvalidIdentifierError(field, value, "must not be empty")
    if len(value) > MAX_IDENTIFIER_LENGTH:
        raise InvalidIdentifierError(field, value, f"must be at most {MAX_IDENTIFIER_LENGTH} characters")
    if "\x00" in value:
        raise InvalidIdentifierError(field, value, "must not contain NUL")
    return value
