"""Export and import: everything stored for a session as JSON, and back, in either layout.

Export, delete, import and resume gives an Agent with the same messages and state; an export has
the same shape whatever the session's layout; values round-trip without ambiguity (bytes, dates,
keys starting with ``$`` or ``~``, data shaped like a type wrapper); a malformed import raises a
typed error naming the field and writes nothing; scope applies as everywhere.
"""

import base64
import io
import json
import math
import subprocess
import sys
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from bson import Decimal128, ObjectId
from pymongo import MongoClient
from pymongo.collection import Collection
from pymongo.database import Database
from strands import Agent
from strands.agent.conversation_manager import SlidingWindowConversationManager
from strands.types.session import Session, SessionAgent, SessionMessage, SessionType

from mongodb_session_manager import MongoDBSessionManager, MongoDBSessionRepository
from mongodb_session_manager.__main__ import main
from mongodb_session_manager.errors import (
    ForeignDocumentsError,
    InvalidSessionDataError,
    MongoDBSessionError,
    SessionConflictError,
    SessionExistsError,
    SessionNotFoundError,
    SessionTooLargeError,
)

from command_counter import CommandCounter
from helpers import add, echo_agent, session_with_agent, texts
from multi_agent_stand_in import FixedState
from scripted_model import Reply, ScriptedModel, ToolCall
from stored_sessions import MESSAGES, SESSIONS, StoredSessions, everything

Db = Database[dict[str, Any]]
Client = MongoClient[dict[str, Any]]
Repository = Callable[..., MongoDBSessionRepository]

ADVERSARIAL: dict[str, Any] = {
    "bytes": b"\x00\xffreal bytes",
    "strands_wrapper": {"__bytes_encoded__": True, "data": "aGVsbG8="},  # data, not bytes
    "$binary": {"base64": "aGVsbG8=", "subType": "00"},  # a data key that is also a type wrapper's name
    "~tilde": "starts with the escape character",
    "~$both": 1,
    "nested": {"$date": "2026-01-01T00:00:00Z", "$oid": "not an id"},
    "when": datetime(2026, 5, 4, 3, 2, 1, 123000, tzinfo=UTC),
    "id": ObjectId("65a1b2c3d4e5f60718293a4b"),
    "decimal": Decimal128("1.10"),
    "floats": [1.5, -0.0, math.inf, -math.inf],
    "big": 2**62,
    "text": "naïve ☃ \u2028",
    "empty": {},
    "": "an empty key",
}


@pytest.fixture
def repository_of(mongo_client: Client, database_name: str) -> Repository:
    """Repositories on this test's database: ``repository_of("split", user_id="bob")``."""

    def make(layout: str, **kwargs: Any) -> MongoDBSessionRepository:
        return MongoDBSessionRepository(client=mongo_client, database_name=database_name, layout=layout, **kwargs)

    return make


def conversation(client: Client, database_name: str, layout: str, session_id: str = "s1", **owner: Any) -> Agent:
    """A real conversation: tool calls, metrics, agent state, a sliding window that trimmed, a redaction."""
    manager = MongoDBSessionManager(session_id, client=client, database_name=database_name, layout=layout, **owner)
    model = ScriptedModel.echo(
        [
            "hello",
            ToolCall("add", {"a": 1, "b": 2}),
            "it is 3",
            Reply("blocked", redact_user_input="[redacted]"),
        ]
    )
    agent = Agent(
        model=model,
        tools=[add],
        session_manager=manager,
        conversation_manager=SlidingWindowConversationManager(window_size=6),
        callback_handler=None,
    )
    agent.state.set("preferences", {"units": "metric", "seen": [1, 2]})
    agent("hi")
    agent("add 1 and 2")
    agent("my card is 4111")
    agent("one more")
    agent("and another")
    manager.repository.update_metadata(session_id, {"topic": "maths", "tier": 2})
    manager.repository.create_multi_agent(session_id, FixedState("graph", {"status": "done", "node": "$start"}))  # type: ignore[arg-type]
    return agent


def resume(client: Client, database_name: str, layout: str, session_id: str = "s1") -> Agent:
    manager = MongoDBSessionManager(session_id, client=client, database_name=database_name, layout=layout)
    return Agent(
        model=ScriptedModel.echo(),
        tools=[add],
        session_manager=manager,
        conversation_manager=SlidingWindowConversationManager(window_size=6),
        callback_handler=None,
    )


def through_json(data: dict[str, Any]) -> dict[str, Any]:
    loaded: dict[str, Any] = json.loads(json.dumps(data, allow_nan=False))
    return loaded


def test_export_delete_import_and_resume_gives_the_same_agent(
    mongo_client: Client, database_name: str, layout: str, stored: StoredSessions, repository_of: Repository
) -> None:
    original = conversation(mongo_client, database_name, layout)
    repository = repository_of(layout)
    stored_before = stored.messages("s1", "default")
    assert any(message["redact_message"] for message in stored_before)
    assert sum("event_loop_metrics" in message for message in stored_before) == 6
    assert original.conversation_manager.removed_message_count > 0  # type: ignore[attr-defined]
    exported = through_json(repository.export_session("s1"))
    document_before = stored.document("s1")

    repository.delete_session("s1")
    assert repository.import_session(exported) == "s1"

    assert stored.messages("s1", "default") == stored_before
    document_after = stored.document("s1")
    assert document_before is not None
    assert document_after is not None
    different = {"generation", "revision", "expires_at"}
    assert {k: v for k, v in document_after.items() if k not in different} == {
        k: v for k, v in document_before.items() if k not in different
    }
    resumed = resume(mongo_client, database_name, layout)
    assert resumed.messages == original.messages
    assert resumed.state.get() == original.state.get()
    assert resumed.conversation_manager.removed_message_count == original.conversation_manager.removed_message_count  # type: ignore[attr-defined]
    assert repository.read_multi_agent("s1", "graph") == {"status": "done", "node": "$start"}
    resumed("after the import")
    assert texts(resumed.messages)[-2:] == ["after the import", "echo: after the import"]


@pytest.mark.parametrize(("source", "target"), [("embedded", "split"), ("split", "embedded"), ("split", "split")])
def test_an_export_is_layout_neutral_and_imports_into_either_layout(
    mongo_client: Client, database_name: str, repository_of: Repository, source: str, target: str
) -> None:
    original = conversation(mongo_client, database_name, source)
    exported = through_json(repository_of(source).export_session("s1"))

    repository_of(target).import_session(exported, session_id="copy")

    assert repository_of(target).export_session("copy") == {**exported, "session_id": "copy"}
    resumed = resume(mongo_client, database_name, target, "copy")
    assert resumed.messages == original.messages
    assert resumed.state.get() == original.state.get()


def test_an_embedded_and_a_split_export_have_the_same_shape(
    mongo_client: Client, database_name: str, repository_of: Repository
) -> None:
    def shape(value: Any) -> Any:
        if isinstance(value, dict):
            return {key: shape(item) for key, item in value.items() if key != "tracking_id"}
        if isinstance(value, list):
            return [shape(item) for item in value]
        return type(value).__name__

    conversation(mongo_client, database_name, "embedded", "e")
    conversation(mongo_client, database_name, "split", "s")

    assert shape(repository_of("embedded").export_session("e")) == shape(repository_of("split").export_session("s"))


def test_values_round_trip_without_ambiguity(repository: MongoDBSessionRepository, stored: StoredSessions) -> None:
    session_with_agent(repository, "s1", "a1")
    repository.update_agent(
        "s1", SessionAgent(agent_id="a1", state={"values": ADVERSARIAL}, conversation_manager_state={})
    )
    content = [{"text": "a picture"}, {"image": {"format": "png", "source": {"bytes": b"\x89PNG\r\n"}}}]
    message = SessionMessage.from_message({"role": "user", "content": content}, 0)  # type: ignore[typeddict-item]
    with repository.annotate_messages(extra=ADVERSARIAL):
        repository.create_message("s1", "a1", message)
    repository.update_metadata("s1", {"values": ADVERSARIAL})

    exported = repository.export_session("s1")
    text = json.dumps(exported, allow_nan=False)
    real_bytes = base64.b64encode(ADVERSARIAL["bytes"]).decode()
    assert f'"bytes": {{"$binary": {{"base64": "{real_bytes}", "subType": "00"}}}}' in text
    assert '"strands_wrapper": {"__bytes_encoded__": true, "data": "aGVsbG8="}' in text  # stays data
    assert '"~$binary": {"base64": "aGVsbG8=", "subType": "00"}' in text  # a data key, escaped
    assert '"~~tilde"' in text
    assert '"Infinity"' in text

    repository.delete_session("s1")
    repository.import_session(json.loads(text))

    assert repository.get_metadata("s1") == {"values": ADVERSARIAL}
    agent = repository.read_agent("s1", "a1")
    assert agent is not None
    assert agent.state == {"values": ADVERSARIAL}
    [restored] = repository.list_messages("s1", "a1")
    assert restored.message == message.message
    naive = {**ADVERSARIAL, "when": ADVERSARIAL["when"].replace(tzinfo=None)}  # the test's client is not tz-aware
    assert stored.messages("s1", "a1")[0]["extra"] == naive
    assert repository.export_session("s1") == exported


def test_json_that_only_looks_typed_is_refused_unless_escaped(repository_of: Repository, layout: str) -> None:
    repository = repository_of(layout)
    repository.create_session(Session("s1", SessionType.AGENT))
    exported = repository.export_session("s1")

    with pytest.raises(InvalidSessionDataError) as refused:
        repository.import_session({**exported, "metadata": {"query": {"$where": "sleep(1000)"}}}, session_id="x")
    assert refused.value.field == "metadata.query"
    repository.import_session({**exported, "metadata": {"query": {"~$where": "sleep(1000)"}}}, session_id="x")
    assert repository.get_metadata("x") == {"query": {"$where": "sleep(1000)"}}  # stored as data, never a query


def minimal(**changes: Any) -> dict[str, Any]:
    """A valid export of one agent with two messages, changed by ``changes`` (``None`` removes a field)."""
    at = "2026-01-01T00:00:00.000+00:00"
    data: dict[str, Any] = {
        "format": "mongodb-session-manager/session",
        "version": 1,
        "session_id": "s1",
        "created_at": at,
        "updated_at": at,
        "metadata": {},
        "agents": [
            {
                "agent_id": "default",
                "state": {},
                "created_at": at,
                "updated_at": at,
                "messages": [
                    {
                        "message_id": i,
                        "message": {"role": role, "content": [{"text": role}]},
                        "created_at": at,
                        "updated_at": at,
                    }
                    for i, role in enumerate(["user", "assistant"])
                ],
            }
        ],
        "multi_agents": [],
    }
    data.update(changes)
    return {key: value for key, value in data.items() if value is not None}


def agent_with(**changes: Any) -> dict[str, Any]:
    """``minimal()`` with its agent changed."""
    [agent] = minimal()["agents"]
    return minimal(agents=[{**agent, **changes}])


def messages_with(*changes: dict[str, Any]) -> dict[str, Any]:
    """``minimal()`` with its first messages changed, one change each."""
    [agent] = minimal()["agents"]
    messages = [{**message, **change} for message, change in zip(agent["messages"], changes, strict=False)]
    return minimal(agents=[{**agent, "messages": messages + agent["messages"][len(messages) :]}])


MALFORMED: dict[str, tuple[Any, str]] = {
    "not an object": ([minimal()], "session"),
    "another format": (minimal(format="something else"), "format"),
    "an unknown version": (minimal(version=2), "version"),
    "a version that is a string": (minimal(version="1"), "version"),
    "an unknown field": (minimal(extra=1), "extra"),
    "an operator as a field": (minimal(**{"$where": "1"}), "$where"),
    "a missing session id": (minimal(session_id=None), "session_id"),
    "an operator as session id": (minimal(session_id={"$ne": ""}), "session_id"),
    "a time that is not one": (minimal(created_at="yesterday"), "created_at"),
    "a time that is a number": (minimal(updated_at=1700000000), "updated_at"),
    "an operator as owner": (minimal(user_id={"$gt": ""}), "user_id"),
    "a blank title": (minimal(title="  "), "title"),
    "a metadata key with a dot": (minimal(metadata={"a.b": 1}), "metadata.a.b"),
    "a metadata key that is an operator": (minimal(metadata={"~$set": 1}), "metadata.$set"),
    "an unknown type wrapper": (minimal(metadata={"x": {"$where": "sleep(1)"}}), "metadata.x"),
    "a broken type wrapper": (minimal(metadata={"x": {"$binary": "nope"}}), "metadata.x"),
    "a type wrapper with extra keys": (
        minimal(metadata={"x": {"$date": "2026-01-01T00:00:00Z", "$x": 1}}),
        "metadata.x",
    ),
    "agents that are not a list": (minimal(agents={"default": {}}), "agents"),
    "an agent id with a dot": (agent_with(agent_id="a.b"), "agents[0].agent_id"),
    "an agent id that is an operator": (agent_with(agent_id="$where"), "agents[0].agent_id"),
    "state that is a list": (agent_with(state=[1]), "agents[0].state"),
    "a duplicate message id": (messages_with({}, {"message_id": 0}), "agents[0].messages[1].message_id"),
    "a gap in message ids": (messages_with({}, {"message_id": 2}), "agents[0].messages[1].message_id"),
    "a message id that is a string": (messages_with({"message_id": "0"}), "agents[0].messages[0].message_id"),
    "a negative message id": (messages_with({"message_id": -1}), "agents[0].messages[0].message_id"),
    "a role Strands does not have": (
        messages_with({"message": {"role": "system", "content": []}}),
        "agents[0].messages[0].message.role",
    ),
    "content that is not a list": (
        messages_with({"message": {"role": "user", "content": "hi"}}),
        "agents[0].messages[0].message.content",
    ),
    "an annotation the library stores itself": (messages_with({"generation": 1}), "agents[0].messages[0].generation"),
    "an annotation that is an operator": (messages_with({"$set": 1}), "agents[0].messages[0].$set"),
    "an integer BSON cannot hold": (agent_with(state={"n": 2**70}), "agents[0].state.n"),
    "text BSON cannot hold": (
        messages_with({"message": {"role": "user", "content": [{"text": "\ud800"}]}}),
        "agents[0].messages[0].message.content[0].text",
    ),
    "values nested too deep": (minimal(metadata={"deep": json.loads("[" * 150 + "]" * 150)}), "metadata.deep"),
    "duplicate multi-agents": (
        minimal(multi_agents=[{"multi_agent_id": "g", "created_at": "2026-01-01", "updated_at": "2026-01-01"}] * 2),
        "multi_agents[1].multi_agent_id",
    ),
}


@pytest.mark.parametrize("case", list(MALFORMED))
def test_a_malformed_import_names_the_field_and_writes_nothing(
    case: str, repository: MongoDBSessionRepository, mongo_db: Db
) -> None:
    data, field = MALFORMED[case]
    repository.import_session(minimal(), session_id="kept")  # the valid shape imports
    before = everything(mongo_db)

    with pytest.raises(InvalidSessionDataError) as refused:
        repository.import_session(data)

    assert refused.value.field.startswith(field), refused.value
    assert isinstance(refused.value, MongoDBSessionError)
    assert len(str(refused.value)) < 400
    assert everything(mongo_db) == before


def test_a_session_too_large_for_one_document_imports_only_into_the_split_layout(
    repository_of: Repository, mongo_db: Db
) -> None:
    big = {"role": "user", "content": [{"text": "x" * 9_000_000}]}
    data = messages_with({"message": big}, {"message": {**big, "role": "assistant"}})  # 18 MB in all

    with pytest.raises(SessionTooLargeError):
        repository_of("embedded").import_session(data)
    assert everything(mongo_db) == {SESSIONS: [], MESSAGES: []}

    repository_of("split").import_session(data)
    assert [len(m.message["content"][0]["text"]) for m in repository_of("split").list_messages("s1", "default")] == [
        9_000_000,
        9_000_000,
    ]


def test_an_existing_session_id_is_refused_and_nothing_changes(
    repository_of: Repository, layout: str, mongo_db: Db
) -> None:
    alice = repository_of(layout, user_id="alice")
    alice.import_session(minimal(), session_id="taken")
    before = everything(mongo_db)

    with pytest.raises(SessionExistsError):
        alice.import_session(minimal(title="other"), session_id="taken")
    with pytest.raises(SessionExistsError):  # the id is taken whoever holds it
        repository_of(layout, user_id="bob").import_session(minimal(), session_id="taken")

    assert everything(mongo_db) == before


def test_an_expired_session_is_not_exported_and_its_id_can_be_imported_again(
    repository_of: Repository, layout: str, mongo_db: Db
) -> None:
    repository = repository_of(layout)
    repository.import_session(minimal(expire_after_seconds=3600))
    mongo_db[SESSIONS].update_one({"_id": "s1"}, {"$set": {"expires_at": datetime.now(UTC) - timedelta(seconds=1)}})

    with pytest.raises(SessionNotFoundError):
        repository.export_session("s1")
    repository.import_session(minimal(title="restored"))
    assert repository.export_session("s1")["title"] == "restored"


def test_the_expiry_restarts_from_the_import(repository_of: Repository, layout: str, mongo_db: Db) -> None:
    repository_of(layout).import_session(minimal(expire_after_seconds=3600, expires_at="2020-01-01T00:00:00+00:00"))
    repository_of(layout, expire_after=60).import_session(minimal(expire_after_seconds=3600), session_id="s2")

    for session_id, seconds in (("s1", 3600), ("s2", 60)):
        document = mongo_db[SESSIONS].find_one({"_id": session_id})
        assert document is not None
        assert document["expire_after_seconds"] == seconds
        left = document["expires_at"].replace(tzinfo=UTC) - datetime.now(UTC)
        assert timedelta(seconds=seconds - 60) < left <= timedelta(seconds=seconds)


def test_bob_neither_exports_nor_imports_alices_sessions(
    mongo_client: Client, database_name: str, layout: str, repository_of: Repository, mongo_db: Db
) -> None:
    conversation(mongo_client, database_name, layout, "alice-chat", user_id="alice")
    bob = repository_of(layout, user_id="bob")
    with pytest.raises(SessionNotFoundError):
        bob.export_session("alice-chat")
    exported = repository_of(layout, user_id="alice").export_session("alice-chat")
    assert exported["user_id"] == "alice"
    before = everything(mongo_db)

    with pytest.raises(InvalidSessionDataError) as refused:
        bob.import_session(exported, session_id="stolen")
    assert refused.value.field == "user_id"
    with pytest.raises(InvalidSessionDataError) as refused:
        repository_of(layout, application_name="billing").import_session(
            {**exported, "application_name": "chat"}, session_id="moved"
        )
    assert refused.value.field == "application_name"
    assert everything(mongo_db) == before

    # a session without an owner is taken into the scope; the unscoped repository keeps owners as they are
    bob.import_session({**exported, "user_id": None}, session_id="given-to-bob")
    assert bob.export_session("given-to-bob")["user_id"] == "bob"
    repository_of(layout).import_session(exported, session_id="copy")
    assert repository_of(layout).export_session("copy")["user_id"] == "alice"
    if layout == "split":
        owners = {message.get("user_id") for message in mongo_db[MESSAGES].find({"session_id": "given-to-bob"})}
        assert owners == {"bob"}


EXPECTED_COMMANDS = {
    "embedded": {"export": ["find"], "import": ["insert"]},
    # the document, then its messages; the document (pending), left-behind messages removed, the messages,
    # the document shown
    "split": {"export": ["find", "find"], "import": ["insert", "delete", "insert", "update"]},
}


def test_export_and_import_cost(
    counting_client: tuple[Client, CommandCounter], database_name: str, layout: str
) -> None:
    client, counter = counting_client
    conversation(client, database_name, layout)
    repository = MongoDBSessionRepository(client=client, database_name=database_name, layout=layout)
    counter.reset()
    exported = repository.export_session("s1")
    assert counter.names() == EXPECTED_COMMANDS[layout]["export"]
    counter.reset()
    repository.import_session(exported, session_id="s2")
    assert counter.names() == EXPECTED_COMMANDS[layout]["import"]


# -- a split import is never seen half-written ------------------------------------------------------------


def test_a_split_import_is_absent_until_its_messages_are_all_written(
    repository_of: Repository, monkeypatch: pytest.MonkeyPatch
) -> None:
    repository = repository_of("split")
    seen_while_writing: list[Any] = []
    insert_many = Collection.insert_many

    def look_while_writing(collection: Collection[Any], *args: Any, **kwargs: Any) -> Any:
        result = insert_many(collection, *args, **kwargs)
        seen_while_writing.extend(
            [
                repository.read_session("s1"),
                repository.list_sessions().sessions,
                repository.count_sessions(),
                repository_of("split").read_agent("s1", "default"),
            ]
        )
        return result

    monkeypatch.setattr(Collection, "insert_many", look_while_writing)
    repository.import_session(minimal())

    assert seen_while_writing == [None, [], 0, None]
    assert [message.message_id for message in repository.list_messages("s1", "default")] == [0, 1]


@pytest.mark.parametrize("failure", ["the messages cannot be written", "the session is erased meanwhile"])
def test_a_split_import_that_fails_half_way_leaves_nothing(
    failure: str, repository_of: Repository, mongo_db: Db, monkeypatch: pytest.MonkeyPatch
) -> None:
    repository = repository_of("split")
    insert_many = Collection.insert_many

    def fail(collection: Collection[Any], *args: Any, **kwargs: Any) -> Any:
        if failure == "the messages cannot be written":
            raise ConnectionError("the network went away")
        result = insert_many(collection, *args, **kwargs)
        repository_of("split").delete_sessions(user_id="alice")
        return result

    monkeypatch.setattr(Collection, "insert_many", fail)
    expected = ConnectionError if failure == "the messages cannot be written" else SessionConflictError

    with pytest.raises(expected):
        repository.import_session(minimal(user_id="alice"))

    assert everything(mongo_db) == {SESSIONS: [], MESSAGES: []}


# -- the command line ------------------------------------------------------------------------------------


def test_export_and_import_through_json_lines(
    mongo_client: Client,
    mongodb_uri: str,
    database_name: str,
    layout: str,
    repository_of: Repository,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    conversation(mongo_client, database_name, layout, "a1", user_id="alice")
    conversation(mongo_client, database_name, layout, "a2", user_id="alice")
    conversation(mongo_client, database_name, layout, "b1", user_id="bob")
    where = ["--uri", mongodb_uri, "--database", database_name]

    assert main(["export", *where, "--user-id", "alice"]) == 0
    captured = capsys.readouterr()
    lines = captured.out.splitlines()
    assert sorted(json.loads(line)["session_id"] for line in lines) == ["a1", "a2"]
    assert captured.err.strip() == "exported 2 session(s)"

    assert main(["export", *where, "--session-id", "b1"]) == 0
    lines.append(capsys.readouterr().out.strip())

    elsewhere = ["--uri", mongodb_uri, "--database", f"{database_name}_restored"]
    try:
        monkeypatch.setattr("sys.stdin", io.StringIO("\n".join(lines) + "\n\n"))
        assert main(["import", *elsewhere, "--layout", "split"]) == 0
        assert capsys.readouterr().out.strip() == "imported 3 session(s)"
        restored = MongoDBSessionRepository(
            client=mongo_client, database_name=f"{database_name}_restored", layout="split"
        )
        for line in lines:
            exported = json.loads(line)
            assert restored.export_session(exported["session_id"]) == exported

        monkeypatch.setattr("sys.stdin", io.StringIO(lines[0] + "\n"))
        assert main(["import", *elsewhere]) == 1
        error = capsys.readouterr().err
        assert error.startswith("error: line 1: session 'a")
        assert "--skip-existing" in error
        assert len(error.splitlines()) == 1

        monkeypatch.setattr("sys.stdin", io.StringIO("\n".join(lines) + "\n"))
        assert main(["import", *elsewhere, "--layout", "split", "--skip-existing"]) == 0
        assert capsys.readouterr().out.strip() == "imported 0 session(s), skipped 3 that existed already"
    finally:
        mongo_client.drop_database(f"{database_name}_restored")


@pytest.mark.parametrize(
    ("line", "expected"),
    [
        ("{not json", "error: line 2 is not JSON"),
        (json.dumps(minimal(version=9)), "error: line 2: invalid version 9"),
    ],
)
def test_a_bad_line_stops_the_import_in_one_line(
    line: str,
    expected: str,
    mongodb_uri: str,
    database_name: str,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
    mongo_db: Db,
) -> None:
    monkeypatch.setattr("sys.stdin", io.StringIO(json.dumps(minimal(session_id="first")) + "\n" + line + "\n"))

    assert main(["import", "--uri", mongodb_uri, "--database", database_name]) == 2

    error = capsys.readouterr().err
    assert error.startswith(expected)
    assert "1 session(s) imported before it" in error
    assert len(error.splitlines()) == 1
    assert [document["_id"] for document in mongo_db[SESSIONS].find()] == ["first"]


def test_exporting_a_missing_session_fails_in_one_line(
    mongodb_uri: str, database_name: str, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["export", "--uri", mongodb_uri, "--database", database_name, "--session-id", "nope"]) == 1
    error = capsys.readouterr().err
    assert error.startswith("error: session 'nope' not found")
    assert len(error.splitlines()) == 1


def test_a_document_that_is_not_a_session_is_a_typed_error_to_read_list_export_fork_and_one_line_to_the_cli(
    mongodb_uri: str,
    mongo_db: Database[dict[str, Any]],
    database_name: str,
    capsys: pytest.CaptureFixture[str],
) -> None:
    mongo_db[SESSIONS].insert_one({"_id": "stray", "user_id": "alice", "note": "not written by this library"})
    repository = MongoDBSessionRepository(client=mongo_db.client, database_name=database_name)
    attempts: list[Callable[[], object]] = [
        lambda: repository.export_session("stray"),
        lambda: repository.fork_session("stray", "copy"),
        lambda: repository.read_session("stray"),
        lambda: repository.list_sessions(user_id="alice"),
    ]
    for attempt in attempts:
        with pytest.raises(ForeignDocumentsError, match="_id 'stray'"):
            attempt()

    assert main(["export", "--uri", mongodb_uri, "--database", database_name, "--user-id", "alice"]) == 2
    error = capsys.readouterr().err
    assert error.startswith(f"error: {database_name}.{SESSIONS} holds documents that are not session documents")
    assert len(error.splitlines()) == 1
    assert [document["_id"] for document in mongo_db[SESSIONS].find()] == ["stray"]


def test_an_export_piped_into_a_reader_that_stops_early_ends_quietly(
    mongodb_uri: str, repository_of: Repository, database_name: str
) -> None:
    repository = repository_of("embedded", user_id="alice")
    big = minimal(user_id="alice", metadata={"padding": "x" * 200_000})  # more than a pipe holds
    for number in range(3):
        repository.import_session(big, session_id=f"s{number}")
    command = [sys.executable, "-m", "mongodb_session_manager", "export", "--uri", mongodb_uri]
    reader = subprocess.Popen(
        [*command, "--database", database_name, "--user-id", "alice"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    assert reader.stdout is not None
    assert reader.stdout.read(10) == b'{"format":'
    reader.stdout.close()  # like `| head -c 10`
    _, errors = reader.communicate(timeout=60)
    assert b"Traceback" not in errors
    assert reader.returncode == 1


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
