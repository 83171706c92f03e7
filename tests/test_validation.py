"""Every identifier that reaches MongoDB is validated, and a refused one harms nothing stored."""

from collections.abc import Callable
from decimal import Decimal
from typing import Any

import pytest
from pymongo.database import Database
from strands import Agent
from strands.types.exceptions import EventLoopException
from strands.types.session import Session, SessionAgent, SessionMessage, SessionType

from mongodb_session_manager import MongoDBSessionManager, MongoDBSessionRepository
from mongodb_session_manager.errors import (
    InvalidArgumentError,
    InvalidIdentifierError,
    MongoDBSessionError,
    SessionNotFoundError,
    StaleAgentError,
    UnstorableValueError,
    printable,
)
from mongodb_session_manager.validation import MAX_IDENTIFIER_LENGTH

from helpers import session_with_agent, text_message
from multi_agent_stand_in import FixedState
from scripted_model import ScriptedModel, ToolCall
from stored_sessions import MESSAGES, SESSIONS, everything

Db = Database[dict[str, Any]]


NOT_STRINGS = [{"$gt": ""}, {"$ne": None}, ["victim"], 42, None, b"s1"]
BAD_STRINGS = ["", "x" * (MAX_IDENTIFIER_LENGTH + 1), "nul\x00byte", "abc\ud800", "\udfff"]
BAD_FIELD_NAMES = ["team.alpha", "$where", "$", "a.", ".a", *BAD_STRINGS]


@pytest.fixture
def populated(repository: MongoDBSessionRepository, mongo_db: Db, layout: str) -> dict[str, Any]:
    """A victim session with an agent and a message; returns everything stored."""
    repository.create_session(Session(session_id="victim", session_type=SessionType.AGENT))
    repository.create_agent("victim", SessionAgent(agent_id="a1", state={"secret": 1}, conversation_manager_state={}))
    repository.create_message("victim", "a1", text_message(0, "private"))
    repository.update_metadata("victim", {"owner": "victim"})
    stored = everything(mongo_db)
    assert [document["_id"] for document in stored[SESSIONS]] == ["victim"]
    # the message is where this layout keeps it, so the comparisons below cover it
    assert len(stored[MESSAGES]) == (1 if layout == "split" else 0)
    return stored


def assert_untouched(mongo_db: Db, before: dict[str, Any]) -> None:
    assert everything(mongo_db) == before


@pytest.mark.parametrize("session_id", NOT_STRINGS + BAD_STRINGS, ids=repr)
def test_session_id_must_be_a_plain_string(
    session_id: Any, repository: MongoDBSessionRepository, populated: dict[str, Any], mongo_db: Db
) -> None:
    agent = SessionAgent("a1", state={}, conversation_manager_state={})
    graph_like = FixedState("g1")
    calls: list[Callable[[], object]] = [
        lambda: repository.create_agent(session_id, agent),
        lambda: repository.update_message(session_id, "a1", SessionMessage.from_message({"role": "user"}, 0)),  # type: ignore[typeddict-item]
        lambda: repository.create_multi_agent(session_id, graph_like),  # type: ignore[arg-type]
        lambda: repository.update_multi_agent(session_id, graph_like),  # type: ignore[arg-type]
        lambda: repository.read_multi_agent(session_id, "g1"),
        lambda: repository.read_session(session_id),
        lambda: repository.read_agent(session_id, "a1"),
        lambda: repository.list_messages(session_id, "a1"),
        lambda: repository.read_message(session_id, "a1", 0),
        lambda: repository.create_message(session_id, "a1", SessionMessage.from_message({"role": "user"}, 1)),  # type: ignore[typeddict-item]
        lambda: repository.update_agent(
            session_id, SessionAgent(agent_id="a1", state={}, conversation_manager_state={})
        ),
        lambda: repository.update_metadata(session_id, {"owner": "attacker"}),
        lambda: repository.delete_metadata(session_id, ["owner"]),
        lambda: repository.get_metadata(session_id),
        lambda: repository.delete_session(session_id),
        lambda: repository.get_metrics_summary(session_id),
        lambda: repository.create_session(Session(session_id=session_id, session_type=SessionType.AGENT)),
    ]
    for call in calls:
        with pytest.raises(InvalidIdentifierError, match="session_id") as raised:
            call()
        assert raised.value.field == "session_id"
        assert isinstance(raised.value, ValueError)
    assert_untouched(mongo_db, populated)


@pytest.mark.parametrize("session_id", [{"$gt": ""}, ["victim"], ""], ids=repr)
def test_manager_refuses_bad_session_id_before_touching_the_database(
    session_id: Any, new_manager: Callable[..., MongoDBSessionManager], populated: dict[str, Any], mongo_db: Db
) -> None:
    with pytest.raises(InvalidIdentifierError, match="session_id"):
        new_manager(session_id)
    assert_untouched(mongo_db, populated)


@pytest.mark.parametrize("agent_id", BAD_FIELD_NAMES + NOT_STRINGS, ids=repr)
def test_agent_id_must_be_a_safe_field_name(
    agent_id: Any, repository: MongoDBSessionRepository, populated: dict[str, Any], mongo_db: Db
) -> None:
    message = text_message(1, "x")
    agent = SessionAgent(agent_id=agent_id, state={}, conversation_manager_state={})
    calls: list[Callable[[], object]] = [
        lambda: repository.create_agent("victim", agent),
        lambda: repository.read_agent("victim", agent_id),
        lambda: repository.update_agent("victim", agent),
        lambda: repository.create_message("victim", agent_id, message),
        lambda: repository.update_message("victim", agent_id, message),
        lambda: repository.read_message("victim", agent_id, 0),
        lambda: repository.list_messages("victim", agent_id),
    ]
    for call in calls:
        with pytest.raises(InvalidIdentifierError, match="agent_id"):
            call()
    assert_untouched(mongo_db, populated)


def test_dotted_agent_id_is_refused_by_a_real_agent(
    new_manager: Callable[..., MongoDBSessionManager], mongo_db: Db
) -> None:
    manager = new_manager("s1")
    with pytest.raises(InvalidIdentifierError, match=r"agent_id 'team\.alpha'"):
        Agent(model=ScriptedModel(["hi"]), agent_id="team.alpha", session_manager=manager, callback_handler=None)
    document = mongo_db["sessions"].find_one({"_id": "s1"})
    assert document is not None
    assert document["agents"] == {}


@pytest.mark.parametrize("key", [*BAD_FIELD_NAMES, 7, None], ids=repr)
def test_metadata_keys_must_be_safe_field_names(
    key: Any, repository: MongoDBSessionRepository, populated: dict[str, Any], mongo_db: Db
) -> None:
    with pytest.raises(InvalidIdentifierError, match="metadata key"):
        repository.update_metadata("victim", {"fine": 1, key: "value"})
    with pytest.raises(InvalidIdentifierError, match="metadata key"):
        repository.delete_metadata("victim", ["owner", key])
    assert_untouched(mongo_db, populated)


def test_delete_metadata_refuses_a_bare_string(
    repository: MongoDBSessionRepository, populated: dict[str, Any], mongo_db: Db
) -> None:
    with pytest.raises(InvalidIdentifierError, match="list of keys"):
        repository.delete_metadata("victim", "owner")
    assert_untouched(mongo_db, populated)


@pytest.mark.parametrize("message_id", [-1, "0", 1.5, True, None, 2**63, 2**70], ids=repr)
def test_message_id_must_be_a_non_negative_int(
    message_id: Any, repository: MongoDBSessionRepository, populated: dict[str, Any], mongo_db: Db
) -> None:
    message = SessionMessage(message={"role": "user", "content": [{"text": "x"}]}, message_id=message_id)
    with pytest.raises(InvalidIdentifierError, match="message_id"):
        repository.create_message("victim", "a1", message)
    with pytest.raises(InvalidIdentifierError, match="message_id"):
        repository.update_message("victim", "a1", message)
    with pytest.raises(InvalidIdentifierError, match="message_id"):
        repository.read_message("victim", "a1", message_id)
    assert_untouched(mongo_db, populated)


def test_longest_allowed_identifiers_work(repository: MongoDBSessionRepository) -> None:
    longest = "s" * MAX_IDENTIFIER_LENGTH
    session_with_agent(repository, longest, longest)
    repository.update_metadata(longest, {longest: "ok", "with spaces and ünïcode": True})
    assert repository.read_agent(longest, longest) is not None
    assert repository.get_metadata(longest) == {longest: "ok", "with spaces and ünïcode": True}


def test_session_ids_may_contain_dots_and_dollars(repository: MongoDBSessionRepository) -> None:
    repository.create_session(Session(session_id="user.42$chat", session_type=SessionType.AGENT))
    session = repository.read_session("user.42$chat")
    assert session is not None
    assert session.session_id == "user.42$chat"


@pytest.mark.parametrize(
    "name", ["_id", "message_id", "message", "created_at", "session_id", "user_id", "a.b", "$set", ""], ids=repr
)
def test_message_annotations_cannot_replace_or_nest_fields(
    name: str, repository: MongoDBSessionRepository, populated: dict[str, Any], mongo_db: Db
) -> None:
    with pytest.raises(InvalidIdentifierError, match="message annotation"):
        repository.annotate_messages(**{name: 0})
    assert_untouched(mongo_db, populated)


@pytest.mark.parametrize("position", [-1, 2**63, 2**70, "1", 1.0, True], ids=repr)
def test_message_positions_must_fit_a_bson_integer(
    position: Any, repository: MongoDBSessionRepository, populated: dict[str, Any], mongo_db: Db
) -> None:
    with pytest.raises(InvalidIdentifierError, match="offset"):
        repository.list_messages("victim", "a1", offset=position)
    with pytest.raises(InvalidIdentifierError, match="limit"):
        repository.list_messages("victim", "a1", limit=position)
    assert_untouched(mongo_db, populated)


@pytest.mark.parametrize(
    "metadata", [["ab", "cd"], (pair for pair in [("a", 1)]), None, "abc", 5, b"ab"], ids=lambda m: type(m).__name__
)
def test_metadata_must_be_a_mapping(
    metadata: Any, repository: MongoDBSessionRepository, populated: dict[str, Any], mongo_db: Db
) -> None:
    with pytest.raises(InvalidArgumentError, match=r"invalid metadata .*must be a mapping") as refused:
        repository.update_metadata("victim", metadata)
    assert refused.value.field == "metadata"
    assert_untouched(mongo_db, populated)


@pytest.mark.parametrize("keys", [None, 5, {"owner": 1}, b"owner"], ids=repr)
def test_delete_metadata_refuses_what_is_not_a_list_of_keys(
    keys: Any, repository: MongoDBSessionRepository, populated: dict[str, Any], mongo_db: Db
) -> None:
    with pytest.raises(InvalidIdentifierError, match="list of keys"):
        repository.delete_metadata("victim", keys)
    assert_untouched(mongo_db, populated)


class Opaque:
    pass


UNSTORABLE = {
    "set": {1, 2},
    "object": Opaque(),
    "decimal": Decimal("1.5"),
    "complex": 1 + 2j,
    "int64 overflow": 2**63,
    "negative overflow": -(2**63) - 1,
    "int key": {1: "one"},
    "nul in key": {"a\x00b": 1},
    "lone surrogate": "abc\ud800",
}


@pytest.mark.parametrize("name", list(UNSTORABLE), ids=str)
def test_values_bson_cannot_hold_are_refused_naming_their_path(
    name: str, repository: MongoDBSessionRepository, populated: dict[str, Any], mongo_db: Db
) -> None:
    value = UNSTORABLE[name]
    nested = {"ok": 1, "score": {"list": [0, value]}}
    calls: dict[str, Callable[[], object]] = {
        "metadata.score.list[1]": lambda: repository.update_metadata("victim", nested),
        "agent.state.score.list[1]": lambda: repository.update_agent(
            "victim", SessionAgent("a1", state=nested, conversation_manager_state={})
        ),
        "multi_agent.state.score.list[1]": lambda: repository.create_multi_agent("victim", FixedState("g1", nested)),  # type: ignore[arg-type]
    }
    for path, call in calls.items():
        with pytest.raises(UnstorableValueError) as refused:
            call()
        error = refused.value
        assert isinstance(error, MongoDBSessionError)
        assert isinstance(error, ValueError)
        assert isinstance(error, TypeError)
        assert error.field.startswith(path), (error.field, path)
        assert str(error).startswith(f"invalid {printable(error.field)} ")
    assert_untouched(mongo_db, populated)


def test_an_unstorable_tool_input_is_refused_and_the_agent_goes_stale(new_manager: Any) -> None:
    model = ScriptedModel([ToolCall("add", {"a": 2**64, "b": 1}), "unreachable"])
    agent = Agent(model=model, session_manager=new_manager("s1"), callback_handler=None)
    with pytest.raises(EventLoopException) as refused:
        agent("add these")
    cause = refused.value.original_exception
    assert isinstance(cause, UnstorableValueError)
    assert cause.field == "message.content[0].toolUse.input.a"
    with pytest.raises(StaleAgentError):
        agent("again")


def test_an_error_quotes_at_most_a_short_excerpt_of_the_value(
    repository: MongoDBSessionRepository, populated: dict[str, Any], mongo_db: Db
) -> None:
    huge = "x" * 1_000_000
    with pytest.raises(InvalidIdentifierError) as refused:
        repository.read_session(huge)
    message = str(refused.value)
    assert len(message) < 250, message
    assert "1,000,000 characters" in message
    with pytest.raises(InvalidIdentifierError) as refused:
        repository.read_session({"$gt": "y" * 10_000})
    assert len(str(refused.value)) < 250
    assert_untouched(mongo_db, populated)


def test_a_not_found_error_quotes_only_an_excerpt_of_a_long_valid_id(repository: MongoDBSessionRepository) -> None:
    longest = "s" * MAX_IDENTIFIER_LENGTH
    with pytest.raises(SessionNotFoundError) as missing:
        repository.get_metadata(longest)
    message = str(missing.value)
    assert longest not in message
    assert f"{MAX_IDENTIFIER_LENGTH} characters" in message
    assert len(message) < 120, message
