"""``cleanup``: messages a split delete left behind are deleted; messages any session owns are kept."""

from typing import Any

import pytest
from pymongo import MongoClient
from pymongo.database import Database

from mongodb_session_manager import MongoDBSessionRepository
from mongodb_session_manager.__main__ import main
from mongodb_session_manager.cleanup import find_left_behind, remove_left_behind

from session_builders import session_with_agent, text_message

Client = MongoClient[dict[str, Any]]
Db = Database[dict[str, Any]]


def store_session(repository: MongoDBSessionRepository, session_id: str, message_ids: range) -> None:
    session_with_agent(repository, session_id, "a1")
    for message_id in message_ids:
        repository.create_message(session_id, "a1", text_message(message_id, f"{session_id} {message_id}"))


def interrupt_delete(mongo_db: Db, session_id: str) -> Any:
    """What a split delete that stopped after its first step leaves: no session document, its messages."""
    document = mongo_db["sessions"].find_one_and_delete({"_id": session_id})
    assert document is not None
    return document["generation"]


def stored_ids(mongo_db: Db, session_id: str) -> list[tuple[Any, int]]:
    found = mongo_db["sessions_messages"].find({"session_id": session_id}).sort("message_id", 1)
    return [(message["generation"], message["message_id"]) for message in found]


@pytest.fixture
def left_behind(mongo_client: Client, mongo_db: Db, database_name: str) -> dict[str, Any]:
    """Four sessions' messages: two owned, two left behind by interrupted deletes."""
    split = MongoDBSessionRepository(client=mongo_client, database_name=database_name, layout="split")
    store_session(split, "kept", range(2))
    store_session(split, "interrupted", range(3))
    gone = {"interrupted": interrupt_delete(mongo_db, "interrupted")}
    store_session(split, "recreated", range(3))
    gone["recreated"] = interrupt_delete(mongo_db, "recreated")
    store_session(split, "recreated", range(2))  # a new generation takes over ids 0 and 1; id 2 stays behind
    embedded = MongoDBSessionRepository(client=mongo_client, database_name=database_name)
    store_session(embedded, "being-migrated", range(1))
    owned_copy = mongo_db["sessions"].find_one({"_id": "being-migrated"})
    assert owned_copy is not None
    mongo_db["sessions_messages"].insert_one(  # what the migration copies before it switches the session
        {"session_id": "being-migrated", "agent_id": "a1", "generation": owned_copy["generation"], "message_id": 0}
    )
    return {"split": split, "gone": gone, "generations": {s: stored_ids(mongo_db, s) for s in ("kept", "recreated")}}


def test_only_messages_no_session_owns_are_found_and_deleted(mongo_db: Db, left_behind: dict[str, Any]) -> None:
    gone = left_behind["gone"]

    found = find_left_behind(mongo_db)

    assert found.messages == {("interrupted", gone["interrupted"]): 3, ("recreated", gone["recreated"]): 1}
    assert found.message_count == 4
    assert remove_left_behind(mongo_db, found) == 4
    assert stored_ids(mongo_db, "interrupted") == []
    assert [message_id for generation, message_id in stored_ids(mongo_db, "recreated")] == [0, 1]
    assert gone["recreated"] not in {generation for generation, _id in stored_ids(mongo_db, "recreated")}
    assert mongo_db["sessions_messages"].count_documents({"session_id": "being-migrated"}) == 1
    split: MongoDBSessionRepository = left_behind["split"]
    assert [message.message_id for message in split.list_messages("kept", "a1")] == [0, 1]
    assert [message.message_id for message in split.list_messages("recreated", "a1")] == [0, 1]
    assert find_left_behind(mongo_db).messages == {}


def test_the_command_reports_then_deletes_and_a_dry_run_deletes_nothing(
    mongodb_uri: str, mongo_db: Db, database_name: str, left_behind: dict[str, Any], capsys: pytest.CaptureFixture[str]
) -> None:
    command = ["cleanup", "--uri", mongodb_uri, "--database", database_name]

    assert main([*command, "--dry-run"]) == 0
    assert "4 message(s) of 2 deleted session(s) left behind in " in capsys.readouterr().out
    assert mongo_db["sessions_messages"].count_documents({}) == 2 + 3 + 3 + 1

    assert main(command) == 0
    output = capsys.readouterr()
    assert "deleted 4 message(s)" in output.out
    assert "deleting [" in output.err  # the progress bar
    assert mongo_db["sessions_messages"].count_documents({}) == 2 + 2 + 1

    assert main(command) == 0
    assert "0 message(s) of 0 deleted session(s)" in capsys.readouterr().out


def test_an_unreachable_server_fails_with_a_message(capsys: pytest.CaptureFixture[str]) -> None:
    uri = "mongodb://127.0.0.1:1/?serverSelectionTimeoutMS=200"

    assert main(["cleanup", "--uri", uri, "--database", "any"]) == 1
    assert "error:" in capsys.readouterr().err


def test_without_a_uri_it_says_how_to_give_one(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.delenv("MONGODB_URI", raising=False)

    assert main(["cleanup", "--database", "any"]) == 2
    assert "--uri" in capsys.readouterr().err
