"""Storage keys: Strands' normalisation, the pinned prefix, and ``_id`` ranges for listing.

Keys follow the rules of Strands' own backends (``strands.storage.storage._normalize_key``):
runs of ``/`` collapse, leading and trailing ``/`` are stripped, and an empty key, a backslash
or a ``..`` segment is refused with ``StorageError``. A key must also be encodable as UTF-8 (a lone
surrogate is refused, as the file backend fails on it). Keys are stored as values (``_id``), never
as field names, so ``.``, ``$`` and regex metacharacters need no escaping, and ranges are built
from plain string comparison, never from a regex.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from strands.types.exceptions import StorageError

from .errors import excerpt

_SLASHES = re.compile(r"/+")
_LAST_CODE_POINT = 0x10FFFF
_SURROGATES = range(0xD800, 0xE000)


def _checked_text(value: Any, field: str) -> str:
    if not isinstance(value, str):
        raise StorageError(f"Invalid storage {field} {excerpt(value)}: must be a str, not {type(value).__name__}")
    if "\\" in value:
        raise StorageError(f"Invalid storage {field} {excerpt(value)}: backslashes are not allowed")
    try:
        value.encode("utf-8")
    except UnicodeEncodeError as error:
        raise StorageError(f"Invalid storage {field} {excerpt(value)}: not encodable as UTF-8") from error
    return value


def _refuse_parent_segments(normalized: str, raw: str, field: str) -> None:
    if ".." in normalized.split("/"):
        raise StorageError(f"Invalid storage {field} {excerpt(raw)}: '..' path segments are not allowed")


def normalize_key(key: Any) -> str:
    """Normalise ``key`` as Strands' backends do, or raise ``StorageError``."""
    normalized = _SLASHES.sub("/", _checked_text(key, "key")).strip("/")
    if not normalized:
        raise StorageError("Storage key must not be empty")
    _refuse_parent_segments(normalized, key, "key")
    return normalized


def normalize_prefix(prefix: Any) -> str:
    """Normalise a list prefix as Strands' backends do: empty is allowed, a trailing ``/`` is kept."""
    normalized = _SLASHES.sub("/", _checked_text(prefix, "prefix")).lstrip("/")
    _refuse_parent_segments(normalized, prefix, "prefix")
    return normalized


def upper_bound(prefix: str) -> str | None:
    """The smallest string greater than every string starting with ``prefix`` (``None``: no bound).

    MongoDB compares strings by their UTF-8 bytes, and UTF-8 byte order is code-point order, so
    ``prefix <= _id < upper_bound(prefix)`` selects exactly the keys that start with ``prefix``.
    Surrogates cannot occur in a stored key, so they are skipped.
    """
    characters = list(prefix)
    while characters:
        code_point = ord(characters.pop()) + 1
        if code_point <= _LAST_CODE_POINT:
            if code_point in _SURROGATES:
                code_point = _SURROGATES.stop
            return "".join(characters) + chr(code_point)
    return None


@dataclass(frozen=True)
class KeySpace:
    """The part of the collection one storage (or namespace view) may touch: ``_id``s under ``prefix``.

    ``prefix`` is ``""`` or ends with ``/``. Every key a caller passes is normalised and then
    prefixed, so no key can reach outside the space, whatever it contains.
    """

    prefix: str = ""

    @classmethod
    def under(cls, prefix: Any) -> KeySpace:
        """The key space for a user-given prefix (normalised; ``None`` or ``""``: the whole collection)."""
        if prefix is None:
            return cls()
        normalized = normalize_prefix(prefix).rstrip("/")
        return cls(f"{normalized}/" if normalized else "")

    def scoped(self, prefix: Any) -> KeySpace:
        """A key space nested in this one, as ``Storage.namespace(prefix)`` needs."""
        inner = KeySpace.under(prefix)
        return KeySpace(self.prefix + inner.prefix)

    @property
    def depth(self) -> int:
        """The number of ``/``-separated segments in the prefix."""
        return self.prefix.count("/")

    def full_key(self, key: Any) -> str:
        """The stored ``_id`` of ``key``."""
        return self.prefix + normalize_key(key)

    def relative(self, full_key: str) -> str:
        """A stored ``_id`` as the caller names it (without the prefix)."""
        return full_key[len(self.prefix) :]

    def bounds(self, query: Any = "") -> dict[str, str]:
        """A range condition selecting the stored keys that start with ``query`` in this space."""
        low = self.prefix + normalize_prefix(query)
        high = upper_bound(low)
        bounds = {"$gte": low}  # with an empty prefix: every string, and nothing else
        if high is not None:
            bounds["$lt"] = high
        return bounds
