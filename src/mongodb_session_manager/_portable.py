"""Stored values as JSON and back, without ambiguity: the value encoding of exported sessions.

A value stored in a session (metadata, agent state, a message, metrics) is written as JSON:

* JSON's own types (objects, arrays, strings, booleans, null, integers, finite floats) as they are;
* any other BSON value as a MongoDB Extended JSON (relaxed, v2) type wrapper: bytes as
  ``{"$binary": {"base64": ..., "subType": "00"}}``, dates as ``{"$date": "2026-01-01T00:00:00Z"}``,
  infinities and NaN as ``{"$numberDouble": "Infinity"}``, ObjectIds as ``{"$oid": ...}``, and so on;
* the key of a data object that starts with ``$`` or ``~`` gets one more ``~`` in front
  (``"$binary"`` -> ``"~$binary"``, ``"~x"`` -> ``"~~x"``).

So an object with a key starting with ``$`` is always a type wrapper and never data, and a key
starting with ``~`` always lost one ``~`` on the way back: data that looks like a wrapper
(``{"$binary": ...}``) or like Strands' base64 wrapper (``{"__bytes_encoded__": true, ...}``) comes
back as it was. Inside a type wrapper the Extended JSON specification applies, unescaped.
Integers come back as Python ints (a BSON int64 that fits 32 bits is stored as an int32 again).
"""

import json
import math
from collections.abc import Mapping
from datetime import UTC
from typing import Any

from bson import json_util
from bson.binary import UuidRepresentation
from bson.errors import BSONError
from bson.json_util import JSONMode, JSONOptions

from .errors import InvalidSessionDataError

ESCAPE = "~"
"""Prefix added to a data key that starts with ``$`` or ``~``."""
MAX_DEPTH = 100
"""Nesting accepted in imported values (MongoDB stores at most 100 levels of embedded documents)."""

_OPTIONS = JSONOptions(
    json_mode=JSONMode.RELAXED, tz_aware=True, tzinfo=UTC, uuid_representation=UuidRepresentation.UNSPECIFIED
)
_JSON_SCALARS = (str, bool, type(None))
_MARKER_ERRORS = (BSONError, TypeError, ValueError, KeyError, OverflowError, AttributeError)


def to_json(value: Any) -> Any:
    """A stored (BSON-decoded) value as JSON-serialisable data (see the module docstring)."""
    if isinstance(value, Mapping):
        return {_escaped(key): to_json(item) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [to_json(item) for item in value]
    if isinstance(value, _JSON_SCALARS):
        return value
    if isinstance(value, int):
        return int(value)  # bson.int64.Int64 too
    if isinstance(value, float) and math.isfinite(value):
        return value
    return json.loads(json_util.dumps(value, json_options=_OPTIONS))


def from_json(value: Any, path: str, depth: int = 0) -> Any:
    """The stored value ``value`` (JSON data, as :func:`to_json` writes it) stands for; ``path`` names it in errors."""
    if depth > MAX_DEPTH:
        where = path if len(path) <= 80 else f"{path[:80]}..."
        raise InvalidSessionDataError(where, "...", f"is nested more than {MAX_DEPTH} levels deep")
    if isinstance(value, dict):
        if any(key.startswith("$") for key in value if isinstance(key, str)):
            return _typed(value, path)
        decoded = {}
        for key, item in value.items():
            if not isinstance(key, str):
                raise InvalidSessionDataError(path, key, f"has a key of type {type(key).__name__}; keys must be str")
            name = key[1:] if key.startswith(ESCAPE) else key
            decoded[name] = from_json(item, f"{path}.{key}", depth + 1)
        return decoded
    if isinstance(value, list):
        return [from_json(item, f"{path}[{index}]", depth + 1) for index, item in enumerate(value)]
    if isinstance(value, (*_JSON_SCALARS, int, float)):
        return value
    raise InvalidSessionDataError(
        path, value, f"is a {type(value).__name__}; exported sessions hold JSON data only (see export_session)"
    )


def _escaped(key: str) -> str:
    return ESCAPE + key if key.startswith(("$", ESCAPE)) else key


def _typed(wrapper: dict[str, Any], path: str) -> Any:
    """The BSON value an Extended JSON type wrapper stands for; raise if it is not one."""
    reason = (
        "is not a MongoDB Extended JSON type wrapper (keys starting with '$' are reserved for typed values; "
        f"a data key starting with '$' is written with a leading {ESCAPE!r})"
    )
    try:
        value = json_util.loads(json.dumps(wrapper, allow_nan=False), json_options=_OPTIONS)
        written = json.loads(json_util.dumps(value, json_options=_OPTIONS))
    except _MARKER_ERRORS:
        raise InvalidSessionDataError(path, wrapper, reason) from None
    if isinstance(value, dict | list):
        raise InvalidSessionDataError(path, wrapper, reason)
    if isinstance(written, dict) and set(written) == set(wrapper):
        return value
    if isinstance(value, int | float) and not isinstance(value, bool) and len(wrapper) == 1:
        return value  # canonical {"$numberLong": "5"}: relaxed JSON writes the plain number
    # a wrapper with keys its value does not account for would lose them: refused, not dropped
    raise InvalidSessionDataError(path, wrapper, reason)
