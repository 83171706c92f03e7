"""Checks that the collections a migration or cleanup is pointed at hold what this library writes there.

Run before anything is written, so a wrong ``--collection`` or ``--messages-collection`` changes
nothing. Each check is one query whose filter matches the documents that do *not* have the
expected shape, answered with at most one ``_id``: the server scans the collection, and nothing
but that one ``_id`` crosses the network.

A session document (every version of this library) has ``session_id`` equal to its ``_id``, an
``agents`` object and a ``created_at`` date; a message document has a string ``agent_id`` and an
integer ``message_id``. Documents of other applications (users, orders) have neither shape, and
neither kind of document has the other's. The migration's writes to one session carry the same
conditions (:func:`session_filter`) without ``$expr``, so they stay on the ``_id`` index (a server
may scan the whole collection for a filter with ``$expr``; SecantusDB does).
"""

from datetime import datetime
from typing import Any

from pymongo.collection import Collection
from pymongo.database import Database

from ._schema import Document, default_messages_collection_name
from .errors import ForeignDocumentsError, InvalidIdentifierError
from .validation import validate_collection_name, validate_database_name

"""How much of a foreign document's ``_id`` an error quotes."""

SESSION_SHAPE: Document = {
    "$expr": {
        "$and": [
            {"$eq": [{"$type": "$session_id"}, "string"]},
            {"$eq": ["$session_id", "$_id"]},
            {"$eq": [{"$type": "$agents"}, "object"]},
            {"$eq": [{"$type": "$created_at"}, "date"]},
        ]
    }
}
"""A filter matching the documents shaped like this library's session documents."""


def session_filter(session_id: Any) -> Document:
    """A filter for the document ``session_id``, matching only if it is shaped like a session (see the module)."""
    return {
        "_id": {"$eq": session_id},
        "session_id": {"$eq": session_id, "$type": "string"},
        "agents": {"$type": "object", "$not": {"$type": "array"}},
        "created_at": {"$type": "date"},
    }


MESSAGE_SHAPE: Document = {
    "$expr": {
        "$and": [
            {"$eq": [{"$type": "$agent_id"}, "string"]},
            {"$in": [{"$type": "$message_id"}, ["int", "long"]]},
        ]
    }
}
"""A filter matching the documents shaped like this library's split-layout messages."""


def checked_names(database: Database[Document], collection_name: Any, messages_collection_name: Any) -> str:
    """Validate the three names; return the messages collection's (``<collection>_messages`` by default).

    Raises :class:`InvalidIdentifierError` naming the parameter, and when both collections are one.
    """
    validate_database_name(database.name)
    validate_collection_name(collection_name, "collection_name")
    if messages_collection_name is None:
        return default_messages_collection_name(collection_name)
    validate_collection_name(messages_collection_name, "messages_collection_name")
    if messages_collection_name == collection_name:
        raise InvalidIdentifierError(
            "messages_collection_name", messages_collection_name, "must differ from collection_name"
        )
    return str(messages_collection_name)


def require_sessions(collection: Collection[Document]) -> None:
    """Raise :class:`ForeignDocumentsError` if any document of ``collection`` is not a session document."""
    _require(collection, SESSION_SHAPE, "session documents")


def require_session_document(collection: Collection[Document], document: Document) -> None:
    """Raise :class:`ForeignDocumentsError` if ``document`` (read from ``collection``) lacks a session's dates."""
    if not all(isinstance(document.get(name), datetime) for name in ("created_at", "updated_at")):
        raise ForeignDocumentsError(
            f"{collection.database.name}.{collection.name}", "session documents", document.get("_id")
        )


def require_messages(collection: Collection[Document]) -> None:
    """Raise :class:`ForeignDocumentsError` if any document of ``collection`` is not a message document."""
    _require(collection, MESSAGE_SHAPE, "split-layout messages")


def _require(collection: Collection[Document], shape: Document, expected: str) -> None:
    foreign = collection.find_one({"$nor": [shape]}, {"_id": 1})
    if foreign is not None:
        raise ForeignDocumentsError(f"{collection.database.name}.{collection.name}", expected, foreign.get("_id"))
