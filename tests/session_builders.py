"""Small builders the tests share: Strands session objects and stored conversations."""

from typing import Any

from pymongo import MongoClient
from strands import Agent
from strands.types.session import Session, SessionAgent, SessionMessage, SessionType

from mongodb_session_manager import MongoDBSessionManager, MongoDBSessionRepository

from scripted_model import ScriptedModel


def text_message(message_id: int, text: str, role: str = "user") -> SessionMessage:
    """A one-text-block message with the given id."""
    return SessionMessage.from_message({"role": role, "content": [{"text": text}]}, message_id)  # type: ignore[typeddict-item]


def session_with_agent(repository: MongoDBSessionRepository, session_id: str = "s1", agent_id: str = "a1") -> None:
    """Create the session and one agent in it, through the repository."""
    repository.create_session(Session(session_id=session_id, session_type=SessionType.AGENT))
    repository.create_agent(session_id, SessionAgent(agent_id=agent_id, state={}, conversation_manager_state={}))


def converse(client: MongoClient[Any], database_name: str, session_id: str, turns: int, **agent_kwargs: Any) -> Agent:
    """An echoing Agent that has taken ``turns`` turns in ``session_id`` (embedded layout)."""
    manager = MongoDBSessionManager(session_id, client=client, database_name=database_name)
    agent = Agent(model=ScriptedModel.echo(), session_manager=manager, callback_handler=None, **agent_kwargs)
    for turn in range(turns):
        agent(f"{session_id} turn {turn}")
    return agent
