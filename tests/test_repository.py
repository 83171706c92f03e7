"""The repository contract, checked against the documents it leaves in MongoDB."""

import contextlib
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from pymongo import MongoClient
from pymongo.database import Database
from strands.types.session import Session, SessionAgent, SessionMessage, SessionType

from mongodb_session_manager import MongoDBSessionRepository
from mongodb_session_manager.errors import LayoutMismatchError, MongoDBSessionError, SessionNotFoundError

from helpers import session_with_agent, text_message
from stored_sessions import MESSAGES, StoredSessions, everything

Db = Database[dict[str, Any]]
Client = MongoClient[dict[str, Any]]


def new_session(repository: MongoDBSessionRepository, session_id: str = "s1") -> Session:
    return repository.create_session(Session(session_id=session_id, session_type=SessionType.AGENT))


def new_agent(
    repository: MongoDBSessionRepository, agent_id: str = "a1", session_id: str = "s1", **state: Any
) -> SessionAgent:
    agent = SessionAgent(agent_id=agent_id, state=dict(state), conversation_manager_state={"removed_message_count": 0})
    repository.create_agent(session_id, agent)
    return agent


def session_document(mongo_db: Db, session_id: str = "s1") -> dict[str, Any]:
    document = mongo_db["sessions"].find_one({"_id": session_id})
    assert document is not None
    return document


def test_session_document_schema(repository: MongoDBSessionRepository, mongo_db: Db, layout: str) -> None:
    before = datetime.now(UTC) - timedelta(seconds=1)
    new_session(repository)
    new_agent(repository, color="blue")
    repository.create_message("s1", "a1", text_message(0, "hello"))

    document = session_document(mongo_db)
    assert document["_id"] == document["session_id"] == "s1"
    assert document["message_layout"] == layout
    assert document["session_type"] == "AGENT"
    assert isinstance(document["created_at"], datetime)
    assert isinstance(document["updated_at"], datetime)
    assert document["created_at"].replace(tzinfo=UTC) >= before
    assert document["metadata"] == {}
    assert document["multi_agents"] == {}
    agent = document["agents"]["a1"]
    assert agent["agent_id"] == "a1"
    assert agent["state"] == {"color": "blue"}
    assert agent["conversation_manager_state"] == {"removed_message_count": 0}
    if layout == "embedded":
        [message] = agent["messages"]
        assert mongo_db.list_collection_names() == ["sessions"]
    else:
        # one document per message, beside the session document, keyed by session, agent and message id
        assert "messages" not in agent
        [message] = mongo_db[MESSAGES].find()
        assert set(message) == {
            "_id",
            "session_id",
            "agent_id",
            "generation",
            "message_id",
            "message",
            "redact_message",
            "created_at",
            "updated_at",
        }
        assert (message["session_id"], message["agent_id"]) == ("s1", "a1")
        # written in this session's generation (an earlier session with the same id had another one)
        assert message["generation"] == document["generation"]
    assert message["message_id"] == 0
    assert message["message"] == {"role": "user", "content": [{"text": "hello"}]}
    assert message["redact_message"] is None
    assert isinstance(message["created_at"], datetime)
    assert isinstance(message["updated_at"], datetime)


def test_read_back_what_was_written(repository: MongoDBSessionRepository) -> None:
    created = new_session(repository)
    new_agent(repository, color="blue")
    repository.create_message("s1", "a1", text_message(0, "hello"))
    repository.create_message("s1", "a1", text_message(1, "hi there", role="assistant"))

    session = repository.read_session("s1")
    assert session is not None
    assert session.session_id == "s1"
    assert session.session_type == SessionType.AGENT
    assert datetime.fromisoformat(session.created_at) == datetime.fromisoformat(created.created_at).replace(
        microsecond=datetime.fromisoformat(created.created_at).microsecond // 1000 * 1000
    )
    agent = repository.read_agent("s1", "a1")
    assert agent is not None
    assert agent.state == {"color": "blue"}
    messages = repository.list_messages("s1", "a1")
    assert [m.message_id for m in messages] == [0, 1]
    assert messages[1].message["content"] == [{"text": "hi there"}]
    single = repository.read_message("s1", "a1", 1)
    assert single is not None
    assert single.message["role"] == "assistant"


def test_missing_things_read_as_none(repository: MongoDBSessionRepository) -> None:
    assert repository.read_session("nope") is None
    assert repository.read_agent("nope", "a1") is None
    new_session(repository)
    assert repository.read_agent("s1", "a1") is None
    new_agent(repository)
    assert repository.read_message("s1", "a1", 0) is None
    assert repository.read_message("s1", "other", 0) is None
    assert repository.read_multi_agent("s1", "graph") is None


def test_create_session_is_idempotent_and_keeps_created_at(
    repository: MongoDBSessionRepository, stored: StoredSessions
) -> None:
    new_session(repository)
    new_agent(repository)
    repository.create_message("s1", "a1", text_message(0, "kept"))
    first = stored.everything()

    later = Session(session_id="s1", session_type=SessionType.AGENT, created_at="2030-01-01T00:00:00+00:00")
    repository.create_session(later)

    assert stored.everything() == first
    [kept] = stored.messages("s1", "a1")
    assert kept["message"]["content"] == [{"text": "kept"}]


def test_updates_move_updated_at_but_not_created_at(repository: MongoDBSessionRepository, mongo_db: Db) -> None:
    new_session(repository)
    agent = new_agent(repository)
    first = session_document(mongo_db)
    agent.state = {"step": 2}
    repository.update_agent("s1", agent)
    second = session_document(mongo_db)
    assert second["created_at"] == first["created_at"]
    assert second["updated_at"] >= first["updated_at"]
    assert second["agents"]["a1"]["state"] == {"step": 2}
    assert second["agents"]["a1"]["created_at"] == first["agents"]["a1"]["created_at"]


def test_create_agent_twice_keeps_the_existing_agent(
    repository: MongoDBSessionRepository, mongo_db: Db, stored: StoredSessions
) -> None:
    new_session(repository)
    new_agent(repository, version=1)
    repository.create_message("s1", "a1", text_message(0, "first"))
    new_agent(repository, version=2)
    agent = session_document(mongo_db)["agents"]["a1"]
    assert agent["state"] == {"version": 1}
    assert stored.message_ids("s1", "a1") == [0]


def test_list_messages_offset_and_limit(repository: MongoDBSessionRepository) -> None:
    new_session(repository)
    new_agent(repository)
    for i in range(10):
        repository.create_message("s1", "a1", text_message(i, f"m{i}"))
    assert [m.message_id for m in repository.list_messages("s1", "a1", offset=7)] == [7, 8, 9]
    assert [m.message_id for m in repository.list_messages("s1", "a1", limit=3, offset=2)] == [2, 3, 4]
    assert repository.list_messages("s1", "a1", limit=0) == []
    assert repository.list_messages("s1", "a1", offset=50) == []
    with pytest.raises(ValueError, match="offset"):
        repository.list_messages("s1", "a1", offset=-1)
    with pytest.raises(ValueError, match="limit"):
        repository.list_messages("s1", "a1", limit=-2)


def test_list_messages_of_missing_session_or_agent_raises(repository: MongoDBSessionRepository) -> None:
    with pytest.raises(SessionNotFoundError, match="session 'nope'"):
        repository.list_messages("nope", "a1")
    new_session(repository)
    with pytest.raises(SessionNotFoundError, match="agent 'a1'"):
        repository.list_messages("s1", "a1")


def test_update_message_redacts_in_place(repository: MongoDBSessionRepository, stored: StoredSessions) -> None:
    new_session(repository)
    new_agent(repository)
    for i in range(3):
        repository.create_message("s1", "a1", text_message(i, f"secret {i}"))
    target = text_message(1, "secret 1")
    target.redact_message = {"role": "user", "content": [{"text": "[REDACTED]"}]}
    repository.update_message("s1", "a1", target)

    messages = stored.messages("s1", "a1")
    assert [m["message_id"] for m in messages] == [0, 1, 2]
    assert [m["redact_message"] for m in messages] == [
        None,
        {"role": "user", "content": [{"text": "[REDACTED]"}]},
        None,
    ]
    restored = repository.list_messages("s1", "a1")
    assert restored[1].to_message()["content"] == [{"text": "[REDACTED]"}]
    assert restored[0].to_message()["content"] == [{"text": "secret 0"}]


def test_writes_to_missing_targets_raise_and_change_nothing(
    repository: MongoDBSessionRepository, mongo_db: Db, stored: StoredSessions
) -> None:
    ghost_agent = SessionAgent(agent_id="ghost", state={}, conversation_manager_state={})
    with pytest.raises(SessionNotFoundError, match="session 'nope'"):
        repository.create_agent("nope", ghost_agent)
    with pytest.raises(SessionNotFoundError, match="session 'nope'"):
        repository.create_message("nope", "a1", text_message(0, "x"))
    assert stored.everything() == {"sessions": [], MESSAGES: []}
    new_session(repository)
    new_agent(repository)
    before = stored.everything()
    with pytest.raises(SessionNotFoundError, match="agent 'ghost'"):
        repository.update_agent("s1", ghost_agent)
    with pytest.raises(SessionNotFoundError, match="agent 'ghost'"):
        repository.create_message("s1", "ghost", text_message(0, "x"))
    with pytest.raises(SessionNotFoundError, match="message 5"):
        repository.update_message("s1", "a1", text_message(5, "x"))
    assert stored.everything() == before
    assert not mongo_db["sessions"].find_one({"_id": "nope"})


def test_delete_session(repository: MongoDBSessionRepository, mongo_db: Db, stored: StoredSessions) -> None:
    new_session(repository)
    new_session(repository, "other")
    new_agent(repository)
    new_agent(repository, session_id="other")
    repository.create_message("s1", "a1", text_message(0, "bye"))
    repository.create_message("s1", "a1", text_message(1, "bye again"))
    repository.create_message("other", "a1", text_message(0, "stays"))
    assert stored.message_ids("s1", "a1") == [0, 1]
    repository.delete_session("s1")
    assert mongo_db["sessions"].find_one({"_id": "s1"}) is None
    assert stored.messages("s1", "a1") == []
    assert mongo_db["sessions"].find_one({"_id": "other"}) is not None
    assert stored.message_ids("other", "a1") == [0]
    assert repository.read_session("s1") is None
    with pytest.raises(SessionNotFoundError):
        repository.delete_session("s1")


def test_bytes_round_trip_as_bson_binary(repository: MongoDBSessionRepository, stored: StoredSessions) -> None:
    new_session(repository)
    new_agent(repository)
    image = bytes(range(256))
    message = SessionMessage.from_message(
        {"role": "user", "content": [{"image": {"format": "png", "source": {"bytes": image}}}]}, 0
    )
    repository.create_message("s1", "a1", message)
    raw = stored.messages("s1", "a1")[0]["message"]["content"][0]["image"]["source"]["bytes"]
    assert raw == image
    [restored] = repository.list_messages("s1", "a1")
    assert restored.message["content"][0]["image"]["source"]["bytes"] == image


def test_message_is_serialised_when_written(repository: MongoDBSessionRepository, stored: StoredSessions) -> None:
    new_session(repository)
    new_agent(repository)
    content = {"role": "user", "content": [{"text": "original"}]}
    message = SessionMessage.from_message(content, 0)  # type: ignore[arg-type]
    repository.create_message("s1", "a1", message)
    content["content"][0]["text"] = "edited in place afterwards"  # type: ignore[index]
    [written] = stored.messages("s1", "a1")
    assert written["message"]["content"] == [{"text": "original"}]


class TestMetadata:
    def test_partial_update_keeps_other_fields(self, repository: MongoDBSessionRepository, mongo_db: Db) -> None:
        new_session(repository)
        repository.update_metadata("s1", {"priority": "low", "owner": "ana", "tags": ["a"]})
        repository.update_metadata("s1", {"priority": "high", "nested": {"x": 1}})
        assert session_document(mongo_db)["metadata"] == {
            "priority": "high",
            "owner": "ana",
            "tags": ["a"],
            "nested": {"x": 1},
        }
        assert repository.get_metadata("s1") == session_document(mongo_db)["metadata"]

    def test_delete_fields(self, repository: MongoDBSessionRepository, mongo_db: Db) -> None:
        new_session(repository)
        repository.update_metadata("s1", {"keep": 1, "drop": 2, "also_drop": 3})
        repository.delete_metadata("s1", ["drop", "also_drop", "never_existed"])
        assert session_document(mongo_db)["metadata"] == {"keep": 1}

    def test_missing_session_raises_instead_of_doing_nothing(
        self, repository: MongoDBSessionRepository, mongo_db: Db
    ) -> None:
        with pytest.raises(SessionNotFoundError):
            repository.update_metadata("nope", {"a": 1})
        with pytest.raises(SessionNotFoundError):
            repository.update_metadata("nope", {})
        with pytest.raises(SessionNotFoundError):
            repository.delete_metadata("nope", ["a"])
        with pytest.raises(SessionNotFoundError):
            repository.get_metadata("nope")
        assert mongo_db["sessions"].count_documents({}) == 0

    @pytest.mark.parametrize(("stored_as", "opened_as"), [("embedded", "split"), ("split", "embedded")])
    def test_delete_metadata_of_a_session_in_the_other_layout_raises(
        self, stored_as: str, opened_as: str, mongo_client: Client, mongo_db: Db
    ) -> None:
        owner = MongoDBSessionRepository(client=mongo_client, database_name=mongo_db.name, layout=stored_as)
        session_with_agent(owner)
        owner.update_metadata("s1", {"keep": 1})
        before = everything(mongo_db)
        other = MongoDBSessionRepository(client=mongo_client, database_name=mongo_db.name, layout=opened_as)

        with contextlib.suppress(LayoutMismatchError):
            other.delete_metadata("s1", ["keep"])

        assert everything(mongo_db) == before

    def test_errors_are_library_and_strands_errors(self, repository: MongoDBSessionRepository) -> None:
        from strands.types.exceptions import SessionException

        with pytest.raises(MongoDBSessionError) as raised:
            repository.get_metadata("nope")
        assert isinstance(raised.value, SessionException)


def test_metrics_summary_of_missing_and_empty_sessions(repository: MongoDBSessionRepository) -> None:
    with pytest.raises(SessionNotFoundError):
        repository.get_metrics_summary("nope")
    new_session(repository)
    summary = repository.get_metrics_summary("s1")
    assert summary["agents"] == {}
    assert summary["totals"]["model_calls"] == 0
    assert summary["totals"]["latency_ms"]["mean"] is None
