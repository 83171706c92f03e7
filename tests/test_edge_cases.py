"""Migration edge cases found in review: a split delete racing the copy, two overlapping migrations
of a session without a generation, a redaction landing mid-migration, sessions created while it
runs, a stored message without an id.

Each test once failed against the code it guards.
"""

from __future__ import annotations

import contextlib
import threading
from typing import Any

import pytest
from pymongo import MongoClient
from pymongo.database import Database
from strands import Agent

import mongodb_session_manager.migration as migration
from mongodb_session_manager import MongoDBSessionManager, MongoDBSessionRepository
from mongodb_session_manager.errors import LayoutMismatchError
from mongodb_session_manager.migration import migrate_to_split

from helpers import converse, text_message
from scripted_model import ScriptedModel
from stored_sessions import SESSIONS

Db = Database[dict[str, Any]]
Client = MongoClient[dict[str, Any]]


# -- a split repository's delete of a session in the other layout deletes messages first ----------


def test_migration_racing_a_split_delete_never_loses_messages(
    mongo_client: Client, mongo_db: Db, monkeypatch: pytest.MonkeyPatch
) -> None:
    converse(mongo_client, mongo_db.name, "s1", 3)
    split = MongoDBSessionRepository(client=mongo_client, database_name=mongo_db.name, layout="split")
    original = migration._copy_agent

    def copy_then_a_split_process_deletes(*args: Any) -> int:
        count = original(*args)  # copied and verified
        with contextlib.suppress(LayoutMismatchError):
            split.delete_session("s1")  # refused ... but only after deleting the copies
        return count

    monkeypatch.setattr(migration, "_copy_agent", copy_then_a_split_process_deletes)
    report = migrate_to_split(mongo_db)

    # Either the session was left embedded with its messages, or it is split with all six.
    document = mongo_db[SESSIONS].find_one({"_id": "s1"})
    assert document is not None
    if document.get("message_layout") == "split":
        assert report.migrated == 1
        resumed = MongoDBSessionManager("s1", client=mongo_client, database_name=mongo_db.name, layout="split")
        assert len(Agent(model=ScriptedModel.echo(), session_manager=resumed, callback_handler=None).messages) == 6
    else:
        assert len(document["agents"]["default"]["messages"]) == 6


# -- two migrations of a session without a generation ---------------------------------------------


def test_two_overlapping_migrations_of_a_pre_generation_session_keep_its_messages(
    mongo_client: Client, mongo_db: Db, monkeypatch: pytest.MonkeyPatch
) -> None:
    converse(mongo_client, mongo_db.name, "old", 2)
    # a session written by the previous version of the library: no generation field
    mongo_db[SESSIONS].update_one({"_id": "old"}, {"$unset": {"generation": ""}})

    original = migration._copy_agent
    a_counted, b_copied, a_done = threading.Event(), threading.Event(), threading.Event()
    b_thread: list[threading.Thread] = []

    def interleaved(*args: Any) -> int:
        if threading.current_thread() in b_thread:
            a_counted.wait(10)
            count = original(*args)  # B copies (with B's generation) after A verified ...
            b_copied.set()
            a_done.wait(10)  # ... and reaches its switch only after A switched
            return count
        count = original(*args)  # A copies and verifies with A's generation
        a_counted.set()
        b_copied.wait(10)
        return count

    monkeypatch.setattr(migration, "_copy_agent", interleaved)
    reports: dict[str, Any] = {}

    def run(name: str) -> None:
        try:
            reports[name] = migrate_to_split(mongo_db)
        finally:
            if name == "a":
                a_done.set()

    b = threading.Thread(target=run, args=("b",))
    b_thread.append(b)
    a = threading.Thread(target=run, args=("a",))
    a.start()
    b.start()
    a.join(30)
    b.join(30)

    assert mongo_db[SESSIONS].find_one({"_id": "old"})["message_layout"] == "split"  # type: ignore[index]
    resumed = MongoDBSessionManager("old", client=mongo_client, database_name=mongo_db.name, layout="split")
    assert len(Agent(model=ScriptedModel.echo(), session_manager=resumed, callback_handler=None).messages) == 4


# -- the migration's "unchanged" check is updated_at at millisecond precision -----------------


def test_a_redaction_during_migration_is_not_lost(
    mongo_client: Client, mongo_db: Db, monkeypatch: pytest.MonkeyPatch
) -> None:
    import mongodb_session_manager._embedded_layout as embedded_layout

    converse(mongo_client, mongo_db.name, "s1", 1)
    writer = MongoDBSessionRepository(client=mongo_client, database_name=mongo_db.name)
    original = migration._copy_agent

    redacted_already: list[bool] = []

    def copy_then_redact_in_the_same_millisecond(*args: Any) -> int:
        count = original(*args)
        if redacted_already:
            return count
        redacted_already.append(True)
        stored_at = mongo_db[SESSIONS].find_one({"_id": "s1"})["updated_at"]  # type: ignore[index]
        monkeypatch.setattr(embedded_layout, "now", lambda: stored_at)  # the same ms as the last write
        redacted = text_message(0, "s1 turn 0")
        redacted.redact_message = {"role": "user", "content": [{"text": "[REDACTED]"}]}
        writer.update_message("s1", "default", redacted)
        return count

    monkeypatch.setattr(migration, "_copy_agent", copy_then_redact_in_the_same_millisecond)
    assert migrate_to_split(mongo_db).migrated == 1

    split = MongoDBSessionRepository(client=mongo_client, database_name=mongo_db.name, layout="split")
    first = split.read_message("s1", "default", 0)
    assert first is not None
    assert first.redact_message == {"role": "user", "content": [{"text": "[REDACTED]"}]}


# -- the migration reports success while embedded sessions remain -------------------------------


def test_migration_does_not_report_success_while_embedded_sessions_remain(mongo_client: Client, mongo_db: Db) -> None:
    converse(mongo_client, mongo_db.name, "m", 1)
    created = []

    def a_user_starts_a_chat(_session_id: str) -> None:
        if not created:
            created.append(converse(mongo_client, mongo_db.name, "a-new-chat", 1))

    report = migrate_to_split(mongo_db, on_session_done=a_user_starts_a_chat)

    assert migration.count_embedded_sessions(mongo_db[SESSIONS]) == report.still_embedded == 1


# -- a malformed stored message aborts the whole migration ----------------------------------------


def test_a_message_without_an_id_fails_only_its_session(mongo_client: Client, mongo_db: Db) -> None:
    converse(mongo_client, mongo_db.name, "bad", 1)
    converse(mongo_client, mongo_db.name, "good", 1)
    mongo_db[SESSIONS].update_one({"_id": "bad"}, {"$unset": {"agents.default.messages.0.message_id": ""}})

    report = migrate_to_split(mongo_db)

    assert "bad" in report.failed
    assert report.migrated == 1
