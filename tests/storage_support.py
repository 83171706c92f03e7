"""What the MongoDBStorage tests share: failpoints, and the raw state of a storage collection and its GridFS bucket."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import pytest
from bson import ObjectId
from pymongo import MongoClient
from pymongo.database import Database
from pymongo.errors import OperationFailure

Client = MongoClient[dict[str, Any]]


@contextmanager
def fail_point(client: Client, data: dict[str, Any], mode: Any = "alwaysOn") -> Iterator[None]:
    """Configure a ``failCommand`` failpoint for the block (skips the test if the server has no test commands)."""
    try:
        client.admin.command({"configureFailPoint": "failCommand", "mode": mode, "data": data})
    except OperationFailure as error:
        pytest.skip(f"the server does not accept configureFailPoint ({error.code})")
    try:
        yield
    finally:
        client.admin.command({"configureFailPoint": "failCommand", "mode": "off"})


def visible_documents(db: Database[dict[str, Any]], collection: str = "storage") -> dict[str, dict[str, Any]]:
    """The documents that hold a value (tombstones left by deletes have no ``size``), by ``_id``."""
    return {document["_id"]: document for document in db[collection].find({"size": {"$exists": True}})}


@dataclass(frozen=True)
class BucketState:
    """Which GridFS files the keys refer to, which exist, and which own chunks."""

    referenced: frozenset[ObjectId]
    files: frozenset[ObjectId]
    chunk_owners: frozenset[ObjectId]
    retired: frozenset[ObjectId]

    @property
    def orphans(self) -> frozenset[ObjectId]:
        """Files or chunk owners no key refers to."""
        return (self.files | self.chunk_owners) - self.referenced

    @property
    def clean(self) -> bool:
        """Every file and chunk belongs to a key's current value, and nothing is left to retire."""
        return not self.orphans and not self.retired and self.files == self.referenced


def bucket_state(db: Database[dict[str, Any]], collection: str = "storage") -> BucketState:
    """Read the GridFS state of a storage collection straight from the database."""
    documents = list(db[collection].find({}, {"file.id": 1, "retired": 1}))
    return BucketState(
        referenced=frozenset(d["file"]["id"] for d in documents if "file" in d),
        files=frozenset(f["_id"] for f in db[f"{collection}.gridfs.files"].find({}, {"_id": 1})),
        chunk_owners=frozenset(db[f"{collection}.gridfs.chunks"].distinct("files_id")),
        retired=frozenset(file_id for d in documents for file_id in d.get("retired", [])),
    )
