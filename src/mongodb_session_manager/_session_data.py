"""The exported form of a session (``export_session``, ``import_session``): a JSON object, format version 1.

::

    {"format": "mongodb-session-manager/session", "version": 1,
     "session_id", "session_type", "user_id", "application_name",          # owners: null when unset
     "title", "first_prompt": {"text", "agent_id", "message_id", "at"},     # title: given with set_title
     "created_at", "updated_at", "expires_at", "expire_after_seconds",
     "forked_from": {"session_id", "agent_id", "up_to_message_id", "at"},
     "metadata": {...},
     "agents": [{"agent_id", "state", "conversation_manager_state", "internal_state", "created_at", "updated_at",
                 "messages": [{"message_id", "message", "redact_message", "created_at", "updated_at",
                               "event_loop_metrics", ...}]}],               # message_id 0, 1, 2, ...
     "multi_agents": [{"multi_agent_id", "state", "created_at", "updated_at"}]}

The fields of the format are typed: times are ISO 8601 strings (UTC, milliseconds), ids strings,
positions integers. Stored values (metadata, states, messages, metrics and any other annotation
of a message) are encoded by :mod:`._portable`: JSON where JSON can say it, Extended JSON type
wrappers otherwise (bytes: ``{"$binary": ...}``), data keys starting with ``$`` or ``~`` escaped
with a leading ``~``. :func:`parsed` checks everything a session needs before anything is
written, and names the first problem by its path (``agents[0].messages[3].message_id``).
"""

from collections.abc import Callable, Iterable
from datetime import UTC, datetime
from typing import Any, TypeVar

from strands.types.session import SessionType

from ._documents import MESSAGE_FIELDS
from ._portable import from_json, to_json
from ._schema import APPLICATION_FIELD, SPLIT_MESSAGE_KEYS, USER_ID_FIELD, Document, owner_fields
from ._session_record import SessionRecord
from .errors import InvalidArgumentError, InvalidSessionDataError
from .validation import (
    validate_expire_after,
    validate_field_name,
    validate_non_negative_int,
    validate_owner,
    validate_session_id,
    validate_title,
)

T = TypeVar("T")

FORMAT = "mongodb-session-manager/session"
VERSION = 1

_SESSION_FIELDS = (
    "format",
    "version",
    "session_id",
    "session_type",
    USER_ID_FIELD,
    APPLICATION_FIELD,
    "title",
    "first_prompt",
    "created_at",
    "updated_at",
    "expires_at",
    "expire_after_seconds",
    "forked_from",
    "metadata",
    "agents",
    "multi_agents",
)
_PROMPT_FIELDS = ("text", "agent_id", "message_id", "at")
_FORK_FIELDS = ("session_id", "agent_id", "up_to_message_id", "at")
_AGENT_FIELDS = (
    "agent_id",
    "state",
    "conversation_manager_state",
    "internal_state",
    "created_at",
    "updated_at",
    "messages",
)
_MULTI_AGENT_FIELDS = ("multi_agent_id", "state", "created_at", "updated_at")
_ROLES = ("user", "assistant")


# -- export ------------------------------------------------------------------------------------------


def exported(record: SessionRecord) -> dict[str, Any]:
    """``record`` in the exported form (JSON-serialisable: ``json.dumps`` takes it as it is)."""
    return {
        "format": FORMAT,
        "version": VERSION,
        "session_id": record.session_id,
        "session_type": record.session_type,
        USER_ID_FIELD: record.owner.get(USER_ID_FIELD),
        APPLICATION_FIELD: record.owner.get(APPLICATION_FIELD),
        "title": record.title,
        "first_prompt": _with_iso(record.first_prompt, "at"),
        "created_at": _iso(record.created_at),
        "updated_at": _iso(record.updated_at),
        "expires_at": _iso(record.expires_at) if record.expires_at is not None else None,
        "expire_after_seconds": record.expire_after,
        "forked_from": _with_iso(record.forked_from, "at"),
        "metadata": to_json(record.metadata),
        "agents": [
            {
                "agent_id": agent_id,
                "state": to_json(entry.get("state") or {}),
                "conversation_manager_state": to_json(entry.get("conversation_manager_state") or {}),
                "internal_state": to_json(entry.get("internal_state") or {}),
                "created_at": _iso(entry["created_at"]),
                "updated_at": _iso(entry["updated_at"]),
                "messages": [_exported_message(message) for message in record.messages.get(agent_id, [])],
            }
            for agent_id, entry in record.agents.items()
        ],
        "multi_agents": [
            {
                "multi_agent_id": multi_agent_id,
                "state": to_json(entry.get("state") or {}),
                "created_at": _iso(entry["created_at"]),
                "updated_at": _iso(entry["updated_at"]),
            }
            for multi_agent_id, entry in record.multi_agents.items()
        ],
    }


def _exported_message(entry: Document) -> dict[str, Any]:
    annotations = {name: to_json(value) for name, value in entry.items() if name not in MESSAGE_FIELDS}
    return {
        "message_id": entry["message_id"],
        "message": to_json(entry["message"]),
        "redact_message": to_json(entry.get("redact_message")),
        "created_at": _iso(entry["created_at"]),
        "updated_at": _iso(entry["updated_at"]),
        **annotations,
    }


def _iso(moment: datetime | str) -> str:
    if isinstance(moment, str):
        return moment
    aware = moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)
    return aware.isoformat(timespec="milliseconds")


def _with_iso(entry: Document | None, name: str) -> dict[str, Any] | None:
    if entry is None:
        return None
    return {key: _iso(value) if key == name else to_json(value) for key, value in entry.items()}


# -- import ------------------------------------------------------------------------------------------


class _Object:
    """One JSON object of the data being imported, read field by field; errors name the field's path."""

    def __init__(self, value: Any, path: str, fields: Iterable[str]) -> None:
        if not isinstance(value, dict):
            raise InvalidSessionDataError(path or "session", value, f"must be a JSON object, not {_kind(value)}")
        self.path = path
        self.value: dict[str, Any] = value
        known = set(fields)
        for key in value:
            if key not in known:
                raise InvalidSessionDataError(self.at(key), key, "is not a field of an exported session")

    def at(self, name: str) -> str:
        return f"{self.path}.{name}" if self.path else str(name)

    def required(self, name: str) -> Any:
        if name not in self.value:
            raise InvalidSessionDataError(self.at(name), None, "is missing")
        return self.value[name]

    def checked(self, name: str, check: Callable[[Any], T]) -> T:
        """The required field, passed through ``check`` (a validator raising ``InvalidArgumentError``)."""
        value = self.required(name)
        try:
            return check(value)
        except InvalidArgumentError as error:
            raise InvalidSessionDataError(self.at(name), value, error.reason) from None

    def optional(self, name: str, check: Callable[[Any], T]) -> T | None:
        """The field passed through ``check``; None if it is absent or null."""
        return None if self.value.get(name) is None else self.checked(name, check)

    def moment(self, name: str) -> datetime:
        return self.checked(name, _moment)

    def data(self, name: str) -> Any:
        """A stored value (see :mod:`._portable`); absent is None."""
        return from_json(self.value.get(name), self.at(name))

    def mapping(self, name: str) -> Document:
        """A stored value that must be an object; absent is ``{}``."""
        value = self.data(name)
        if value is None:
            return {}
        if not isinstance(value, dict):
            raise InvalidSessionDataError(self.at(name), value, f"must be a JSON object, not {_kind(value)}")
        return value

    def array(self, name: str) -> list[Any]:
        value = self.value.get(name, [])
        if not isinstance(value, list):
            raise InvalidSessionDataError(self.at(name), value, f"must be a JSON array, not {_kind(value)}")
        return value


def parsed(data: Any, session_id: str | None = None) -> SessionRecord:
    """The session exported as ``data``, checked through; under ``session_id`` if given.

    Raises :class:`InvalidSessionDataError` naming the first field that is missing, of the wrong type,
    not valid, or not part of the format.
    """
    top = _Object(data, "", _SESSION_FIELDS)
    if top.required("format") != FORMAT:
        raise InvalidSessionDataError("format", top.value["format"], f"must be {FORMAT!r}")
    version = top.required("version")
    if isinstance(version, bool) or version != VERSION:
        raise InvalidSessionDataError("version", version, f"is not a version this library reads ({VERSION})")
    exported_id = top.checked("session_id", validate_session_id)
    record = SessionRecord(
        session_id=validate_session_id(session_id) if session_id is not None else exported_id,
        session_type=top.optional("session_type", _session_type) or SessionType.AGENT.value,
        created_at=top.moment("created_at"),
        updated_at=top.moment("updated_at"),
        owner=owner_fields(
            top.optional(USER_ID_FIELD, _owner(USER_ID_FIELD)),
            top.optional(APPLICATION_FIELD, _owner(APPLICATION_FIELD)),
        ),
        title=top.optional("title", validate_title),
        first_prompt=_first_prompt(top.value.get("first_prompt"), "first_prompt"),
        expires_at=top.optional("expires_at", _moment),
        expire_after=top.optional("expire_after_seconds", validate_expire_after),
        forked_from=_forked_from(top.value.get("forked_from"), "forked_from"),
        metadata=_metadata(top),
    )
    for index, value in enumerate(top.array("agents")):
        agent = _Object(value, f"agents[{index}]", _AGENT_FIELDS)
        agent_id = agent.checked("agent_id", _field_name("agent_id"))
        if agent_id in record.agents:
            raise InvalidSessionDataError(agent.at("agent_id"), agent_id, "is the id of an earlier agent too")
        record.agents[agent_id] = {
            "agent_id": agent_id,
            "state": agent.mapping("state"),
            "conversation_manager_state": agent.mapping("conversation_manager_state"),
            "internal_state": agent.mapping("internal_state"),
            "created_at": agent.moment("created_at"),
            "updated_at": agent.moment("updated_at"),
        }
        record.messages[agent_id] = [
            _message(message, f"{agent.at('messages')}[{position}]", position)
            for position, message in enumerate(agent.array("messages"))
        ]
    for index, value in enumerate(top.array("multi_agents")):
        multi_agent = _Object(value, f"multi_agents[{index}]", _MULTI_AGENT_FIELDS)
        multi_agent_id = multi_agent.checked("multi_agent_id", _field_name("multi_agent_id"))
        if multi_agent_id in record.multi_agents:
            raise InvalidSessionDataError(
                multi_agent.at("multi_agent_id"), multi_agent_id, "is the id of an earlier multi-agent too"
            )
        record.multi_agents[multi_agent_id] = {
            "multi_agent_id": multi_agent_id,
            "state": multi_agent.mapping("state"),
            "created_at": multi_agent.moment("created_at"),
            "updated_at": multi_agent.moment("updated_at"),
        }
    return record


def _message(value: Any, path: str, position: int) -> Document:
    """One message; its ``message_id`` must be its position (Strands numbers an agent's messages 0, 1, 2, ...)."""
    if not isinstance(value, dict):
        raise InvalidSessionDataError(path, value, f"must be a JSON object, not {_kind(value)}")
    annotations = [name for name in value if name not in MESSAGE_FIELDS]
    message = _Object(value, path, (*MESSAGE_FIELDS, *annotations))
    message_id = message.checked("message_id", _position)
    if message_id < position:
        raise InvalidSessionDataError(message.at("message_id"), message_id, "is the id of an earlier message too")
    if message_id != position:
        raise InvalidSessionDataError(
            message.at("message_id"), message_id, f"must be {position}: an agent's messages are numbered 0, 1, 2, ..."
        )
    entry: Document = {
        "message_id": message_id,
        "message": _strands_message(message.data("message"), message.at("message")),
        "redact_message": None,
        "created_at": message.moment("created_at"),
        "updated_at": message.moment("updated_at"),
    }
    if message.value.get("redact_message") is not None:
        entry["redact_message"] = _strands_message(message.data("redact_message"), message.at("redact_message"))
    for name in annotations:
        if name in SPLIT_MESSAGE_KEYS or name == "_id":
            raise InvalidSessionDataError(message.at(name), name, "is a field the library stores itself")
        try:
            validate_field_name(name, "message annotation")
        except InvalidArgumentError as error:
            raise InvalidSessionDataError(message.at(name), name, error.reason) from None
        entry[name] = message.data(name)
    return entry


def _strands_message(value: Any, path: str) -> Document:
    """A Strands message: ``{"role": "user" | "assistant", "content": [...]}``."""
    if not isinstance(value, dict):
        raise InvalidSessionDataError(path, value, f"must be a JSON object, not {_kind(value)}")
    if value.get("role") not in _ROLES:
        raise InvalidSessionDataError(f"{path}.role", value.get("role"), "must be 'user' or 'assistant'")
    if not isinstance(value.get("content"), list):
        raise InvalidSessionDataError(f"{path}.content", value.get("content"), "must be a JSON array")
    return value


def _metadata(top: _Object) -> Document:
    metadata = top.mapping("metadata")
    for key in metadata:
        try:
            validate_field_name(key, "metadata key")
        except InvalidArgumentError as error:
            raise InvalidSessionDataError(f"metadata.{key}", key, error.reason) from None
    return metadata


def _first_prompt(value: Any, path: str) -> Document | None:
    if value is None:
        return None
    prompt = _Object(value, path, _PROMPT_FIELDS)
    return {
        "at": prompt.moment("at"),
        "agent_id": prompt.checked("agent_id", _field_name("agent_id")),
        "message_id": prompt.checked("message_id", _position),
        "text": prompt.checked("text", _text),
    }


def _forked_from(value: Any, path: str) -> Document | None:
    if value is None:
        return None
    fork = _Object(value, path, _FORK_FIELDS)
    return {
        "session_id": fork.checked("session_id", validate_session_id),
        "agent_id": fork.optional("agent_id", _field_name("agent_id")),
        "up_to_message_id": fork.optional("up_to_message_id", _position),
        "at": fork.moment("at"),
    }


# -- checks, each raising InvalidArgumentError (with a reason) like the validators ------------------------


def _moment(value: Any) -> datetime:
    if not isinstance(value, str):
        raise InvalidArgumentError("time", value, f"must be an ISO 8601 string, not {_kind(value)}")
    try:
        moment = datetime.fromisoformat(value)
    except ValueError:
        raise InvalidArgumentError("time", value, "is not an ISO 8601 time") from None
    return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)


def _session_type(value: Any) -> str:
    if value not in {member.value for member in SessionType}:
        raise InvalidArgumentError("session_type", value, f"must be one of {[member.value for member in SessionType]}")
    return str(value)


def _position(value: Any) -> int:
    return validate_non_negative_int(value, "position")


def _text(value: Any) -> str:
    if not isinstance(value, str):
        raise InvalidArgumentError("text", value, f"must be a string, not {_kind(value)}")
    return value


def _owner(field: str) -> Callable[[Any], str | None]:
    return lambda value: validate_owner(value, field)


def _field_name(field: str) -> Callable[[Any], str]:
    return lambda value: validate_field_name(value, field)


_KINDS = {dict: "an object", list: "an array", str: "a string", bool: "a boolean", int: "an integer", float: "a number"}


def _kind(value: Any) -> str:
    """What a JSON value is, in words."""
    return "null" if value is None else _KINDS.get(type(value), f"a {type(value).__name__}")
