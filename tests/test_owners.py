"""Owners: a session belongs to the user (and application) that created it, and nobody else can reach it.

A repository or manager scoped to ``user_id="bob"`` gets ``SessionNotFoundError`` for alice's session,
exactly as if it did not exist, through every method, and changes nothing. The owner check rides in
each command's filter: it costs no command.
"""

from collections.abc import Callable
from typing import Any

import pytest
from pymongo import MongoClient
from pymongo.database import Database
from strands import Agent
from strands.types.session import Session, SessionAgent, SessionType

from mongodb_session_manager import MongoDBSessionManager, MongoDBSessionManagerFactory, MongoDBSessionRepository
from mongodb_session_manager.errors import InvalidIdentifierError, SessionNotFoundError

from command_counter import CommandCounter
from helpers import text_message
from multi_agent_stand_in import FixedState
from scripted_model import ScriptedModel
from stored_sessions import SESSIONS, everything

Db = Database[dict[str, Any]]
Client = MongoClient[dict[str, Any]]


@pytest.fixture
def scoped(mongo_client: Client, database_name: str, layout: str) -> Callable[..., MongoDBSessionRepository]:
    def make(user_id: str | None, **kwargs: Any) -> MongoDBSessionRepository:
        return MongoDBSessionRepository(
            client=mongo_client, database_name=database_name, layout=layout, user_id=user_id, **kwargs
        )

    return make


@pytest.fixture
def alices(mongo_client: Client, database_name: str, layout: str, mongo_db: Db) -> dict[str, Any]:
    """Alice's session with one turn, metadata and a Graph's state; returns everything stored."""
    manager = MongoDBSessionManager(
        "alice-chat", client=mongo_client, database_name=database_name, layout=layout, user_id="alice"
    )
    Agent(model=ScriptedModel(["hello alice"]), session_manager=manager, callback_handler=None)("my secret")
    manager.repository.update_metadata("alice-chat", {"topic": "private"})
    manager.repository.create_multi_agent("alice-chat", FixedState("g1"))  # type: ignore[arg-type]
    return everything(mongo_db)


def test_the_owner_is_stored_when_the_session_is_created(alices: dict[str, Any], mongo_db: Db) -> None:
    document = mongo_db[SESSIONS].find_one({"_id": "alice-chat"})
    assert document is not None
    assert document["user_id"] == "alice"
    assert "application_name" not in document


def test_bob_reaches_none_of_alices_session_through_any_method(
    alices: dict[str, Any], scoped: Callable[..., MongoDBSessionRepository], mongo_db: Db
) -> None:
    bob = scoped("bob")
    agent = SessionAgent(agent_id="default", state={"x": 1}, conversation_manager_state={})
    refused: dict[str, Callable[[], object]] = {
        "delete_session": lambda: bob.delete_session("alice-chat"),
        "create_agent": lambda: bob.create_agent("alice-chat", agent),
        "update_agent": lambda: bob.update_agent("alice-chat", agent),
        "create_message": lambda: bob.create_message("alice-chat", "default", text_message(2, "bob was here")),
        "update_message": lambda: bob.update_message("alice-chat", "default", text_message(0, "bob")),
        "list_messages": lambda: bob.list_messages("alice-chat", "default"),
        "update_multi_agent": lambda: bob.update_multi_agent("alice-chat", FixedState("g1")),  # type: ignore[arg-type]
        "update_metadata": lambda: bob.update_metadata("alice-chat", {"topic": "bob's"}),
        "delete_metadata": lambda: bob.delete_metadata("alice-chat", ["topic"]),
        "get_metadata": lambda: bob.get_metadata("alice-chat"),
        "set_title": lambda: bob.set_title("alice-chat", "bob's now"),
        "get_metrics_summary": lambda: bob.get_metrics_summary("alice-chat"),
        "create_session": lambda: bob.create_session(Session("alice-chat", SessionType.AGENT)),
    }
    for name, call in refused.items():
        with pytest.raises(SessionNotFoundError, match="not found"):
            call()
        assert everything(mongo_db) == alices, name
    # reads answer "nothing there", as for a session that does not exist
    assert bob.read_session("alice-chat") is None
    assert bob.read_agent("alice-chat", "default") is None
    assert bob.read_message("alice-chat", "default", 0) is None
    assert bob.read_multi_agent("alice-chat", "g1") is None
    assert bob.list_sessions().sessions == []
    assert bob.list_sessions(user_id="alice").sessions == []
    assert bob.count_sessions() == bob.count_sessions(user_id="alice") == 0
    assert everything(mongo_db) == alices


def test_a_manager_for_bob_cannot_open_alices_session(
    alices: dict[str, Any], mongo_client: Client, database_name: str, layout: str, mongo_db: Db
) -> None:
    with pytest.raises(SessionNotFoundError, match="not found"):
        MongoDBSessionManager(
            "alice-chat", client=mongo_client, database_name=database_name, layout=layout, user_id="bob"
        )
    assert everything(mongo_db) == alices


def test_an_unowned_session_is_not_claimed_by_a_scoped_manager(
    scoped: Callable[..., MongoDBSessionRepository], mongo_db: Db
) -> None:
    scoped(None).create_session(Session("shared", SessionType.AGENT))
    before = everything(mongo_db)
    with pytest.raises(SessionNotFoundError):
        scoped("bob").create_session(Session("shared", SessionType.AGENT))
    assert scoped("bob").read_session("shared") is None
    assert everything(mongo_db) == before


def test_the_unscoped_repository_sees_everything(
    alices: dict[str, Any], scoped: Callable[..., MongoDBSessionRepository]
) -> None:
    back_office = scoped(None)
    assert back_office.read_session("alice-chat") is not None
    assert [summary.session_id for summary in back_office.list_sessions().sessions] == ["alice-chat"]
    assert back_office.list_sessions(user_id="alice").sessions[0].user_id == "alice"
    assert back_office.get_metadata("alice-chat") == {"topic": "private"}


def test_the_application_scopes_like_the_owner(scoped: Callable[..., MongoDBSessionRepository], mongo_db: Db) -> None:
    chat = scoped("alice", application_name="chat")
    chat.create_session(Session("s1", SessionType.AGENT))
    document = mongo_db[SESSIONS].find_one({"_id": "s1"})
    assert document is not None
    assert (document["user_id"], document["application_name"]) == ("alice", "chat")
    assert scoped("alice", application_name="billing").read_session("s1") is None
    assert scoped("alice").read_session("s1") is not None  # no application scope: every application
    assert [s.session_id for s in scoped(None).list_sessions(application_name="chat").sessions] == ["s1"]


def test_the_owner_check_costs_no_command(
    counting_client: tuple[Client, CommandCounter], database_name: str, layout: str
) -> None:
    client, counter = counting_client
    MongoDBSessionRepository(client=client, database_name=database_name, layout=layout)  # indexes
    counts = {}
    for user_id in (None, "alice"):
        manager = MongoDBSessionManager(
            f"s-{user_id}", client=client, database_name=database_name, layout=layout, user_id=user_id
        )
        agent = Agent(model=ScriptedModel(["one", "two"]), session_manager=manager, callback_handler=None)
        agent("first")
        counter.reset()
        agent("second")
        counts[user_id] = counter.names()
    assert counts["alice"] == counts[None]


@pytest.mark.parametrize("user_id", [{"$ne": None}, "", "x" * 300, "nul\x00", "lone\ud800", 7], ids=repr)
def test_owners_are_validated_like_ids(user_id: Any, mongo_client: Client, database_name: str) -> None:
    with pytest.raises(InvalidIdentifierError, match="user_id"):
        MongoDBSessionRepository(client=mongo_client, database_name=database_name, user_id=user_id)
    with pytest.raises(InvalidIdentifierError, match="application_name"):
        MongoDBSessionManagerFactory(client=mongo_client, database_name=database_name, application_name=user_id)


def test_factory_sessions_take_the_user_given_per_conversation(
    mongo_client: Client, database_name: str, mongo_db: Db
) -> None:
    factory = MongoDBSessionManagerFactory(client=mongo_client, database_name=database_name, application_name="chat")
    manager = factory.create_session_manager("s1", user_id="alice")
    Agent(model=ScriptedModel(["hi"]), session_manager=manager, callback_handler=None)("hello")
    with pytest.raises(SessionNotFoundError):
        factory.create_session_manager("s1", user_id="bob")
    assert factory.create_repository(user_id="alice").count_sessions() == 1
    assert factory.create_repository(user_id="bob").count_sessions() == 0
    document = mongo_db[SESSIONS].find_one({"_id": "s1"})
    assert document is not None
    assert (document["user_id"], document["application_name"]) == ("alice", "chat")
