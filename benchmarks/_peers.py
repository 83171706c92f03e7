"""Strands' own local-file persistence, measured beside MongoDB: what a user picks without a database.

* ``files``: ``strands.session.FileSessionManager`` (a JSON file per message, one per agent state);
* ``snapshot``: ``strands.session.SnapshotSessionManager`` over ``strands.storage.LocalFileStorage``
  (one JSON snapshot of what the Agent holds, rewritten after every invocation).

Both write files on this machine's disk (atomically renamed, not fsynced). They are not durable
across machines: another process on another host cannot resume the conversation, and the files
go when the machine or its disk does. The MongoDB figures beside them are those of a server
reached over the wire protocol, here SecantusDB in memory in the benchmark's own process: the
comparison shows what going through MongoDB costs on this machine, not what a replicated,
journaled deployment costs.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from strands.hooks.events import AfterInvocationEvent
from strands.session import FileSessionManager, SessionManager, SnapshotSessionManager
from strands.storage import LocalFileStorage
from strands.types.agent import LocalAgent
from strands.types.content import Message

PEERS = ("files", "snapshot")
PEER_CLASSES = {
    "files": "Strands FileSessionManager",
    "snapshot": "Strands SnapshotSessionManager + LocalFileStorage",
}
NOT_DURABLE = (
    "files / snapshot: Strands' own FileSessionManager and SnapshotSessionManager(LocalFileStorage), on this "
    "machine's disk (not fsynced). Files on one machine are NOT durable across machines: no other host can resume "
    "the conversation, and it is lost with this machine's disk. The MongoDB columns pay for a server reached over "
    "the wire protocol (here SecantusDB in memory, in this process); the difference is the price of keeping the "
    "conversation in MongoDB, on this machine."
)


class TimedFileSessionManager(FileSessionManager):
    """``FileSessionManager``, adding up the time spent in its hooks (message appends and agent syncs)."""

    seconds = 0.0

    def append_message(self, message: Message, agent: LocalAgent, **kwargs: Any) -> None:
        started = time.perf_counter()
        try:
            super().append_message(message, agent, **kwargs)
        finally:
            self.seconds += time.perf_counter() - started

    def sync_agent(self, agent: LocalAgent, **kwargs: Any) -> None:
        started = time.perf_counter()
        try:
            super().sync_agent(agent, **kwargs)
        finally:
            self.seconds += time.perf_counter() - started


class TimedSnapshotSessionManager(SnapshotSessionManager):
    """``SnapshotSessionManager``, adding up the time of its save after each invocation (its only per-turn work)."""

    seconds = 0.0

    async def _on_after_invocation(self, event: AfterInvocationEvent) -> None:
        started = time.perf_counter()
        try:
            await super()._on_after_invocation(event)
        finally:
            self.seconds += time.perf_counter() - started


def peer_manager(peer: str, session_id: str, directory: Path) -> SessionManager[Any]:
    """A session manager of ``peer`` storing under ``directory`` (timed: ``.seconds`` adds up its hooks)."""
    if peer == "files":
        return TimedFileSessionManager(session_id, storage_dir=str(directory / "files"))
    if peer == "snapshot":
        return TimedSnapshotSessionManager(session_id, storage=LocalFileStorage(str(directory / "snapshot")))
    raise ValueError(f"unknown peer {peer!r}")


def stored_bytes(directory: Path) -> int:
    """Bytes of every file under ``directory``."""
    return sum(path.stat().st_size for path in directory.rglob("*") if path.is_file())
