"""Typed errors raised by mongodb-session-manager.

Every error subclasses :class:`MongoDBSessionError`, which itself subclasses Strands'
``SessionException``, so code that already catches Strands session errors keeps working.
pymongo's own errors (timeouts, network failures) are never swallowed: they propagate as they are.
"""

from typing import Any

from strands.types.exceptions import SessionException


class MongoDBSessionError(SessionException):
    """Base class of every error this library raises."""


class SessionNotFoundError(MongoDBSessionError):
    """The session, agent, message or multi-agent addressed does not exist."""


class SessionConflictError(MongoDBSessionError):
    """A concurrent writer got there first; nothing stored was changed.

    Raised when two writers append the same ``message_id`` to the same agent: the first
    wins, the second gets this error.
    """


class StaleAgentError(MongoDBSessionError):
    """The Agent missed a write (conflict, network failure, size limit): its memory differs from the store.

    Nothing was written. Create a new Agent with the same session id to resume from what is stored.
    """


class SessionTooLargeError(MongoDBSessionError):
    """The write would push a document past MongoDB's 16 MiB BSON limit.

    In the embedded layout that document is the whole session; in the split layout it is a single
    message. Nothing stored was changed.
    """

    def __init__(
        self,
        session_id: str,
        size_bytes: int,
        added_bytes: int,
        limit_bytes: int,
        document: str = "the session document",
    ) -> None:
        """Describe the refused write: the session, the document's current size and what was to be added."""
        self.session_id = session_id
        self.size_bytes = size_bytes
        self.added_bytes = added_bytes
        self.limit_bytes = limit_bytes
        super().__init__(
            f"session {excerpt(session_id)}: {document} is {size_bytes:,} bytes; adding {added_bytes:,} bytes would "
            f"pass MongoDB's {limit_bytes:,}-byte document limit. Nothing was written."
        )


class LayoutMismatchError(MongoDBSessionError):
    """The session is stored in another message layout than the repository was configured with.

    Nothing was read or written. Configure the matching ``layout``, or move the sessions with
    ``python -m mongodb_session_manager migrate --from embedded --to split``.
    """

    def __init__(self, session_id: str, stored_layout: str, configured_layout: str) -> None:
        """Name the session and both layouts."""
        self.session_id = session_id
        self.stored_layout = stored_layout
        self.configured_layout = configured_layout
        super().__init__(
            f"session {excerpt(session_id)} is stored in the {stored_layout!r} layout but this repository uses "
            f"{configured_layout!r}; configure layout={stored_layout!r} or migrate it "
            "(python -m mongodb_session_manager migrate --help)"
        )


EXCERPT_CHARACTERS = 64
"""How much of a refused value an error message quotes."""
FIELD_CHARACTERS = 100
"""How much of a field's path (built from the caller's keys) an error message shows."""


def excerpt(value: object) -> str:
    """``repr(value)``, cut to :data:`EXCERPT_CHARACTERS` with the full length noted when longer."""
    text = repr(value)
    if len(text) <= EXCERPT_CHARACTERS:
        return text
    size = f"{len(value):,} characters" if isinstance(value, str) else f"{len(text):,} characters as repr"
    return f"{text[:EXCERPT_CHARACTERS]}... ({size})"


def printable(text: str) -> str:
    """``text`` with every unprintable character (control, NUL, lone surrogate) escaped as ``ascii()`` writes it.

    A path built from the caller's keys can hold such characters; escaped, a message holding it
    can be logged, printed and sent as UTF-8 JSON.
    """
    return "".join(character if character.isprintable() else ascii(character)[1:-1] for character in text)


class InvalidArgumentError(MongoDBSessionError, ValueError):
    """An argument was refused before anything was sent to MongoDB; ``field`` names it.

    The message quotes at most a short excerpt of the value.
    """

    def __init__(self, field: str, value: object, reason: str) -> None:
        """Name the offending field, an excerpt of its value and why it was refused."""
        self.field = field
        self.value = value
        self.reason = reason
        shown = printable(field if len(field) <= FIELD_CHARACTERS else f"{field[:FIELD_CHARACTERS]}...")
        super().__init__(f"invalid {shown} {excerpt(value)}: {reason}")


class InvalidIdentifierError(InvalidArgumentError):
    """An identifier, key or position is unsafe to use in a MongoDB filter or field path."""


class InvalidCursorError(InvalidArgumentError):
    """A listing cursor is malformed, was edited, or was made for other filters."""


class UnstorableValueError(InvalidArgumentError, TypeError):
    """A value cannot be stored as BSON (a set, an arbitrary object, an int of 64 bits or more, ...).

    ``field`` is the path of the first such value, for example ``metadata.score`` or
    ``state.items[2]``. Nothing was written.
    """


class InvalidSessionDataError(InvalidArgumentError):
    """Data given to ``import_session`` is not a session this library exported, or cannot be stored.

    ``field`` is the path of the first problem found, for example ``agents[0].messages[3].message_id``.
    Everything is checked before anything is written: nothing was written.
    """


class SessionExistsError(MongoDBSessionError):
    """The session to create (by ``import_session`` or ``fork_session``) exists already; nothing was changed."""


class FactoryNotInitializedError(MongoDBSessionError, RuntimeError):
    """The global factory was used before ``initialize_global_factory()`` (or after closing)."""


class FactoryAlreadyInitializedError(MongoDBSessionError, RuntimeError):
    """``initialize_global_factory()`` was called while a global factory is open."""


class ForeignDocumentsError(MongoDBSessionError, ValueError):
    """A collection holds documents this library did not write there: most likely the wrong collection.

    Raised before anything is written; nothing was changed.
    """

    def __init__(self, namespace: str, expected: str, example_id: Any) -> None:
        """Name the collection, what it should hold and one document that is not that."""
        self.namespace = namespace
        self.example_id = example_id
        super().__init__(
            f"{namespace} holds documents that are not {expected} of this library "
            f"(for example _id {excerpt(example_id)}); "
            "nothing was changed"
        )
