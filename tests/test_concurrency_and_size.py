"""Concurrent writers, concurrent creation and the 16 MiB document limit, on the real server."""

import logging
import threading
from collections.abc import Callable
from typing import Any

import pytest
from pymongo.database import Database
from strands import Agent
from strands.types.session import Session, SessionAgent, SessionMessage, SessionType

from mongodb_session_manager import MongoDBSessionManager, MongoDBSessionRepository
from mongodb_session_manager.errors import SessionConflictError, SessionTooLargeError, StaleAgentError
from mongodb_session_manager.mongodb_session_repository import MAX_DOCUMENT_BYTES

from scripted_model import ScriptedModel

Db = Database[dict[str, Any]]
THREADS = 8


def run_together(count: int, work: Callable[[int], Any]) -> tuple[list[Any], list[BaseException]]:
    """Run ``work(i)`` in ``count`` threads released at the same instant; collect results and errors."""
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
    return results, errors


def message(message_id: int, text: str) -> SessionMessage:
    return SessionMessage.from_message({"role": "user", "content": [{"text": text}]}, message_id)


def test_same_message_id_from_two_writers_only_one_wins(
    repository: MongoDBSessionRepository, mongo_client: Any, database_name: str, mongo_db: Db
) -> None:
    repository.create_session(Session(session_id="s1", session_type=SessionType.AGENT))
    repository.create_agent("s1", SessionAgent(agent_id="a1", state={}, conversation_manager_state={}))

    def append(index: int) -> int:
        own = MongoDBSessionRepository(client=mongo_client, database_name=database_name)
        own.create_message("s1", "a1", message(0, f"writer {index}"))
        return index

    winners, errors = run_together(THREADS, append)
    assert len(winners) == 1
    assert len(errors) == THREADS - 1
    assert all(isinstance(error, SessionConflictError) for error in errors), errors
    document = mongo_db["sessions"].find_one({"_id": "s1"})
    assert document is not None
    [stored] = document["agents"]["a1"]["messages"]
    assert stored["message"]["content"] == [{"text": f"writer {winners[0]}"}]


def test_stale_manager_gets_a_conflict_and_changes_nothing(
    new_manager: Callable[..., MongoDBSessionManager], mongo_db: Db
) -> None:
    first = Agent(model=ScriptedModel(["one"]), session_manager=new_manager("s1"), callback_handler=None)
    first("hello")
    # two processes resume the same conversation at the same point ...
    left = Agent(model=ScriptedModel(["left"]), session_manager=new_manager("s1"), callback_handler=None)
    right = Agent(model=ScriptedModel(["right"]), session_manager=new_manager("s1"), callback_handler=None)
    left("from left")
    before = mongo_db["sessions"].find_one({"_id": "s1"})
    # ... the second writer of message 2 is refused with a typed error
    with pytest.raises(SessionConflictError, match="message 2"):
        right("from right")
    # the loser is stale: it neither retries under a new id nor syncs its outdated state
    right.state.set("written_by", "right")
    with pytest.raises(StaleAgentError):
        right("again from right")
    assert mongo_db["sessions"].find_one({"_id": "s1"}) == before
    # a new Agent resumes what the winner stored
    fresh = Agent(model=ScriptedModel([]), session_manager=new_manager("s1"), callback_handler=None)
    assert [m["content"][0]["text"] for m in fresh.messages] == ["hello", "one", "from left", "left"]


def test_concurrent_first_requests_for_a_new_session_all_succeed(
    new_manager: Callable[..., MongoDBSessionManager], mongo_db: Db
) -> None:
    managers, errors = run_together(THREADS, lambda _: new_manager("brand-new"))
    assert errors == []
    assert len(managers) == THREADS
    assert mongo_db["sessions"].count_documents({}) == 1
    # each can then start the agent; exactly one writes the first message, the rest are refused
    answers, agent_errors = run_together(
        THREADS,
        lambda i: Agent(model=ScriptedModel(["ok"]), session_manager=managers[i], callback_handler=None)("hi"),
    )
    assert all(isinstance(error, SessionConflictError) for error in agent_errors), agent_errors
    assert len(answers) + len(agent_errors) == THREADS
    assert answers, "no writer got through"
    document = mongo_db["sessions"].find_one({"_id": "brand-new"})
    assert document is not None
    # every stored turn is complete and in order: no duplicate, no gap, nothing from a refused writer
    ids = [m["message_id"] for m in document["agents"]["default"]["messages"]]
    assert ids == list(range(2 * len(answers)))


def test_write_that_would_pass_16_mib_is_refused_before_it_happens(
    repository: MongoDBSessionRepository, mongo_db: Db, caplog: pytest.LogCaptureFixture
) -> None:
    repository.create_session(Session(session_id="big", session_type=SessionType.AGENT))
    repository.create_agent("big", SessionAgent(agent_id="a1", state={}, conversation_manager_state={}))
    one_mib = "x" * (1024 * 1024)
    written = 0
    refused: SessionTooLargeError | None = None
    warned_after: list[bool] = []  # per accepted write: did it log the size warning?
    with caplog.at_level(logging.WARNING, logger="mongodb_session_manager"):
        for message_id in range(32):
            caplog.clear()
            try:
                repository.create_message("big", "a1", message(message_id, one_mib))
            except SessionTooLargeError as error:
                refused = error
                break
            written += 1
            warned_after.append(any("8388608" in record.getMessage() for record in caplog.records))
    assert refused is not None, "32 MiB were accepted into one document"
    assert 8 <= written < 16
    error = refused
    assert error.session_id == "big"
    assert "'big'" in str(error)
    assert f"{error.size_bytes:,}" in str(error)
    assert error.size_bytes + error.added_bytes > error.limit_bytes == MAX_DOCUMENT_BYTES
    # silent below 8 MiB, a warning on every write past it
    assert warned_after == [False] * 7 + [True] * (written - 7)
    # nothing was changed by the refused write, and what was stored is intact and readable
    document = mongo_db["sessions"].find_one({"_id": "big"})
    assert document is not None
    assert [m["message_id"] for m in document["agents"]["a1"]["messages"]] == list(range(written))
    assert len(repository.list_messages("big", "a1")) == written
    # the session still takes writes that fit
    repository.create_message("big", "a1", message(written, "small"))
    repository.update_metadata("big", {"status": "full"})


def test_single_message_larger_than_the_limit_is_refused(repository: MongoDBSessionRepository, mongo_db: Db) -> None:
    repository.create_session(Session(session_id="s1", session_type=SessionType.AGENT))
    repository.create_agent("s1", SessionAgent(agent_id="a1", state={}, conversation_manager_state={}))
    with pytest.raises(SessionTooLargeError, match="'s1'"):
        repository.create_message("s1", "a1", message(0, "y" * (17 * 1024 * 1024)))
    with pytest.raises(SessionTooLargeError):
        repository.update_metadata("s1", {"blob": "z" * (17 * 1024 * 1024)})
    document = mongo_db["sessions"].find_one({"_id": "s1"})
    assert document is not None
    assert document["agents"]["a1"]["messages"] == []
    assert document["metadata"] == {}
