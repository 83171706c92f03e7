"""What one repository remembers of the sessions it read or created, for calls made outside a binding.

Calls a session manager makes for its writers carry a :class:`~._binding.SessionBinding`. A
repository used on its own has no writer to bind, so it remembers, per session, the generation it
last read (or created) and the agents it has seen exist. Writes filter on that generation, so
they never land in a session created anew under the same id since; a refused write leaves the
memory as it is, and only a new read of the session, or the repository's own delete, replaces it.
The memory is bounded (least recently used sessions forgotten first); a forgotten session is
learnt again from its next read or write. Known agents let the split layout append without first
checking that the agent exists. Nothing here is ever trusted to answer a read.
"""

import threading
from collections import OrderedDict
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from ._schema import SessionFacts

SESSIONS_KEPT = 1024
"""How many sessions one repository remembers (least recently used forgotten first)."""


@dataclass
class _KnownSession:
    facts: SessionFacts
    agent_ids: set[str] = field(default_factory=set)


class KnownSessions:
    """A bounded, thread-safe map: session id -> generation and the agent ids known to exist."""

    def __init__(self) -> None:
        """Start knowing nothing."""
        self._lock = threading.Lock()
        self._sessions: OrderedDict[str, _KnownSession] = OrderedDict()

    def expected(self, session_id: str, agent_id: str | None = None) -> tuple[bool, Any]:
        """``(True, generation)`` if the session (and ``agent_id``, when given) is known; else ``(False, None)``."""
        with self._lock:
            known = self._sessions.get(session_id)
            if known is None or (agent_id is not None and agent_id not in known.agent_ids):
                return False, None
            self._sessions.move_to_end(session_id)
            return True, known.facts.generation

    def expire_after(self, session_id: str) -> float | None:
        """The session's own ``expire_after_seconds``, as last read (None if it never expires or is unknown)."""
        with self._lock:
            known = self._sessions.get(session_id)
            return known.facts.expire_after if known is not None else None

    def owner(self, session_id: str) -> dict[str, Any]:
        """The session's owner fields, as last read (empty if it has none or is unknown)."""
        with self._lock:
            known = self._sessions.get(session_id)
            return dict(known.facts.owner) if known is not None else {}

    def learn(self, session_id: str, facts: SessionFacts, agent_ids: Iterable[str] = ()) -> None:
        """Record the session's facts and agents (added to those known, unless the generation changed).

        A session stored before generations existed has the generation None; it is recorded too, and
        writes then expect a document without one.
        """
        with self._lock:
            known = self._sessions.get(session_id)
            if known is None or known.facts.generation != facts.generation:
                known = self._sessions[session_id] = _KnownSession(facts)
            known.facts = facts
            known.agent_ids.update(agent_ids)
            self._sessions.move_to_end(session_id)
            while len(self._sessions) > SESSIONS_KEPT:
                self._sessions.popitem(last=False)

    def forget(self, session_id: str) -> None:
        """Forget the session (this repository deleted it)."""
        with self._lock:
            self._sessions.pop(session_id, None)
