"""MongoDBStorage implements Strands' Storage protocol: same results and errors as Strands' own backends.

Differential tests replay seeded random sequences of ``write``/``read``/``delete``/``list`` on
``MongoDBStorage`` and on Strands' ``InMemoryStorage`` and require identical outcomes. The rest
checks what the protocol leaves to the backend: key spaces (prefix pinning), the stored document,
command budgets, expiry, compression, search ranking and the error contract.
"""

from __future__ import annotations

import datetime
import random
import uuid
import zlib
from collections.abc import Awaitable, Callable
from typing import Any

import pytest
from pymongo import MongoClient
from pymongo.database import Database
from pymongo.errors import InvalidName, OperationFailure, ServerSelectionTimeoutError
from strands.storage import InMemoryStorage, LocalFileStorage, Storage
from strands.storage.storage import _NAMESPACED, _NamespacedStorage, _normalize_key, _normalize_prefix
from strands.types.exceptions import StorageError

import mongodb_session_manager
from mongodb_session_manager import MongoDBConnectionPool, MongoDBStorage
from mongodb_session_manager._storage_keys import normalize_key, normalize_prefix, upper_bound

from command_counter import CommandCounter
from storage_support import fail_point, visible_documents

Client = MongoClient[dict[str, Any]]
Db = Database[dict[str, Any]]

AWKWARD_PIECES = (
    "a", "b", "é", "😀", "/", "//", "..", ".", "\\", "$", "$gt", ".*", "[", "(", "+", "?", "^", " ",
    "\x00", "\uffff", "\U0010ffff", "x.md", "A",
)  # fmt: skip
"""Pieces of random keys: separators, traversal, regex and operator characters, unicode edges, NUL."""


@pytest.fixture
def storage(mongo_client: Client, database_name: str) -> MongoDBStorage:
    return MongoDBStorage(client=mongo_client, database_name=database_name)


def awkward_key(rng: random.Random) -> str:
    return "".join(rng.choice(AWKWARD_PIECES) for _ in range(rng.randint(0, 6)))


async def outcome(call: Callable[[], Awaitable[Any]]) -> tuple[str, Any]:
    try:
        return "ok", await call()
    except StorageError:
        return "error", StorageError


# -- the protocol, differentially ----------------------------------------------------------------


def test_it_is_a_strands_storage_and_exported_from_the_package(storage: MongoDBStorage) -> None:
    assert isinstance(storage, Storage)
    assert isinstance(storage.namespace("n"), Storage)
    assert "MongoDBStorage" in mongodb_session_manager.__all__


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_key_normalisation_is_strands(seed: int) -> None:
    rng = random.Random(seed)
    for _ in range(2000):
        text = awkward_key(rng)
        for ours, theirs in ((normalize_key, _normalize_key), (normalize_prefix, _normalize_prefix)):
            expected = asyncio_free_outcome(theirs, text)
            assert asyncio_free_outcome(ours, text) == expected, repr(text)


def asyncio_free_outcome(function: Callable[[str], str], text: str) -> tuple[str, Any]:
    try:
        return "ok", function(text)
    except StorageError:
        return "error", StorageError


def random_call(rng: random.Random, operation: str, key: str) -> Callable[[Any], Awaitable[Any]]:
    """``operation`` on ``key`` (a random value or list prefix drawn from ``rng``), for any storage."""
    if operation == "write":
        data = rng.randbytes(rng.randint(0, 40))
        return lambda storage: storage.write(key, data)
    if operation == "read":
        return lambda storage: storage.read(key)
    if operation == "delete":
        return lambda storage: storage.delete(key)
    query = rng.choice(["", key, key[:2], "a", "a/", "/a", "x"])
    return lambda storage: storage.list(query)


@pytest.mark.parametrize("prefix", [None, "tenant", "t/$x/.*"])
@pytest.mark.parametrize("seed", [7, 8, 9])
async def test_random_operations_match_strands_in_memory_storage(
    mongo_client: Client, database_name: str, prefix: str | None, seed: int
) -> None:
    """The same seeded sequence over awkward keys and binary values gives the same results and errors."""
    ours = MongoDBStorage(client=mongo_client, database_name=database_name, prefix=prefix)
    reference: Any = InMemoryStorage() if prefix is None else InMemoryStorage().namespace(prefix)
    rng = random.Random(seed)
    keys = [awkward_key(rng) for _ in range(25)]
    for step in range(300):
        operation = rng.choice(["write", "write", "read", "read", "delete", "list"])
        call = random_call(rng, operation, rng.choice(keys))
        expected = await outcome(lambda: call(reference))  # noqa: B023 (awaited in this iteration)
        assert await outcome(lambda: call(ours)) == expected, (step, operation)  # noqa: B023
    assert await ours.list() == await reference.list()


async def test_values_round_trip_exactly(storage: MongoDBStorage) -> None:
    values = {"empty": b"", "zeros": b"\x00" * 100, "all-bytes": bytes(range(256)), "utf8": "é😀".encode()}
    for key, data in values.items():
        await storage.write(key, data)
    assert {key: await storage.read(key) for key in values} == values
    await storage.write("view", memoryview(b"from a view"))
    await storage.write("array", bytearray(b"from a bytearray"))
    assert (await storage.read("view"), await storage.read("array")) == (b"from a view", b"from a bytearray")


async def test_one_document_per_key_with_the_full_key_as_id(
    mongo_client: Client, database_name: str, mongo_db: Db
) -> None:
    storage = MongoDBStorage(client=mongo_client, database_name=database_name, collection_name="kv", prefix="acme")
    await storage.write("//session/s1/snapshot.json", b"{}")
    await storage.write("session/s1/snapshot.json", b'{"v": 2}')

    (document,) = mongo_db["kv"].find()
    assert document["_id"] == "acme/session/s1/snapshot.json"
    assert document["value"] == b'{"v": 2}'
    assert document["size"] == 8
    assert not {"encoding", "expires_at", "file"} & set(document)
    assert isinstance(document["written_at"], datetime.datetime)
    assert set(document["tokens"]) == {"v", "2", "acme", "session", "s1", "snapshot"}


async def test_list_is_sorted_by_code_point_and_returns_full_keys(storage: MongoDBStorage) -> None:
    keys = ["b", "a/b", "a", "a\x00", "aé", "a😀", "a\uffff", "a\U0010ffff", "A", "a/", "a.b", "a$", "a0"]
    for key in keys:
        await storage.write(key, b"x")
    normalized = sorted({k.strip("/") for k in keys})
    assert await storage.list() == normalized
    assert await storage.list("a") == [k for k in normalized if k.startswith("a")]
    assert await storage.list("a/") == ["a/b"]
    assert await storage.list("a\U0010ffff") == ["a\U0010ffff"]
    assert await storage.list("zzz") == []


def test_upper_bounds_skip_surrogates_and_roll_over_the_last_code_point() -> None:
    assert upper_bound("ab") == "ac"
    assert upper_bound("a\ud7ff") == "a\ue000"
    assert upper_bound("a\U0010ffff") == "b"
    assert upper_bound("\U0010ffff") is None
    assert upper_bound("") is None


@pytest.mark.parametrize(
    "key", ["", "/", "//", "..", "a/../b", "a/..", "..\\x", "a\\b", "a\ud800b", None, 7, b"a", {"$gt": ""}]
)
async def test_invalid_keys_raise_storage_error_and_store_nothing(
    storage: MongoDBStorage, mongo_db: Db, key: Any
) -> None:
    for call in (storage.write(key, b"x"), storage.read(key), storage.delete(key)):
        with pytest.raises(StorageError):
            await call
    assert mongo_db["storage"].count_documents({}) == 0


@pytest.mark.parametrize("prefix", ["..", "a/../b", "a\\b", "\ud800", 3])
async def test_invalid_prefixes_raise_storage_error(
    storage: MongoDBStorage, mongo_client: Client, database_name: str, prefix: Any
) -> None:
    with pytest.raises(StorageError):
        await storage.list(prefix)
    with pytest.raises(StorageError):
        storage.namespace(prefix)
    with pytest.raises(StorageError):
        MongoDBStorage(client=mongo_client, database_name=database_name, prefix=prefix)


async def test_data_must_be_bytes(storage: MongoDBStorage, mongo_db: Db) -> None:
    for data in ("text", 5, None, [1, 2]):
        with pytest.raises(StorageError, match="must be bytes"):
            await storage.write("k", data)  # type: ignore[arg-type]
    assert mongo_db["storage"].count_documents({}) == 0


async def test_a_very_long_key_round_trips(storage: MongoDBStorage) -> None:
    key = "/".join(["segment-é😀" * 50] * 20)
    await storage.write(key, b"deep")
    assert await storage.read(key) == b"deep"
    assert await storage.list(key[:100]) == [key]


# -- key spaces ------------------------------------------------------------------------------------


ADVERSARIAL_KEYS = ["secret", "../acme/secret", "/acme/secret", "acme\\secret", ".*", "$where", "a/$gt/b", "é/😀"]


async def test_a_tenant_prefix_pins_every_operation(mongo_client: Client, database_name: str, mongo_db: Db) -> None:
    """Tenants sharing a collection cannot read, list, search or delete into each other's keys."""

    def tenant(prefix: str) -> MongoDBStorage:
        return MongoDBStorage(client=mongo_client, database_name=database_name, prefix=prefix)

    acme = tenant("acme")
    await acme.write("secret", b"acme's secret")
    await acme.write("shared words", b"quarterly numbers")
    for other, prefix in ((tenant("acme-evil"), "acme-evil/"), (tenant("acm.*"), "acm.*/"), (tenant("ac"), "ac/")):
        stored, ids_before = set(), set(mongo_db["storage"].distinct("_id"))
        for key in ADVERSARIAL_KEYS:
            if (await outcome(lambda s=other, k=key: s.write(k, b"x")))[0] == "ok":
                stored.add(normalize_key(key))
        assert stored == set(ADVERSARIAL_KEYS) - {"../acme/secret", "acme\\secret"} - {"/acme/secret"} | {"acme/secret"}
        assert await other.list() == sorted(stored)
        assert set(mongo_db["storage"].distinct("_id")) - ids_before == {prefix + key for key in stored}
        assert all([await other.read(key) for key in stored])
        assert {r.key for r in await other.search("acme secret quarterly shared words")} <= stored
        assert "shared words" not in {r.key for r in await other.search("shared words quarterly")}
        with pytest.raises(StorageError):
            await other.read("../acme/secret")
        with pytest.raises(StorageError):
            await other.list("../acme")
        with pytest.raises(StorageError):
            other.namespace("../acme")
        for key in ADVERSARIAL_KEYS:
            await outcome(lambda s=other, k=key: s.delete(k))
        assert await other.list() == []

    assert await acme.list() == ["secret", "shared words"]
    assert await acme.read("secret") == b"acme's secret"
    assert sorted(visible_documents(mongo_db)) == ["acme/secret", "acme/shared words"]


async def test_namespace_views_are_nested_key_spaces_sharing_the_client(storage: MongoDBStorage) -> None:
    memory = storage.namespace("memory")
    facts = memory.namespace("/facts/")
    await facts.write("dark-mode.md", b"prefers dark mode")
    await memory.write("other.md", b"elsewhere")

    assert getattr(facts, "_namespaced", None) is _NAMESPACED
    assert facts.client is storage.client
    assert facts.prefix == "memory/facts/"
    assert await storage.list() == ["memory/facts/dark-mode.md", "memory/other.md"]
    assert await memory.list() == ["facts/dark-mode.md", "other.md"]
    assert await facts.list() == ["dark-mode.md"]
    assert await storage.read("memory/facts/dark-mode.md") == b"prefers dark mode"
    facts.close()  # a view never closes the client
    assert await storage.read("memory/other.md") == b"elsewhere"


# -- command budgets -------------------------------------------------------------------------------


@pytest.fixture
def counted(
    counting_client: tuple[Client, CommandCounter], database_name: str
) -> tuple[MongoDBStorage, CommandCounter]:
    client, counter = counting_client
    storage = MongoDBStorage(client=client, database_name=database_name)
    return storage, counter


async def test_read_write_and_delete_are_one_command_each(counted: tuple[MongoDBStorage, CommandCounter]) -> None:
    storage, counter = counted
    await storage.write("warm-up", b"creates the indexes")
    expected = [
        (lambda: storage.write("k", b"v1"), ["findAndModify"]),  # an upsert creating the key
        (lambda: storage.write("k", b"v2"), ["findAndModify"]),  # replacing it
        (lambda: storage.read("k"), ["find"]),
        (lambda: storage.read("missing"), ["find"]),
        (lambda: storage.delete("k"), ["findAndModify"]),
        (lambda: storage.delete("missing"), ["findAndModify"]),
        (lambda: storage.search("anything v2"), ["aggregate"]),
        (lambda: storage.list(), ["find"]),
    ]
    for call, names in expected:
        counter.reset()
        await call()
        assert counter.names() == names


async def test_a_write_is_an_upsert(
    counted: tuple[MongoDBStorage, CommandCounter], mongo_client: Client, database_name: str
) -> None:
    storage, counter = counted
    await storage.write("warm-up", b"x")
    counter.reset()
    await storage.write("new", b"created by the upsert")
    (command,) = counter.commands()
    assert (command.name, command.failed) == ("findAndModify", False)
    stored = mongo_client[database_name]["storage"].find_one({"_id": "new"})
    assert stored is not None
    assert stored["value"] == b"created by the upsert"


async def test_list_sends_one_command_per_page(
    counted: tuple[MongoDBStorage, CommandCounter], monkeypatch: pytest.MonkeyPatch
) -> None:
    from mongodb_session_manager import _storage_documents

    storage, counter = counted
    monkeypatch.setattr(_storage_documents, "LIST_PAGE_SIZE", 3)
    keys = [f"p/{n}" for n in range(7)]
    for key in keys:
        await storage.write(key, b"x")
    for count, pages in ((7, 3), (6, 2), (3, 1), (0, 1)):
        for key in keys[count:]:
            await storage.delete(key)
        counter.reset()
        assert await storage.list("p/") == keys[:count]
        assert counter.names() == ["find"] * pages


async def test_indexes_are_created_once(counted: tuple[MongoDBStorage, CommandCounter], database_name: str) -> None:
    storage, counter = counted
    await storage.write("a", b"x")
    assert counter.names() == ["createIndexes", "findAndModify"]
    other = MongoDBStorage(client=storage.client, database_name=database_name).namespace("n")
    counter.reset()
    await other.write("b", b"y")
    assert counter.names() == ["findAndModify"]
    indexes = storage.client[database_name]["storage"].index_information()
    assert indexes["expires_at_1"]["expireAfterSeconds"] == 0
    assert {"tokens_1", "retired_1"} <= set(indexes)


# -- expiry and compression ------------------------------------------------------------------------


async def test_expired_keys_are_absent_before_the_ttl_monitor_runs(
    mongo_client: Client, database_name: str, mongo_db: Db
) -> None:
    lasting = MongoDBStorage(client=mongo_client, database_name=database_name, expire_after=datetime.timedelta(hours=1))
    await lasting.write("gone", b"dark mode")
    await lasting.write("kept", b"dark mode")
    past = datetime.datetime.now(datetime.UTC) - datetime.timedelta(seconds=1)
    mongo_db["storage"].update_one({"_id": "gone"}, {"$set": {"expires_at": past}})  # its time ran out

    assert mongo_db["storage"].count_documents({"_id": "gone"}) == 1  # still there: the TTL monitor has not run
    assert await lasting.read("gone") is None
    assert await lasting.list() == ["kept"]
    assert [r.key for r in await lasting.search("dark mode")] == ["kept"]

    kept = mongo_db["storage"].find_one({"_id": "kept"})
    assert kept is not None
    assert kept["expires_at"] - kept["written_at"] == datetime.timedelta(hours=1)
    await lasting.write("gone", b"written again")
    assert await lasting.read("gone") == b"written again"
    first_expiry = kept["expires_at"]
    await lasting.write("kept", b"refreshed")
    refreshed = mongo_db["storage"].find_one({"_id": "kept"})
    assert refreshed is not None
    assert refreshed["expires_at"] > first_expiry


def test_expire_after_is_seconds_or_a_timedelta(mongo_client: Client) -> None:
    for bad in (-1, 0, datetime.timedelta(seconds=-1), "60", True, float("inf"), 1e18, datetime.timedelta.max):
        with pytest.raises(ValueError, match="expire_after"):
            MongoDBStorage(client=mongo_client, expire_after=bad)  # type: ignore[arg-type]


async def test_compression_marks_values_and_returns_the_exact_bytes(
    mongo_client: Client, database_name: str, mongo_db: Db
) -> None:
    storage = MongoDBStorage(client=mongo_client, database_name=database_name, compress=True)
    compressible = b"the same sentence again and again. " * 3000
    incompressible = random.Random(1).randbytes(20_000)
    for key, data in (("text", compressible), ("random", incompressible), ("short", b"tiny " * 10)):
        await storage.write(key, data)
        assert await storage.read(key) == data

    documents = visible_documents(mongo_db)
    assert documents["text"]["encoding"] == "zlib"
    assert documents["text"]["size"] == len(compressible)
    assert len(documents["text"]["value"]) < len(compressible) / 20
    assert zlib.decompress(documents["text"]["value"]) == compressible
    assert "encoding" not in documents["random"]
    assert documents["random"]["value"] == incompressible
    assert "encoding" not in documents["short"]

    plain = MongoDBStorage(client=mongo_client, database_name=database_name)
    assert await plain.read("text") == compressible  # any storage reads what any other wrote
    await plain.write("text", compressible)
    assert "encoding" not in visible_documents(mongo_db)["text"]


async def test_a_corrupt_stored_value_raises_storage_error(
    mongo_client: Client, database_name: str, mongo_db: Db
) -> None:
    storage = MongoDBStorage(client=mongo_client, database_name=database_name, compress=True)
    await storage.write("text", b"abc" * 1000)
    mongo_db["storage"].update_one({"_id": "text"}, {"$set": {"value": b"not zlib"}})
    with pytest.raises(StorageError, match="read 'text'") as raised:
        await storage.read("text")
    assert "zlib" in str(raised.value.__cause__)
    mongo_db["storage"].update_one({"_id": "text"}, {"$set": {"value": "a string"}, "$unset": {"encoding": ""}})
    with pytest.raises(StorageError):
        await storage.read("text")


# -- search ------------------------------------------------------------------------------------------


CORPUS = {
    "memory/facts/user-preferences.md": "# User preferences\nprefers dark mode\nlikes concise answers",
    "memory/facts/project-setup.md": "# Project setup\nuses Python 3.11 and uv\nMongoDB for sessions",
    "memory/facts/team-conventions.md": "# Team conventions\nreviews within a day\ndark launches behind flags",
    "memory/notes/dark-mode.md": "The toggle lives in settings; mode is saved per user.",
    "memory/notes/deploy.txt": "Deploys run on Fridays. The mode of deployment is blue/green.",
    "session/s1/snapshot_latest.json": '{"messages": [{"text": "what mode is dark?"}]}',
    "offloader/tool-1_0": "A very long tool result about MongoDB sessions and Python.",
    "café/naïve.md": "Ünïcödé wörds: café crème, naïve résumé.",
    "conventions.md": "Conventions: python, uv, ruff; sessions in mongodb.",
}
QUERIES = [
    "dark mode",
    "What are the user's preferences?",
    "python uv sessions",
    "mongodb",
    "café résumé",
    "md",
    "facts",
    "memory notes mode",
    "the of and",
    "conventions",
    "deploy fridays blue green",
    "snapshot latest",
]


async def test_search_ranks_like_strands_keyword_strategy(mongo_client: Client, database_name: str) -> None:
    ours = MongoDBStorage(client=mongo_client, database_name=database_name)
    theirs = InMemoryStorage()
    for key, text in CORPUS.items():
        await ours.write(key, text.encode())
        await theirs.write(key, text.encode())

    views: list[tuple[Any, Any]] = [
        (ours, theirs),
        (ours.namespace("memory/facts"), theirs.namespace("memory/facts")),
        (ours.namespace("memory"), theirs.namespace("memory")),
        (_NamespacedStorage(ours, "memory"), _NamespacedStorage(theirs, "memory")),  # Strands' generic wrapper
    ]
    for mine, reference in views:
        for query in QUERIES:
            expected = [(r.key, float(r.score)) for r in await reference.search(query)]
            assert [(r.key, r.score) for r in await mine.search(query)] == expected, query
    assert [r.key for r in await ours.namespace("memory/facts").search("memory facts")] == []
    assert (await ours.search("dark mode"))[0].data is None


async def test_search_scores_on_the_server_and_transfers_no_values(
    counted: tuple[MongoDBStorage, CommandCounter],
) -> None:
    storage, counter = counted
    for n in range(40):
        await storage.write(f"doc-{n}", (f"needle {n} " + "hay " * 5000).encode())  # 20 KB each
    counter.reset()
    results = await storage.search("needle 7")
    assert [(r.key, r.score) for r in results[:1]] == [("doc-7", 2.0)]
    assert len(results) == 40
    assert counter.names() == ["aggregate"]
    assert counter.reply_bytes() < 4000  # 40 values of 20 KB matched; only keys and scores came back


async def test_search_sees_the_first_64_kib_of_text_and_binary_values_by_their_key(
    storage: MongoDBStorage, mongo_db: Db
) -> None:
    await storage.write("long.txt", b"early " + b"filler " * 10_000 + b"late")
    await storage.write("image.png", b"\x89PNG\r\n\x1a\n dark mode \xff\xfe" + bytes(range(256)))
    cut_character = b"a" + "Ü".encode() * 40_000  # the 64 KiB limit falls inside a character
    await storage.write("cut.txt", cut_character)

    assert [r.key for r in await storage.search("early")] == ["long.txt"]
    assert await storage.search("late") == []
    assert await storage.search("dark mode") == []  # not UTF-8: its bytes are not words
    assert [r.key for r in await storage.search("image")] == ["image.png"]
    tokens = visible_documents(mongo_db)["cut.txt"]["tokens"]
    assert sorted(tokens) == ["a" + "ü" * 32_767, "cut"]


async def test_search_refuses_a_query_that_is_not_text(storage: MongoDBStorage) -> None:
    with pytest.raises(StorageError, match="must be a str"):
        await storage.search({"$regex": ".*"})  # type: ignore[arg-type]
    assert await storage.search("the of and") == []


# -- errors --------------------------------------------------------------------------------------------


async def test_server_errors_become_storage_errors_with_the_cause(mongodb_uri: str, database_name: str) -> None:
    app = f"storage-errors-{uuid.uuid4().hex[:8]}"
    client: Client = MongoClient(mongodb_uri, serverSelectionTimeoutMS=5000, appName=app, retryWrites=False)
    try:
        storage = MongoDBStorage(client=client, database_name=database_name)
        await storage.write("k", b"before")
        failing = {"errorCode": 2, "appName": app}
        with fail_point(client, {**failing, "failCommands": ["findAndModify"]}):
            for call in (storage.write("k", b"after"), storage.delete("k")):
                with pytest.raises(StorageError, match=r"MongoDBStorage could not (write|delete) 'k'") as raised:
                    await call
                assert isinstance(raised.value.__cause__, OperationFailure)
                assert raised.value.__cause__.code == 2
        with fail_point(client, {**failing, "failCommands": ["find", "aggregate"]}):
            for call in (storage.read("k"), storage.list(), storage.search("unused words")):
                with pytest.raises(StorageError) as raised:
                    await call
                assert isinstance(raised.value.__cause__, OperationFailure)
        assert await storage.read("k") == b"before"
    finally:
        client.close()


async def test_an_unreachable_server_is_a_storage_error() -> None:
    storage = MongoDBStorage("mongodb://127.0.0.1:9/?serverSelectionTimeoutMS=200&connectTimeoutMS=200")
    with storage, pytest.raises(StorageError) as raised:
        await storage.read("k")
    assert isinstance(raised.value.__cause__, ServerSelectionTimeoutError)


def test_connection_string_and_client_are_exclusive(mongo_client: Client) -> None:
    with pytest.raises(ValueError, match="either"):
        MongoDBStorage()
    with pytest.raises(ValueError, match="only apply"):
        MongoDBStorage("mongodb://localhost", client=mongo_client)


async def test_close_releases_an_owned_client_and_never_a_borrowed_one(
    mongodb_uri: str, mongo_client: Client, database_name: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(MongoDBConnectionPool, "idle_close_seconds", 0)  # the last release closes at once
    borrowed = MongoDBStorage(client=mongo_client, database_name=database_name)
    borrowed.close()
    await borrowed.write("still", b"open")

    with MongoDBStorage(mongodb_uri, database_name) as owned:
        await owned.write("k", b"v")
        view = owned.namespace("n")
        with MongoDBStorage(mongodb_uri, database_name) as sharing:
            assert sharing.client is owned.client  # one process-wide client per deployment and options
        await view.read("k")  # the other user's release left it open
    with pytest.raises(StorageError) as raised:
        await view.read("k")  # the view shares the closed client
    assert "InvalidOperation" in str(raised.value)
    async with MongoDBStorage(mongodb_uri, database_name) as again:
        assert await again.read("k") == b"v"


async def test_local_file_storage_fails_on_the_keys_mongodb_storage_refuses(
    storage: MongoDBStorage, tmp_path: Any
) -> None:
    files = LocalFileStorage(str(tmp_path))
    for key in ("a\ud800", "a\\b", ".."):
        for backend in (storage, files):
            with pytest.raises(StorageError):
                await backend.write(key, b"x")


def test_an_invalid_collection_name_closes_the_client_it_opened(
    mongodb_uri: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    released: list[Client] = []
    release = MongoDBStorage._release_client

    def recording_release(self: MongoDBStorage) -> None:
        released.append(self.client)
        release(self)

    monkeypatch.setattr(MongoDBStorage, "_release_client", recording_release)
    with pytest.raises(InvalidName):
        MongoDBStorage(mongodb_uri, collection_name="$bad")
    assert len(released) == 1
