"""Concurrent writers, concurrent creation and the 16 MiB document limit, on the real server."""

import logging
import threading
from collections.abc import Callable
from typing import Any

import bson
import pytest
from pymongo.database import Database
from strands import Agent
from strands.types.exceptions import EventLoopException
from strands.types.session import Session, SessionAgent, SessionType

from mongodb_session_manager import MongoDBSessionManager, MongoDBSessionRepository
from mongodb_session_manager._session_documents import MAX_DOCUMENT_BYTES
from mongodb_session_manager.errors import SessionConflictError, SessionTooLargeError, StaleAgentError

from helpers import run_together, session_with_agent, text_message
from scripted_model import ScriptedModel
from stored_sessions import SESSIONS, StoredSessions

Db = Database[dict[str, Any]]
THREADS = 8


def test_same_message_id_from_two_writers_only_one_wins(
    repository: MongoDBSessionRepository, mongo_client: Any, database_name: str, stored: StoredSessions, layout: str
) -> None:
    session_with_agent(repository)

    def append(index: int) -> int:
        own = MongoDBSessionRepository(client=mongo_client, database_name=database_name, layout=layout)
        own.create_message("s1", "a1", text_message(0, f"writer {index}"))
        return index

    winners, errors = run_together(THREADS, append)
    assert len(winners) == 1
    assert len(errors) == THREADS - 1
    assert all(isinstance(error, SessionConflictError) for error in errors), errors
    [kept] = stored.messages("s1", "a1")
    assert kept["message"]["content"] == [{"text": f"writer {winners[0]}"}]


def test_stale_manager_gets_a_conflict_and_changes_nothing(
    new_manager: Callable[..., MongoDBSessionManager], stored: StoredSessions
) -> None:
    first = Agent(model=ScriptedModel(["one"]), session_manager=new_manager("s1"), callback_handler=None)
    first("hello")
    # two processes resume the same conversation at the same point ...
    left = Agent(model=ScriptedModel(["left"]), session_manager=new_manager("s1"), callback_handler=None)
    right = Agent(model=ScriptedModel(["right"]), session_manager=new_manager("s1"), callback_handler=None)
    left("from left")
    before = stored.everything()
    assert stored.message_ids("s1", "default") == [0, 1, 2, 3]
    # ... the second writer of message 2 is refused with a typed error
    with pytest.raises(SessionConflictError, match="message 2"):
        right("from right")
    # the loser is stale: it neither retries under a new id nor syncs its outdated state
    right.state.set("written_by", "right")
    with pytest.raises(StaleAgentError):
        right("again from right")
    assert stored.everything() == before
    # a new Agent resumes what the winner stored
    fresh = Agent(model=ScriptedModel([]), session_manager=new_manager("s1"), callback_handler=None)
    assert [m["content"][0]["text"] for m in fresh.messages] == ["hello", "one", "from left", "left"]


def test_concurrent_first_requests_for_a_new_session_all_succeed(
    new_manager: Callable[..., MongoDBSessionManager], mongo_db: Db, stored: StoredSessions
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
    # every stored turn is complete and in order: no duplicate, no gap, nothing from a refused writer
    assert stored.message_ids("brand-new", "default") == list(range(2 * len(answers)))


@pytest.mark.parametrize("layout", ["embedded"], indirect=True)  # the split layout has no session-size limit
def test_write_that_would_pass_16_mib_is_refused_before_it_happens(
    repository: MongoDBSessionRepository, mongo_db: Db, caplog: pytest.LogCaptureFixture
) -> None:
    session_with_agent(repository, "big")
    one_mib = "x" * (1024 * 1024)
    written = 0
    refused: SessionTooLargeError | None = None
    warned_after: list[bool] = []  # per accepted write: did it log the size warning?
    with caplog.at_level(logging.WARNING, logger="mongodb_session_manager"):
        for message_id in range(32):
            caplog.clear()
            try:
                repository.create_message("big", "a1", text_message(message_id, one_mib))
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
    repository.create_message("big", "a1", text_message(written, "small"))
    repository.update_metadata("big", {"status": "full"})


def test_single_message_larger_than_the_limit_is_refused(
    repository: MongoDBSessionRepository, mongo_db: Db, stored: StoredSessions
) -> None:
    session_with_agent(repository)
    before = stored.everything()
    with pytest.raises(SessionTooLargeError, match="'s1'"):
        repository.create_message("s1", "a1", text_message(0, "y" * (17 * 1024 * 1024)))
    with pytest.raises(SessionTooLargeError):
        repository.update_metadata("s1", {"blob": "z" * (17 * 1024 * 1024)})
    assert stored.everything() == before
    assert stored.messages("s1", "a1") == []
    document = mongo_db["sessions"].find_one({"_id": "s1"})
    assert document is not None
    assert document["metadata"] == {}


@pytest.mark.parametrize("layout", ["embedded"], indirect=True)  # the split layout resumes from message documents
def test_embedded_resume_document_of_a_full_session_stays_under_16_mib(
    repository: MongoDBSessionRepository, mongo_db: Db
) -> None:
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


TURNS = 10


def unwrapped(error: BaseException) -> BaseException:
    """The library's error inside Strands' ``EventLoopException`` (raised for writes during a model turn)."""
    return error.original_exception if isinstance(error, EventLoopException) else error


def test_eight_writers_take_ten_turns_each_on_one_agent(
    new_manager: Callable[..., MongoDBSessionManager], stored: StoredSessions
) -> None:
    """Eight processes' worth of managers and Agents share one conversation; none of them can corrupt it."""
    new_manager("shared")  # the session exists before the writers start
    lock = threading.Lock()
    completed: list[str] = []  # the prompt of every turn that returned normally
    conflicted: list[str] = []  # the prompt of every turn refused with SessionConflictError
    stale: list[BaseException] = []  # what a refused Agent raised when used again
    unexpected: list[BaseException] = []

    def new_agent() -> Agent:
        return Agent(model=ScriptedModel.echo(), session_manager=new_manager("shared"), callback_handler=None)

    def writer(index: int, agent: Agent) -> None:
        for turn in range(TURNS):
            prompt = f"writer {index} turn {turn}"
            try:
                agent(prompt)
            except (SessionConflictError, EventLoopException) as error:
                # a refused user message raises as it is; Strands wraps one refused inside its event loop
                if not isinstance(unwrapped(error), SessionConflictError):
                    with lock:
                        unexpected.append(error)
                    return
                with lock:
                    conflicted.append(prompt)
                try:  # the refused Agent is stale: it must not write under a new id
                    agent(f"{prompt} retried by the stale agent")
                except BaseException as error:
                    with lock:
                        stale.append(error)
                agent = new_agent()  # the documented recovery: resume from what is stored
            except BaseException as error:
                with lock:
                    unexpected.append(error)
                return
            else:
                with lock:
                    completed.append(prompt)

    # every writer resumes the same (empty) conversation, so all of them race for message 0 at once
    agents, errors = run_together(THREADS, lambda _: new_agent())
    assert errors == []
    _, errors = run_together(THREADS, lambda index: writer(index, agents[index]))
    assert errors == []

    assert unexpected == []
    assert len(completed) + len(conflicted) == THREADS * TURNS
    # all eight raced for message 0 from the same resume point: at most one could win it
    assert len(conflicted) >= THREADS - 1
    assert len(stale) == len(conflicted)
    assert all(isinstance(error, StaleAgentError) for error in stale), stale
    messages = stored.messages("shared", "default")
    ids = [m["message_id"] for m in messages]
    # no duplicate, no gap
    assert ids == list(range(len(ids)))
    texts = [m["message"]["content"][0]["text"] for m in messages]
    assert len(set(texts)) == len(texts)
    assert not any("retried by the stale agent" in text for text in texts)
    # every completed turn is stored whole; a refused turn left at most its user message
    for prompt in completed:
        assert prompt in texts, prompt
        assert f"echo: {prompt}" in texts, prompt
    for prompt in conflicted:
        assert f"echo: {prompt}" not in texts, prompt
    assert 2 * len(completed) <= len(ids) <= 2 * len(completed) + len(conflicted)
    # and the stored conversation resumes whole, from where the default sliding window left it
    resumed = new_agent()
    removed = resumed.conversation_manager.removed_message_count
    assert [m["content"][0]["text"] for m in resumed.messages] == texts[removed:]


MIB = 1024 * 1024


def test_a_mebibyte_per_turn(
    new_manager: Callable[..., MongoDBSessionManager], stored: StoredSessions, layout: str
) -> None:
    """Embedded: refused before 16 MiB with nothing corrupted. Split: no session-size limit."""
    turns = 20
    agent = Agent(model=ScriptedModel(["ok"] * turns), session_manager=new_manager("big"), callback_handler=None)
    completed = 0
    refused: SessionTooLargeError | None = None
    for turn in range(turns):
        try:
            agent(f"turn {turn} " + "x" * MIB)
        except SessionTooLargeError as error:
            refused = error
            break
        completed += 1
    ids = stored.message_ids("big", "default")
    if layout == "embedded":
        assert refused is not None, "20 MiB were accepted into one session document"
        assert 8 <= completed < 16
        # the refused user message was not stored; every turn before it is stored whole
        assert ids == list(range(2 * completed))
        assert stored.total_bytes("big") < MAX_DOCUMENT_BYTES
        with pytest.raises(StaleAgentError):
            agent("after the refusal")
        assert stored.message_ids("big", "default") == ids
    else:
        assert refused is None
        assert completed == turns
        assert ids == list(range(2 * turns))
        assert stored.total_bytes("big") > turns * MIB > MAX_DOCUMENT_BYTES
    resumed = Agent(model=ScriptedModel(["small answer"]), session_manager=new_manager("big"), callback_handler=None)
    restored = [m["content"][0]["text"] for m in resumed.messages]
    assert len(restored) == len(ids)
    assert [text[: len(f"turn {n} ")] for text, n in zip(restored[::2], range(completed), strict=True)] == [
        f"turn {n} " for n in range(completed)
    ]
    assert all(len(text) == len(f"turn {n} ") + MIB for n, text in enumerate(restored[::2]))
    assert restored[1::2] == ["ok"] * completed
    # the session still takes what fits
    resumed("small")
    assert stored.message_ids("big", "default") == list(range(len(ids) + 2))
