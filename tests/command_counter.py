"""A pymongo command listener that records what a test sent to the server."""

from __future__ import annotations

import threading
from collections import Counter
from collections.abc import Collection
from dataclasses import dataclass

import bson
from pymongo import monitoring

__all__ = ["HANDSHAKE_COMMANDS", "CommandCounter", "RecordedCommand"]

HANDSHAKE_COMMANDS: frozenset[str] = frozenset(
    {
        "hello",
        "ismaster",
        "isMaster",
        "ping",
        "buildInfo",
        "buildinfo",
        "endSessions",
        "saslStart",
        "saslContinue",
    }
)
"""Driver housekeeping commands that ``CommandCounter`` ignores by default."""


@dataclass
class RecordedCommand:
    """One command the client started."""

    name: str
    database: str
    request_id: int
    reply_bytes: int | None = None
    """BSON size of the reply, once the command succeeded."""
    failed: bool = False


class CommandCounter(monitoring.CommandListener):
    """Records started commands, their database and their reply sizes.

    Register it on a client (``MongoClient(uri, event_listeners=[counter])``), then::

        counter.reset()
        ...  # code under test
        assert counter.count() == 2
        assert counter.names() == ["insert", "find"]
    """

    def __init__(self) -> None:
        """Create an empty counter."""
        self._lock = threading.Lock()
        self._commands: list[RecordedCommand] = []
        self._pending: dict[int, RecordedCommand] = {}

    # -- CommandListener -------------------------------------------------------------------

    def started(self, event: monitoring.CommandStartedEvent) -> None:
        """Record a started command."""
        command = RecordedCommand(event.command_name, event.database_name, event.request_id)
        with self._lock:
            self._commands.append(command)
            self._pending[event.request_id] = command

    def succeeded(self, event: monitoring.CommandSucceededEvent) -> None:
        """Record the BSON size of the reply."""
        with self._lock:
            command = self._pending.pop(event.request_id, None)
        if command is not None:
            command.reply_bytes = len(bson.encode(event.reply))

    def failed(self, event: monitoring.CommandFailedEvent) -> None:
        """Mark the command as failed."""
        with self._lock:
            command = self._pending.pop(event.request_id, None)
        if command is not None:
            command.failed = True

    # -- queries -----------------------------------------------------------------------------

    def reset(self) -> None:
        """Forget everything recorded so far."""
        with self._lock:
            self._commands.clear()
            self._pending.clear()

    def commands(self, excluding: Collection[str] = HANDSHAKE_COMMANDS) -> list[RecordedCommand]:
        """The recorded commands in start order, without those named in ``excluding``."""
        with self._lock:
            return [c for c in self._commands if c.name not in excluding]

    def names(self, excluding: Collection[str] = HANDSHAKE_COMMANDS) -> list[str]:
        """Names of the recorded commands in start order, e.g. ``["insert", "find"]``."""
        return [c.name for c in self.commands(excluding)]

    def count(self, name: str | None = None, excluding: Collection[str] = HANDSHAKE_COMMANDS) -> int:
        """Number of recorded commands (only those called ``name`` if given)."""
        return sum(1 for c in self.commands(excluding) if name is None or c.name == name)

    def by_name(self, excluding: Collection[str] = HANDSHAKE_COMMANDS) -> Counter[str]:
        """How many times each command was started, e.g. ``Counter({"find": 2, "insert": 1})``."""
        return Counter(self.names(excluding))

    def reply_bytes(self, excluding: Collection[str] = HANDSHAKE_COMMANDS) -> int:
        """Total BSON size of the successful replies received."""
        return sum(c.reply_bytes or 0 for c in self.commands(excluding))
