"""Edge cases found in review: sessions deleted and created again under the same id, layouts
racing the migration, failed redactions, size limits measured on whole documents.

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
from strands.types.session import Session, SessionAgent, SessionType

import mongodb_session_manager.migration as migration
from mongodb_session_manager import MongoDBSessionManager, MongoDBSessionRepository
from mongodb_session_manager.errors import (
    LayoutMismatchError,
    MongoDBSessionError,
    SessionNotFoundError,
)
from mongodb_session_manager.migration import migrate_to_split

from helpers import converse, session_with_agent, text_message
from scripted_model import ScriptedModel
from stored_sessions import MESSAGES, SESSIONS, everything

Db = Database[dict[str, Any]]
Client = MongoClient[dict[str, Any]]


# -- a split repository's delete of a session in the other layout deletes messages first ----------


def test_split_delete_of_an_embedded_session_changes_nothing(mongo_client: Client, mongo_db: Db) -> None:
    converse(mongo_client, mongo_db.name, "s1", 2)
    # an interrupted migration copied the messages but has not switched the session yet
    document = mongo_db[SESSIONS].find_one({"_id": "s1"})
    assert document is not None
    migration._copy_agent(mongo_db[MESSAGES], "s1", "default", document["generation"], document["agents"]["default"])
    before = everything(mongo_db)
    assert len(before[MESSAGES]) == 4

    split = MongoDBSessionRepository(client=mongo_client, database_name=mongo_db.name, layout="split")
    with pytest.raises(LayoutMismatchError):
        split.delete_session("s1")  # README: "nothing was read or written"

    assert everything(mongo_db) == before


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


# -- a writer of a deleted session still writes into the session that replaced it ------------------


def test_embedded_writer_of_a_deleted_session_cannot_append_to_its_replacement(
    mongo_client: Client, mongo_db: Db
) -> None:
    old_writer = MongoDBSessionRepository(client=mongo_client, database_name=mongo_db.name)
    session_with_agent(old_writer, "s1", "default")
    for message_id in range(4):
        old_writer.create_message("s1", "default", text_message(message_id, f"old {message_id}"))
    other = MongoDBSessionRepository(client=mongo_client, database_name=mongo_db.name)
    other.delete_session("s1")
    session_with_agent(other, "s1", "default")
    other.create_message("s1", "default", text_message(0, "new 0"))
    before = everything(mongo_db)

    with contextlib.suppress(MongoDBSessionError):
        old_writer.create_message("s1", "default", text_message(4, "old 4: the in-flight answer"))

    assert everything(mongo_db) == before


def test_state_sync_of_a_deleted_session_cannot_overwrite_its_replacement(
    mongo_client: Client, mongo_db: Db, layout: str
) -> None:
    old_writer = MongoDBSessionRepository(client=mongo_client, database_name=mongo_db.name, layout=layout)
    session_with_agent(old_writer, "s1", "default")
    other = MongoDBSessionRepository(client=mongo_client, database_name=mongo_db.name, layout=layout)
    other.delete_session("s1")
    session_with_agent(other, "s1", "default")
    other.create_message("s1", "default", text_message(0, "new 0"))
    other.create_message("s1", "default", text_message(1, "new 1", "assistant"))
    before = everything(mongo_db)

    stale_state = SessionAgent(
        agent_id="default",
        state={"from": "the deleted session"},
        conversation_manager_state={"__name__": "SlidingWindowConversationManager", "removed_message_count": 40},
    )
    with contextlib.suppress(MongoDBSessionError):
        old_writer.update_agent("s1", stale_state)

    assert everything(mongo_db) == before


# -- delete_metadata ignores the layout ----------------------------------------------------------


@pytest.mark.parametrize(("stored_as", "opened_as"), [("embedded", "split"), ("split", "embedded")])
def test_delete_metadata_of_a_session_in_the_other_layout_raises(
    stored_as: str, opened_as: str, mongo_client: Client, mongo_db: Db
) -> None:
    owner = MongoDBSessionRepository(client=mongo_client, database_name=mongo_db.name, layout=stored_as)
    session_with_agent(owner)
    owner.update_metadata("s1", {"keep": 1})
    before = everything(mongo_db)
    other = MongoDBSessionRepository(client=mongo_client, database_name=mongo_db.name, layout=opened_as)

    with contextlib.suppress(LayoutMismatchError):
        other.delete_metadata("s1", ["keep"])

    assert everything(mongo_db) == before


# -- list_messages on a deleted session: the layouts disagree ----------------------------------


@pytest.mark.parametrize("layout", ["embedded", "split"])
def test_list_messages_of_a_session_deleted_elsewhere_raises_in_both_layouts(
    mongo_client: Client, mongo_db: Db, layout: str
) -> None:
    reader = MongoDBSessionRepository(client=mongo_client, database_name=mongo_db.name, layout=layout)
    session_with_agent(reader)
    reader.create_message("s1", "a1", text_message(0, "x"))
    MongoDBSessionRepository(client=mongo_client, database_name=mongo_db.name, layout=layout).delete_session("s1")

    with pytest.raises(SessionNotFoundError):
        reader.list_messages("s1", "a1")


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


# -- split update_message checks only the new body against 16 MiB ---------------------------------


def test_split_redaction_that_makes_the_message_document_too_large_raises_session_too_large(
    mongo_client: Client, mongo_db: Db
) -> None:
    from pymongo.errors import PyMongoError

    from mongodb_session_manager._session_documents import MAX_DOCUMENT_BYTES
    from mongodb_session_manager.errors import SessionTooLargeError

    split = MongoDBSessionRepository(client=mongo_client, database_name=mongo_db.name, layout="split")
    session_with_agent(split)
    with split.annotate_messages(event_loop_metrics={"padding": "m" * 4096}):
        split.create_message("s1", "a1", text_message(0, "small"))
    huge = text_message(0, "small")
    huge.redact_message = {"role": "user", "content": [{"text": "r" * (MAX_DOCUMENT_BYTES - 2048)}]}
    try:
        split.update_message("s1", "a1", huge)
    except SessionTooLargeError:
        return
    except PyMongoError as error:
        pytest.fail(f"untyped error: {error!r}")
    stored = mongo_db[MESSAGES].find_one({"message_id": 0}, {"_id": 1})
    assert stored is not None
    pytest.fail("the server stored a document past 16 MiB (test server does not enforce the limit)")


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


# -- learning one agent's generation forgets the other agents this repository knew ----------------


def test_split_appends_alternating_between_two_agents_are_one_insert_each(
    counting_client: tuple[Client, Any], database_name: str
) -> None:
    client, counter = counting_client
    creator = MongoDBSessionRepository(client=client, database_name=database_name, layout="split")
    session_with_agent(creator, "s1", "a1")
    creator.create_agent("s1", SessionAgent(agent_id="a2", state={}, conversation_manager_state={}))
    writer = MongoDBSessionRepository(client=client, database_name=database_name, layout="split")
    writer.create_message("s1", "a1", text_message(0, "a1 first"))  # learns a1 (one read, documented)
    writer.create_message("s1", "a2", text_message(0, "a2 first"))  # learns a2 (one read, documented)

    counter.reset()
    writer.create_message("s1", "a1", text_message(1, "a1 second", role="assistant"))
    writer.create_message("s1", "a2", text_message(1, "a2 second", role="assistant"))

    assert counter.names() == ["insert", "insert"]


# -- a failed redaction leaves the Agent usable while the store keeps the blocked input -----------


def test_an_agent_whose_redaction_failed_goes_stale(mongo_client: Client, mongo_db: Db, layout: str) -> None:
    from pymongo.errors import AutoReconnect

    from scripted_model import Reply

    manager = MongoDBSessionManager("s1", client=mongo_client, database_name=mongo_db.name, layout=layout)
    model = ScriptedModel.echo([Reply("I cannot help with that.", redact_user_input="[User input redacted.]")])
    agent = Agent(model=model, session_manager=manager, callback_handler=None)
    real_update = manager.repository.update_message
    calls = {"n": 0}

    def network_blip(*args: Any, **kwargs: Any) -> None:
        calls["n"] += 1
        if calls["n"] == 1:
            raise AutoReconnect("connection reset while redacting")
        real_update(*args, **kwargs)

    manager.repository.update_message = network_blip  # type: ignore[method-assign]
    with contextlib.suppress(Exception):
        agent("my card number is 4111 1111 1111 1111")
    assert calls["n"] == 1

    from mongodb_session_manager.errors import StaleAgentError

    with pytest.raises(StaleAgentError):
        agent("next question")  # carrying on would bury the unredacted input under new messages


def test_split_append_with_multibyte_ids_near_the_limit_raises_session_too_large(
    mongo_client: Client, mongo_db: Db
) -> None:
    from mongodb_session_manager._documents import encoded, message_document, now
    from mongodb_session_manager._session_documents import MAX_DOCUMENT_BYTES, WRITE_HEADROOM_BYTES
    from mongodb_session_manager.errors import SessionTooLargeError

    session_id, agent_id = "\U0001f600" * 256, "\U0001f642" * 256  # 1 KiB of UTF-8 each
    split = MongoDBSessionRepository(client=mongo_client, database_name=mongo_db.name, layout="split")
    session_with_agent(split, session_id, agent_id)
    base = len(encoded(message_document(text_message(0, ""), now(), {}), "message").raw)
    fits = text_message(0, "z" * (MAX_DOCUMENT_BYTES - WRITE_HEADROOM_BYTES - base))
    assert len(encoded(message_document(fits, now(), {}), "message").raw) + WRITE_HEADROOM_BYTES == MAX_DOCUMENT_BYTES

    try:
        split.create_message(session_id, agent_id, fits)
    except SessionTooLargeError:
        return
    stored = mongo_db[MESSAGES].count_documents({})
    pytest.fail(f"no SessionTooLargeError ({stored} message stored)")


# -- the embedded resume aggregation can produce a document past 16 MiB --------------------------


def test_embedded_resume_document_of_a_full_session_stays_under_16_mib(mongo_client: Client, mongo_db: Db) -> None:
    import bson

    from mongodb_session_manager._session_documents import MAX_DOCUMENT_BYTES

    repository = MongoDBSessionRepository(client=mongo_client, database_name=mongo_db.name)
    repository.create_session(Session("s1", SessionType.AGENT))
    for number in range(100):  # e.g. a Swarm
        repository.create_agent(
            "s1", SessionAgent(agent_id=f"agent{number:03d}", state={}, conversation_manager_state={})
        )
    size = len(bson.encode(mongo_db[SESSIONS].find_one({"_id": "s1"})))
    repository.create_message("s1", "agent000", text_message(0, "q" * (MAX_DOCUMENT_BYTES - size - 1024 - 200)))

    resumed = repository._layout.read_for_resume("s1")  # what mongod would have to send back
    assert resumed is not None
    resumed_size = len(bson.encode(resumed))
    assert resumed_size <= MAX_DOCUMENT_BYTES
