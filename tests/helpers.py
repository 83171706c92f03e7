"""What the tests share: the ``add`` tool, builders of Strands messages and stored sessions, thread runners."""

import os
import subprocess
import sys
import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any, TypeVar

from pymongo import MongoClient
from strands import Agent, tool
from strands.types.session import Session, SessionAgent, SessionMessage, SessionType

from mongodb_session_manager import MongoDBSessionManager, MongoDBSessionRepository

from scripted_model import ScriptedModel

T = TypeVar("T")


@tool
def add(a: int, b: int) -> int:
    """Add two integers."""
    return a + b


def text_message(message_id: int, text: str, role: str = "user") -> SessionMessage:
    """A one-text-block message with the given id."""
    return SessionMessage.from_message({"role": role, "content": [{"text": text}]}, message_id)  # type: ignore[typeddict-item]


def echo_agent(manager: MongoDBSessionManager, agent_id: str = "default", **kwargs: Any) -> Agent:
    """A real Agent on ``manager`` whose scripted model answers by echoing the prompt."""
    return Agent(
        model=ScriptedModel.echo(), session_manager=manager, agent_id=agent_id, callback_handler=None, **kwargs
    )


def texts(messages: list[Any]) -> list[str]:
    """The text blocks of ``messages`` (Strands messages), in order."""
    return [block["text"] for message in messages for block in message["content"] if "text" in block]


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


def run_together(count: int, work: Callable[[int], Any]) -> tuple[list[Any], list[BaseException]]:
    """Run ``work(i)`` in ``count`` threads released at the same instant; collect results and errors.

    Results come in the order the threads finished. Fails if a thread is still running after a minute.
    """
    barrier = threading.Barrier(count)
    results: list[Any] = []
    errors: list[BaseException] = []
    lock = threading.Lock()

    def run(index: int) -> None:
        barrier.wait()
        try:
            result = work(index)
        except BaseException as error:
            with lock:
                errors.append(error)
        else:
            with lock:
                results.append(result)

    threads = [threading.Thread(target=run, args=(i,)) for i in range(count)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    assert not any(thread.is_alive() for thread in threads), "a thread is still running"
    return results, errors


def run_in_threads(count: int, work: Callable[[int], T]) -> list[T]:
    """Run ``work(i)`` for i in range(count), each in its own thread, all starting together; re-raise errors."""
    barrier = threading.Barrier(count)

    def start(i: int) -> T:
        barrier.wait(timeout=30)
        return work(i)

    with ThreadPoolExecutor(max_workers=count) as pool:
        return list(pool.map(start, range(count)))


def run_command_line(*argv: str) -> subprocess.CompletedProcess[str]:
    """``python -m mongodb_session_manager *argv`` in a child process, with no ``MONGODB_URI`` inherited."""
    return subprocess.run(
        [sys.executable, "-m", "mongodb_session_manager", *argv],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
        env={**os.environ, "MONGODB_URI": ""},
    )
