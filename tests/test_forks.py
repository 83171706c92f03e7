"""Forks: ``fork_session`` copies a session into a new, independent one, whole or up to one message.

A new Agent on the fork resumes exactly the copied prefix; the fork and its source then diverge
without touching each other. Agent state is copied as it is now, and a conversation manager's
offset is clamped to the messages copied. Owners and scope apply as everywhere.
"""

from collections.abc import Callable
from typing import Any

import pytest
from pymongo import MongoClient
from pymongo.database import Database
from strands import Agent
from strands.agent.conversation_manager import SlidingWindowConversationManager

from mongodb_session_manager import MongoDBSessionManager, MongoDBSessionRepository
from mongodb_session_manager.errors import (
    InvalidArgumentError,
    InvalidIdentifierError,
    SessionExistsError,
    SessionNotFoundError,
)

from command_counter import CommandCounter
from helpers import texts
from scripted_model import ScriptedModel
from stored_sessions import StoredSessions, everything

Db = Database[dict[str, Any]]
Client = MongoClient[dict[str, Any]]
NewManager = Callable[..., MongoDBSessionManager]


def echo_agent(manager: MongoDBSessionManager, agent_id: str = "default", **kwargs: Any) -> Agent:
    return Agent(
        model=ScriptedModel.echo(), session_manager=manager, agent_id=agent_id, callback_handler=None, **kwargs
    )


def talk(agent: Agent, *prompts: str) -> Agent:
    for prompt in prompts:
        agent(prompt)
    return agent


def stored_texts(stored: StoredSessions, session_id: str, agent_id: str = "default") -> list[str]:
    return texts([message["message"] for message in stored.messages(session_id, agent_id)])


def test_a_fork_resumes_exactly_the_prefix_then_diverges_from_its_source(
    new_manager: NewManager, repository: MongoDBSessionRepository, stored: StoredSessions
) -> None:
    source = echo_agent(new_manager("s1"))
    source.state.set("plan", "A")
    talk(source, "one", "two", "three")  # messages 0..5
    source_before = stored.messages("s1", "default")

    repository.fork_session("s1", "f1", up_to_message_id=1)  # "one", "echo: one": to edit and resend "two"

    fork = echo_agent(new_manager("f1"))
    assert fork.messages == source.messages[:2]
    assert fork.state.get("plan") == "A"  # state as it is now
    fork("two, edited")
    fork.state.set("plan", "B")
    fork("four")
    assert stored_texts(stored, "f1") == [
        "one",
        "echo: one",
        "two, edited",
        "echo: two, edited",
        "four",
        "echo: four",
    ]
    assert stored.messages("s1", "default") == source_before
    source("four in the source")
    assert stored_texts(stored, "f1")[-1] == "echo: four"
    assert echo_agent(new_manager("s1")).state.get("plan") == "A"
    assert echo_agent(new_manager("f1")).state.get("plan") == "B"
    assert stored.message_ids("f1", "default") == list(range(6))


def test_a_whole_fork_copies_everything_but_its_identity(
    new_manager: NewManager, repository: MongoDBSessionRepository
) -> None:
    talk(echo_agent(new_manager("s1", user_id="alice", application_name="chat")), "one", "two")
    repository.update_metadata("s1", {"topic": "maths"})

    repository.fork_session("s1", "f1")

    source, fork = repository.export_session("s1"), repository.export_session("f1")
    assert fork["forked_from"]["session_id"] == "s1"
    assert fork["forked_from"]["up_to_message_id"] is None
    assert fork["title"] == "one (fork)"
    identity = ("session_id", "title", "forked_from", "created_at", "updated_at")
    assert {k: v for k, v in fork.items() if k not in identity} == {
        k: v for k, v in source.items() if k not in identity
    }
    assert (fork["user_id"], fork["application_name"]) == ("alice", "chat")


def test_the_fork_is_titled_after_its_source(
    new_manager: NewManager, repository: MongoDBSessionRepository, mongo_db: Db
) -> None:
    talk(echo_agent(new_manager("s1")), "what is the weather in Paris")
    repository.fork_session("s1", "from-the-first-prompt", up_to_message_id=0)
    repository.set_title("s1", "T" * 200)
    repository.fork_session("s1", "from-the-title")

    titles = {summary.session_id: summary.title for summary in repository.list_sessions().sessions}
    assert titles["from-the-first-prompt"] == "what is the weather in Paris (fork)"
    assert titles["from-the-title"] == "T" * 193 + " (fork)"
    forked_from = (mongo_db["sessions"].find_one({"_id": "from-the-first-prompt"}) or {})["forked_from"]
    assert {key: forked_from[key] for key in ("session_id", "agent_id", "up_to_message_id")} == {
        "session_id": "s1",
        "agent_id": "default",
        "up_to_message_id": 0,
    }


def test_with_several_agents_the_agent_is_named_and_the_others_are_copied_whole(
    new_manager: NewManager, repository: MongoDBSessionRepository, stored: StoredSessions, mongo_db: Db
) -> None:
    manager = new_manager("s1")
    talk(echo_agent(manager, "x"), "x one", "x two")
    talk(echo_agent(manager, "y"), "y one", "y two")
    before = everything(mongo_db)

    with pytest.raises(InvalidArgumentError, match="agent_id") as refused:
        repository.fork_session("s1", "f1", up_to_message_id=1)
    assert "'x'" in str(refused.value)
    assert everything(mongo_db) == before

    repository.fork_session("s1", "f1", up_to_message_id=1, agent_id="y")

    assert stored_texts(stored, "f1", "y") == ["y one", "echo: y one"]
    assert stored_texts(stored, "f1", "x") == stored_texts(stored, "s1", "x")


def test_the_conversation_manager_offset_is_clamped_to_the_copied_prefix(
    new_manager: NewManager, repository: MongoDBSessionRepository
) -> None:
    source = echo_agent(new_manager("s1"), conversation_manager=SlidingWindowConversationManager(window_size=4))
    talk(source, "one", "two", "three", "four")  # the window dropped the oldest messages
    removed = source.conversation_manager.removed_message_count  # type: ignore[attr-defined]
    assert removed >= 4

    repository.fork_session("s1", "early", up_to_message_id=1)
    repository.fork_session("s1", "late", up_to_message_id=7)

    for fork_id, offset in (("early", 2), ("late", removed)):
        agent = repository.read_agent(fork_id, "default")
        assert agent is not None
        assert agent.conversation_manager_state["removed_message_count"] == offset
    resumed = echo_agent(new_manager("late"), conversation_manager=SlidingWindowConversationManager(window_size=4))
    assert resumed.messages == source.messages


def test_an_existing_fork_id_is_refused_and_nothing_changes(
    new_manager: NewManager, repository: MongoDBSessionRepository, mongo_db: Db
) -> None:
    talk(echo_agent(new_manager("s1")), "one")
    talk(echo_agent(new_manager("taken")), "other")
    before = everything(mongo_db)

    with pytest.raises(SessionExistsError):
        repository.fork_session("s1", "taken")
    with pytest.raises(SessionExistsError):
        repository.fork_session("s1", "s1", up_to_message_id=0)

    assert everything(mongo_db) == before


def test_bob_cannot_fork_alices_session_and_alices_fork_is_hers(
    new_manager: NewManager, mongo_client: Client, database_name: str, layout: str, mongo_db: Db
) -> None:
    talk(echo_agent(new_manager("alice-chat", user_id="alice")), "secret")
    before = everything(mongo_db)

    def scoped(user_id: str) -> MongoDBSessionRepository:
        return MongoDBSessionRepository(
            client=mongo_client, database_name=database_name, layout=layout, user_id=user_id
        )

    with pytest.raises(SessionNotFoundError):
        scoped("bob").fork_session("alice-chat", "bobs-copy")
    assert everything(mongo_db) == before

    scoped("alice").fork_session("alice-chat", "alice-fork")
    assert scoped("bob").read_session("alice-fork") is None
    assert scoped("alice").export_session("alice-fork")["user_id"] == "alice"


@pytest.mark.parametrize(
    ("arguments", "error", "field"),
    [
        ({"up_to_message_id": 2}, SessionNotFoundError, "message 2"),
        ({"up_to_message_id": 0, "agent_id": "nobody"}, SessionNotFoundError, "agent 'nobody'"),
        ({"agent_id": "default"}, InvalidArgumentError, "agent_id"),
        ({"up_to_message_id": -1}, InvalidIdentifierError, "up_to_message_id"),
        ({"up_to_message_id": "1"}, InvalidIdentifierError, "up_to_message_id"),
        ({"agent_id": "$where", "up_to_message_id": 0}, InvalidIdentifierError, "agent_id"),
    ],
)
def test_a_fork_that_cannot_be_made_is_refused_and_writes_nothing(
    arguments: dict[str, Any],
    error: type[Exception],
    field: str,
    new_manager: NewManager,
    repository: MongoDBSessionRepository,
    mongo_db: Db,
) -> None:
    talk(echo_agent(new_manager("s1")), "one")  # messages 0 and 1
    before = everything(mongo_db)

    with pytest.raises(error, match=field):
        repository.fork_session("s1", "f1", **arguments)

    assert everything(mongo_db) == before
    with pytest.raises(InvalidIdentifierError, match="session_id"):
        repository.fork_session("s1", {"$ne": ""})  # type: ignore[arg-type]
    with pytest.raises(SessionNotFoundError):
        repository.fork_session("missing", "f1")


EXPECTED_COMMANDS = {
    "embedded": ["find", "insert"],
    "split": ["find", "find", "insert", "delete", "insert", "update"],
}


def test_a_fork_reads_the_source_then_writes_the_new_session(
    counting_client: tuple[Client, CommandCounter], database_name: str, layout: str
) -> None:
    client, counter = counting_client
    manager = MongoDBSessionManager("s1", client=client, database_name=database_name, layout=layout)
    talk(echo_agent(manager), "one", "two")
    counter.reset()

    manager.repository.fork_session("s1", "f1", up_to_message_id=1)

    assert counter.names() == EXPECTED_COMMANDS[layout]
