"""What only the split layout promises: one document per message, beside the session document.

The behaviour both layouts share is covered by the parametrised suite (the ``layout`` fixture);
these tests check the split layout's own mechanics against what it leaves in MongoDB, and that
it answers exactly as the embedded layout does.
"""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from typing import Any

import bson
import pytest
from pymongo import MongoClient, monitoring
from pymongo.database import Database
from pymongo.errors import PyMongoError
from strands import Agent
from strands.agent.conversation_manager import SlidingWindowConversationManager
from strands.types.session import SessionAgent, SessionMessage

import mongodb_session_manager.migration as migration
from mongodb_session_manager import MongoDBSessionManager, MongoDBSessionRepository
from mongodb_session_manager._documents import encoded, message_document, now
from mongodb_session_manager._session_documents import MAX_DOCUMENT_BYTES, WRITE_HEADROOM_BYTES
from mongodb_session_manager.errors import (
    LayoutMismatchError,
    SessionConflictError,
    SessionNotFoundError,
    SessionTooLargeError,
)

from command_counter import HANDSHAKE_COMMANDS, CommandCounter
from helpers import add, converse, session_with_agent, text_message, texts
from scripted_model import ScriptedModel, ToolCall
from stored_sessions import MESSAGES, SESSIONS, StoredSessions, everything

Db = Database[dict[str, Any]]
Client = MongoClient[dict[str, Any]]
Counting = tuple[Client, CommandCounter]


class CommandBodies(monitoring.CommandListener):
    """Keeps a copy of every command a client sends (the ``CommandCounter`` keeps only names)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.sent: list[dict[str, Any]] = []

    def started(self, event: monitoring.CommandStartedEvent) -> None:
        with self._lock:
            self.sent.append(bson.decode(bson.encode(event.command)))

    def succeeded(self, event: monitoring.CommandSucceededEvent) -> None:
        pass

    def failed(self, event: monitoring.CommandFailedEvent) -> None:
        pass

    def clear(self) -> None:
        with self._lock:
            self.sent.clear()

    def commands(self) -> list[dict[str, Any]]:
        """Everything sent but the driver's housekeeping."""
        with self._lock:
            return [command for command in self.sent if next(iter(command)) not in HANDSHAKE_COMMANDS]

    def named(self, name: str) -> list[dict[str, Any]]:
        return [command for command in self.commands() if next(iter(command)) == name]


@pytest.fixture
def recording_client(mongodb_uri: str) -> Iterator[tuple[Client, CommandBodies]]:
    bodies = CommandBodies()
    client: Client = MongoClient(mongodb_uri, serverSelectionTimeoutMS=5000, event_listeners=[bodies])
    try:
        yield client, bodies
    finally:
        client.close()


@pytest.fixture
def split(mongo_client: Client, database_name: str) -> MongoDBSessionRepository:
    return MongoDBSessionRepository(client=mongo_client, database_name=database_name, layout="split")


@pytest.fixture
def split_stored(mongo_db: Db) -> StoredSessions:
    return StoredSessions(mongo_db, "split")


# -- storage shape ------------------------------------------------------------------------------


def test_messages_have_a_unique_session_agent_message_index(split: MongoDBSessionRepository, mongo_db: Db) -> None:
    indexes = list(mongo_db[MESSAGES].list_indexes())
    unique = [index for index in indexes if index.get("unique")]
    assert [list(index["key"].items()) for index in unique] == [[("session_id", 1), ("agent_id", 1), ("message_id", 1)]]


def test_session_document_says_split_and_messages_are_documents(
    split: MongoDBSessionRepository, mongo_db: Db, split_stored: StoredSessions
) -> None:
    session_with_agent(split)
    for message_id in range(3):
        split.create_message("s1", "a1", text_message(message_id, f"m{message_id}"))
    document = split_stored.document("s1")
    assert document is not None
    assert document["message_layout"] == "split"
    assert "messages" not in document["agents"]["a1"]
    assert mongo_db[MESSAGES].count_documents({"session_id": "s1", "agent_id": "a1"}) == 3
    assert split_stored.message_ids("s1", "a1") == [0, 1, 2]
    assert texts([m["message"] for m in split_stored.messages("s1", "a1")]) == ["m0", "m1", "m2"]


# -- appends --------------------------------------------------------------------------------------


def test_an_append_is_exactly_one_insert(
    recording_client: tuple[Client, CommandBodies], database_name: str, split_stored: StoredSessions
) -> None:
    client, bodies = recording_client
    repository = MongoDBSessionRepository(client=client, database_name=database_name, layout="split")
    session_with_agent(repository)
    repository.create_message("s1", "a1", text_message(0, "first"))
    bodies.clear()

    repository.create_message("s1", "a1", text_message(1, "second", role="assistant"))

    [insert] = bodies.commands()
    assert insert["insert"] == MESSAGES
    [document] = insert["documents"]
    assert (document["session_id"], document["agent_id"], document["message_id"]) == ("s1", "a1", 1)
    assert split_stored.message_ids("s1", "a1") == [0, 1]


def test_the_message_opening_a_turn_also_moves_the_sessions_updated_at(
    recording_client: tuple[Client, CommandBodies], database_name: str, mongo_db: Db
) -> None:
    client, bodies = recording_client
    repository = MongoDBSessionRepository(client=client, database_name=database_name, layout="split")
    session_with_agent(repository)
    long_ago = datetime(2020, 1, 1, tzinfo=UTC)
    mongo_db[SESSIONS].update_one({"_id": "s1"}, {"$set": {"updated_at": long_ago}})
    before = mongo_db[SESSIONS].find_one({"_id": "s1"})
    assert before is not None
    bodies.clear()

    repository.create_message("s1", "a1", text_message(0, "a question"))

    insert, touch = bodies.commands()
    assert insert["insert"] == MESSAGES
    assert touch["findAndModify"] == SESSIONS
    assert touch["query"]["generation"] == before["generation"]
    after = mongo_db[SESSIONS].find_one({"_id": "s1"})
    assert after is not None
    assert after["updated_at"].replace(tzinfo=UTC) > long_ago
    assert after["revision"] == before["revision"] + 1
    # a tool result is a user message too, but it continues a turn: one insert
    bodies.clear()
    tool_result = {"role": "user", "content": [{"toolResult": {"toolUseId": "t", "status": "success", "content": []}}]}
    repository.create_message("s1", "a1", SessionMessage.from_message(tool_result, 1))  # type: ignore[arg-type]
    assert [command.get("insert") for command in bodies.commands()] == [MESSAGES]


def test_through_the_manager_an_answer_is_one_insert_and_a_question_two_commands(
    counting_client: Counting, database_name: str
) -> None:
    client, counter = counting_client
    manager = MongoDBSessionManager("s1", client=client, layout="split", database_name=database_name)
    agent = Agent(model=ScriptedModel([]), session_manager=manager, callback_handler=None)
    counter.reset()
    manager.append_message({"role": "user", "content": [{"text": "one"}]}, agent)
    assert counter.names() == ["insert", "findAndModify"]
    counter.reset()
    manager.append_message({"role": "assistant", "content": [{"text": "two"}]}, agent)
    assert counter.names() == ["insert"]


def test_split_appends_alternating_between_two_agents_are_one_insert_each(
    counting_client: Counting, database_name: str
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


def test_duplicate_message_id_is_a_conflict_and_changes_nothing(
    split: MongoDBSessionRepository, mongo_db: Db, split_stored: StoredSessions
) -> None:
    session_with_agent(split)
    split.create_message("s1", "a1", text_message(0, "first writer"))
    before = everything(mongo_db)
    other = MongoDBSessionRepository(client=split.client, database_name=mongo_db.name, layout="split")
    for writer in (split, other):
        with pytest.raises(SessionConflictError, match="message 0"):
            writer.create_message("s1", "a1", text_message(0, "second writer"))
    assert everything(mongo_db) == before
    [kept] = split_stored.messages("s1", "a1")
    assert kept["message"]["content"] == [{"text": "first writer"}]


def test_append_to_a_missing_session_or_agent_raises_and_inserts_nothing(
    split: MongoDBSessionRepository, mongo_db: Db
) -> None:
    with pytest.raises(SessionNotFoundError, match="session 'nope'"):
        split.create_message("nope", "a1", text_message(0, "x"))
    session_with_agent(split)
    with pytest.raises(SessionNotFoundError, match="agent 'ghost'"):
        split.create_message("s1", "ghost", text_message(0, "x"))
    # a repository that never saw the session checks it too
    fresh = MongoDBSessionRepository(client=split.client, database_name=mongo_db.name, layout="split")
    with pytest.raises(SessionNotFoundError, match="agent 'ghost'"):
        fresh.create_message("s1", "ghost", text_message(0, "x"))
    with pytest.raises(SessionNotFoundError, match="session 'nope'"):
        fresh.create_message("nope", "a1", text_message(0, "x"))
    assert mongo_db[MESSAGES].count_documents({}) == 0
    fresh.create_message("s1", "a1", text_message(0, "x"))  # the check above could have passed
    assert mongo_db[MESSAGES].count_documents({}) == 1


def test_a_single_message_over_16_mib_is_refused_and_nothing_is_stored(
    split: MongoDBSessionRepository, mongo_db: Db
) -> None:
    session_with_agent(split)
    before = everything(mongo_db)
    with pytest.raises(SessionTooLargeError, match="'s1'") as raised:
        split.create_message("s1", "a1", text_message(0, "y" * (MAX_DOCUMENT_BYTES + 1024)))
    assert raised.value.added_bytes > MAX_DOCUMENT_BYTES
    assert everything(mongo_db) == before
    assert mongo_db[MESSAGES].count_documents({}) == 0
    split.create_message("s1", "a1", text_message(0, "fits"))  # message 0 is still free
    assert mongo_db[MESSAGES].count_documents({"message_id": 0}) == 1


def test_split_redaction_that_makes_the_message_document_too_large_raises_session_too_large(
    split: MongoDBSessionRepository, mongo_db: Db
) -> None:
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


def test_split_append_with_multibyte_ids_near_the_limit_raises_session_too_large(
    split: MongoDBSessionRepository, mongo_db: Db
) -> None:
    session_id, agent_id = "\U0001f600" * 256, "\U0001f642" * 256  # 1 KiB of UTF-8 each
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


# -- reads ----------------------------------------------------------------------------------------


def test_a_page_is_a_message_id_range_without_skip(
    recording_client: tuple[Client, CommandBodies], database_name: str
) -> None:
    client, bodies = recording_client
    repository = MongoDBSessionRepository(client=client, database_name=database_name, layout="split")
    session_with_agent(repository)
    for message_id in range(10):
        repository.create_message("s1", "a1", text_message(message_id, f"m{message_id}"))

    for offset, limit in [(0, 3), (4, 4), (7, 10), (9, 1)]:
        bodies.clear()
        page = repository.list_messages("s1", "a1", offset=offset, limit=limit)
        assert [m.message_id for m in page] == list(range(offset, min(offset + limit, 10)))
        assert texts([m.message for m in page]) == [f"m{i}" for i in range(offset, min(offset + limit, 10))]
        [find] = bodies.commands()
        assert find["find"] == MESSAGES
        query = find["filter"]
        assert query["message_id"] == {"$gte": offset}
        assert (query["session_id"], query["agent_id"]) == ("s1", "a1")
        assert set(query) <= {"session_id", "agent_id", "message_id", "generation"}
        assert "skip" not in find
        assert find["limit"] == limit
        assert find["sort"] == {"message_id": 1}


def test_delete_session_removes_the_document_and_all_its_messages(
    split: MongoDBSessionRepository, mongo_db: Db, split_stored: StoredSessions
) -> None:
    session_with_agent(split, "s1", "a1")
    split.create_agent("s1", SessionAgent(agent_id="a2", state={}, conversation_manager_state={}))
    session_with_agent(split, "other", "a1")
    for message_id in range(3):
        split.create_message("s1", "a1", text_message(message_id, "x"))
        split.create_message("s1", "a2", text_message(message_id, "y"))
    split.create_message("other", "a1", text_message(0, "stays"))
    assert mongo_db[MESSAGES].count_documents({"session_id": "s1"}) == 6

    split.delete_session("s1")

    assert mongo_db[SESSIONS].find_one({"_id": "s1"}) is None
    assert mongo_db[MESSAGES].count_documents({"session_id": "s1"}) == 0
    assert split_stored.message_ids("other", "a1") == [0]
    with pytest.raises(SessionNotFoundError):
        split.delete_session("s1")


def test_messages_left_behind_never_reappear_in_a_new_session_with_that_id(
    new_split_manager: Callable[..., MongoDBSessionManager], mongo_db: Db, split: MongoDBSessionRepository
) -> None:
    # an earlier session "s1" whose writer kept appending, from a repository that already knew the
    # agent, while another repository deleted the session ...
    session_with_agent(split, "s1", "default")
    for message_id in range(3):
        split.create_message("s1", "default", text_message(message_id, f"old {message_id}"))
    MongoDBSessionRepository(client=split.client, database_name=mongo_db.name, layout="split").delete_session("s1")
    with contextlib.suppress(SessionNotFoundError):
        split.create_message("s1", "default", text_message(3, "old 3"))
    # ... and messages stored without any generation (as an interrupted delete of an older version left them)
    mongo_db[MESSAGES].insert_many(
        [
            {"session_id": "s1", "agent_id": "default", "message_id": i, "message": {"role": "user", "content": []}}
            for i in (1, 4)
        ]
    )
    mongo_db[MESSAGES].insert_one({"session_id": "s2", "agent_id": "default", "message_id": 0, "message": {}})
    assert mongo_db[SESSIONS].count_documents({}) == 0
    assert mongo_db[MESSAGES].count_documents({"session_id": "s1"}) >= 2  # left behind

    manager = new_split_manager("s1")
    agent = Agent(model=ScriptedModel(["fresh answer"]), session_manager=manager, callback_handler=None)
    assert agent.messages == []
    agent("fresh start")  # messages 0 and 1 are the new session's, whatever was left under those ids

    resumed = Agent(model=ScriptedModel([]), session_manager=new_split_manager("s1"), callback_handler=None)
    assert texts(resumed.messages) == ["fresh start", "fresh answer"]
    repository = MongoDBSessionRepository(client=split.client, database_name=mongo_db.name, layout="split")
    assert [m.message_id for m in repository.list_messages("s1", "default")] == [0, 1]
    assert [m.message_id for m in repository.list_messages("s1", "default", offset=0, limit=10)] == [0, 1]
    assert repository.read_message("s1", "default", 3) is None
    assert repository.read_message("s1", "default", 4) is None
    assert manager.get_metrics_summary()["agents"]["default"]["messages"] == 2
    assert mongo_db[MESSAGES].count_documents({"session_id": "s2"}) == 1  # other sessions' messages are not touched
    live = mongo_db[SESSIONS].find_one({"_id": "s1"})
    assert live is not None
    repository.delete_session("s1")
    # deleting removes the session's own messages; what earlier sessions left behind stays invisible
    assert mongo_db[MESSAGES].count_documents({"session_id": "s1", "generation": live["generation"]}) == 0
    assert mongo_db[MESSAGES].count_documents({"session_id": "s2"}) == 1


@pytest.fixture
def new_split_manager(mongo_client: Client, database_name: str) -> Callable[..., MongoDBSessionManager]:
    def make(session_id: str, **kwargs: Any) -> MongoDBSessionManager:
        kwargs.setdefault("client", mongo_client)
        return MongoDBSessionManager(session_id, database_name=database_name, layout="split", **kwargs)

    return make


# -- layouts do not mix ---------------------------------------------------------------------------


@pytest.mark.parametrize(("stored_as", "opened_as"), [("embedded", "split"), ("split", "embedded")])
def test_a_session_opened_in_the_other_layout_raises_and_changes_nothing(
    stored_as: str, opened_as: str, mongo_client: Client, database_name: str, mongo_db: Db
) -> None:
    def manager(layout: str) -> MongoDBSessionManager:
        return MongoDBSessionManager("s1", client=mongo_client, database_name=database_name, layout=layout)

    Agent(model=ScriptedModel(["stored"]), session_manager=manager(stored_as), callback_handler=None)("hello")
    before = everything(mongo_db)
    assert len(before[MESSAGES]) == (2 if stored_as == "split" else 0)

    with pytest.raises(LayoutMismatchError) as raised:
        manager(opened_as)
    assert (raised.value.stored_layout, raised.value.configured_layout) == (stored_as, opened_as)
    assert raised.value.session_id == "s1"

    other = MongoDBSessionRepository(client=mongo_client, database_name=database_name, layout=opened_as)
    attempts: list[Callable[[], object]] = [
        lambda: other.read_session("s1"),
        lambda: other.create_message("s1", "default", text_message(2, "from the wrong layout")),
        lambda: other.update_metadata("s1", {"k": "v"}),
        lambda: other.update_agent(
            "s1", SessionAgent(agent_id="default", state={"x": 1}, conversation_manager_state={})
        ),
        lambda: other.create_agent("s1", SessionAgent(agent_id="new", state={}, conversation_manager_state={})),
    ]
    for attempt in attempts:
        with pytest.raises(LayoutMismatchError):
            attempt()
    assert everything(mongo_db) == before
    # the configured layout still reads it
    resumed = Agent(model=ScriptedModel([]), session_manager=manager(stored_as), callback_handler=None)
    assert texts(resumed.messages) == ["hello", "stored"]


@pytest.mark.parametrize(("stored_as", "opened_as"), [("embedded", "split"), ("split", "embedded")])
def test_reads_and_deletes_of_a_session_in_the_other_layout_raise_and_change_nothing(
    stored_as: str, opened_as: str, mongo_client: Client, database_name: str, mongo_db: Db
) -> None:
    owner = MongoDBSessionRepository(client=mongo_client, database_name=database_name, layout=stored_as)
    session_with_agent(owner)
    owner.create_message("s1", "a1", text_message(0, "stored"))
    before = everything(mongo_db)
    other = MongoDBSessionRepository(client=mongo_client, database_name=database_name, layout=opened_as)
    attempts: list[Callable[[], object]] = [
        lambda: other.list_messages("s1", "a1"),
        lambda: other.read_message("s1", "a1", 0),
        lambda: other.get_metrics_summary("s1"),
        lambda: other.update_message("s1", "a1", text_message(0, "rewritten")),
        lambda: other.delete_session("s1"),
    ]
    for attempt in attempts:
        with pytest.raises(LayoutMismatchError):
            attempt()
    assert everything(mongo_db) == before


def test_split_delete_of_an_embedded_session_changes_nothing(
    split: MongoDBSessionRepository, mongo_client: Client, mongo_db: Db
) -> None:
    converse(mongo_client, mongo_db.name, "s1", 2)
    # an interrupted migration copied the messages but has not switched the session yet
    document = mongo_db[SESSIONS].find_one({"_id": "s1"})
    assert document is not None
    migration._copy_agent(
        mongo_db[MESSAGES], "s1", "default", document["generation"], document["agents"]["default"], {}
    )
    before = everything(mongo_db)
    assert len(before[MESSAGES]) == 4

    with pytest.raises(LayoutMismatchError):
        split.delete_session("s1")  # README: "nothing was read or written"

    assert everything(mongo_db) == before


# -- the same answers as the embedded layout ------------------------------------------------------


def scripted_conversation(session_manager: MongoDBSessionManager) -> None:
    """The same conversation, whatever the layout: two agents that talk, one that never does."""
    main = Agent(
        model=ScriptedModel(["hi there", ToolCall("add", {"a": 1, "b": 2}), "3"], latency_ms=120),
        tools=[add],
        session_manager=session_manager,
        callback_handler=None,
    )
    helper = Agent(
        model=ScriptedModel(["one two three"], latency_ms=40),
        agent_id="helper",
        session_manager=session_manager,
        callback_handler=None,
    )
    Agent(model=ScriptedModel([]), agent_id="idle", session_manager=session_manager, callback_handler=None)
    main("hello")
    helper("help")
    main("add 1 and 2")


def test_metrics_summary_is_the_same_in_both_layouts(mongo_client: Client, database_name: str) -> None:
    summaries = {}
    for layout in ("embedded", "split"):
        manager = MongoDBSessionManager(
            "s1", client=mongo_client, database_name=database_name, collection_name=f"{layout}_sessions", layout=layout
        )
        scripted_conversation(manager)
        summaries[layout] = MongoDBSessionManager(
            "s1", client=mongo_client, database_name=database_name, collection_name=f"{layout}_sessions", layout=layout
        ).get_metrics_summary()
    assert mongo_client[database_name]["split_sessions_messages"].count_documents({}) == 8
    assert summaries["split"] == summaries["embedded"]
    summary = summaries["split"]
    assert sorted(summary["agents"]) == ["default", "helper", "idle"]
    assert summary["agents"]["idle"]["messages"] == 0
    assert summary["agents"]["idle"]["model_calls"] == 0
    assert summary["agents"]["default"]["messages"] == 6
    assert summary["agents"]["default"]["model_calls"] == 3
    assert summary["agents"]["helper"]["tokens"]["outputTokens"] == 3
    assert summary["totals"]["model_calls"] == 4
    assert summary["totals"]["latency_ms"]["total"] == 3 * 120 + 40


def test_resume_with_a_sliding_window_restores_the_same_messages_in_both_layouts(
    mongo_client: Client, database_name: str
) -> None:
    def window() -> SlidingWindowConversationManager:
        return SlidingWindowConversationManager(window_size=4)

    restored = {}
    for layout in ("embedded", "split"):

        def manager(layout: str = layout) -> MongoDBSessionManager:
            return MongoDBSessionManager(
                "s1",
                client=mongo_client,
                database_name=database_name,
                collection_name=f"{layout}_sessions",
                layout=layout,
            )

        agent = Agent(
            model=ScriptedModel.echo(), session_manager=manager(), conversation_manager=window(), callback_handler=None
        )
        for turn in range(5):
            agent(f"turn {turn}")
        resumed = Agent(
            model=ScriptedModel.echo(), session_manager=manager(), conversation_manager=window(), callback_handler=None
        )
        assert resumed.messages == agent.messages
        untracked = [{k: v for k, v in message.items() if k != "tracking_id"} for message in resumed.messages]
        restored[layout] = (resumed.conversation_manager.removed_message_count, untracked)
    assert restored["split"] == restored["embedded"]
    removed, messages = restored["split"]
    assert removed == 6
    assert texts(messages) == ["turn 3", "echo: turn 3", "turn 4", "echo: turn 4"]
    assert mongo_client[database_name]["split_sessions_messages"].count_documents({}) == 10


def test_a_writer_of_a_deleted_session_cannot_touch_the_session_that_replaced_it(
    split: MongoDBSessionRepository, mongo_db: Db
) -> None:
    """A long-lived repository still appending to a session that another one deleted and created anew."""
    session_with_agent(split, "s1", "default")
    split.create_message("s1", "default", text_message(0, "old 0"))
    split.create_message("s1", "default", text_message(1, "old 1"))
    other = MongoDBSessionRepository(client=split.client, database_name=mongo_db.name, layout="split")
    other.delete_session("s1")
    session_with_agent(other, "s1", "default")
    for message_id in range(3):
        other.create_message("s1", "default", text_message(message_id, f"new {message_id}"))
    before = everything(mongo_db)

    with pytest.raises((SessionNotFoundError, SessionConflictError)):
        split.create_message("s1", "default", text_message(2, "old 2"))

    assert everything(mongo_db) == before
    assert texts([m.message for m in other.list_messages("s1", "default")]) == ["new 0", "new 1", "new 2"]
