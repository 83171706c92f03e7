"""Serving an agent's resume from the single read that ``read_session`` makes.

When Strands resumes a session it calls ``read_session``, then ``read_agent`` and
``list_messages`` (offset = messages the conversation manager already dropped) for each agent.
``read_session`` fetches the session document once, with each agent's messages already sliced
from its stored offset, and keeps it here so those follow-up reads cost no round trip.

A snapshot is only a stand-in for reads of the same initialisation: it is dropped as soon as
this repository writes to the session, and each agent's messages are handed out once.
"""

import threading
from collections import OrderedDict
from dataclasses import dataclass, field
from typing import Any

from ._documents import Document

MAX_SNAPSHOTS = 64


@dataclass
class ResumeSnapshot:
    """One session document as read by ``read_session``, with messages sliced per agent."""

    agents: dict[str, Document]
    multi_agents: dict[str, Document]
    served_messages: set[str] = field(default_factory=set)


class ResumeSnapshots:
    """A small thread-safe store of snapshots, keyed by session id, oldest dropped first."""

    def __init__(self) -> None:
        """Start empty."""
        self._lock = threading.Lock()
        self._snapshots: OrderedDict[str, ResumeSnapshot] = OrderedDict()

    def keep(self, session_id: str, document: Document) -> None:
        """Keep the freshly read document of ``session_id``, replacing any older one."""
        snapshot = ResumeSnapshot(
            agents=dict(document.get("agents") or {}),
            multi_agents=dict(document.get("multi_agents") or {}),
        )
        with self._lock:
            self._snapshots[session_id] = snapshot
            self._snapshots.move_to_end(session_id)
            while len(self._snapshots) > MAX_SNAPSHOTS:
                self._snapshots.popitem(last=False)

    def drop(self, session_id: str) -> None:
        """Forget the snapshot of ``session_id`` (called on every write to it)."""
        with self._lock:
            self._snapshots.pop(session_id, None)

    def agent(self, session_id: str, agent_id: str) -> tuple[bool, Document | None]:
        """``(True, entry or None)`` if a snapshot can answer for this agent, else ``(False, None)``."""
        with self._lock:
            snapshot = self._snapshots.get(session_id)
            if snapshot is None or agent_id in snapshot.served_messages:
                return False, None
            return True, snapshot.agents.get(agent_id)

    def multi_agent(self, session_id: str, multi_agent_id: str) -> tuple[bool, Document | None]:
        """``(True, entry or None)`` if a snapshot can answer for this multi-agent, else ``(False, None)``."""
        with self._lock:
            snapshot = self._snapshots.get(session_id)
            if snapshot is None:
                return False, None
            return True, snapshot.multi_agents.get(multi_agent_id)

    def take_messages(self, session_id: str, agent_id: str, offset: int) -> list[Document] | None:
        """Hand out the agent's sliced messages once, if they were sliced from ``offset``."""
        with self._lock:
            snapshot = self._snapshots.get(session_id)
            if snapshot is None or agent_id in snapshot.served_messages:
                return None
            entry = snapshot.agents.get(agent_id)
            if entry is None or entry.get("messages_offset") != offset:
                return None
            snapshot.served_messages.add(agent_id)
            messages: list[Any] = entry.get("messages") or []
            return messages


END_OF_ARRAY = 2**31 - 1
"""A ``$slice`` count meaning "to the end" (MongoDB requires a positive count)."""


def resume_pipeline(session_id: str) -> list[dict[str, Any]]:
    """Read one session with each agent's messages sliced from where its conversation manager left off.

    Every agent entry gains ``messages_offset``: the position its messages were sliced from.
    """
    offset = {"$max": [0, {"$ifNull": ["$$agent.v.conversation_manager_state.removed_message_count", 0]}]}
    sliced_agent = {
        "$mergeObjects": [
            "$$agent.v",
            {
                "messages_offset": offset,
                "messages": {"$slice": [{"$ifNull": ["$$agent.v.messages", []]}, offset, END_OF_ARRAY]},
            },
        ]
    }
    agents = {"$objectToArray": {"$ifNull": ["$agents", {}]}}
    return [
        {"$match": {"_id": session_id}},
        {
            "$set": {
                "agents": {
                    "$arrayToObject": {
                        "$map": {"input": agents, "as": "agent", "in": {"k": "$$agent.k", "v": sliced_agent}}
                    }
                }
            }
        },
    ]
