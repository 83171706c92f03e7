"""Values too large for one document, kept in a GridFS bucket (``<collection>.gridfs.files`` / ``.chunks``).

The bucket follows the GridFS layout (``files``: ``_id``, ``length``, ``chunkSize``, ``uploadDate``,
``filename``; ``chunks``: ``files_id``, ``n``, ``data``), so GridFS tools can read it, but this
module writes it in its own order: **the files document first, then the chunks** (pymongo's
``GridIn`` writes the chunks first). Every chunk therefore has a files document whose
``filename`` is the storage key, from before the first chunk is written until after the last one
is deleted, and whatever a killed process leaves behind is found through the key (an indexed
lookup), never by scanning chunks. Deletion goes the other way: chunks, then the files document.
Each also carries the key's ``expires_at``, so the TTL monitor removes all three together.
"""

from __future__ import annotations

import datetime
import logging
import math
from collections.abc import Iterable, Iterator
from typing import Any

from bson import ObjectId
from pymongo import ASCENDING, IndexModel
from pymongo.collection import Collection
from pymongo.database import Database
from pymongo.errors import PyMongoError

from ._indexes import ensure_indexes

CHUNK_SIZE = 255 * 1024
"""GridFS's default chunk size."""
CHUNKS_PER_INSERT = 32
"""Chunks sent per ``insert`` command (8 MiB), so memory and command size stay bounded."""
EXPIRES_AT = "expires_at"

FILES_INDEXES = (
    IndexModel([("filename", ASCENDING), ("uploadDate", ASCENDING)], name="filename_1_uploadDate_1"),
    IndexModel([(EXPIRES_AT, ASCENDING)], name="expires_at_1", expireAfterSeconds=0, sparse=True),
)
CHUNKS_INDEXES = (
    IndexModel([("files_id", ASCENDING), ("n", ASCENDING)], name="files_id_1_n_1", unique=True),
    IndexModel([(EXPIRES_AT, ASCENDING)], name="expires_at_1", expireAfterSeconds=0, sparse=True),
)

Document = dict[str, Any]

logger = logging.getLogger(__name__)


class LargeValues:
    """Write, read and remove the GridFS files that hold large values."""

    def __init__(self, database: Database[Document], bucket: str) -> None:
        """Use the bucket ``<bucket>.files`` / ``<bucket>.chunks`` of ``database``."""
        self.files: Collection[Document] = database[f"{bucket}.files"]
        self.chunks: Collection[Document] = database[f"{bucket}.chunks"]

    def ensure_indexes(self) -> None:
        """Create the GridFS indexes and the TTL indexes (once per process)."""
        ensure_indexes(self.files, FILES_INDEXES)
        ensure_indexes(self.chunks, CHUNKS_INDEXES)

    def upload(self, key: str, stored: bytes, expires_at: datetime.datetime | None) -> Document:
        """Store ``stored`` as a new file of ``key``; return the reference to keep in the key's document.

        If a chunk cannot be written, what was written is removed again before the error propagates.
        """
        file_id = ObjectId()
        expiry = {EXPIRES_AT: expires_at} if expires_at is not None else {}
        self.files.insert_one(
            {
                "_id": file_id,
                "length": len(stored),
                "chunkSize": CHUNK_SIZE,
                "uploadDate": datetime.datetime.now(datetime.UTC),
                "filename": key,
                **expiry,
            }
        )
        view = memoryview(stored)
        count = math.ceil(len(stored) / CHUNK_SIZE)
        try:
            for first in range(0, count, CHUNKS_PER_INSERT):
                self.chunks.insert_many(
                    [
                        {
                            "files_id": file_id,
                            "n": n,
                            "data": bytes(view[n * CHUNK_SIZE : (n + 1) * CHUNK_SIZE]),
                            **expiry,
                        }
                        for n in range(first, min(first + CHUNKS_PER_INSERT, count))
                    ]
                )
        except BaseException:
            self.discard(file_id)
            raise
        return {"id": file_id, "length": len(stored)}

    def download(self, reference: Document) -> bytes | None:
        """The bytes of a file, or ``None`` if any chunk is missing (the file is being removed)."""
        parts: list[bytes] = []
        for expected, chunk in enumerate(self.chunks.find({"files_id": reference["id"]}, sort=[("n", ASCENDING)])):
            if chunk["n"] != expected:
                return None
            parts.append(chunk["data"])
        data = b"".join(parts)
        return data if len(data) == reference["length"] else None

    def remove(self, file_ids: Iterable[ObjectId]) -> None:
        """Delete files: their chunks first, then their files documents (so no chunk is ever unowned)."""
        ids = list(file_ids)
        if ids:
            self.chunks.delete_many({"files_id": {"$in": ids}})
            self.files.delete_many({"_id": {"$in": ids}})

    def discard(self, file_id: ObjectId) -> None:
        """Remove a file that nothing refers to, or leave it for ``MongoDBStorage.sweep`` if that fails."""
        try:
            self.remove([file_id])
        except PyMongoError:
            logger.warning("could not remove the partly written GridFS file %s; MongoDBStorage.sweep() will", file_id)

    def uploaded_before(self, key_bounds: dict[str, str], cutoff: datetime.datetime) -> Iterator[Document]:
        """``{_id, filename}`` of the files of keys within ``key_bounds`` uploaded before ``cutoff``."""
        return iter(self.files.find({"filename": key_bounds, "uploadDate": {"$lt": cutoff}}, {"filename": 1}))
