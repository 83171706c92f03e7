"""What one repository has learnt about the sessions it read or created: generation and agents.

A session's ``generation`` tells it apart from an earlier session that had the same id and was
deleted. Writes carry the generation they expect, so a writer still holding a deleted session can
never write into the one that replaced it. Known agents let the split layout append without first
checking that the agent exists. Nothing here is ever trusted to answer a read.
"""

import threading
from collections import OrderedDict
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

SESSIONS_KEPT = 1024
"""How many sessions one repository remembers (least recently used forgotten first)."""


@dataclass
class _KnownSession:
    generation: Any
    agent_ids: set[str] = field(default_factory=set)


class KnownSessions:
    """A bounded, thread-safe map: session id -> generation and the agent ids known to exist."""

    def __init__(self) -> None:
        """Start knowing nothing."""
        self._lock = threading.Lock()
        self._sessions: OrderedDict[str, _KnownSession] = OrderedDict()

    def remember(self, session_id: str, generation: Any, agent_ids: Iterable[str] = ()) -> None:
        """Record the session's generation and agents (added to those known, if the generation is the same).

        A session stored before generations existed (``generation`` None) is not recorded: there is
        nothing to check its writes against.
        """
        if generation is None:
            return
        with self._lock:
            known = self._sessions.get(session_id)
            if known is None or known.generation != generation:
                known = self._sessions[session_id] = _KnownSession(generation)
            known.agent_ids.update(agent_ids)
            self._sessions.move_to_end(session_id)
            while len(self._sessions) > SESSIONS_KEPT:
                self._sessions.popitem(last=False)

    def add_agent(self, session_id: str, agent_id: str) -> None:
        """Record that the agent exists in a session whose generation is known."""
        with self._lock:
            if session_id in self._sessions:
                self._sessions[session_id].agent_ids.add(agent_id)

    def generation(self, session_id: str, agent_id: str | None = None) -> tuple[bool, Any]:
        """``(True, generation)`` if the session (and ``agent_id``, when given) is known; else ``(False, None)``."""
        with self._lock:
            known = self._sessions.get(session_id)
            if known is None or (agent_id is not None and agent_id not in known.agent_ids):
                return False, None
            self._sessions.move_to_end(session_id)
            return True, known.generation

    def forget(self, session_id: str) -> None:
        """Forget the session (it was deleted, or replaced by another with the same id)."""
        with self._lock:
            self._sessions.pop(session_id, None)
