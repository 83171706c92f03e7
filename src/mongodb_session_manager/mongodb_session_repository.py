"""Strands ``SessionRepository`` stored in MongoDB: one document per session, messages per layout.

One document per session (``_id`` is the session id) holds its agents (``agents.<agent_id>``),
multi-agent state, metadata, owners, title, expiry, ``generation`` and ``revision``; field names
are in :mod:`._schema` and the full shape in the README ("The stored document"). Messages live
where the layout puts them: in each agent's ``messages`` array (``"embedded"``), or one document
each in the messages collection (``"split"``, :mod:`._split_layout`).

Every write the session manager asks for is one MongoDB command whose filter carries its own
preconditions (the agent exists, the message id is new, the document stays under 16 MiB), so
nothing is read first (in the split layout, the message that opens a turn is followed by one
conditional write to the session document). Only when a write is refused does one extra read find
out why, to raise the right typed error.
"""

import logging
from collections.abc import Iterable, Iterator, Mapping
from contextlib import AbstractContextManager, contextmanager
from contextvars import ContextVar
from datetime import UTC, datetime, timedelta
from types import MappingProxyType, TracebackType
from typing import TYPE_CHECKING, Any, TypeVar

from bson.codec_options import CodecOptions
from bson.raw_bson import RawBSONDocument
from pymongo import MongoClient
from pymongo.collection import Collection
from strands.session.session_repository import SessionRepository
from strands.types.session import Session, SessionAgent, SessionMessage

from . import metrics
from ._client import open_or_borrow
from ._documents import (
    MESSAGE_FIELDS,
    agent_from_document,
    agent_state_fields,
    encoded,
    message_document,
    message_from_document,
    new_agent_document,
    new_session_document,
    now,
    opens_turn,
    session_from_document,
    title_text,
    turn_opening,
)
from ._erasure import erase_sessions
from ._fork import forked
from ._indexes import ensure_session_indexes
from ._layout import MessageLayout, message_layout
from ._new_session import write_new_session
from ._resume import ResumeSnapshots
from ._schema import (
    APPLICATION_FIELD,
    EXPIRE_AFTER_FIELD,
    LAYOUT_FIELD,
    SPLIT_MESSAGE_KEYS,
    TITLE_FIELD,
    UPDATED_AT_FIELD,
    USER_ID_FIELD,
    Document,
    Layout,
    SessionFacts,
    agent_path,
    default_messages_collection_name,
    multi_agent_path,
    owner_fields,
    stored_layout,
    validate_layout,
)
from ._session_data import exported, parsed
from ._session_documents import Expect, SessionDocuments, live
from ._session_record import read_record
from ._target_collections import require_session_document
from .errors import (
    InvalidArgumentError,
    InvalidIdentifierError,
    InvalidSessionDataError,
    SessionNotFoundError,
    UnstorableValueError,
    excerpt,
)
from .listing import (
    NEWEST_FIRST,
    SessionFilter,
    SessionPage,
    after,
    decode_cursor,
    encode_cursor,
    one_filter,
    summary,
    summary_stages,
    validate_page_size,
)
from .mongodb_connection_pool import MongoDBConnectionPool
from .validation import (
    validate_collection_name,
    validate_database_name,
    validate_expire_after,
    validate_field_name,
    validate_non_negative_int,
    validate_owner,
    validate_session_id,
    validate_title,
)

if TYPE_CHECKING:
    from strands.multiagent.base import MultiAgentBase

logger = logging.getLogger(__name__)
T = TypeVar("T")

AGENT_FIELDS = ("agent_id", "state", "conversation_manager_state", "internal_state", "created_at", "updated_at")

_extra_message_fields: ContextVar[Mapping[str, Any]] = ContextVar(
    "mongodb_session_manager_extra_message_fields", default=MappingProxyType({})
)
_agent_already_stored: ContextVar[bool] = ContextVar("mongodb_session_manager_agent_already_stored", default=False)


@contextmanager
def _scoped(variable: ContextVar[T], value: T) -> Iterator[None]:
    """Set ``variable`` to ``value`` for the block (this thread or task only)."""
    token = variable.set(value)
    try:
        yield
    finally:
        variable.reset(token)


def agent_already_stored() -> AbstractContextManager[None]:
    """Inside this block ``update_agent`` writes nothing: the caller knows the stored agent is current.

    The session manager uses it right after an agent was created or restored, so that Strands
    records its sync baseline without rewriting what was just read or written.
    """
    return _scoped(_agent_already_stored, True)


class MongoDBSessionRepository(SessionRepository):
    """Stores Strands sessions, agents, messages and multi-agent state in MongoDB.

    Pass ``client`` to borrow a ``MongoClient`` (it is never closed here), or a
    ``connection_string`` (plus any ``MongoClient`` options) to use the process-wide client shared
    by every user of that deployment and those options (:class:`MongoDBConnectionPool`); :meth:`close`
    gives it back, and the last user to do so closes it.
    ``layout`` says where messages live: ``"embedded"`` (default) in the session document,
    ``"split"`` one document each in ``messages_collection_name`` (default
    ``<collection_name>_messages``). A session stored in the other layout raises
    :class:`~mongodb_session_manager.errors.LayoutMismatchError`.
    """

    def __init__(
        self,
        connection_string: str | None = None,
        database_name: str = "strands",
        collection_name: str = "sessions",
        client: MongoClient[Any] | None = None,
        *,
        layout: Layout = "embedded",
        messages_collection_name: str | None = None,
        user_id: str | None = None,
        application_name: str | None = None,
        expire_after: float | timedelta | None = None,
        **client_kwargs: Any,
    ) -> None:
        """Connect (or borrow ``client``) and make sure the indexes exist."""
        scope = owner_fields(validate_owner(user_id, "user_id"), validate_owner(application_name, "application_name"))
        expiry = validate_expire_after(expire_after)
        sessions_layout = validate_layout(layout)
        validate_database_name(database_name)
        validate_collection_name(collection_name)
        self._messages_collection_name = validate_collection_name(
            messages_collection_name or default_messages_collection_name(collection_name), "messages_collection_name"
        )
        self._client, self._owns_client = open_or_borrow(
            connection_string, client, client_kwargs, MongoDBConnectionPool.acquire
        )
        self._closed = False
        self._snapshots = ResumeSnapshots()
        try:
            database = self._client.get_database(database_name, codec_options=CodecOptions(tz_aware=True, tzinfo=UTC))
            self._collection: Collection[Document] = database[collection_name]
            self._sessions = SessionDocuments(self._collection, sessions_layout, scope=scope, expire_after=expiry)
            ensure_session_indexes(self._collection)
            self._messages: Collection[Document] = database[self._messages_collection_name]
            self._layout: MessageLayout = message_layout(sessions_layout, self._sessions, self._messages)
        except BaseException:
            self.close()
            raise

    @property
    def client(self) -> MongoClient[Any]:
        """The ``MongoClient`` in use (owned or borrowed)."""
        return self._client

    @property
    def collection(self) -> Collection[Document]:
        """The collection holding the session documents."""
        return self._collection

    @property
    def layout(self) -> Layout:
        """Where messages are stored: ``"embedded"`` or ``"split"``."""
        return self._sessions.layout

    @property
    def user_id(self) -> str | None:
        """The owner this repository is scoped to (None: it sees every session)."""
        owner: str | None = self._sessions.scope.get(USER_ID_FIELD)
        return owner

    @property
    def application_name(self) -> str | None:
        """The application this repository is scoped to (None: every application)."""
        application: str | None = self._sessions.scope.get(APPLICATION_FIELD)
        return application

    @property
    def expire_after(self) -> float | None:
        """Seconds after its last write that a session this repository writes expires (None: its own setting)."""
        return self._sessions.expire_after

    @property
    def owns_client(self) -> bool:
        """Whether :meth:`close` gives the client back to the shared pool (True unless it was borrowed)."""
        return self._owns_client

    def close(self) -> None:
        """Give a shared client back (the last user closes it); a borrowed client is left open. Idempotent."""
        if self._owns_client and not self._closed:
            self._closed = True
            MongoDBConnectionPool.release(self._client)

    def __enter__(self) -> "MongoDBSessionRepository":
        """Use the repository as a context manager that closes it on exit."""
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        """Close the repository."""
        self.close()

    def annotate_messages(self, **fields: Any) -> AbstractContextManager[None]:
        """Store ``fields`` alongside every message created inside this block (same thread or task).

        Field names must be safe field names and may not replace a message's own fields.
        """
        for name in fields:
            validate_field_name(name, "message annotation")
            if name == "_id" or name in MESSAGE_FIELDS or name in SPLIT_MESSAGE_KEYS:
                raise InvalidIdentifierError("message annotation", name, "is a field of every stored message")
        return _scoped(_extra_message_fields, {**_extra_message_fields.get(), **fields})

    # Sessions

    def create_session(self, session: Session, **kwargs: Any) -> Session:
        """Create the session unless it exists; an existing one is left as it is (idempotent)."""
        session_id = validate_session_id(session.session_id)
        insert_only = {
            **new_session_document(session),
            LAYOUT_FIELD: self.layout,
            UPDATED_AT_FIELD: now(),
            **self._sessions.expiry_fields(None),
            **({EXPIRE_AFTER_FIELD: self.expire_after} if self.expire_after is not None else {}),
        }
        with self._snapshots.writing(session_id):
            self._sessions.create(session_id, insert_only)
        return session

    def read_session(self, session_id: str, **kwargs: Any) -> Session | None:
        """Read the session, keeping what an agent's resume needs so it costs no further round trip."""
        validate_session_id(session_id)
        writes_before_read = self._snapshots.writes_so_far()
        document = self._layout.read_for_resume(session_id)
        if document is None:
            return None
        self._sessions.observe(session_id, stored_layout(document), SessionFacts.of(document))
        require_session_document(self._collection, document)
        self._snapshots.keep(session_id, document, writes_before_read)
        return session_from_document(document)

    def delete_session(self, session_id: str, **kwargs: Any) -> None:
        """Delete the session and everything stored for it; raise if it does not exist."""
        validate_session_id(session_id)
        with self._snapshots.writing(session_id):
            self._layout.delete_session(session_id)

    # Agents

    def create_agent(self, session_id: str, session_agent: SessionAgent, **kwargs: Any) -> None:
        """Add the agent to the session; an agent that already exists is left untouched."""
        validate_session_id(session_id)
        agent_id = validate_field_name(session_agent.agent_id, "agent_id")
        moment = now()
        entry = encoded({**new_agent_document(session_agent, moment), **self._layout.new_agent_fields}, "agent")
        update = {"$set": {agent_path(agent_id): entry, UPDATED_AT_FIELD: moment}}
        with self._snapshots.writing(session_id):
            self._sessions.write(
                session_id, update, added_bytes=len(entry.raw), expect=Expect.agent(agent_id, present=False)
            )

    def read_agent(self, session_id: str, agent_id: str, **kwargs: Any) -> SessionAgent | None:
        """Read the agent (without its messages), or None if the session or agent does not exist."""
        validate_session_id(session_id)
        validate_field_name(agent_id, "agent_id")
        answered, entry, facts = self._snapshots.agent(session_id, agent_id)
        if answered and facts is not None:
            self._sessions.observe(session_id, self.layout, facts, [agent_id] if entry else [])
        else:
            path = agent_path(agent_id)
            document = self._sessions.read_observed(
                session_id, {f"{path}.{name}": 1 for name in AGENT_FIELDS}, agent_id=agent_id
            )
            entry = ((document or {}).get("agents") or {}).get(agent_id)
        return agent_from_document(entry) if entry else None

    def update_agent(self, session_id: str, session_agent: SessionAgent, **kwargs: Any) -> None:
        """Replace the agent's state, conversation-manager state and internal state."""
        validate_session_id(session_id)
        agent_id = validate_field_name(session_agent.agent_id, "agent_id")
        if _agent_already_stored.get():
            return
        fields = encoded(agent_state_fields(session_agent), "agent")
        self._update_entry(session_id, agent_path(agent_id), fields, Expect.agent(agent_id))

    # Messages

    def create_message(self, session_id: str, agent_id: str, session_message: SessionMessage, **kwargs: Any) -> None:
        """Append the message; a ``message_id`` the agent already has raises :class:`SessionConflictError`."""
        validate_session_id(session_id)
        validate_field_name(agent_id, "agent_id")
        message_id = validate_non_negative_int(session_message.message_id, "message_id")
        entry = encoded(message_document(session_message, now(), _extra_message_fields.get()), "")
        opening = turn_opening(session_message, agent_id)
        with self._snapshots.writing(session_id):
            self._layout.create_message(session_id, agent_id, message_id, entry, opening=opening)

    def read_message(self, session_id: str, agent_id: str, message_id: int, **kwargs: Any) -> SessionMessage | None:
        """Read one message, or None if the session, agent or message does not exist."""
        validate_session_id(session_id)
        validate_field_name(agent_id, "agent_id")
        validate_non_negative_int(message_id, "message_id")
        found = self._layout.read_message(session_id, agent_id, message_id)
        return message_from_document(found) if found else None

    def update_message(self, session_id: str, agent_id: str, session_message: SessionMessage, **kwargs: Any) -> None:
        """Rewrite a stored message (Strands does this to redact it after a guardrail intervened)."""
        validate_session_id(session_id)
        validate_field_name(agent_id, "agent_id")
        message_id = validate_non_negative_int(session_message.message_id, "message_id")
        body = encoded({"message": session_message.message, "redact_message": session_message.redact_message}, "")
        with self._snapshots.writing(session_id):
            self._layout.update_message(session_id, agent_id, message_id, body)
            if session_message.redact_message is not None and opens_turn(session_message.message):
                # the session's first prompt may hold the text just redacted
                text = title_text(session_message.redact_message)
                self._sessions.rewrite_first_prompt(session_id, agent_id, message_id, text)

    def list_messages(
        self, session_id: str, agent_id: str, limit: int | None = None, offset: int = 0, **kwargs: Any
    ) -> list[SessionMessage]:
        """List the agent's messages from position ``offset``, at most ``limit`` of them."""
        validate_session_id(session_id)
        validate_field_name(agent_id, "agent_id")
        validate_non_negative_int(offset, "offset")
        if limit is not None:
            validate_non_negative_int(limit, "limit")
        stored = self._snapshots.take_messages(session_id, agent_id, offset) if limit is None else None
        if stored is None:
            stored = self._layout.read_messages(session_id, agent_id, offset, limit)
        return [message_from_document(message) for message in stored]

    # Multi-agent (Graph, Swarm)

    def create_multi_agent(self, session_id: str, multi_agent: "MultiAgentBase", **kwargs: Any) -> None:
        """Store the multi-agent's state; one that already exists is left untouched."""
        validate_session_id(session_id)
        multi_agent_id = validate_field_name(multi_agent.id, "multi_agent_id")
        moment = now()
        entry = encoded(
            {
                "multi_agent_id": multi_agent_id,
                "state": multi_agent.serialize_state(),
                "created_at": moment,
                "updated_at": moment,
            },
            "multi_agent",
        )
        update = {"$set": {multi_agent_path(multi_agent_id): entry, UPDATED_AT_FIELD: moment}}
        with self._snapshots.writing(session_id):
            self._sessions.write(
                session_id,
                update,
                added_bytes=len(entry.raw),
                expect=Expect.multi_agent(multi_agent_id, present=False),
            )

    def read_multi_agent(self, session_id: str, multi_agent_id: str, **kwargs: Any) -> dict[str, Any] | None:
        """Read the multi-agent's serialized state, or None if it was never stored."""
        validate_session_id(session_id)
        validate_field_name(multi_agent_id, "multi_agent_id")
        document = self._sessions.read_observed(session_id, {f"{multi_agent_path(multi_agent_id)}.state": 1})
        entry = ((document or {}).get("multi_agents") or {}).get(multi_agent_id)
        state: dict[str, Any] | None = entry.get("state") if entry else None
        return state

    def update_multi_agent(self, session_id: str, multi_agent: "MultiAgentBase", **kwargs: Any) -> None:
        """Replace the multi-agent's stored state with its current ``serialize_state()``."""
        validate_session_id(session_id)
        multi_agent_id = validate_field_name(multi_agent.id, "multi_agent_id")
        fields = encoded({"state": multi_agent.serialize_state()}, "multi_agent")
        self._update_entry(session_id, multi_agent_path(multi_agent_id), fields, Expect.multi_agent(multi_agent_id))

    # Metadata and metrics

    def update_metadata(self, session_id: str, metadata: Mapping[str, Any]) -> None:
        """Set the given metadata fields, keeping every other field as it is."""
        validate_session_id(session_id)
        if not isinstance(metadata, Mapping):
            reason = f"must be a mapping of keys to values, not {type(metadata).__name__}"
            raise InvalidArgumentError("metadata", metadata, reason)
        for key in metadata:
            validate_field_name(key, "metadata key")
        if not metadata:
            self._sessions.probe(session_id)
            return
        values = encoded(metadata, "metadata")
        update = {"$set": {**{f"metadata.{key}": value for key, value in values.items()}, UPDATED_AT_FIELD: now()}}
        with self._snapshots.writing(session_id):
            self._sessions.write(session_id, update, added_bytes=len(values.raw))

    def delete_metadata(self, session_id: str, keys: Iterable[str]) -> None:
        """Remove the given metadata fields (missing ones are ignored)."""
        validate_session_id(session_id)
        if isinstance(keys, str | bytes | Mapping) or not isinstance(keys, Iterable):
            raise InvalidIdentifierError("metadata keys", keys, "pass a list of keys")
        paths = {f"metadata.{validate_field_name(key, 'metadata key')}": "" for key in keys}
        update: Document = {"$set": {UPDATED_AT_FIELD: now()}}
        if paths:
            update["$unset"] = paths
        with self._snapshots.writing(session_id):
            self._sessions.write(session_id, update, added_bytes=0)

    def get_metadata(self, session_id: str) -> dict[str, Any]:
        """Return the session's metadata."""
        validate_session_id(session_id)
        document = self._sessions.read_observed(session_id, {"metadata": 1})
        if document is None:
            raise SessionNotFoundError(f"session {excerpt(session_id)} not found")
        stored: dict[str, Any] = document.get("metadata") or {}
        return stored

    def get_metrics_summary(self, session_id: str) -> dict[str, Any]:
        """Token and latency totals per agent and for the whole session, summed inside MongoDB.

        Returns ``{"session_id", "agents": {agent_id: figures}, "totals": figures}`` where figures
        are ``messages``, ``model_calls``, ``tokens`` (input/output/total/cache) and
        ``latency_ms`` (``total``, ``mean`` per model call, ``max``).
        """
        validate_session_id(session_id)
        return metrics.summarise(session_id, self._layout.metrics_rows(session_id))

    # Listing and titles

    def list_sessions(
        self,
        *,
        user_id: str | None = None,
        application_name: str | None = None,
        metadata: Mapping[str, Any] | None = None,
        updated_after: datetime | None = None,
        updated_before: datetime | None = None,
        limit: int = 20,
        cursor: str | None = None,
    ) -> SessionPage:
        """One page of the sessions in scope that match the filters, newest ``updated_at`` first (one command).

        ``metadata`` matches stored metadata fields by equality. Pass the page's ``next_cursor`` as
        ``cursor``, with the same filters, for the next page. Expired sessions are never listed.
        """
        filters = SessionFilter.of(
            user_id=user_id,
            application_name=application_name,
            metadata=metadata,
            updated_after=updated_after,
            updated_before=updated_before,
        )
        page_size = validate_page_size(limit)
        where = self._listing_filter(filters)
        after_cursor = [{"$match": after(*decode_cursor(cursor, filters))}] if cursor is not None else []
        pipeline: list[Document] = [
            {"$match": where},
            *after_cursor,
            {"$sort": NEWEST_FIRST},
            {"$limit": page_size + 1},
            *summary_stages(self._messages_collection_name),
        ]
        documents = list(self._collection.aggregate(pipeline))
        for document in documents:
            require_session_document(self._collection, document)
        found = [summary(document) for document in documents]
        sessions, more = found[:page_size], len(found) > page_size
        last = sessions[-1] if sessions else None
        next_cursor = encode_cursor(last.updated_at, last.session_id, filters) if more and last else None
        return SessionPage(sessions=sessions, next_cursor=next_cursor)

    def count_sessions(
        self,
        *,
        user_id: str | None = None,
        application_name: str | None = None,
        metadata: Mapping[str, Any] | None = None,
        updated_after: datetime | None = None,
        updated_before: datetime | None = None,
    ) -> int:
        """How many sessions in scope match the filters of :meth:`list_sessions` (one command)."""
        filters = SessionFilter.of(
            user_id=user_id,
            application_name=application_name,
            metadata=metadata,
            updated_after=updated_after,
            updated_before=updated_before,
        )
        return self._collection.count_documents(self._listing_filter(filters))

    def set_title(self, session_id: str, title: str) -> None:
        """Give the session a title (it replaces the one taken from the first user message)."""
        validate_session_id(session_id)
        update = {"$set": {TITLE_FIELD: validate_title(title), UPDATED_AT_FIELD: now()}}
        with self._snapshots.writing(session_id):
            self._sessions.write(session_id, update, added_bytes=len(title.encode()))

    # Erasure, export, import and forks

    def delete_sessions(self, *, user_id: str, application_name: str | None = None) -> int:
        """Erase every session of ``user_id`` (in ``application_name``, if given) with all its messages.

        Sessions in either layout, expired ones included, and split-layout messages left behind by an
        interrupted earlier run or by a writer still appending. Idempotent: run it again after an
        interruption. Returns how many sessions were erased; a repository scoped to another user (or
        application) erases nothing and returns 0.
        """
        if user_id is None:
            raise InvalidIdentifierError("user_id", user_id, "must be a str, not NoneType")
        owner = owner_fields(validate_owner(user_id, "user_id"), validate_owner(application_name, "application_name"))
        for name, value in self._sessions.scope.items():
            if owner.setdefault(name, value) != value:
                return 0
        return erase_sessions(self._collection, self._messages, owner)

    def export_session(self, session_id: str) -> dict[str, Any]:
        """Everything stored for the session, as JSON-serialisable data (format version 1, README "Export").

        Owners, title and first prompt, times, metadata, every agent with its state, conversation-manager
        state, internal state and messages (ids, redactions, ``event_loop_metrics``), multi-agent state,
        and where it was forked from. The same shape whatever the session's layout. Raises
        :class:`SessionNotFoundError` for a session that does not exist, has expired or is outside the scope.
        """
        validate_session_id(session_id)
        return exported(read_record(self._sessions, self._messages, session_id))

    def import_session(self, data: Mapping[str, Any], *, session_id: str | None = None) -> str:
        """Store a session exported by :meth:`export_session` (under ``session_id`` if given); return its id.

        It is stored in this repository's layout and scope: a session of another owner is refused, one
        without an owner takes the scope's. Everything is checked before anything is written: malformed
        data raises :class:`InvalidSessionDataError` naming the field, an existing id
        :class:`SessionExistsError`; nothing is written then. No reader sees the session half-written.
        """
        try:
            record = parsed(data, session_id)
            with self._snapshots.writing(record.session_id):
                write_new_session(self._sessions, self._messages, record, record.session_id)
        except UnstorableValueError as error:
            raise InvalidSessionDataError(error.field, error.value, error.reason) from None
        return record.session_id

    def fork_session(
        self,
        source_session_id: str,
        new_session_id: str,
        *,
        up_to_message_id: int | None = None,
        agent_id: str | None = None,
    ) -> None:
        """Copy the session into a new, independent one; with ``up_to_message_id``, only messages up to it.

        The fork gets the source's owners, metadata, multi-agent state and every agent with its state as
        it is now (state has no history). With ``up_to_message_id`` it holds only the messages
        ``0..up_to_message_id`` of ``agent_id`` (required when the session has several agents), whose
        conversation-manager offset is clamped to them; other agents are copied whole. Its title is the
        source's title (or first prompt) plus " (fork)", and ``forked_from`` records the source. An
        existing ``new_session_id`` raises :class:`SessionExistsError` and nothing changes.
        """
        validate_session_id(source_session_id)
        validate_session_id(new_session_id)
        if up_to_message_id is not None:
            validate_non_negative_int(up_to_message_id, "up_to_message_id")
        if agent_id is not None:
            validate_field_name(agent_id, "agent_id")
        source = read_record(self._sessions, self._messages, source_session_id)
        fork = forked(source, new_session_id, up_to_message_id=up_to_message_id, agent_id=agent_id, at=now())
        with self._snapshots.writing(new_session_id):
            write_new_session(self._sessions, self._messages, fork, new_session_id)

    def _listing_filter(self, filters: SessionFilter) -> Document:
        """The repository's scope, the caller's filters, and "not expired", as one filter document."""
        scope = [{name: value} for name, value in self._sessions.scope.items()]
        return one_filter([*scope, *filters.clauses(), live()])

    def _update_entry(self, session_id: str, path: str, fields: RawBSONDocument, expect: Expect) -> None:
        """Set ``fields`` in the existing entry at ``path``; raise :class:`SessionNotFoundError` if there is none."""
        moment = now()
        values = {f"{path}.{name}": value for name, value in fields.items()}
        update = {"$set": {**values, f"{path}.updated_at": moment, UPDATED_AT_FIELD: moment}}
        with self._snapshots.writing(session_id):
            self._sessions.write(session_id, update, added_bytes=len(fields.raw), expect=expect)
