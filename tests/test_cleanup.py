"""``cleanup``: messages a split delete left behind are deleted; messages any session owns are kept."""

from typing import Any

import pytest
from pymongo import MongoClient
from pymongo.database import Database

from mongodb_session_manager import MongoDBSessionRepository, cleanup
from mongodb_session_manager.__main__ import main
from mongodb_session_manager.cleanup import CleanupRefusedError, find_left_behind, remove_left_behind

from helpers import session_with_agent, text_message

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
    """Messages of a live session, an interrupted delete, a session re-created after one, and a migration copy."""
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
    return {"split": split, "gone": gone}


def test_only_messages_no_session_owns_are_found_and_deleted(mongo_db: Db, left_behind: dict[str, Any]) -> None:
    gone = left_behind["gone"]

    found = find_left_behind(mongo_db)

    assert found.counts == {("interrupted", gone["interrupted"]): 3, ("recreated", gone["recreated"]): 1}
    assert found.message_count == 4
    assert found.owned_groups == 3  # kept, recreated (its new generation), being-migrated
    assert remove_left_behind(mongo_db, found) == 4
    assert stored_ids(mongo_db, "interrupted") == []
    assert [message_id for generation, message_id in stored_ids(mongo_db, "recreated")] == [0, 1]
    assert gone["recreated"] not in {generation for generation, _id in stored_ids(mongo_db, "recreated")}
    assert mongo_db["sessions_messages"].count_documents({"session_id": "being-migrated"}) == 1
    split: MongoDBSessionRepository = left_behind["split"]
    assert [message.message_id for message in split.list_messages("kept", "a1")] == [0, 1]
    assert [message.message_id for message in split.list_messages("recreated", "a1")] == [0, 1]
    assert find_left_behind(mongo_db).counts == {}


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


def test_sessions_are_looked_up_in_batches(
    mongo_db: Db, left_behind: dict[str, Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    expected = find_left_behind(mongo_db)
    monkeypatch.setattr(cleanup, "OWNER_BATCH", 1)

    assert find_left_behind(mongo_db) == expected


def test_a_writer_still_holding_a_deleted_session_leaves_messages_cleanup_finds(
    mongo_client: Client, mongo_db: Db, database_name: str
) -> None:
    deleting, stale = (
        MongoDBSessionRepository(client=mongo_client, database_name=database_name, layout="split") for _ in range(2)
    )
    store_session(stale, "live", range(1))
    store_session(stale, "stale", range(2))
    generation = stored_ids(mongo_db, "stale")[0][0]
    deleting.delete_session("stale")
    # the rest of a turn that raced the delete: an answer needs no session check, so it is stored
    stale.create_message("stale", "a1", text_message(2, "appended after the delete", role="assistant"))

    found = find_left_behind(mongo_db)

    assert found.counts == {("stale", generation): 1}
    assert remove_left_behind(mongo_db, found) == 1
    assert stored_ids(mongo_db, "stale") == []
    assert len(stored_ids(mongo_db, "live")) == 1


def test_missing_and_null_generations_are_one_owner(mongo_db: Db) -> None:
    mongo_db["sessions"].insert_one({"_id": "old-kept", "agents": {}})  # a session from before generations
    without_generation = [{"session_id": "old-kept", "agent_id": "a1", "message_id": 0}]
    gone = [{"session_id": "old-gone", "agent_id": "a1", "message_id": n} for n in range(3)]
    gone[0]["generation"] = None
    mongo_db["sessions_messages"].insert_many([*without_generation, *gone])
    mongo_db["sessions_messages"].insert_one({"agent_id": "a1", "message_id": 0})  # not written by this library

    found = find_left_behind(mongo_db)

    assert found.counts == {("old-gone", None): 3}
    assert found.owned_groups == 1
    assert remove_left_behind(mongo_db, found) == 3
    assert mongo_db["sessions_messages"].count_documents({}) == 2


def test_it_refuses_when_no_session_owns_anything(
    mongodb_uri: str, mongo_db: Db, database_name: str, left_behind: dict[str, Any], capsys: pytest.CaptureFixture[str]
) -> None:
    """A wrong --collection makes every message look left behind: nothing is deleted without --force."""
    mongo_db.create_collection("chats")  # another application's (empty) session collection
    command = ["cleanup", "--uri", mongodb_uri, "--database", database_name]
    wrong = [*command, "--collection", "chats", "--messages-collection", "sessions_messages"]

    with pytest.raises(CleanupRefusedError, match="owns any of the 9 stored messages"):
        remove_left_behind(mongo_db, find_left_behind(mongo_db, "chats", "sessions_messages"), "chats")
    assert main(wrong) == 2
    assert "--force" in capsys.readouterr().err
    assert mongo_db["sessions_messages"].count_documents({}) == 9

    assert main([*wrong, "--force"]) == 0
    assert mongo_db["sessions_messages"].count_documents({}) == 0


def test_a_missing_messages_collection_means_nothing_to_do(
    mongodb_uri: str, mongo_client: Client, database_name: str, capsys: pytest.CaptureFixture[str]
) -> None:
    store_session(MongoDBSessionRepository(client=mongo_client, database_name=database_name), "embedded", range(1))

    assert main(["cleanup", "--uri", mongodb_uri, "--database", database_name]) == 0
    assert "sessions_messages does not exist: nothing to delete" in capsys.readouterr().out
