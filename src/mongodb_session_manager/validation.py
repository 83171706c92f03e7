"""Validation of user-supplied identifiers before they reach MongoDB.

Session ids are stored as values, so they only need to be plain non-empty strings: a dict such
as ``{"$gt": ""}`` would otherwise turn a lookup into a query (NoSQL injection). Agent ids,
multi-agent ids and metadata keys become parts of field paths (``agents.<agent_id>``), so they
must also be free of ``.`` (path separator), a leading ``$`` (operator) and NUL.

Database and collection names given to the migration and cleanup follow MongoDB's naming rules;
collection names are also plain names here (no ``.``), like every collection this library creates.
"""

from typing import Any

from .errors import InvalidIdentifierError

MAX_IDENTIFIER_LENGTH = 256
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
    if not isinstance(value, str):
        raise InvalidIdentifierError(field, value, f"must be a str, not {type(value).__name__}")
    if not value:
        raise InvalidIdentifierError(field, value, "must not be empty")
    if len(value.encode("utf-8", "surrogatepass")) > max_bytes:
        raise InvalidIdentifierError(field, value[:80], f"must be at most {max_bytes} bytes")
    if "\x00" in value:
        raise InvalidIdentifierError(field, value, "must not contain NUL")
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
    return value
