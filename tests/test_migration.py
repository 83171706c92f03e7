"""``python -m mongodb_session_manager migrate --from embedded --to split``: complete, verified, resumable."""

import os
import subprocess
import sys
import threading
import time
from typing import Any

import pytest
from pymongo import MongoClient
from pymongo.database import Database
from strands import Agent
from strands.agent.conversation_manager import SlidingWindowConversationManager
from strands.types.session import Session, SessionType

from mongodb_session_manager import MongoDBSessionManager, MongoDBSessionRepository
from mongodb_session_manager.errors import LayoutMismatchError, MongoDBSessionError
from mongodb_session_manager.migration import migrate_to_split

from helpers import converse
from scripted_model import ScriptedModel
from stored_sessions import StoredSessions

Db = Database[dict[str, Any]]
Client = MongoClient[dict[str, Any]]


def resume(client: Client, database_name: str, session_id: str, layout: str, agent_id: str = "default") -> Agent:
    manager = MongoDBSessionManager(session_id, client=client, database_name=database_name, layout=layout)
    return Agent(model=ScriptedModel.echo(), session_manager=manager, callback_handler=None, agent_id=agent_id)


def run_cli(mongodb_uri: str, database_name: str, *extra: str) -> subprocess.CompletedProcess[str]:
    command = [sys.executable, "-m", "mongodb_session_manager", "migrate", "--from", "embedded", "--to", "split"]
    return subprocess.run(
        [*command, "--uri", mongodb_uri, "--database", database_name, *extra],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
        env={**os.environ, "MONGODB_URI": ""},
    )


@pytest.fixture
def embedded_sessions(mongo_client: Client, database_name: str) -> dict[str, Any]:
    """Three embedded sessions: plain, sliding-window with a second agent, and one with no agent."""
    before: dict[str, Any] = {}
    converse(mongo_client, database_name, "plain", 3)
    windowed = converse(
        mongo_client, database_name, "windowed", 5, conversation_manager=SlidingWindowConversationManager(4)
    )
    assert windowed.conversation_manager.removed_message_count > 0
    manager = MongoDBSessionManager("windowed", client=mongo_client, database_name=database_name)
    Agent(model=ScriptedModel.echo(), session_manager=manager, callback_handler=None, agent_id="helper")("help")
    MongoDBSessionRepository(client=mongo_client, database_name=database_name).create_session(
        Session("empty", SessionType.AGENT)
    )
    for session_id, agent_id in (("plain", "default"), ("windowed", "default"), ("windowed", "helper")):
        before[f"{session_id}/{agent_id}"] = resume(
            mongo_client, database_name, session_id, "embedded", agent_id
        ).messages
    repository = MongoDBSessionRepository(client=mongo_client, database_name=database_name)
    before["metrics"] = {sid: repository.get_metrics_summary(sid) for sid in ("plain", "windowed", "empty")}
    return before


def test_cli_moves_every_message_and_split_resumes_the_same_conversation(
    mongodb_uri: str, mongo_client: Client, mongo_db: Db, database_name: str, embedded_sessions: dict[str, Any]
) -> None:
    result = run_cli(mongodb_uri, database_name)

    assert result.returncode == 0, result.stderr
    assert "3 session(s)" in result.stdout
    assert "migrated 3 session(s), 18 message(s)" in result.stdout  # 6 + 10 + 2
    assert "migrating [" in result.stderr  # the progress bar
    split = StoredSessions(mongo_db, "split")
    assert split.message_ids("plain", "default") == list(range(6))
    assert split.message_ids("windowed", "default") == list(range(10))
    assert split.message_ids("windowed", "helper") == [0, 1]
    for session_id in ("plain", "windowed", "empty"):
        document = split.document(session_id)
        assert document is not None
        assert document["message_layout"] == "split"
        assert all("messages" not in agent for agent in document["agents"].values())
    for key, messages in embedded_sessions.items():
        if key == "metrics":
            continue
        session_id, agent_id = key.split("/")
        assert resume(mongo_client, database_name, session_id, "split", agent_id).messages == messages
    repository = MongoDBSessionRepository(client=mongo_client, database_name=database_name, layout="split")
    for session_id, summary in embedded_sessions["metrics"].items():
        assert repository.get_metrics_summary(session_id) == summary


def test_an_embedded_repository_refuses_a_migrated_session(
    mongodb_uri: str, mongo_client: Client, database_name: str, embedded_sessions: dict[str, Any]
) -> None:
    assert run_cli(mongodb_uri, database_name).returncode == 0
    with pytest.raises(LayoutMismatchError, match="'split'"):
        resume(mongo_client, database_name, "plain", "embedded")


def test_running_it_again_changes_nothing(
    mongodb_uri: str, mongo_db: Db, database_name: str, embedded_sessions: dict[str, Any]
) -> None:
    assert run_cli(mongodb_uri, database_name).returncode == 0
    stored = list(mongo_db["sessions_messages"].find({}, {"_id": 0}).sort([("session_id", 1), ("agent_id", 1)]))

    again = run_cli(mongodb_uri, database_name)

    assert again.returncode == 0, again.stderr
    assert "0 session(s)" in again.stdout
    assert list(mongo_db["sessions_messages"].find({}, {"_id": 0}).sort([("session_id", 1), ("agent_id", 1)])) == stored


def test_dry_run_only_counts(
    mongodb_uri: str, mongo_db: Db, database_name: str, embedded_sessions: dict[str, Any]
) -> None:
    result = run_cli(mongodb_uri, database_name, "--dry-run")

    assert result.returncode == 0, result.stderr
    assert "3 session(s)" in result.stdout
    assert mongo_db["sessions_messages"].count_documents({}) == 0
    assert StoredSessions(mongo_db, "embedded").message_ids("plain", "default") == list(range(6))


class Interrupted(Exception):
    pass


def test_an_interrupted_migration_resumes_without_duplicates(
    mongo_db: Db, database_name: str, embedded_sessions: dict[str, Any]
) -> None:
    def stop_after_first(session_id: str) -> None:
        raise Interrupted(session_id)

    with pytest.raises(Interrupted):
        migrate_to_split(mongo_db, on_session_done=stop_after_first)
    # A crash between copying and switching: copies of "windowed" exist, its document is still embedded.
    embedded = StoredSessions(mongo_db, "embedded")
    for message in embedded.messages("windowed", "default")[:4]:
        mongo_db["sessions_messages"].insert_one({"session_id": "windowed", "agent_id": "default", **message})

    report = migrate_to_split(mongo_db)

    assert report.failed == {}
    assert report.migrated == 2
    split = StoredSessions(mongo_db, "split")
    assert split.message_ids("windowed", "default") == list(range(10))
    assert mongo_db["sessions_messages"].count_documents({}) == 6 + 10 + 2


def test_a_session_that_does_not_verify_is_left_untouched(
    mongodb_uri: str, mongo_db: Db, database_name: str, embedded_sessions: dict[str, Any]
) -> None:
    before = mongo_db["sessions"].find_one({"_id": "plain"})
    assert before is not None
    # A message the copy cannot account for, in this very session (same generation).
    stray = {"session_id": "plain", "agent_id": "default", "generation": before["generation"], "message_id": 99}
    mongo_db["sessions_messages"].insert_one(stray)

    result = run_cli(mongodb_uri, database_name)

    assert result.returncode == 1
    assert "not migrated: 'plain'" in result.stderr
    assert "holds 6 messages but the messages collection holds 7" in result.stderr
    assert "migrated 2 session(s)" in result.stdout
    assert mongo_db["sessions"].find_one({"_id": "plain"}) == before


def test_duplicate_message_ids_in_the_source_are_reported_not_merged(
    mongo_db: Db, embedded_sessions: dict[str, Any]
) -> None:
    mongo_db["sessions"].update_one({"_id": "plain"}, {"$set": {"agents.default.messages.1.message_id": 0}})
    before = mongo_db["sessions"].find_one({"_id": "plain"})

    report = migrate_to_split(mongo_db)

    assert "6 messages but 5 distinct message ids" in report.failed["plain"]
    assert mongo_db["sessions"].find_one({"_id": "plain"}) == before


def test_no_acknowledged_message_is_lost_while_a_live_writer_keeps_appending(
    mongo_client: Client, mongo_db: Db, database_name: str
) -> None:
    agent = converse(mongo_client, database_name, "live", 50)
    acknowledged = [len(agent.messages)]
    done = threading.Event()

    def keep_talking() -> None:
        turn = 0
        while not done.is_set():
            try:
                agent(f"more {turn}")
            except MongoDBSessionError:
                return  # the session moved to the split layout (or this Agent went stale)
            acknowledged.append(len(agent.messages))
            turn += 1
            time.sleep(0.05)  # a fast user: the migration has to catch a quiet moment between turns

    writer = threading.Thread(target=keep_talking)
    writer.start()
    try:
        report = migrate_to_split(mongo_db, max_attempts=50)
    finally:
        done.set()
        writer.join(timeout=30)

    assert report.failed == {}
    stored = StoredSessions(mongo_db, "split").message_ids("live", "default")
    assert stored == list(range(len(stored)))
    assert len(stored) >= acknowledged[-1]
