"""Serving an agent's resume from what ``read_session`` already read.

When Strands resumes a session it calls ``read_session``, then ``read_agent`` and
``list_messages`` (offset = messages the conversation manager already dropped) for each agent.
``read_session`` fetches the session with each agent's messages already sliced from its stored
offset (one read in the embedded layout, two in the split one) and keeps it here, so those
follow-up reads cost no round trip.

A snapshot only stands in for the reads of that same initialisation:

* each agent is answered once (``read_agent``, then ``list_messages``);
* it is discarded when this repository writes to the session (before and after the write, and a
  read that overlapped a write is not kept);
* it expires after :data:`SNAPSHOT_TTL_SECONDS`, so an Agent built long after its manager reads
  the database afresh.

Multi-agent state is not kept: it has no conflict check on write, so it is always read fresh.
"""

import threading
import time
from collections import OrderedDict
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

from ._documents import removed_message_count
from ._schema import Document, SessionFacts

MAX_SNAPSHOTS = 64
SNAPSHOT_TTL_SECONDS = 1.0


@dataclass
class ResumeSnapshot:
    """The agents of one session document as read by ``read_session``, messages sliced per agent."""

    agents: dict[str, Document]
    facts: SessionFacts
    taken_at: float = field(default_factory=time.monotonic)
    answered: set[str] = field(default_factory=set)


class ResumeSnapshots:
    """A small thread-safe store of snapshots, keyed by session id, oldest dropped first."""

    def __init__(self) -> None:
        """Start empty."""
        self._lock = threading.Lock()
        self._snapshots: OrderedDict[str, ResumeSnapshot] = OrderedDict()
        self._writes = 0

    def writes_so_far(self) -> int:
        """A marker to take before reading; :meth:`keep` refuses the read if a write happened since."""
        with self._lock:
            return self._writes

    def keep(self, session_id: str, document: Document, writes_before_read: int) -> None:
        """Keep the freshly read document of ``session_id``, unless a write overlapped the read."""
        snapshot = ResumeSnapshot(agents=dict(document.get("agents") or {}), facts=SessionFacts.of(document))
        with self._lock:
            if self._writes != writes_before_read:
                self._snapshots.pop(session_id, None)
                return
            self._snapshots[session_id] = snapshot
            self._snapshots.move_to_end(session_id)
            while len(self._snapshots) > MAX_SNAPSHOTS:
                self._snapshots.popitem(last=False)

    def drop(self, session_id: str) -> None:
        """Forget the snapshot of ``session_id``."""
        with self._lock:
            self._writes += 1
            self._snapshots.pop(session_id, None)

    @contextmanager
    def writing(self, session_id: str) -> Iterator[None]:
        """Wrap a write to ``session_id``: its snapshot is dropped before and after."""
        self.drop(session_id)
        try:
            yield
        finally:
            self.drop(session_id)

    def agent(self, session_id: str, agent_id: str) -> tuple[bool, Document | None, SessionFacts | None]:
        """Answer ``read_agent`` once: ``(True, entry or None, the session's facts)``, else ``(False, None, None)``."""
        with self._lock:
            snapshot = self._fresh(session_id)
            if snapshot is None or agent_id in snapshot.answered:
                return False, None, None
            snapshot.answered.add(agent_id)
            return True, snapshot.agents.get(agent_id), snapshot.facts

    def take_messages(self, session_id: str, agent_id: str, offset: int) -> list[Document] | None:
        """Hand out, once, the messages of an agent answered above, if they were sliced from ``offset``."""
        with self._lock:
            snapshot = self._fresh(session_id)
            if snapshot is None or agent_id not in snapshot.answered:
                return None
            entry = snapshot.agents.pop(agent_id, None)
            if entry is None or removed_message_count(entry) != offset:
                return None
            messages: list[Any] = entry.get("messages") or []
            return messages

    def _fresh(self, session_id: str) -> ResumeSnapshot | None:
        snapshot = self._snapshots.get(session_id)
        if snapshot is not None and time.monotonic() - snapshot.taken_at > SNAPSHOT_TTL_SECONDS:
            del self._snapshots[session_id]
            return None
        return snapshot
