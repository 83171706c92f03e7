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


class SessionBinding:
    """One writer's session: its id, the generation learnt once, and the agents known to exist in it."""

    def __init__(self, session_id: str) -> None:
        """Bind to ``session_id``; the generation is learnt from the first document seen."""
        self.session_id = session_id
        self._lock = threading.Lock()
        self._learnt = False
        self._generation: Any = None
        self._agent_ids: set[str] = set()

    def expected(self, session_id: str, agent_id: str | None = None) -> tuple[bool, Any]:
        """``(True, generation)`` once learnt (and ``agent_id``, when given, is known); else ``(False, None)``."""
        with self._lock:
            if not self._learnt or (agent_id is not None and agent_id not in self._agent_ids):
                return False, None
            return True, self._generation

    def learn(self, session_id: str, generation: Any, agent_ids: Iterable[str] = ()) -> None:
        """Take ``generation`` if none was learnt yet; record ``agent_ids`` if it is the bound generation.

        A different generation is ignored: the document belongs to another session, and the
        caller's check refuses it.
        """
        with self._lock:
            if not self._learnt:
                self._learnt, self._generation = True, generation
            if generation == self._generation:
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
