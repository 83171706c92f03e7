"""The session generation a writer is bound to, carried with the writer's calls into the repository.

A session document's ``generation`` (an ObjectId chosen when it is created) tells it apart from
an earlier session that had the same id and was deleted. Every writer the session manager drives
(an Agent, a Graph or Swarm) gets a :class:`SessionBinding` when it is initialised. The binding
learns the generation from the first session document that initialisation reads or writes, and
then never changes: not after a refused write, a delete, or anything a cache forgets. Every later
write of that writer filters on it, so it can only ever land in the session it was initialised
against. Only a new initialisation (a new Agent) binds anew.

The manager enters the binding around each of its calls into the repository (:func:`bound`, a
ContextVar, so it rides with the call on that thread or task); Strands' ``SessionRepository``
signatures stay as they are. Calls made outside a binding (a repository used on its own) fall
back to what the repository remembers (:mod:`._known_sessions`).
"""

import threading
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from typing import Any

from ._schema import SessionFacts


class SessionBinding:
    """One writer's session: its id, what was learnt of it once, and the agents known to exist in it.

    It answers the ``Generations`` questions of :mod:`._session_documents` (``session_id``
    arguments are part of that shape; a binding only ever serves its own session).
    """

    def __init__(self, session_id: str) -> None:
        """Bind to ``session_id``; the generation is learnt from the first document seen."""
        self.session_id = session_id
        self._lock = threading.Lock()
        self._facts: SessionFacts | None = None
        self._agent_ids: set[str] = set()

    def expected(self, session_id: str, agent_id: str | None = None) -> tuple[bool, Any]:
        """``(True, generation)`` once learnt (and ``agent_id``, when given, is known); else ``(False, None)``."""
        with self._lock:
            if self._facts is None or (agent_id is not None and agent_id not in self._agent_ids):
                return False, None
            return True, self._facts.generation

    def expire_after(self, session_id: str) -> float | None:
        """The bound session's own ``expire_after_seconds`` (None if it never expires or is not learnt)."""
        with self._lock:
            return self._facts.expire_after if self._facts is not None else None

    def owner(self, session_id: str) -> dict[str, Any]:
        """The bound session's owner fields (empty if it has none or they are not learnt)."""
        with self._lock:
            return dict(self._facts.owner) if self._facts is not None else {}

    def learn(self, session_id: str, facts: SessionFacts, agent_ids: Iterable[str] = ()) -> None:
        """Take ``facts`` if none were learnt yet; record ``agent_ids`` if they are the bound session's.

        Another generation is ignored: the document belongs to another session, and the caller's
        check refuses it.
        """
        with self._lock:
            if self._facts is None:
                self._facts = facts
            if facts.generation == self._facts.generation:
                self._agent_ids.update(agent_ids)


_current: ContextVar[SessionBinding | None] = ContextVar("mongodb_session_manager_binding", default=None)


def current_binding(session_id: str) -> SessionBinding | None:
    """The binding of the writer calling now, if it is bound to ``session_id``."""
    binding = _current.get()
    return binding if binding is not None and binding.session_id == session_id else None


@contextmanager
def bound(binding: SessionBinding) -> Iterator[None]:
    """Make the repository calls inside this block (this thread or task) use ``binding``."""
    token = _current.set(binding)
    try:
        yield
    finally:
        _current.reset(token)
