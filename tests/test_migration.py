"""``python -m mongodb_session_manager migrate --from embedded --to split``: complete, verified, resumable."""

import contextlib
import subprocess
import threading
from collections.abc import Iterator
from typing import Any

import pytest
from pymongo import MongoClient, monitoring
from pymongo.database import Database
from strands import Agent
from strands.agent.conversation_manager import NullConversationManager, SlidingWindowConversationManager
from strands.types.session import Session, SessionType

import mongodb_session_manager.migration as migration
from mongodb_session_manager import MongoDBSessionManager, MongoDBSessionRepository
from mongodb_session_manager.errors import LayoutMismatchError, MongoDBSessionError
from mongodb_session_manager.migration import migrate_to_split

from helpers import converse, run_command_line, text_message
from scripted_model import ScriptedModel
from stored_sessions import MESSAGES, SESSIONS, StoredSessions

Db = Database[dict[str, Any]]
Client = MongoClient[dict[str, Any]]


def resume(
    client: Client, database_name: str, session_id: str, layout: str, agent_id: str = "default", **agent_kwargs: Any
) -> Agent:
    manager = MongoDBSessionManager(session_id, client=client, database_name=database_name, layout=layout)
    return Agent(
        model=ScriptedModel.echo(), session_manager=manager, callback_handler=None, agent_id=agent_id, **agent_kwargs
    )


def run_cli(mongodb_uri: str, database_name: str, *extra: str) -> subprocess.CompletedProcess[str]:
    return run_command_line(
        "migrate", "--from", "embedded", "--to", "split", "--uri", mongodb_uri, "--database", database_name, *extra
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


def underlying(error: BaseException) -> BaseException:
    """The library error behind Strands' wrapping (an append inside the event loop is wrapped)."""
    cause = getattr(error, "original_exception", None) or error.__cause__
    return underlying(cause) if cause is not None and not isinstance(error, MongoDBSessionError) else error


def test_no_acknowledged_message_is_lost_while_a_live_writer_keeps_appending(
    mongo_client: Client, mongo_db: Db, database_name: str
) -> None:
    """A real writer thread appending as fast as it can; the outcome does not depend on the timing.

    Each of its turns is two appends, so every attempt the writer spoils finds new messages to copy
    and the migration keeps trying: at most one attempt per append (2 x TURNS + 1 < MAX_ATTEMPTS).
    Once the session is split, the writer's next append is refused, and everything acknowledged
    before is in the split store.
    """
    turns = 30
    agent = converse(mongo_client, database_name, "live", 20, conversation_manager=NullConversationManager())
    acknowledged = [len(agent.messages)]
    refused: list[BaseException] = []
    writing, migrated = threading.Event(), threading.Event()

    def keep_talking() -> None:
        for turn in range(turns + 1):
            if turn == turns:
                migrated.wait(60)  # one more turn, after the migration: it must be refused
            try:
                agent(f"more {turn}")
            except Exception as error:  # inspected below
                refused.append(underlying(error))
                return
            acknowledged.append(len(agent.messages))
            writing.set()

    writer = threading.Thread(target=keep_talking)
    writer.start()
    try:
        assert writing.wait(60)
        report = migrate_to_split(mongo_db)
    finally:
        migrated.set()
        writer.join(60)

    assert not writer.is_alive()
    assert report.failed == {}
    assert report.migrated == 1
    assert len(refused) == 1, refused
    assert isinstance(refused[0], LayoutMismatchError), refused
    stored = StoredSessions(mongo_db, "split").message_ids("live", "default")
    assert stored == list(range(len(stored)))
    # everything acknowledged, plus at most the user message of the refused turn (stored before the switch)
    assert acknowledged[-1] <= len(stored) <= acknowledged[-1] + 1
    resumed = resume(
        mongo_client, database_name, "live", "split", conversation_manager=NullConversationManager()
    ).messages
    assert resumed == agent.messages[: len(resumed)]


class CountingCopies(monitoring.CommandListener):
    """Counts the message documents written to ``sessions_messages`` (one per ReplaceOne)."""

    def __init__(self) -> None:
        self.written = 0

    def started(self, event: monitoring.CommandStartedEvent) -> None:
        if event.command_name == "update" and event.command.get("update") == MESSAGES:
            self.written += len(event.command["updates"])

    def succeeded(self, event: monitoring.CommandSucceededEvent) -> None:
        pass

    def failed(self, event: monitoring.CommandFailedEvent) -> None:
        pass


@pytest.fixture
def counted_db(mongodb_uri: str, database_name: str) -> Iterator[tuple[Db, CountingCopies]]:
    copies = CountingCopies()
    client: Client = MongoClient(mongodb_uri, event_listeners=[copies])
    try:
        yield client[database_name], copies
    finally:
        client.close()


def test_a_session_changed_between_every_copy_and_switch_converges_copying_only_what_changed(
    mongo_client: Client, database_name: str, counted_db: tuple[Db, CountingCopies], monkeypatch: pytest.MonkeyPatch
) -> None:
    """A writer takes a turn exactly between the copy and the switch, in more attempts than the old limit of 3."""
    spoiled_attempts = 10
    agent = converse(mongo_client, database_name, "busy", 20, conversation_manager=NullConversationManager())
    original = migration._copy_agent
    attempts: list[int] = []

    def copy_then_a_turn(*args: Any) -> int:
        count = original(*args)
        attempts.append(count)
        if len(attempts) <= spoiled_attempts:
            agent(f"between copy and switch {len(attempts)}")  # two appends: the switch will not apply
        return count

    monkeypatch.setattr(migration, "_copy_agent", copy_then_a_turn)
    database, copies = counted_db

    report = migrate_to_split(database)

    assert report.failed == {}
    assert report.migrated == 1
    assert attempts == [40 + 2 * n for n in range(spoiled_attempts + 1)]  # each attempt saw the new turn
    assert copies.written == 40 + 2 * spoiled_attempts  # each message copied once: only what changed
    assert StoredSessions(database, "split").message_ids("busy", "default") == list(range(40 + 2 * spoiled_attempts))
    resumed = resume(mongo_client, database_name, "busy", "split", conversation_manager=NullConversationManager())
    assert resumed.messages == agent.messages
    with pytest.raises(LayoutMismatchError):
        agent("one more, embedded")


def test_a_writer_that_never_stops_is_given_up_on_after_max_attempts_leaving_the_session_embedded(
    mongo_client: Client, mongo_db: Db, database_name: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    agent = converse(mongo_client, database_name, "endless", 2)
    original = migration._copy_agent

    def copy_then_a_turn(*args: Any) -> int:
        count = original(*args)
        agent("again")
        return count

    monkeypatch.setattr(migration, "_copy_agent", copy_then_a_turn)

    report = migrate_to_split(mongo_db, max_attempts=5)

    assert "kept changing while being migrated (5 attempts)" in report.failed["endless"]
    assert report.still_embedded == 1
    assert StoredSessions(mongo_db, "embedded").message_ids("endless", "default") == list(range(4 + 2 * 5))
    assert len(resume(mongo_client, database_name, "endless", "embedded").messages) == 4 + 2 * 5


def test_changes_to_state_only_stall_the_migration_after_three_attempts(
    mongo_client: Client, mongo_db: Db, database_name: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    converse(mongo_client, database_name, "restless", 2)
    repository = MongoDBSessionRepository(client=mongo_client, database_name=database_name)
    original = migration._copy_agent
    attempts: list[int] = []

    def copy_then_change_metadata(*args: Any) -> int:
        count = original(*args)
        attempts.append(count)
        repository.update_metadata("restless", {"seen": len(attempts)})  # no message changes
        return count

    monkeypatch.setattr(migration, "_copy_agent", copy_then_change_metadata)

    report = migrate_to_split(mongo_db)

    assert len(attempts) == 1 + migration.STALLED_ATTEMPTS
    assert "the last 3 without a new or changed message" in report.failed["restless"]
    assert StoredSessions(mongo_db, "embedded").message_ids("restless", "default") == [0, 1, 2, 3]


def test_copies_removed_between_attempts_are_copied_again(
    mongo_client: Client, mongo_db: Db, database_name: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Copying only what changed must not trust copies someone removed meanwhile."""
    agent = converse(mongo_client, database_name, "s1", 3)
    original = migration._copy_agent
    attempts: list[int] = []

    def copy_then_lose_a_copy_and_take_a_turn(*args: Any) -> int:
        count = original(*args)
        attempts.append(count)
        if len(attempts) == 1:
            mongo_db[MESSAGES].delete_one({"session_id": "s1", "message_id": 0})
            agent("a turn, so the switch does not apply")
        return count

    monkeypatch.setattr(migration, "_copy_agent", copy_then_lose_a_copy_and_take_a_turn)

    report = migrate_to_split(mongo_db)

    assert report.failed == {}
    assert attempts == [6, 8]
    assert StoredSessions(mongo_db, "split").message_ids("s1", "default") == list(range(8))


# -- edge cases found in review: races with deletes, overlapping runs, redactions, new sessions ----


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
