"""Conditional writes to the session documents, and finding out why one was refused.

Every write to a session document is one ``find_one_and_update`` whose filter carries its
preconditions: the caller's conditions (an agent exists, a message id is new), the repository's
message layout, and "the document plus this payload stays under 16 MiB". Nothing is read first.
Only a refused write pays one more read (:meth:`SessionDocuments.probe`) to raise the right typed error.
"""

import logging
from dataclasses import dataclass
from typing import Any

import bson
from pymongo import ReturnDocument
from pymongo.collection import Collection

from ._documents import GENERATION_FIELD, Document
from ._known_sessions import KnownSessions
from .errors import LayoutMismatchError, SessionConflictError, SessionNotFoundError, SessionTooLargeError

logger = logging.getLogger(__name__)

MAX_DOCUMENT_BYTES = 16 * 1024 * 1024
"""MongoDB's BSON document limit."""
WARN_DOCUMENT_BYTES = 8 * 1024 * 1024
"""Past this size every write logs a warning: the session is half-way to the limit."""
WRITE_HEADROOM_BYTES = 1024
"""Room kept for what a write adds besides its payload (array index keys, timestamps)."""
REVISION_FIELD = "revision"
"""Session-document field every write increments, so a reader can tell whether it changed since."""
LAYOUT_FIELD = "message_layout"
"""Session-document field naming the layout its messages are stored in (absent: ``"embedded"``)."""
DEFAULT_LAYOUT = "embedded"


def layout_condition(layout: str) -> Document:
    """A filter matching the session documents stored in ``layout``."""
    if layout == DEFAULT_LAYOUT:
        return {LAYOUT_FIELD: {"$in": [None, DEFAULT_LAYOUT]}}
    return {LAYOUT_FIELD: layout}


def stored_layout(document: Document) -> str:
    """The message layout a session document says it uses."""
    layout: str = document.get(LAYOUT_FIELD) or DEFAULT_LAYOUT
    return layout


@dataclass(frozen=True)
class Probe:
    """Why a conditional write was refused: the session document as it is now."""

    size: int
    layout: str = DEFAULT_LAYOUT
    generation: Any = None
    has_entry: bool = False
    """The agent or multi-agent addressed exists."""
    has_message: bool = False
    """The message addressed exists (embedded layout only)."""


class SessionDocuments:
    """The session collection, written only through conditional one-command writes.

    ``known`` holds the generation (and agents) of the sessions this repository read or created;
    every write is conditional on that generation, so it never lands in a session created anew
    under the same id.
    """

    def __init__(self, collection: Collection[Document], layout: str) -> None:
        """Write to the sessions in ``collection`` whose messages are stored in ``layout``."""
        self.collection = collection
        self.layout = layout
        self.known = KnownSessions()
        self._layout_condition = layout_condition(layout)

    def write(
        self,
        session_id: str,
        conditions: Document,
        update: Document,
        *,
        added_bytes: int,
        array_filters: list[Document] | None = None,
    ) -> bool:
        """Apply ``update`` in one command if ``conditions`` hold and the document stays under the limit.

        Returns whether it was applied. A refused write changes nothing.
        """
        room = MAX_DOCUMENT_BYTES - WRITE_HEADROOM_BYTES - added_bytes
        if room < 0:
            return False
        within_limit = {"$expr": {"$lte": [{"$bsonSize": "$$ROOT"}, room]}}
        result = self.collection.find_one_and_update(
            {**self.matching(session_id), **conditions, **within_limit},
            {**update, "$inc": {REVISION_FIELD: 1}},
            projection={"_id": 0, "size": {"$bsonSize": "$$ROOT"}},
            return_document=ReturnDocument.AFTER,
            array_filters=array_filters,
        )
        if result is None:
            return False
        # A retried write (retryWrites) is answered with the whole stored post-image, unprojected.
        size = result.get("size")
        if not isinstance(size, int):
            size = len(bson.encode(result))
        if size > WARN_DOCUMENT_BYTES:
            logger.warning(
                "session_id=<%s> | document is %d bytes, past %d of MongoDB's %d-byte limit",
                session_id,
                size,
                WARN_DOCUMENT_BYTES,
                MAX_DOCUMENT_BYTES,
            )
        return True

    def probe(self, session_id: str, *, entry_path: str | None = None, message_id: int | None = None) -> Probe:
        """Read what a refused write needs explained; raise if the session is missing or in another layout.

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
        found = list(self.collection.aggregate([{"$match": {"_id": session_id}}, {"$project": fields}]))
        if not found:
            raise SessionNotFoundError(f"session {session_id!r} not found")
        probe = Probe(**found[0])
        self.check(session_id, probe.layout, probe.generation)
        return probe

    def check(self, session_id: str, layout: str, generation: Any) -> None:
        """Raise unless a session stored in ``layout`` and ``generation`` is the one this repository knows."""
        if layout != self.layout:
            raise LayoutMismatchError(session_id, layout, self.layout)
        known, known_generation = self.known.generation(session_id)
        if known and generation != known_generation:
            self.known.forget(session_id)
            raise SessionNotFoundError(
                f"session {session_id!r} was deleted and created again since this repository read it; "
                "nothing was written to the new one"
            )

    def refusal(self, session_id: str, probe: Probe, added_bytes: int) -> Exception:
        """The error for a refused write that the document's existence did not explain."""
        if probe.size + added_bytes + WRITE_HEADROOM_BYTES > MAX_DOCUMENT_BYTES:
            return SessionTooLargeError(session_id, probe.size, added_bytes, MAX_DOCUMENT_BYTES)
        return SessionConflictError(f"session {session_id!r} changed while it was being written; nothing was changed")

    def matching(self, session_id: str) -> Document:
        """A filter for ``session_id`` stored in this layout, in the generation this repository knows (if any)."""
        known, generation = self.known.generation(session_id)
        return {"_id": session_id, **self._layout_condition, **({GENERATION_FIELD: generation} if known else {})}

    def delete(self, session_id: str) -> Any:
        """Delete the session document and return its generation; raise if missing or in the other layout."""
        deleted = self.collection.find_one_and_delete(self.matching(session_id), {GENERATION_FIELD: 1})
        if deleted is None:
            self.probe(session_id)
            raise SessionConflictError(f"session {session_id!r} was created again while it was being deleted")
        self.known.forget(session_id)
        return deleted.get(GENERATION_FIELD)

    def find(self, session_id: str, projection: Document | None = None) -> Document | None:
        """Read the session document (``projection`` as in ``find_one``)."""
        document: Document | None = self.collection.find_one({"_id": session_id}, projection)
        return document
