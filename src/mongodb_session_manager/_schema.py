"""What is stored where: the field names of session documents, the message layouts, message keys.

Every module that builds a filter or an update on stored documents takes its names from here,
so the stored shape (documented in the README) is written down once.
"""

from collections.abc import Mapping
from typing import Any, Literal, cast, get_args

Document = dict[str, Any]

Layout = Literal["embedded", "split"]
LAYOUTS: tuple[Layout, ...] = get_args(Layout)
DEFAULT_LAYOUT: Layout = "embedded"

GENERATION_FIELD = "generation"
"""Session-document field telling this session apart from earlier ones that had the same id."""
REVISION_FIELD = "revision"
"""Session-document field every write increments, so a reader can tell whether it changed since."""
LAYOUT_FIELD = "message_layout"
"""Session-document field naming the layout its messages are stored in (absent: ``"embedded"``)."""
UPDATED_AT_FIELD = "updated_at"
"""Moved by every write to the session document."""
USER_ID_FIELD = "user_id"
"""The session's owner, set when it is created (absent: no owner)."""
APPLICATION_FIELD = "application_name"
"""The application the session belongs to, set when it is created (absent: none)."""
TITLE_FIELD = "title"
"""A title given with ``set_title``."""
FIRST_PROMPT_FIELD = "first_prompt"
"""``{at, text}`` of the session's earliest user message: the title until one is given."""
EXPIRES_AT_FIELD = "expires_at"
"""When the session expires (TTL index); absent: never."""
EXPIRE_AFTER_FIELD = "expire_after_seconds"
"""How long after its last write the session expires, set when it is created (absent: never)."""
FORKED_FROM_FIELD = "forked_from"
"""``{session_id, agent_id, up_to_message_id, at}`` of the session this one was forked from."""
PENDING_FIELD = "pending"
"""Set while an imported or forked split-layout session's messages are written: until it is removed, the
session is absent (like an expired one), so no reader ever sees it half-written."""
OWNER_FIELDS = (USER_ID_FIELD, APPLICATION_FIELD)
"""The owner fields: on a session document, and copied onto each of its split-layout messages."""
SPLIT_MESSAGE_KEYS = ("session_id", "agent_id", GENERATION_FIELD, *OWNER_FIELDS)
"""What a split-layout message document has besides the entry the embedded layout would store."""


def owner_fields(user_id: str | None, application_name: str | None) -> Document:
    """The owner fields a session is created with, and that every access of a scoped repository filters on."""
    fields: Document = {}
    if user_id is not None:
        fields[USER_ID_FIELD] = user_id
    if application_name is not None:
        fields[APPLICATION_FIELD] = application_name
    return fields


def validate_layout(layout: object) -> Layout:
    """Return ``layout`` if it names a layout; raise ``ValueError`` otherwise."""
    if layout not in LAYOUTS:
        raise ValueError(f"layout must be one of {', '.join(map(repr, LAYOUTS))}, not {layout!r}"[:200])
    return layout


def layout_condition(layout: Layout) -> Document:
    """A filter matching the session documents stored in ``layout``."""
    if layout == DEFAULT_LAYOUT:
        return {LAYOUT_FIELD: {"$in": [None, DEFAULT_LAYOUT]}}
    return {LAYOUT_FIELD: layout}


def stored_layout(document: Mapping[str, Any]) -> Layout:
    """The message layout a session document says it uses."""
    layout = document.get(LAYOUT_FIELD) or DEFAULT_LAYOUT
    return cast(Layout, layout)


def agent_path(agent_id: str) -> str:
    """The field path of an agent's entry in its session document (``agent_id`` validated first)."""
    return f"agents.{agent_id}"


def multi_agent_path(multi_agent_id: str) -> str:
    """The field path of a multi-agent's entry in its session document (``multi_agent_id`` validated first)."""
    return f"multi_agents.{multi_agent_id}"


def default_messages_collection_name(collection_name: str) -> str:
    """The default messages collection of the split layout, for the sessions in ``collection_name``."""
    return f"{collection_name}_messages"


def message_owner(session_id: Any, generation: Any) -> Document:
    """A filter for every split-layout message of one session generation."""
    return {"session_id": session_id, GENERATION_FIELD: generation}


def message_slot(session_id: Any, agent_id: str, message_id: int) -> Document:
    """The unique key of a split-layout message, whichever generation holds it."""
    return {"session_id": session_id, "agent_id": agent_id, "message_id": message_id}


def message_key(session_id: Any, agent_id: str, message_id: int, generation: Any) -> Document:
    """A filter for one split-layout message: its unique key plus the generation it belongs to."""
    return {**message_slot(session_id, agent_id, message_id), GENERATION_FIELD: generation}


def messages_from(session_id: Any, agent_id: str, offset: int, generation: Any) -> Document:
    """A filter for an agent's split-layout messages of one generation, from position ``offset`` on."""
    return {
        "session_id": session_id,
        "agent_id": agent_id,
        "message_id": {"$gte": offset},
        GENERATION_FIELD: generation,
    }


def split_message_document(
    session_id: Any, agent_id: str, generation: Any, entry: Mapping[str, Any], owner: Mapping[str, Any]
) -> Document:
    """A split-layout message document: its key, generation and the session's ``owner`` fields, then the entry.

    The entry is what the embedded layout would store. The owner fields let a user's messages be
    found without their session documents (``delete_sessions`` sweeps what a killed run left).
    """
    return {"session_id": session_id, "agent_id": agent_id, GENERATION_FIELD: generation, **owner, **entry}


def owner_of(document: Mapping[str, Any]) -> Document:
    """The owner fields of a stored session document (empty when it has no owner)."""
    return {name: document[name] for name in OWNER_FIELDS if document.get(name) is not None}
