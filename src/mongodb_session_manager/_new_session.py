"""Writing a whole session at once (``import_session``, ``fork_session``), never visible half-written.

Everything is encoded and checked first (values BSON cannot hold, document sizes, the owner), so a
refusal writes nothing. Then:

* embedded layout: one insert of the session document, messages included;
* split layout: the session document is inserted with ``pending`` set (absent to every reader and
  writer, like an expired session, and removed by the TTL monitor within the hour if this process
  dies); the messages are inserted under its new generation; one update then removes ``pending``
  and the session appears whole. If anything fails in between, the messages and the document are
  deleted again. The document is always written before its messages, so ``cleanup`` never takes
  an import's messages for left-behind ones.

An id that is taken raises :class:`SessionExistsError` and changes nothing, unless the session
holding it has expired: that one is removed first, as the TTL monitor would.
"""

import logging
from datetime import timedelta
from typing import Any

import bson
from bson import ObjectId
from bson.raw_bson import RawBSONDocument
from pymongo.collection import Collection
from pymongo.errors import DuplicateKeyError, PyMongoError

from ._documents import encoded, now
from ._schema import (
    EXPIRE_AFTER_FIELD,
    EXPIRES_AT_FIELD,
    FIRST_PROMPT_FIELD,
    FORKED_FROM_FIELD,
    GENERATION_FIELD,
    LAYOUT_FIELD,
    PENDING_FIELD,
    TITLE_FIELD,
    UPDATED_AT_FIELD,
    Document,
    message_owner,
    split_message_document,
)
from ._session_documents import MAX_DOCUMENT_BYTES, WRITE_HEADROOM_BYTES, SessionDocuments
from ._session_record import SessionRecord
from .errors import InvalidSessionDataError, SessionConflictError, SessionExistsError, SessionTooLargeError

logger = logging.getLogger(__name__)

PENDING_FOR = timedelta(hours=1)
"""How long a split-layout session being written stays before the TTL monitor may remove it (if its writer died)."""


def write_new_session(
    sessions: SessionDocuments, messages: Collection[Document], record: SessionRecord, session_id: str
) -> None:
    """Store ``record`` as the new session ``session_id`` in the repository's layout and scope (see module docstring).

    Raises :class:`InvalidSessionDataError` if the record belongs to another owner than the scope,
    :class:`SessionTooLargeError` if a document would pass 16 MiB, :class:`SessionExistsError` if
    the id is taken; nothing is written then.
    """
    owner = _owner(record, sessions.scope)
    generation = ObjectId()
    expire_after = sessions.expire_after if sessions.expire_after is not None else record.expire_after
    document = _session_document(record, session_id, sessions.layout, generation, owner, expire_after)
    if sessions.layout == "embedded":
        _insert(sessions, session_id, document)
        return
    entries = [
        split_message_document(session_id, agent_id, generation, entry, owner)
        for agent_id, entry in _encoded_messages(record, session_id)
    ]
    expiry = document.pop(EXPIRES_AT_FIELD, None)
    _insert(sessions, session_id, {**document, PENDING_FIELD: now(), EXPIRES_AT_FIELD: now() + PENDING_FOR})
    try:
        messages.delete_many({"session_id": session_id, GENERATION_FIELD: {"$ne": generation}})  # left behind
        if entries:
            messages.insert_many(entries)
        shown: Document = {"$unset": {PENDING_FIELD: ""}}
        if expiry is None:
            shown["$unset"][EXPIRES_AT_FIELD] = ""
        else:
            shown["$set"] = {EXPIRES_AT_FIELD: expiry}
        pending = {"_id": session_id, GENERATION_FIELD: generation, PENDING_FIELD: {"$exists": True}}
        if sessions.collection.update_one(pending, shown).matched_count != 1:
            raise SessionConflictError(
                f"session {session_id!r} was deleted while it was being written; nothing of it was kept"
            )
    except BaseException:
        _take_back(sessions, messages, session_id, generation)
        raise


def _owner(record: SessionRecord, scope: Document) -> Document:
    """The record's owner within ``scope``: a scoped repository only writes sessions of its own owner."""
    owner = dict(record.owner)
    for name, value in scope.items():
        given = owner.get(name)
        if given is not None and given != value:
            raise InvalidSessionDataError(
                name, given, f"is not the {name} this repository is scoped to; the session belongs to someone else"
            )
        owner[name] = value
    return owner


def _session_document(
    record: SessionRecord,
    session_id: str,
    layout: str,
    generation: ObjectId,
    owner: Document,
    expire_after: float | None,
) -> Document:
    """The session document, its stored values encoded (and so checked) now; messages included if embedded."""
    optional = {
        TITLE_FIELD: record.title,
        FIRST_PROMPT_FIELD: record.first_prompt,
        FORKED_FROM_FIELD: record.forked_from,
        EXPIRE_AFTER_FIELD: expire_after,
        EXPIRES_AT_FIELD: now() + timedelta(seconds=expire_after) if expire_after is not None else None,
    }
    agents: dict[str, Any] = {}
    for index, (agent_id, entry) in enumerate(record.agents.items()):
        stored = dict(entry)
        if layout == "embedded":
            stored["messages"] = record.messages.get(agent_id, [])
        agents[agent_id] = encoded(stored, f"agents[{index}]")
    document: Document = {
        "_id": session_id,
        "session_id": session_id,
        GENERATION_FIELD: generation,
        "session_type": record.session_type,
        "created_at": record.created_at,
        UPDATED_AT_FIELD: record.updated_at,
        LAYOUT_FIELD: layout,
        **owner,
        **{name: value for name, value in optional.items() if value is not None},
        "metadata": encoded(record.metadata, "metadata"),
        "agents": agents,
        "multi_agents": {
            multi_agent_id: encoded(entry, f"multi_agents[{index}]")
            for index, (multi_agent_id, entry) in enumerate(record.multi_agents.items())
        },
    }
    size = len(bson.encode(document))
    if size + WRITE_HEADROOM_BYTES > MAX_DOCUMENT_BYTES:
        raise SessionTooLargeError(session_id, 0, size, MAX_DOCUMENT_BYTES, document="the new session document")
    return document


def _encoded_messages(record: SessionRecord, session_id: str) -> list[tuple[str, RawBSONDocument]]:
    """Every message of the record, encoded (and so checked) now, each under its size limit."""
    found = []
    for index, agent_id in enumerate(record.agents):
        for position, entry in enumerate(record.messages.get(agent_id, [])):
            raw = encoded(entry, f"agents[{index}].messages[{position}]")
            if len(raw.raw) + WRITE_HEADROOM_BYTES > MAX_DOCUMENT_BYTES:
                raise SessionTooLargeError(
                    session_id, 0, len(raw.raw), MAX_DOCUMENT_BYTES, document=f"message {position} of {agent_id!r}"
                )
            found.append((agent_id, raw))
    return found


def _insert(sessions: SessionDocuments, session_id: str, document: Document) -> None:
    """Insert the session document; raise :class:`SessionExistsError` if a session that has not expired has the id."""
    for _ in range(2):
        try:
            sessions.collection.insert_one(document)
            return
        except DuplicateKeyError:
            expired = {"_id": session_id, EXPIRES_AT_FIELD: {"$lte": now()}}
            if sessions.collection.delete_one(expired).deleted_count == 0:
                break
    raise SessionExistsError(f"session {session_id!r} exists already; nothing was written")


def _take_back(sessions: SessionDocuments, messages: Collection[Document], session_id: str, generation: Any) -> None:
    """Delete what a failed split-layout write stored; if that fails too, the TTL monitor and ``cleanup`` will."""
    try:
        messages.delete_many(message_owner(session_id, generation))
        sessions.collection.delete_one({"_id": session_id, GENERATION_FIELD: generation})
    except PyMongoError as error:
        logger.warning(
            "session_id=<%s> | could not delete what a failed write left (%s); it stays invisible until the "
            "TTL monitor and cleanup remove it",
            session_id,
            error,
        )
