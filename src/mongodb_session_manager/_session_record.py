"""Everything stored for one session, whatever its layout: what export reads, and what import and fork write.

:func:`read_record` reads a live session in scope, from its document and, in the split layout,
from the messages collection (one more read). A :class:`SessionRecord` holds the values as they
are stored (BSON-decoded), with each agent's messages as entries of the embedded layout in
``message_id`` order; it knows nothing of generations, revisions or layouts.
"""

from dataclasses import dataclass, field
from datetime import datetime

from pymongo.collection import Collection

from ._schema import (
    EXPIRE_AFTER_FIELD,
    EXPIRES_AT_FIELD,
    FIRST_PROMPT_FIELD,
    FORKED_FROM_FIELD,
    GENERATION_FIELD,
    TITLE_FIELD,
    Document,
    message_owner,
    owner_of,
    stored_layout,
)
from ._session_documents import SessionDocuments
from ._split_layout import ONE_BATCH, STORED_MESSAGE
from ._target_collections import require_session_document
from .errors import SessionNotFoundError, excerpt

AGENT_FIELDS = ("agent_id", "state", "conversation_manager_state", "internal_state", "created_at", "updated_at")
"""What a record keeps of a stored agent entry (its messages are kept apart)."""
MULTI_AGENT_FIELDS = ("multi_agent_id", "state", "created_at", "updated_at")


@dataclass
class SessionRecord:
    """One session's stored content, layout-neutral."""

    session_id: str
    session_type: str
    created_at: datetime
    updated_at: datetime
    owner: Document = field(default_factory=dict)
    """``user_id`` and ``application_name``, where set."""
    title: str | None = None
    """The title given with ``set_title``."""
    first_prompt: Document | None = None
    """``{at, agent_id, message_id, text}`` of the first user message (the title until one is given)."""
    expires_at: datetime | None = None
    expire_after: float | None = None
    forked_from: Document | None = None
    metadata: Document = field(default_factory=dict)
    agents: dict[str, Document] = field(default_factory=dict)
    """Agent id -> its entry without messages (:data:`AGENT_FIELDS`)."""
    messages: dict[str, list[Document]] = field(default_factory=dict)
    """Agent id -> its stored message entries, in ``message_id`` order."""
    multi_agents: dict[str, Document] = field(default_factory=dict)


def read_record(sessions: SessionDocuments, messages: Collection[Document], session_id: str) -> SessionRecord:
    """Read the live session ``session_id`` within the repository's scope, in whichever layout it is stored.

    Raises :class:`SessionNotFoundError` if it does not exist, has expired or is outside the scope, and
    :class:`ForeignDocumentsError` if its document is not one this library wrote.
    """
    document = sessions.find(session_id)
    if document is None:
        raise SessionNotFoundError(f"session {excerpt(session_id)} not found")
    require_session_document(sessions.collection, document)
    agents: dict[str, Document] = document.get("agents") or {}
    stored = {agent_id: list(entry.get("messages") or []) for agent_id, entry in agents.items()}
    if stored_layout(document) == "split":
        stored = {agent_id: [] for agent_id in agents}
        query = message_owner(session_id, document.get(GENERATION_FIELD))
        for message in messages.find(query, STORED_MESSAGE, batch_size=ONE_BATCH):
            agent_id = message.pop("agent_id", None)
            if agent_id in stored:
                stored[agent_id].append(message)
    for entries in stored.values():
        entries.sort(key=lambda entry: entry.get("message_id", 0))
    return SessionRecord(
        session_id=session_id,
        session_type=document.get("session_type", "AGENT"),
        created_at=document["created_at"],
        updated_at=document["updated_at"],
        owner=owner_of(document),
        title=document.get(TITLE_FIELD),
        first_prompt=document.get(FIRST_PROMPT_FIELD),
        expires_at=document.get(EXPIRES_AT_FIELD),
        expire_after=document.get(EXPIRE_AFTER_FIELD),
        forked_from=document.get(FORKED_FROM_FIELD),
        metadata=document.get("metadata") or {},
        agents={agent_id: _only(entry, AGENT_FIELDS) for agent_id, entry in agents.items()},
        messages=stored,
        multi_agents={
            multi_agent_id: _only(entry, MULTI_AGENT_FIELDS)
            for multi_agent_id, entry in (document.get("multi_agents") or {}).items()
        },
    )


def _only(entry: Document, names: tuple[str, ...]) -> Document:
    return {name: entry[name] for name in names if name in entry}
