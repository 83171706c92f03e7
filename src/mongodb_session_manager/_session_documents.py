"""Every read and write of the session documents, and finding out why a write was refused.

Every write to a session document is one ``find_one_and_update`` whose filter carries its
preconditions: what the write expects (an agent exists, a message id is new: :class:`Expect`),
the repository's message layout, the session generation the writer is bound to, and "the
document plus this payload stays under 16 MiB". Nothing is read first. Only a refused write pays
one more read (:meth:`SessionDocuments.probe`) to raise the right typed error.
"""

import logging
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import timedelta
from typing import Any, NoReturn, Protocol

import bson
from pymongo import ReturnDocument
from pymongo.collection import Collection
from pymongo.errors import DuplicateKeyError

from ._binding import current_binding
from ._documents import now
from ._known_sessions import SESSIONS_KEPT, KnownSessions
from ._schema import (
    DEFAULT_LAYOUT,
    EXPIRE_AFTER_FIELD,
    EXPIRES_AT_FIELD,
    FIRST_PROMPT_FIELD,
    GENERATION_FIELD,
    LAYOUT_FIELD,
    OWNER_FIELDS,
    PENDING_FIELD,
    REVISION_FIELD,
    Document,
    Layout,
    agent_path,
    layout_condition,
    multi_agent_path,
    owner_of,
    stored_layout,
)
from .errors import LayoutMismatchError, SessionConflictError, SessionNotFoundError, SessionTooLargeError

logger = logging.getLogger(__name__)

MAX_DOCUMENT_BYTES = 16 * 1024 * 1024
"""MongoDB's BSON document limit."""
WARN_DOCUMENT_BYTES = 8 * 1024 * 1024
"""Past this size every write logs a warning: the session is half-way to the limit."""
WRITE_HEADROOM_BYTES = 1024
"""Room kept for what a write adds besides its payload (array index keys, timestamps)."""
_WRITTEN = {
    "_id": 0,
    "size": {"$bsonSize": "$$ROOT"},
    GENERATION_FIELD: 1,
    EXPIRE_AFTER_FIELD: 1,
    **dict.fromkeys(OWNER_FIELDS, 1),
}
"""Projection of a write's reply: the new document size, its generation, expiry and owner."""
LEARNT = {EXPIRE_AFTER_FIELD: 1, **dict.fromkeys(OWNER_FIELDS, 1)}
"""Projection of what :meth:`SessionDocuments.remember` learns from a document read."""


class Generations(Protocol):
    """Where the generation expected of a session comes from: a writer's binding, or the repository's memory."""

    def expected(self, session_id: str, agent_id: str | None = None) -> tuple[bool, Any]:
        """``(True, generation)`` if known (with ``agent_id`` known to exist, when given)."""

    def learn(self, session_id: str, generation: Any, agent_ids: Iterable[str] = ()) -> None:
        """Record a generation seen in a document read or written."""


def live() -> Document:
    """A filter clause matching the sessions that exist for readers and writers.

    Not expired (MongoDB's TTL monitor runs only every minute), and not still being written by an
    import or a fork (``pending``).
    """
    return {EXPIRES_AT_FIELD: {"$not": {"$lte": now()}}, PENDING_FIELD: {"$exists": False}}


@dataclass(frozen=True)
class Expect:
    """What a write requires of the session document besides its existence, layout and generation."""

    entry: str | None = None
    """Path of an agent or multi-agent entry the write addresses."""
    entry_present: bool = True
    """The entry must exist (True) or not (False: the write creates it, and an existing one means done)."""
    what: str = ""
    """The entry in words, for errors (``"agent 'a1'"``)."""
    message_id: int | None = None
    """A message of the entry's embedded ``messages`` array the write addresses."""
    message_present: bool = True
    """The message must exist (True) or not (False: the write appends it)."""
    agent_id: str | None = None
    """The agent the entry is, if it is one: a write that succeeds shows it exists."""

    @classmethod
    def agent(
        cls, agent_id: str, *, present: bool = True, message_id: int | None = None, message_present: bool = True
    ) -> "Expect":
        """Expectations on the agent ``agent_id`` (and, optionally, one of its embedded messages)."""
        return cls(
            entry=agent_path(agent_id),
            entry_present=present,
            what=f"agent {agent_id!r}",
            message_id=message_id,
            message_present=message_present,
            agent_id=agent_id,
        )

    @classmethod
    def multi_agent(cls, multi_agent_id: str, *, present: bool = True) -> "Expect":
        """Expectations on the multi-agent ``multi_agent_id``."""
        what = f"multi-agent {multi_agent_id!r}"
        return cls(entry=multi_agent_path(multi_agent_id), entry_present=present, what=what)

    def conditions(self) -> Document:
        """The filter clauses saying so."""
        conditions: Document = {}
        if self.entry is not None:
            conditions[self.entry] = {"$exists": self.entry_present}
            if self.message_id is not None:
                matches = self.message_id if self.message_present else {"$ne": self.message_id}
                conditions[f"{self.entry}.messages.message_id"] = matches
        return conditions

    def explain(self, session_id: str, probe: "Probe") -> Exception | None:
        """The error a refusal means, given the document as it is now; None if there is nothing left to do."""
        if self.entry is not None and self.entry_present and not probe.has_entry:
            return SessionNotFoundError(f"{self.what} not found in session {session_id!r}")
        if self.message_id is not None and self.message_present and not probe.has_message:
            return SessionNotFoundError(f"message {self.message_id} of {self.what} not found in session {session_id!r}")
        if self.message_id is not None and not self.message_present and probe.has_message:
            return SessionConflictError(
                f"message {self.message_id} of {self.what} in session {session_id!r} was already written "
                "by another writer; nothing was changed"
            )
        if self.entry is not None and not self.entry_present and probe.has_entry:
            return None
        return _OTHER_REASON


def _keep(memory: dict[str, Any], session_id: str, value: Any) -> None:
    """Record ``value`` for ``session_id`` in a memory bounded like :class:`KnownSessions` (oldest forgotten)."""
    memory[session_id] = value
    while len(memory) > SESSIONS_KEPT:
        del memory[next(iter(memory))]


_OTHER_REASON = Exception("the document is too large, or changed")


@dataclass(frozen=True)
class Probe:
    """Why a conditional write was refused: the session document as it is now."""

    size: int
    layout: Layout
    generation: Any = None
    has_entry: bool = False
    """The agent or multi-agent addressed exists."""
    has_message: bool = False
    """The message addressed exists (embedded layout only)."""


class SessionDocuments:
    """The session collection of one repository, layout and scope, read and written only through here.

    ``scope`` (owner fields) rides in the filter of every command: a session outside it, like an
    expired one, is found nowhere. ``expire_after`` (seconds) moves ``expires_at`` on every write;
    without it, writes keep the session's own ``expire_after_seconds`` (learnt when it is read).
    A session's owner is learnt the same way, so that split-layout messages carry it (:meth:`owner`).
    """

    def __init__(
        self, collection: Collection[Document], layout: Layout, *, scope: Document, expire_after: float | None
    ) -> None:
        """Read and write the sessions in ``collection`` whose messages are stored in ``layout``, within ``scope``."""
        self.collection = collection
        self.layout = layout
        self.scope = scope
        self.expire_after = expire_after
        self.known = KnownSessions()
        self._layout_condition = layout_condition(layout)
        self._expire_after_of: dict[str, float] = {}
        self._owner_of: dict[str, Document] = {}

    def where(self, session_id: str) -> Document:
        """A filter for the live session ``session_id`` within this repository's scope."""
        return {"_id": session_id, **self.scope, **live()}

    def expiry_fields(self, session_id: str) -> Document:
        """``expires_at`` (and nothing else) to set with a write, if the session expires."""
        seconds = self.expire_after if self.expire_after is not None else self._expire_after_of.get(session_id)
        return {EXPIRES_AT_FIELD: now() + timedelta(seconds=seconds)} if seconds is not None else {}

    def remember(self, session_id: str, document: Document) -> None:
        """Keep the session's own ``expire_after_seconds`` and owner from a document just read or written."""
        seconds = document.get(EXPIRE_AFTER_FIELD)
        if isinstance(seconds, int | float) and not isinstance(seconds, bool):
            _keep(self._expire_after_of, session_id, float(seconds))
        owner = owner_of(document)
        if owner:  # owners never change: a document read without them (projected away) teaches nothing
            _keep(self._owner_of, session_id, owner)

    def owner(self, session_id: str) -> Document:
        """The session's owner fields, as far as known: learnt from its document, else this repository's scope."""
        return {**self.scope, **self._owner_of.get(session_id, {})}

    # Generations

    def generations(self, session_id: str) -> Generations:
        """The binding of the writer calling now, else this repository's memory."""
        binding = current_binding(session_id)
        return binding if binding is not None else self.known

    def expected_generation(self, session_id: str, agent_id: str | None = None) -> tuple[bool, Any]:
        """The generation writes to ``session_id`` must find (see :class:`Generations`)."""
        return self.generations(session_id).expected(session_id, agent_id)

    def learn(self, session_id: str, generation: Any, agent_ids: Iterable[str] = ()) -> None:
        """Record the generation of a document just read or written (and agents seen in it)."""
        self.generations(session_id).learn(session_id, generation, agent_ids)

    def observe(self, session_id: str, layout: Layout, generation: Any, agent_ids: Iterable[str] = ()) -> None:
        """Learn from a session document just read; raise if it is in the other layout or not the writer's session.

        Outside a binding the repository takes the generation read as the one to expect from now on.
        """
        self.check_layout(session_id, layout)
        self.learn(session_id, generation, agent_ids)
        self.check(session_id, self.layout, generation)

    def check_layout(self, session_id: str, layout: Layout) -> None:
        """Raise :class:`LayoutMismatchError` unless ``layout`` is this repository's."""
        if layout != self.layout:
            raise LayoutMismatchError(session_id, layout, self.layout)

    def check(self, session_id: str, layout: Layout, generation: Any) -> None:
        """Raise unless a session stored in ``layout`` and ``generation`` is the one expected."""
        self.check_layout(session_id, layout)
        known, expected = self.expected_generation(session_id)
        if known and generation != expected:
            raise SessionNotFoundError(
                f"session {session_id!r} was deleted and created again since it was opened here; "
                "nothing was written to the new one (create a new Agent to work with it)"
            )

    def matching(self, session_id: str) -> Document:
        """A filter for the live ``session_id`` in scope, stored in this layout, in the expected generation."""
        known, generation = self.expected_generation(session_id)
        condition = {GENERATION_FIELD: generation} if known and generation is not None else {}
        return {**self.where(session_id), **self._layout_condition, **condition}

    # Writes

    def create(self, session_id: str, document: Document) -> None:
        """Insert the session document unless the session exists (idempotent), and learn its generation.

        ``document`` holds the fields to insert besides the scope's, which come from the filter.
        """
        read_back = {GENERATION_FIELD: 1, LAYOUT_FIELD: 1, **LEARNT}

        def upsert() -> Document | None:
            try:
                stored: Document | None = self.collection.find_one_and_update(
                    self.where(session_id),
                    {"$setOnInsert": document},
                    projection=read_back,
                    upsert=True,
                    return_document=ReturnDocument.AFTER,
                )
            except DuplicateKeyError:
                return None
            return stored

        for _ in range(3):
            stored = upsert()
            if stored is not None:
                self.remember(session_id, stored)
                self.observe(session_id, stored_layout(stored), stored.get(GENERATION_FIELD))
                return
            # The id is taken: by a concurrent creation (found by the next attempt, SecantusDB may
            # also answer the loser with no document), by an expired session (removed here, as the
            # TTL monitor would), or by a session outside this repository's scope.
            self.collection.delete_one({"_id": session_id, EXPIRES_AT_FIELD: {"$lte": now()}})
        raise SessionNotFoundError(f"session {session_id!r} not found")

    def write(
        self,
        session_id: str,
        update: Document,
        *,
        added_bytes: int,
        expect: Expect = Expect(),
        array_filters: list[Document] | None = None,
    ) -> None:
        """Apply ``update`` in one command if ``expect`` holds and the document stays under the limit.

        A refused write changes nothing and raises the typed error that explains it (one more
        read), except for an entry ``expect`` says to create that exists already: that is done.
        """
        room = MAX_DOCUMENT_BYTES - WRITE_HEADROOM_BYTES - added_bytes
        if room >= 0:
            within_limit = {"$expr": {"$lte": [{"$bsonSize": "$$ROOT"}, room]}}
            expiry = self.expiry_fields(session_id)
            setting = {**update.get("$set", {}), **expiry}
            result = self.collection.find_one_and_update(
                {**self.matching(session_id), **expect.conditions(), **within_limit},
                {**update, **({"$set": setting} if setting else {}), "$inc": {REVISION_FIELD: 1}},
                projection=_WRITTEN,
                return_document=ReturnDocument.AFTER,
                array_filters=array_filters,
            )
            if result is not None:
                self._written(session_id, result, expect)
                return
        probe = self.probe(session_id, entry_path=expect.entry, message_id=expect.message_id)
        error = expect.explain(session_id, probe)
        if error is None:
            self.learn(session_id, probe.generation, [expect.agent_id] if expect.agent_id is not None else [])
            logger.debug("session_id=<%s> | %s already exists; left as it is", session_id, expect.entry)
            return
        if error is _OTHER_REASON:
            error = self._refusal(session_id, probe, added_bytes)
        raise error

    def rewrite_first_prompt(self, session_id: str, agent_id: str, message_id: int, text: str) -> None:
        """Replace the text of the session's first prompt if it is that message's (after a redaction)."""
        prompt = {f"{FIRST_PROMPT_FIELD}.agent_id": agent_id, f"{FIRST_PROMPT_FIELD}.message_id": message_id}
        update = {"$set": {f"{FIRST_PROMPT_FIELD}.text": text}, "$inc": {REVISION_FIELD: 1}}
        self.collection.update_one({**self.matching(session_id), **prompt}, update)

    def _written(self, session_id: str, result: Document, expect: Expect) -> None:
        # A retried write (retryWrites) is answered with the whole stored post-image, unprojected.
        size = result.get("size")
        if not isinstance(size, int):
            size = len(bson.encode(result))
        agent_ids = [expect.agent_id] if expect.agent_id is not None else []
        self.learn(session_id, result.get(GENERATION_FIELD), agent_ids)
        self.remember(session_id, result)
        if size > WARN_DOCUMENT_BYTES:
            logger.warning(
                "session_id=<%s> | document is %d bytes, past %d of MongoDB's %d-byte limit",
                session_id,
                size,
                WARN_DOCUMENT_BYTES,
                MAX_DOCUMENT_BYTES,
            )

    def _refusal(self, session_id: str, probe: Probe, added_bytes: int) -> Exception:
        """The error for a refused write that neither the document's existence nor ``expect`` explained."""
        if probe.size + added_bytes + WRITE_HEADROOM_BYTES > MAX_DOCUMENT_BYTES:
            return SessionTooLargeError(session_id, probe.size, added_bytes, MAX_DOCUMENT_BYTES)
        return SessionConflictError(f"session {session_id!r} changed while it was being written; nothing was changed")

    def delete(self, session_id: str) -> Any:
        """Delete the session document and return its generation; raise if missing or in the other layout."""
        deleted = self.collection.find_one_and_delete(self.matching(session_id), {GENERATION_FIELD: 1})
        if deleted is None:
            self.explain_absence(session_id)
        self.known.forget(session_id)
        return deleted.get(GENERATION_FIELD)

    # Reads

    def probe(self, session_id: str, *, entry_path: str | None = None, message_id: int | None = None) -> Probe:
        """Read what a refused write needs explained; raise if the session is missing, elsewhere or replaced.

        ``entry_path`` addresses an agent or multi-agent; ``message_id`` a message in that agent's
        embedded ``messages`` array.
        """
        fields: Document = {
            "_id": 0,
            "size": {"$bsonSize": "$$ROOT"},
            "layout": {"$ifNull": [f"${LAYOUT_FIELD}", DEFAULT_LAYOUT]},
            "generation": {"$ifNull": [f"${GENERATION_FIELD}", None]},
        }
        if entry_path is not None:
            fields["has_entry"] = {"$eq": [{"$type": f"${entry_path}"}, "object"]}
        if entry_path is not None and message_id is not None:
            messages = {"$ifNull": [f"${entry_path}.messages", []]}
            fields["has_message"] = {"$in": [message_id, {"$map": {"input": messages, "in": "$$this.message_id"}}]}
        found = list(self.collection.aggregate([{"$match": self.where(session_id)}, {"$project": fields}]))
        if not found:
            raise SessionNotFoundError(f"session {session_id!r} not found")
        probe = Probe(**found[0])
        self.check(session_id, probe.layout, probe.generation)
        return probe

    def explain_absence(self, session_id: str) -> NoReturn:
        """Raise why a read or write filtered by :meth:`matching` found nothing."""
        self.probe(session_id)
        raise SessionConflictError(f"session {session_id!r} changed while it was being read or written")

    def find(self, session_id: str, projection: Document | None = None, *, checked: bool = False) -> Document | None:
        """Read the live session document in scope (``projection`` as in ``find_one``); ``checked``: as expected."""
        query = self.matching(session_id) if checked else self.where(session_id)
        document: Document | None = self.collection.find_one(query, projection)
        if document is not None:
            self.remember(session_id, document)
        return document

    def aggregate(self, session_id: str, stages: list[Document], *, checked: bool = False) -> list[Document]:
        """Run ``stages`` on the live session document in scope; ``checked``: only on the expected one."""
        query = self.matching(session_id) if checked else self.where(session_id)
        return list(self.collection.aggregate([{"$match": query}, *stages]))

    def read_checked(self, session_id: str, projection: Document) -> Document:
        """The session document (projected, with layout and generation); raise if missing, elsewhere or replaced."""
        fields = {**projection, LAYOUT_FIELD: 1, GENERATION_FIELD: 1}
        found = self.aggregate(session_id, [{"$project": fields}])
        if not found:
            raise SessionNotFoundError(f"session {session_id!r} not found")
        document = found[0]
        self.check(session_id, stored_layout(document), document.get(GENERATION_FIELD))
        return document

    def generation_for(self, session_id: str, agent_id: str) -> Any:
        """The generation to write ``agent_id``'s messages in; read (once) if the agent is not known yet."""
        known, generation = self.expected_generation(session_id, agent_id)
        if known:
            return generation
        document = self.read_checked(session_id, {f"{agent_path(agent_id)}.agent_id": 1, **LEARNT})
        self.remember(session_id, document)
        if agent_id not in (document.get("agents") or {}):
            raise SessionNotFoundError(f"agent {agent_id!r} not found in session {session_id!r}")
        self.learn(session_id, document.get(GENERATION_FIELD), [agent_id])
        return document.get(GENERATION_FIELD)
