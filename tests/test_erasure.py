"""Erasure: ``delete_sessions`` removes every session of a user, in both layouts, with all its messages.

It is scoped like everything else, idempotent, resumable after a SIGKILL at any point, and sweeps
what a writer still appending to an erased session adds. ``python -m mongodb_session_manager erase``
shows a progress bar and ends with a verification count that must be 0.
"""

import os
import select
import signal
import subprocess
import sys
import textwrap
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from bson import ObjectId
from pymongo import MongoClient
from pymongo.database import Database
from strands import Agent

import mongodb_session_manager._erasure as erasure
from mongodb_session_manager import MongoDBSessionManager, MongoDBSessionRepository
from mongodb_session_manager.__main__ import main
from mongodb_session_manager.errors import InvalidIdentifierError, SessionNotFoundError

from command_counter import CommandCounter
from helpers import run_command_line, text_message
from scripted_model import ScriptedModel
from stored_sessions import MESSAGES, SESSIONS, everything

Db = Database[dict[str, Any]]
Client = MongoClient[dict[str, Any]]


def chat(client: Client, database_name: str, session_id: str, layout: str, turns: int = 1, **owner: Any) -> Agent:
    """An echoing Agent that has taken ``turns`` turns in a session created with ``owner`` (user_id, ...)."""
    manager = MongoDBSessionManager(session_id, client=client, database_name=database_name, layout=layout, **owner)
    agent = Agent(model=ScriptedModel.echo(), session_manager=manager, callback_handler=None)
    for turn in range(turns):
        agent(f"{session_id} turn {turn}")
    return agent


def of_user(mongo_db: Db, user_id: str) -> tuple[int, int]:
    """Session documents of the user, and messages: tagged with the user or of one of the user's sessions."""
    session_ids = [document["_id"] for document in mongo_db[SESSIONS].find({"user_id": user_id})]
    messages = mongo_db[MESSAGES].count_documents({"$or": [{"user_id": user_id}, {"session_id": {"$in": session_ids}}]})
    return len(session_ids), messages


def without(stored: dict[str, list[dict[str, Any]]], user_id: str) -> dict[str, list[dict[str, Any]]]:
    return {
        name: [document for document in documents if document.get("user_id") != user_id]
        for name, documents in stored.items()
    }


@pytest.fixture
def scoped(mongo_client: Client, database_name: str, layout: str) -> Callable[..., MongoDBSessionRepository]:
    def make(user_id: str | None, **kwargs: Any) -> MongoDBSessionRepository:
        kwargs.setdefault("layout", layout)
        return MongoDBSessionRepository(client=mongo_client, database_name=database_name, user_id=user_id, **kwargs)

    return make


@pytest.fixture
def people(mongo_client: Client, database_name: str, layout: str, mongo_db: Db) -> dict[str, Any]:
    """Alice has three sessions (one in another application), bob one, and one session has no owner."""
    chat(mongo_client, database_name, "alice-1", layout, 2, user_id="alice")
    chat(mongo_client, database_name, "alice-2", layout, user_id="alice")
    chat(mongo_client, database_name, "alice-billing", layout, user_id="alice", application_name="billing")
    chat(mongo_client, database_name, "bob-1", layout, user_id="bob")
    chat(mongo_client, database_name, "nobody", layout)
    return everything(mongo_db)


def test_every_session_of_the_user_goes_with_its_messages_and_nothing_else(
    people: dict[str, Any], scoped: Callable[..., MongoDBSessionRepository], mongo_db: Db
) -> None:
    assert of_user(mongo_db, "alice")[0] == 3

    assert scoped(None).delete_sessions(user_id="alice") == 3

    assert of_user(mongo_db, "alice") == (0, 0)
    assert everything(mongo_db) == without(people, "alice")
    # idempotent: nothing left to erase, nothing else touched
    assert scoped(None).delete_sessions(user_id="alice") == 0
    assert everything(mongo_db) == without(people, "alice")


def test_a_repository_scoped_to_another_user_erases_nothing_and_sends_nothing(
    people: dict[str, Any],
    counting_client: tuple[Client, CommandCounter],
    database_name: str,
    layout: str,
    mongo_db: Db,
) -> None:
    client, counter = counting_client
    bob = MongoDBSessionRepository(client=client, database_name=database_name, layout=layout, user_id="bob")
    counter.reset()

    assert bob.delete_sessions(user_id="alice") == 0

    assert counter.names() == []
    assert everything(mongo_db) == people


def test_a_scoped_repository_erases_its_own_user(
    people: dict[str, Any], scoped: Callable[..., MongoDBSessionRepository], mongo_db: Db
) -> None:
    assert scoped("alice").delete_sessions(user_id="alice") == 3
    assert of_user(mongo_db, "alice") == (0, 0)
    assert everything(mongo_db) == without(people, "alice")


def test_the_application_narrows_what_is_erased(
    people: dict[str, Any], scoped: Callable[..., MongoDBSessionRepository], mongo_db: Db
) -> None:
    assert scoped("alice", application_name="chat").delete_sessions(user_id="alice", application_name="billing") == 0
    assert everything(mongo_db) == people

    assert scoped(None).delete_sessions(user_id="alice", application_name="billing") == 1

    assert sorted(document["_id"] for document in mongo_db[SESSIONS].find({"user_id": "alice"})) == [
        "alice-1",
        "alice-2",
    ]
    assert mongo_db[MESSAGES].count_documents({"session_id": "alice-billing"}) == 0


def test_expired_sessions_are_erased_too(
    people: dict[str, Any], scoped: Callable[..., MongoDBSessionRepository], mongo_db: Db
) -> None:
    past = datetime.now(UTC) - timedelta(hours=1)
    mongo_db[SESSIONS].update_one({"_id": "alice-1"}, {"$set": {"expires_at": past}})

    assert scoped(None).delete_sessions(user_id="alice") == 3
    assert of_user(mongo_db, "alice") == (0, 0)


@pytest.mark.parametrize("repository_layout", ["embedded", "split"])
def test_a_user_with_sessions_in_both_layouts_is_erased_by_either_repository(
    mongo_client: Client, database_name: str, mongo_db: Db, repository_layout: str
) -> None:
    chat(mongo_client, database_name, "old", "embedded", 2, user_id="alice")
    chat(mongo_client, database_name, "new", "split", 2, user_id="alice")
    chat(mongo_client, database_name, "bobs", "split", 1, user_id="bob")
    # a migration copied "old"'s messages and had not switched it yet
    old = mongo_db[SESSIONS].find_one({"_id": "old"})
    assert old is not None
    copies = [
        {"session_id": "old", "agent_id": "default", "generation": old["generation"], **m}
        for m in old["agents"]["default"]["messages"]
    ]
    mongo_db[MESSAGES].insert_many(copies)
    repository = MongoDBSessionRepository(client=mongo_client, database_name=database_name, layout=repository_layout)

    assert repository.delete_sessions(user_id="alice") == 2

    assert of_user(mongo_db, "alice") == (0, 0)
    assert mongo_db[MESSAGES].count_documents({"session_id": {"$in": ["old", "new"]}}) == 0
    assert mongo_db[MESSAGES].count_documents({"session_id": "bobs"}) == 2


def test_a_writer_still_appending_is_refused_and_what_it_added_is_swept(
    mongo_client: Client, database_name: str, mongo_db: Db, scoped: Callable[..., MongoDBSessionRepository]
) -> None:
    writer = chat(mongo_client, database_name, "s1", "split", 1, user_id="alice")
    late = MongoDBSessionRepository(client=mongo_client, database_name=database_name, layout="split", user_id="alice")
    late.read_session("s1")  # knows the session and its agent, so its next append is one insert with no check
    late.read_agent("s1", "default")

    assert scoped(None, layout="split").delete_sessions(user_id="alice") == 1

    # the answer of a turn that raced the erase lands after it: tagged with its owner, never shown
    late.create_message("s1", "default", text_message(2, "a late answer", role="assistant"))
    assert of_user(mongo_db, "alice") == (0, 1)
    # a new turn of the old writer is refused, and its message taken back
    with pytest.raises(SessionNotFoundError):
        writer("one more")
    assert of_user(mongo_db, "alice") == (0, 1)

    assert scoped(None, layout="split").delete_sessions(user_id="alice") == 0
    assert of_user(mongo_db, "alice") == (0, 0)


def test_messages_whose_session_document_is_gone_are_swept(
    mongo_client: Client, database_name: str, mongo_db: Db
) -> None:
    """What a run killed between deleting documents and messages leaves (or the TTL monitor, for an expired one)."""
    chat(mongo_client, database_name, "s1", "split", 2, user_id="alice")
    chat(mongo_client, database_name, "s2", "split", 1, user_id="alice")
    mongo_db[SESSIONS].delete_one({"_id": "s1"})

    repository = MongoDBSessionRepository(client=mongo_client, database_name=database_name, layout="split")
    assert repository.delete_sessions(user_id="alice") == 1

    assert of_user(mongo_db, "alice") == (0, 0)


def test_messages_stored_before_they_carried_an_owner_are_erased_with_their_session(
    mongo_client: Client, database_name: str, mongo_db: Db
) -> None:
    chat(mongo_client, database_name, "s1", "split", 2, user_id="alice")
    mongo_db[MESSAGES].update_many({}, {"$unset": {"user_id": ""}})

    repository = MongoDBSessionRepository(client=mongo_client, database_name=database_name, layout="split")
    assert repository.delete_sessions(user_id="alice") == 1

    assert mongo_db[MESSAGES].count_documents({}) == 0


def test_a_session_created_just_before_the_final_sweep_is_kept_whole(
    mongo_client: Client, database_name: str, mongo_db: Db, monkeypatch: pytest.MonkeyPatch
) -> None:
    chat(mongo_client, database_name, "old", "split", 1, user_id="alice")
    sweep = erasure._unowned_groups

    def a_new_conversation_starts_first(*args: Any) -> Any:
        chat(mongo_client, database_name, "new", "split", 2, user_id="alice")
        return sweep(*args)

    monkeypatch.setattr(erasure, "_unowned_groups", a_new_conversation_starts_first)
    repository = MongoDBSessionRepository(client=mongo_client, database_name=database_name, layout="split")

    assert repository.delete_sessions(user_id="alice") == 1

    assert mongo_db[SESSIONS].find_one({"_id": "old"}) is None
    assert mongo_db[MESSAGES].count_documents({"session_id": "new"}) == 4  # its session exists: none swept


def test_erasing_sends_four_commands_per_batch_and_two_to_finish(
    counting_client: tuple[Client, CommandCounter], database_name: str, layout: str
) -> None:
    client, counter = counting_client
    for number in range(3):
        chat(client, database_name, f"s{number}", layout, user_id="alice")
    repository = MongoDBSessionRepository(client=client, database_name=database_name, layout=layout)
    counter.reset()

    assert repository.delete_sessions(user_id="alice") == 3

    # the batch: its documents read, ownerless messages tagged, documents deleted, messages deleted; then an
    # empty batch and the sweep
    assert counter.names() == ["find", "update", "delete", "delete", "find", "aggregate"]


def test_user_id_is_required_and_validated(scoped: Callable[..., MongoDBSessionRepository]) -> None:
    for user_id in (None, "", {"$ne": None}, "x" * 300):
        with pytest.raises(InvalidIdentifierError, match="user_id"):
            scoped(None).delete_sessions(user_id=user_id)
    with pytest.raises(InvalidIdentifierError, match="application_name"):
        scoped(None).delete_sessions(user_id="alice", application_name={"$gt": ""})


# -- split-layout messages carry their session's owner -------------------------------------------------


def test_split_messages_carry_the_owner_whoever_writes_them(
    mongo_client: Client, database_name: str, mongo_db: Db
) -> None:
    chat(mongo_client, database_name, "s1", "split", 1, user_id="alice", application_name="chat")
    # the back office (no scope) writes into alice's session: it learnt the owner when it opened it
    back_office = chat(mongo_client, database_name, "s1", "split", 0)
    back_office("from the back office")

    owners = {(m["user_id"], m["application_name"]) for m in mongo_db[MESSAGES].find({"session_id": "s1"})}
    assert owners == {("alice", "chat")}
    assert mongo_db[MESSAGES].count_documents({"session_id": "s1"}) == 4
    indexes = mongo_db[MESSAGES].index_information()
    assert indexes["user_id_sparse"]["key"] == [("user_id", 1)]
    assert indexes["user_id_sparse"]["sparse"] is True


def test_messages_of_unowned_sessions_carry_no_owner(mongo_client: Client, database_name: str, mongo_db: Db) -> None:
    chat(mongo_client, database_name, "s1", "split", 1)
    assert all("user_id" not in message for message in mongo_db[MESSAGES].find())


@pytest.mark.parametrize("name", ["user_id", "application_name", "generation", "session_id", "agent_id"])
def test_annotations_cannot_take_the_names_of_stored_keys(
    name: str, scoped: Callable[..., MongoDBSessionRepository]
) -> None:
    with pytest.raises(InvalidIdentifierError, match="message annotation"):
        scoped(None).annotate_messages(**{name: "x"})


# -- killed half-way, then run again ---------------------------------------------------------------------

CHILD = textwrap.dedent(
    """
    import sys, time
    from pymongo import MongoClient
    from pymongo.collection import Collection
    from mongodb_session_manager import MongoDBSessionRepository, _erasure

    uri, database, method, collection, call = sys.argv[1:6]
    _erasure.BATCH = 10
    seen = 0
    original = getattr(Collection, method)

    def stop_after(self, *args, **kwargs):
        global seen
        result = original(self, *args, **kwargs)
        if self.name == collection:
            seen += 1
            if seen == int(call):
                print("stopped", flush=True)
                time.sleep(60)
        return result

    setattr(Collection, method, stop_after)
    repository = MongoDBSessionRepository(client=MongoClient(uri), database_name=database)
    repository.delete_sessions(user_id="alice")
    print("finished", flush=True)
    """
)
KILL_POINTS = {
    # (method, collection, call): the child (erasing 10 sessions a batch) is killed right after that
    # command of the second batch
    "messages given their owner": ("update_many", MESSAGES, 2),
    "documents deleted": ("delete_many", SESSIONS, 2),
    "messages deleted": ("delete_many", MESSAGES, 2),
}


def build_sessions(mongo_client: Client, database_name: str, layout: str, count: int, user_id: str) -> None:
    """``count`` sessions of ``user_id`` with 4 messages each, imported from one real conversation."""
    chat(mongo_client, database_name, f"{user_id}-0", layout, 2, user_id=user_id)
    repository = MongoDBSessionRepository(client=mongo_client, database_name=database_name, layout=layout)
    template = repository.export_session(f"{user_id}-0")
    for number in range(1, count):
        repository.import_session(template, session_id=f"{user_id}-{number}")


@pytest.mark.parametrize("kill_point", list(KILL_POINTS))
def test_an_erase_killed_half_way_is_completed_by_the_next_run(
    mongodb_uri: str, mongo_client: Client, database_name: str, layout: str, mongo_db: Db, kill_point: str
) -> None:
    build_sessions(mongo_client, database_name, layout, 35, "alice")
    build_sessions(mongo_client, database_name, layout, 2, "bob")
    bobs = without(everything(mongo_db), "alice")
    # half of alice's sessions have messages stored before messages carried their owner
    mongo_db[MESSAGES].update_many({"session_id": {"$regex": "^alice-[0-9]*[02468]$"}}, {"$unset": {"user_id": ""}})
    child = subprocess.Popen(
        [sys.executable, "-c", CHILD, mongodb_uri, database_name, *map(str, KILL_POINTS[kill_point])],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert child.stdout is not None
        ready, _, _ = select.select([child.stdout], [], [], 60)
        assert ready, "the child did not reach the kill point"
        assert child.stdout.readline() == "stopped\n", child.stderr.read() if child.stderr else ""
        os.kill(child.pid, signal.SIGKILL)
    finally:
        child.kill()
        child.wait(timeout=30)
    assert child.returncode == -signal.SIGKILL
    sessions_left, _ = of_user(mongo_db, "alice")
    assert 0 < sessions_left < 35  # killed half-way

    repository = MongoDBSessionRepository(client=mongo_client, database_name=database_name, layout=layout)
    assert repository.delete_sessions(user_id="alice") == sessions_left

    assert of_user(mongo_db, "alice") == (0, 0)
    assert everything(mongo_db) == bobs


# -- the command line ------------------------------------------------------------------------------------


def erase_command(mongodb_uri: str, database_name: str, *extra: str) -> list[str]:
    return ["erase", "--uri", mongodb_uri, "--database", database_name, "--user-id", "alice", *extra]


def one_error_line(capsys: pytest.CaptureFixture[str], *, after_progress: bool = False) -> str:
    """The one ``error: ...`` line on stderr (after the progress bar's lines, if it drew one)."""
    lines = capsys.readouterr().err.splitlines()
    assert "Traceback" not in "\n".join(lines)
    if after_progress:
        assert all(line.startswith("erasing [") for line in lines[:-1]), lines
        lines = lines[-1:]
    assert len(lines) == 1, lines
    assert lines[0].startswith("error: "), lines
    return lines[0]


def test_the_command_counts_erases_with_a_progress_bar_and_verifies(
    people: dict[str, Any], mongodb_uri: str, database_name: str, mongo_db: Db, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(erase_command(mongodb_uri, database_name, "--dry-run")) == 0
    out = capsys.readouterr().out
    assert out.startswith("3 session(s) and ")
    assert everything(mongo_db) == people

    assert main(erase_command(mongodb_uri, database_name)) == 0

    captured = capsys.readouterr()
    assert "erasing [" in captured.err
    assert "3/3 sessions" in captured.err
    assert "erased 3 session(s)" in captured.out
    assert "verification: 0 session(s) and 0 message(s) of user 'alice' remain" in captured.out
    assert everything(mongo_db) == without(people, "alice")


def test_the_command_fails_when_the_verification_finds_something(
    mongo_client: Client,
    mongodb_uri: str,
    database_name: str,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    import mongodb_session_manager._lifecycle_cli as cli

    chat(mongo_client, database_name, "s1", "split", user_id="alice")
    erase = cli.erase_sessions

    def erase_while_alice_starts_a_chat(*args: Any, **kwargs: Any) -> int:
        erased = erase(*args, **kwargs)
        chat(mongo_client, database_name, "s2", "split", user_id="alice")
        return erased

    monkeypatch.setattr(cli, "erase_sessions", erase_while_alice_starts_a_chat)

    assert main(erase_command(mongodb_uri, database_name)) == 1

    error = one_error_line(capsys, after_progress=True)
    assert "1 session(s) and 2 message(s)" in error
    assert "run the command again" in error


@pytest.mark.parametrize(
    ("arguments", "status", "expected"),
    [
        (["--uri", "http://user:secret@host"], 2, "must start with mongodb://"),
        (["--uri", "mongodb://user:secret@host:notaport"], 2, "not a valid MongoDB URI"),
        (["--uri", "mongodb://127.0.0.1:1/?serverSelectionTimeoutMS=200"], 1, "check that the server is reachable"),
        (["--user-id", ""], 2, "invalid --user-id"),
    ],
)
def test_the_command_fails_in_one_line_with_a_hint(
    arguments: list[str], status: int, expected: str, mongodb_uri: str, capsys: pytest.CaptureFixture[str]
) -> None:
    command = erase_command(mongodb_uri, "any")
    for flag, value in zip(arguments[::2], arguments[1::2], strict=True):
        command[command.index(flag) + 1] = value

    assert main(command) == status

    error = one_error_line(capsys)
    assert expected in error
    assert "secret" not in error


def test_without_a_uri_the_command_says_how_to_give_one(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.delenv("MONGODB_URI", raising=False)
    assert main(["erase", "--database", "any", "--user-id", "alice"]) == 2
    assert "--uri" in one_error_line(capsys)


@pytest.mark.parametrize("command", ["erase", "export", "import"])
def test_help_shows_a_description_and_examples(command: str) -> None:
    result = run_command_line(command, "--help")
    assert result.returncode == 0, result.stderr
    assert "examples:" in result.stdout
    assert f"python -m mongodb_session_manager {command} " in result.stdout
    assert "$MONGODB_URI" in result.stdout


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
