"""A process that stops dead inside a MongoDBStorage large-value write or delete, to be SIGKILLed there.

    python tests/storage_crash_child.py URI DATABASE KEY SIZE OPERATION POINT

``OPERATION`` is ``write`` (a new value of ``SIZE`` bytes, seeded by ``SIZE``) or ``delete``.
When the command named by ``POINT`` has succeeded, the process prints ``ready`` and freezes in
the middle of the operation (a command listener blocks the thread that runs it) until killed:

* ``upload``: the first ``insert`` into the GridFS chunks collection (the new file is half written);
* ``swap``: the ``findAndModify`` on the key's document (the new value or tombstone is committed,
  the old file is not deleted yet);
* ``cleanup``: the ``delete`` of the old file's chunks (its files document still exists).
"""

from __future__ import annotations

import asyncio
import os
import random
import sys
import time

from pymongo import MongoClient, monitoring

from mongodb_session_manager import MongoDBStorage

POINTS = {
    "upload": ("insert", "storage.gridfs.chunks"),
    "swap": ("findAndModify", "storage"),
    "cleanup": ("delete", "storage.gridfs.chunks"),
}
"""Where to freeze: once this command on this collection has succeeded."""
WATCHDOG_S = 60


def value_of(size: int) -> bytes:
    """The value the child writes: deterministic, so the parent can compare."""
    return random.Random(size).randbytes(size)


class FreezeAt(monitoring.CommandListener):
    """Prints ``ready`` and blocks once the chosen command has succeeded on the chosen collection."""

    def __init__(self, command: str, collection: str) -> None:
        self.command = command
        self.collection = collection
        self.watched: set[int] = set()

    def started(self, event: monitoring.CommandStartedEvent) -> None:
        if event.command_name == self.command and event.command.get(self.command) == self.collection:
            self.watched.add(event.request_id)

    def succeeded(self, event: monitoring.CommandSucceededEvent) -> None:
        if event.request_id in self.watched:
            print("ready", flush=True)
            time.sleep(WATCHDOG_S)
            os._exit(3)  # not killed: the watchdog ends the process

    def failed(self, event: monitoring.CommandFailedEvent) -> None:
        pass


def main() -> None:
    uri, database, key, size, operation, point = sys.argv[1:]
    client: MongoClient[dict[str, object]] = MongoClient(uri, event_listeners=[FreezeAt(*POINTS[point])])
    storage = MongoDBStorage(client=client, database_name=database)
    if operation == "write":
        asyncio.run(storage.write(key, value_of(int(size))))
    else:
        asyncio.run(storage.delete(key))
    print("finished without reaching the point", flush=True)
    sys.exit(2)


if __name__ == "__main__":
    main()
