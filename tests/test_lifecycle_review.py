"""Hostile and careless input to the lifecycle operations: each case once let bad data in or crashed.

Each test pins one defect found by review: an import that stored a session no Agent could resume,
an import or CLI line that raised ``RecursionError`` or ``TypeError`` instead of a typed error, a
listing cursor refused for the same filters given in another order, and an ``erase`` command that
ran against collections of another application (and crashed there with a traceback).
"""

import io
import json
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from bson import ObjectId
from pymongo.database import Database
from test_export_import import minimal

from mongodb_session_manager import MongoDBSessionManager, MongoDBSessionRepository
from mongodb_session_manager.__main__ import main
from mongodb_session_manager.errors import InvalidCursorError, InvalidSessionDataError

from helpers import echo_agent, texts
from stored_sessions import MESSAGES, SESSIONS, everything

Db = Database[dict[str, Any]]


def nested(levels: int) -> dict[str, Any]:
    """``{"a": {"a": ...}}``, ``levels`` objects deep."""
    value: dict[str, Any] = {}
    for _ in range(levels - 1):
        value = {"a": value}
    return value


def with_first_message(data: dict[str, Any], **message: Any) -> dict[str, Any]:
    data["agents"][0]["messages"][0]["message"].update(message)
    return data


@pytest.mark.parametrize(
    ("data", "field"),
    [
        (minimal(metadata={"x": {"$binary": nested(5000)}}), "metadata.x"),
        (minimal(session_type=["AGENT"]), "session_type"),
        (minimal(session_type={"$ne": None}), "session_type"),
        (with_first_message(minimal(), content=[1]), "agents[0].messages[0].message.content[0]"),
        (with_first_message(minimal(), content=["text"]), "agents[0].messages[0].message.content[0]"),
    ],
    ids=["deep-wrapper", "type-list", "type-operator", "block-int", "block-str"],
)
def test_a_malformed_import_raises_one_typed_error_and_writes_nothing(
    repository: MongoDBSessionRepository, mongo_db: Db, data: dict[str, Any], field: str
) -> None:
    with pytest.raises(InvalidSessionDataError) as raised:
        repository.import_session(data)

    assert raised.value.field == field
    assert everything(mongo_db) == {SESSIONS: [], MESSAGES: []}


@pytest.mark.parametrize("count", ["x", -1, 1.5, True, {"$gt": 0}])
def test_an_import_whose_resume_offset_is_no_position_is_refused(
    repository: MongoDBSessionRepository, mongo_db: Db, count: Any
) -> None:
    data = minimal()
    data["agents"][0]["conversation_manager_state"] = {"removed_message_count": count}

    with pytest.raises(InvalidSessionDataError) as raised:
        repository.import_session(data)

    assert raised.value.field == "agents[0].conversation_manager_state.removed_message_count"
    assert everything(mongo_db) == {SESSIONS: [], MESSAGES: []}


def test_an_imported_session_with_a_valid_offset_resumes(
    repository: MongoDBSessionRepository, mongo_client: Any, database_name: str, layout: str
) -> None:
    data = minimal()
    data["agents"][0]["conversation_manager_state"] = {
        "__name__": "SlidingWindowConversationManager",
        "removed_message_count": 1,
    }
    repository.import_session(data)

    manager = MongoDBSessionManager("s1", client=mongo_client, database_name=database_name, layout=layout)
    assert texts(echo_agent(manager).messages) == ["assistant"]


def test_a_cursor_serves_the_same_metadata_filter_given_in_another_order(
    repository: MongoDBSessionRepository,
) -> None:
    for number in range(3):
        repository.import_session(minimal(session_id=f"s{number}", metadata={"a": 1, "b": 2}))

    first = repository.list_sessions(metadata={"a": 1, "b": 2}, limit=2)
    assert first.next_cursor is not None
    rest = repository.list_sessions(metadata={"b": 2, "a": 1}, limit=2, cursor=first.next_cursor)

    shown = [summary.session_id for summary in [*first.sessions, *rest.sessions]]
    assert sorted(shown) == ["s0", "s1", "s2"]
    with pytest.raises(InvalidCursorError):
        repository.list_sessions(metadata={"a": 1, "b": 3}, cursor=first.next_cursor)


def test_the_owner_sweep_deletes_only_the_users_messages(mongo_client: Any, database_name: str, mongo_db: Db) -> None:
    """Alice's left-behind message and bob's share a session id and generation (old versions had none)."""
    back_office = MongoDBSessionRepository(client=mongo_client, database_name=database_name, layout="split")
    message = {"session_id": "shared", "agent_id": "a", "message_id": 0, "message": {"role": "user", "content": []}}
    mongo_db[MESSAGES].insert_many([{**message, "user_id": "alice"}, {**message, "agent_id": "b", "user_id": "bob"}])

    assert back_office.delete_sessions(user_id="alice") == 0

    assert [document["user_id"] for document in mongo_db[MESSAGES].find()] == ["bob"]


def test_the_owner_sweep_ignores_message_documents_without_a_session_id(
    mongo_client: Any, database_name: str, mongo_db: Db
) -> None:
    back_office = MongoDBSessionRepository(client=mongo_client, database_name=database_name, layout="split")
    mongo_db[MESSAGES].insert_one({"_id": ObjectId(), "user_id": "alice", "note": "not a message"})

    assert back_office.delete_sessions(user_id="alice") == 0

    assert mongo_db[MESSAGES].count_documents({}) == 1


# -- the command line ------------------------------------------------------------------------------------


def test_erase_refuses_collections_of_another_application_touching_nothing(
    mongodb_uri: str, database_name: str, mongo_db: Db, capsys: pytest.CaptureFixture[str]
) -> None:
    users = [{"_id": "alice-row", "user_id": "alice", "name": "Alice"}, {"_id": "bob-row", "user_id": "bob"}]
    orders = [{"_id": 1, "user_id": "alice", "item": "book"}, {"_id": 2, "user_id": "alice", "session_id": "x"}]
    mongo_db["users"].insert_many(users)
    mongo_db["orders"].insert_many(orders)
    where = ["--uri", mongodb_uri, "--database", database_name, "--user-id", "alice"]

    assert main(["erase", *where, "--collection", "users", "--messages-collection", "orders"]) == 2
    error = capsys.readouterr().err
    assert error.startswith(f"error: {database_name}.users holds documents that are not session documents")
    assert len(error.splitlines()) == 1

    assert main(["erase", *where, "--messages-collection", "orders"]) == 2
    error = capsys.readouterr().err
    assert error.startswith(f"error: {database_name}.orders holds documents that are not split-layout messages")
    assert len(error.splitlines()) == 1

    assert list(mongo_db["users"].find()) == users
    assert list(mongo_db["orders"].find()) == orders


@pytest.mark.parametrize("command", ["erase", "export", "import"])
@pytest.mark.parametrize(
    ("option", "value", "expected"),
    [
        ("--database", "a b/c", "error: invalid --database 'a b/c': must not contain"),
        ("--collection", "$x", "error: invalid --collection '$x': must not contain '$'"),
        ("--messages-collection", "a.b", "error: invalid --messages-collection 'a.b': must not contain '.'"),
        ("--messages-collection", "sessions", "error: --messages-collection 'sessions' is the session collection"),
    ],
)
def test_an_invalid_name_is_refused_before_connecting(
    command: str,
    option: str,
    value: str,
    expected: str,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr("sys.stdin", io.StringIO(""))
    arguments = {"--database": "chat", option: value}
    who = ["--session-id", "s1"] if command == "export" else ["--user-id", "alice"] if command == "erase" else []
    named = [item for pair in arguments.items() for item in pair]

    assert main([command, "--uri", "mongodb://127.0.0.1:1/?serverSelectionTimeoutMS=1", *named, *who]) == 2

    error = capsys.readouterr().err
    assert error.startswith(expected)
    assert "--uri" not in error
    assert len(error.splitlines()) == 1


def test_a_deeply_nested_line_stops_the_import_in_one_line(
    mongodb_uri: str,
    database_name: str,
    mongo_db: Db,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr("sys.stdin", io.StringIO(json.dumps(minimal()) + "\n" + "[" * 100_000 + "\n"))

    assert main(["import", "--uri", mongodb_uri, "--database", database_name]) == 2

    error = capsys.readouterr().err
    assert error.startswith("error: line 2 is nested too deeply to be a session; 1 session(s) imported before it")
    assert len(error.splitlines()) == 1
    assert [document["_id"] for document in mongo_db[SESSIONS].find()] == ["s1"]


def test_an_expired_session_is_not_exported_by_the_command(
    mongodb_uri: str,
    repository: MongoDBSessionRepository,
    mongo_db: Db,
    capsys: pytest.CaptureFixture[str],
) -> None:
    repository.import_session(minimal(user_id="alice"))
    past = datetime.now(UTC) - timedelta(seconds=1)
    mongo_db[SESSIONS].update_one({"_id": "s1"}, {"$set": {"expires_at": past}})

    assert main(["export", "--uri", mongodb_uri, "--database", mongo_db.name, "--user-id", "alice"]) == 0

    captured = capsys.readouterr()
    assert captured.out == ""
    assert captured.err.strip() == "exported 0 session(s)"
