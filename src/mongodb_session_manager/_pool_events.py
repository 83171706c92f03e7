"""Counting pymongo's connection-pool events, for the shared clients' statistics."""

import threading
from collections import Counter

from pymongo.monitoring import (
    ConnectionCheckedInEvent,
    ConnectionCheckedOutEvent,
    ConnectionCheckOutFailedEvent,
    ConnectionCheckOutStartedEvent,
    ConnectionClosedEvent,
    ConnectionCreatedEvent,
    ConnectionPoolListener,
    ConnectionReadyEvent,
    PoolClearedEvent,
    PoolClosedEvent,
    PoolCreatedEvent,
    PoolReadyEvent,
)


class PoolEventCounter(ConnectionPoolListener):
    """Counts pymongo connection-pool events (thread-safe)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._counts: Counter[str] = Counter()

    def _count(self, name: str) -> None:
        with self._lock:
            self._counts[name] += 1

    def counts(self) -> Counter[str]:
        """The counts so far, by event name."""
        with self._lock:
            return self._counts.copy()

    def pool_created(self, event: PoolCreatedEvent) -> None:
        self._count("pools_created")

    def pool_ready(self, event: PoolReadyEvent) -> None:
        self._count("pools_ready")

    def pool_cleared(self, event: PoolClearedEvent) -> None:
        self._count("pools_cleared")

    def pool_closed(self, event: PoolClosedEvent) -> None:
        self._count("pools_closed")

    def connection_created(self, event: ConnectionCreatedEvent) -> None:
        self._count("created")

    def connection_ready(self, event: ConnectionReadyEvent) -> None:
        self._count("ready")

    def connection_closed(self, event: ConnectionClosedEvent) -> None:
        self._count("closed")

    def connection_check_out_started(self, event: ConnectionCheckOutStartedEvent) -> None:
        self._count("check_out_started")

    def connection_check_out_failed(self, event: ConnectionCheckOutFailedEvent) -> None:
        self._count("check_out_failed")

    def connection_checked_out(self, event: ConnectionCheckedOutEvent) -> None:
        self._count("checked_out")

    def connection_checked_in(self, event: ConnectionCheckedInEvent) -> None:
        self._count("checked_in")
