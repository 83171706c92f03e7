"""Where an agent's messages are stored: the strategy behind :class:`MongoDBSessionRepository`.

* ``"embedded"`` (:class:`EmbeddedLayout`, the default): each agent's messages are an array in
  the session document. Resume is one read and every write is atomic, but the document grows
  with the conversation and stops at MongoDB's 16 MiB limit.
* ``"split"`` (:class:`SplitLayout`): one document per message in a second collection, so a
  session has no size limit and an append costs the same at message 10 and at message 10,000.

The repository validates identifiers, encodes payloads and keeps the resume snapshot; a layout
only reads and writes messages, and answers the reads whose shape depends on where they are.
"""

from typing import Protocol

from bson.raw_bson import RawBSONDocument
from pymongo.collection import Collection

from ._embedded_layout import EmbeddedLayout
from ._schema import Document, Layout
from ._session_documents import SessionDocuments
from ._split_layout import SplitLayout


class MessageLayout(Protocol):
    """How one layout stores, reads and summarises messages."""

    new_agent_fields: Document
    """Fields a new agent entry in the session document starts with."""

    def create_message(
        self, session_id: str, agent_id: str, message_id: int, entry: RawBSONDocument, *, opening: Document | None
    ) -> None:
        """Store a new message; a ``message_id`` already stored raises ``SessionConflictError``.

        ``opening``: None, or the message starts a turn and this is the update it adds to the session
        document (see ``_documents.turn_opening``).
        """

    def update_message(self, session_id: str, agent_id: str, message_id: int, body: RawBSONDocument) -> None:
        """Replace the stored message's ``message`` and ``redact_message`` with those in ``body``."""

    def read_message(self, session_id: str, agent_id: str, message_id: int) -> Document | None:
        """The stored message, or None."""

    def read_messages(self, session_id: str, agent_id: str, offset: int, limit: int | None) -> list[Document]:
        """Messages from position ``offset``, at most ``limit``; raise if the session or agent is missing."""

    def read_for_resume(self, session_id: str) -> Document | None:
        """The session document with each agent's ``messages`` from its conversation manager's offset.

        The offset is ``_documents.removed_message_count`` of the agent entry; the result is never
        larger than what is stored, so it always fits in one reply.
        """

    def metrics_rows(self, session_id: str) -> list[Document]:
        """One row of summed per-call metrics per agent (see ``metrics``); raise if the session is missing."""

    def delete_session(self, session_id: str) -> None:
        """Delete the session and its messages; raise if it is missing or stored in the other layout."""


def message_layout(
    layout: Layout, sessions: SessionDocuments, messages_collection: Collection[Document]
) -> MessageLayout:
    """The layout named ``layout``; ``messages_collection`` is only used by the split layout."""
    if layout == "split":
        return SplitLayout(sessions, messages_collection)
    return EmbeddedLayout(sessions)
