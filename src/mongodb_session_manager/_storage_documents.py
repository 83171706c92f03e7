"""The synchronous MongoDB side of ``MongoDBStorage``: one document per key, and its GridFS overflow.

A key's document (``_id`` = the full key)::

    {_id, size, written_at, [value | file: {id, length}], [encoding: "zlib"], tokens, [key_tokens],
     [expires_at], [retired: [file ids]]}

``value`` holds the bytes inline; a value whose document would pass 16 MiB is in GridFS instead
and ``file`` points at it. ``retired`` lists GridFS files this key no longer uses and that are
still to be deleted. A deleted key leaves a *tombstone* ``{_id, expires_at: <deletion time>}``
(or ``{_id, retired}`` until its files are gone) that the TTL monitor removes; readers only see
documents with a ``size`` that have not expired.

**Large values survive a crash at any point.** A write uploads the new file (files document
first, then chunks), then swaps the key's document in one ``findAndModify`` whose pipeline moves
the previous ``file.id`` into ``retired``; only then are retired files deleted (chunks, then the
files document) and removed from ``retired``. A delete turns the document into a tombstone the
same way. So a process killed after the swap leaves the old file listed in ``retired``, and the
next write or delete of the key (which gets ``retired`` back from its one command) deletes it; a
process killed during the upload leaves a file that no key refers to, which ``sweep`` deletes
once it is older than its grace period (so that an upload still in progress is never touched).
"""

from __future__ import annotations

import datetime
import logging
from collections.abc import Iterable, Iterator
from itertools import islice
from typing import Any

import bson
from bson import ObjectId
from bson.errors import InvalidDocument
from pymongo import ASCENDING, IndexModel, ReturnDocument
from pymongo.collection import Collection
from pymongo.errors import OperationFailure, PyMongoError, WriteConcernError

from ._indexes import ensure_indexes
from ._storage_gridfs import LargeValues
from ._storage_search import KEY_TOKENS, TOKENS, search_fields, search_pipeline
from ._storage_values import CorruptValueError, decode_value, encode_value

logger = logging.getLogger(__name__)

Document = dict[str, Any]

MAX_DOCUMENT_BYTES = 16 * 1024 * 1024
"""MongoDB's document size limit."""
DOCUMENT_RESERVE_BYTES = 16 * 1024
"""Room kept in a document for ``retired`` and the field names around the value."""
LIST_PAGE_SIZE = 5000
"""Keys per ``find`` when listing; each page is one command."""
SEARCH_BATCH_SIZE = 10_000
"""Search results in the aggregation's first batch (key and score only: a few hundred KB)."""
SWEEP_BATCH_SIZE = 500
"""GridFS files ``sweep`` checks against their keys per ``find``."""
READ_ATTEMPTS = 3
"""A read that finds its GridFS file being replaced looks at the key's document again."""
EXPIRY_CLOCK_SKEW = datetime.timedelta(minutes=2)
"""A large value due to expire this close to now may already be partly removed by the TTL monitor."""

RETIRED = "retired"
SIZE = "size"
EXPIRES_AT = "expires_at"

INDEXES = (
    IndexModel([(TOKENS, ASCENDING)], name="tokens_1"),
    IndexModel([(EXPIRES_AT, ASCENDING)], name="expires_at_1", expireAfterSeconds=0, sparse=True),
    IndexModel([(RETIRED, ASCENDING)], name="retired_1", sparse=True),
)
_READ_PROJECTION = {TOKENS: 0, KEY_TOKENS: 0, RETIRED: 0}


def _unless_empty(array: str) -> Document:
    """``array``, or ``$$REMOVE`` (the field is dropped) when it is empty."""
    return {"$cond": [{"$gt": [{"$size": array}, 0]}, array, "$$REMOVE"]}


_PREVIOUS_FILE = {"$cond": [{"$eq": [{"$type": "$file.id"}, "objectId"]}, ["$file.id"], []]}
_RETIRED_WITH_PREVIOUS_FILE = {
    "$let": {
        "vars": {"retired": {"$setUnion": [{"$ifNull": [f"${RETIRED}", []]}, _PREVIOUS_FILE]}},
        "in": _unless_empty("$$retired"),
    }
}
"""``retired`` of the document being replaced, plus its current file (``$$REMOVE`` when empty)."""


def _now() -> datetime.datetime:
    return datetime.datetime.now(datetime.UTC)


def _visible(now: datetime.datetime) -> Document:
    """Documents that hold a value and have not expired (tombstones have no ``size``)."""
    return {SIZE: {"$exists": True}, EXPIRES_AT: {"$not": {"$lte": now}}}


def _batches(items: Iterable[Document], size: int) -> Iterator[list[Document]]:
    iterator = iter(items)
    while batch := list(islice(iterator, size)):
        yield batch


def _retired_ids(document: Document | None) -> list[ObjectId]:
    return list(document.get(RETIRED, [])) if document else []


class StoredValues:
    """Read, write, delete, list and search values in one collection (and its GridFS bucket)."""

    def __init__(
        self,
        collection: Collection[Document],
        *,
        compress: bool,
        expire_after: datetime.timedelta | None,
    ) -> None:
        """Store values in ``collection``; large ones in the bucket ``<collection>.gridfs``."""
        self.collection = collection
        self.large = LargeValues(collection.database, f"{collection.name}.gridfs")
        self._compress = compress
        self._expire_after = expire_after

    def ensure_indexes(self) -> None:
        """Create the collection's indexes (once per process and collection)."""
        ensure_indexes(self.collection, INDEXES)

    # -- the protocol ------------------------------------------------------------------------------

    def write(self, key: str, data: bytes) -> None:
        """Store ``data`` under ``key``: one ``findAndModify`` (an upsert), plus GridFS work for large values."""
        now = _now()
        encoded = encode_value(data, compress=self._compress)
        fields: Document = {"_id": key, SIZE: encoded.size, "written_at": now, **search_fields(key, data)}
        if encoded.encoding is not None:
            fields["encoding"] = encoded.encoding
        expires_at = now + self._expire_after if self._expire_after is not None else None
        if expires_at is not None:
            fields[EXPIRES_AT] = expires_at
        if len(bson.encode(fields)) + len(encoded.stored) + DOCUMENT_RESERVE_BYTES <= MAX_DOCUMENT_BYTES:
            fields["value"] = encoded.stored
        else:
            self.large.ensure_indexes()
            fields["file"] = self.large.upload(key, encoded.stored, expires_at)
        replace = [{"$replaceWith": {"$mergeObjects": [{"$literal": fields}, {RETIRED: _RETIRED_WITH_PREVIOUS_FILE}]}}]
        try:
            after = self.collection.find_one_and_update(
                {"_id": key}, replace, {RETIRED: 1}, upsert=True, return_document=ReturnDocument.AFTER
            )
        except (OperationFailure, InvalidDocument) as error:
            if "file" in fields and not isinstance(error, WriteConcernError):  # refused: nothing refers to the file
                self.large.discard(fields["file"]["id"])
            raise
        if after is None:  # MongoDB always returns an upserted document; SecantusDB may not under concurrent upserts
            after = self.collection.find_one({"_id": key}, {RETIRED: 1})
        self._remove_retired_after_commit(key, after)

    def read(self, key: str) -> bytes | None:
        """The value of ``key``, or ``None``: one ``find`` (plus the chunks of a large value)."""
        for _ in range(READ_ATTEMPTS):
            document = self.collection.find_one({"_id": key, **_visible(_now())}, _READ_PROJECTION)
            if document is None:
                return None
            value = self._value_of(document)
            if value is not None:
                return value
            logger.debug("key %r: its GridFS file changed while it was read; reading again", key[:80])
            expires_at = document.get(EXPIRES_AT)
            if expires_at is not None and expires_at <= _now() + EXPIRY_CLOCK_SKEW:
                return None  # the TTL monitor is removing it
        raise CorruptValueError("chunks of its GridFS file are missing")

    def delete(self, key: str) -> None:
        """Delete ``key``: one ``findAndModify`` leaving a tombstone, plus GridFS work for large values."""
        tombstone: list[Document] = [
            {"$replaceWith": {"$mergeObjects": [{"_id": "$_id"}, {RETIRED: _RETIRED_WITH_PREVIOUS_FILE}]}},
            {"$set": {EXPIRES_AT: {"$cond": [{"$eq": [{"$type": f"${RETIRED}"}, "missing"]}, _now(), "$$REMOVE"]}}},
        ]
        after = self.collection.find_one_and_update(
            {"_id": key}, tombstone, {RETIRED: 1}, return_document=ReturnDocument.AFTER
        )
        self._remove_retired_after_commit(key, after)

    def list_keys(self, bounds: dict[str, str]) -> list[str]:
        """Stored keys within ``bounds``, in code-point order: one ``find`` per page of keys."""
        now = _now()
        keys: list[str] = []
        id_condition: dict[str, str] = dict(bounds)
        while True:
            page = [
                document["_id"]
                for document in self.collection.find(
                    {"_id": id_condition, **_visible(now)},
                    {"_id": 1},
                    sort=[("_id", ASCENDING)],
                    limit=LIST_PAGE_SIZE + 1,
                    batch_size=LIST_PAGE_SIZE + 1,
                )
            ]
            keys.extend(page[:LIST_PAGE_SIZE])
            if len(page) <= LIST_PAGE_SIZE:
                return keys
            id_condition = {**bounds, "$gt": page[LIST_PAGE_SIZE - 1]}

    def search(self, bounds: dict[str, str], tokens: list[str], depth: int) -> list[tuple[str, float]]:
        """``(key, score)`` of the values within ``bounds`` matching ``tokens``, best first: one ``aggregate``."""
        pipeline = search_pipeline({"_id": bounds, **_visible(_now())}, tokens, depth)
        return [
            (document["_id"], float(document["score"]))
            for document in self.collection.aggregate(pipeline, batchSize=SEARCH_BATCH_SIZE)
        ]

    # -- large values ------------------------------------------------------------------------------

    def sweep(self, bounds: dict[str, str], older_than: datetime.timedelta) -> int:
        """Delete GridFS files left behind within ``bounds``; return how many.

        Removes every file a key has retired, and every file uploaded more than ``older_than`` ago
        that no key refers to (its writer died before committing it).
        """
        removed = 0
        for document in self.collection.find({"_id": bounds, RETIRED: {"$exists": True}}, {RETIRED: 1}):
            removed += self._remove_retired(document["_id"], _retired_ids(document))
        for files in _batches(self.large.uploaded_before(bounds, _now() - older_than), SWEEP_BATCH_SIZE):
            owners = {file["filename"] for file in files}
            current = {
                document["_id"]: document.get("file", {}).get("id")
                for document in self.collection.find({"_id": {"$in": list(owners)}}, {"file.id": 1})
            }
            unreferenced = [file["_id"] for file in files if current.get(file["filename"]) != file["_id"]]
            self.large.remove(unreferenced)
            removed += len(unreferenced)
        return removed

    def _value_of(self, document: Document) -> bytes | None:
        """The decoded value of a key's document; ``None`` if its GridFS file is (being) removed."""
        try:
            size, encoding = document[SIZE], document.get("encoding")
            if "value" in document:
                stored: bytes | None = document["value"]
            else:
                stored = self.large.download(document["file"])
                if stored is None:
                    return None
            if not isinstance(stored, bytes) or not isinstance(size, int):
                raise TypeError("value or size has the wrong type")
        except (KeyError, TypeError) as error:
            raise CorruptValueError(f"malformed document ({error})") from error
        return decode_value(stored, encoding, size)

    def _remove_retired_after_commit(self, key: str, document: Document | None) -> None:
        """Remove what a committed write or delete retired; a failure here is left to the next write or delete."""
        try:
            self._remove_retired(key, _retired_ids(document))
        except PyMongoError as error:
            logger.warning("key %r: its old GridFS file stays until the next write or delete (%s)", key[:80], error)

    def _remove_retired(self, key: str, retired: list[ObjectId]) -> int:
        """Delete the files ``key`` retired, then forget them (a tombstone left empty then expires)."""
        if not retired:
            return 0
        self.large.remove(retired)
        remaining = {"$setDifference": [{"$ifNull": [f"${RETIRED}", []]}, retired]}
        emptied_tombstone = {
            "$and": [{"$eq": [{"$type": f"${SIZE}"}, "missing"]}, {"$eq": [{"$type": f"${RETIRED}"}, "missing"]}]
        }
        self.collection.update_one(
            {"_id": key},
            [
                {"$set": {RETIRED: {"$let": {"vars": {"r": remaining}, "in": _unless_empty("$$r")}}}},
                {
                    "$set": {
                        EXPIRES_AT: {"$cond": [emptied_tombstone, _now(), {"$ifNull": [f"${EXPIRES_AT}", "$$REMOVE"]}]}
                    }
                },
            ],
        )
        return len(retired)
