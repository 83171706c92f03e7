"""Faults: the database server is SIGKILLed (or frozen) in the middle of a conversation.

The first two tests run SecantusDB as a child process on disk (``--sync-on-commit``, so an
acknowledged write survives SIGKILL) on a loopback port of their own; they never use
``MONGODB_URI``'s server, and the child is always killed and reaped at teardown.

* SIGKILL, mid-turn (a tool the agent calls kills the server, after the user message and the
  assistant's tool call were stored and before the tool result is): every operation during the
  outage raises a pymongo error within the client's timeouts, the agent that missed a write refuses
  to go on (``StaleAgentError``, no I/O); after a restart on the same port and data directory
  every acknowledged message is stored (nothing lost, nothing half-written, ids contiguous), the
  manager that lived through the outage reads them, a brand-new manager resumes them into a new
  Agent, and the next turn works and is stored.
* SIGSTOP (a hung server: connections open, no answers): with ``timeoutMS`` the turn fails within
  it; the write that timed out may still land when the server resumes, but whole and only once.
* The last test (on the shared test server): after a failed write, a new Agent on the same manager
  resumes from what is stored, while the stale Agent stays refused.
"""

from __future__ import annotations

import contextlib
import copy
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from pymongo import MongoClient
from pymongo.errors import ConnectionFailure, PyMongoError
from strands import Agent, tool
from strands.types.exceptions import SessionException

from mongodb_session_manager import MongoDBSessionManager
from mongodb_session_manager.errors import SessionConflictError, StaleAgentError

from scripted_model import ScriptedModel, ToolCall
from stored_sessions import StoredSessions

DATABASE = "faults"
SESSION = "faults-1"
AGENT_ID = "default"

SERVER_SELECTION_TIMEOUT_MS = 1500
CONNECT_TIMEOUT_MS = 1000
SOCKET_TIMEOUT_MS = 2000
CLIENT_OPTIONS: dict[str, Any] = {
    "serverSelectionTimeoutMS": SERVER_SELECTION_TIMEOUT_MS,
    "connectTimeoutMS": CONNECT_TIMEOUT_MS,
    "socketTimeoutMS": SOCKET_TIMEOUT_MS,
}
MARGIN_S = 1.5
"""Slack for a loaded machine on top of the configured timeouts."""
OUTAGE_BOUND_S = (SERVER_SELECTION_TIMEOUT_MS + CONNECT_TIMEOUT_MS) / 1000 + MARGIN_S
"""An operation during the outage must have raised by then: one server selection plus one connect attempt
(a retryable write may first fail on a pooled socket, then wait for a server to select)."""
STARTUP_DEADLINE_S = 20
"""A child server that is not serving by then fails the test (with its log)."""

Summary = list[tuple[str, list[dict[str, Any]]]]


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


def accepts_connections(port: int) -> bool:
    try:
        socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
    except OSError:
        return False
    return True


class ServerProcess:
    """SecantusDB as a child process on one port and data directory; restartable, killed at teardown."""

    def __init__(self, workdir: Path) -> None:
        self.port = free_port()
        self.data = workdir / "data"
        self.log = workdir / "secantusd.log"
        self.config = workdir / "secantusd.toml"
        self.config.write_text("")  # an explicit, empty config: no secantusd.toml is picked up from the cwd
        self.process: subprocess.Popen[bytes] | None = None
        self.exited: list[int] = []
        """Return codes of the server processes stopped so far (all reaped)."""

    @property
    def uri(self) -> str:
        return f"mongodb://127.0.0.1:{self.port}/"

    def start(self) -> float:
        """Start the server and wait until it answers ``ping``; return how long that took."""
        assert self.process is None, "already running"
        started = time.monotonic()
        command = [
            sys.executable,
            "-m",
            "secantus",
            "--config",
            str(self.config),
            "--host",
            "127.0.0.1",
            "--port",
            str(self.port),
            "--storage-path",
            str(self.data),
            "--sync-on-commit",
            "--log-level",
            "WARNING",
        ]
        with self.log.open("ab") as log:
            # A session (process group) of its own: killpg reaches anything it spawns, and a Ctrl-C
            # aimed at pytest does not kill it before the teardown does.
            self.process = subprocess.Popen(
                command, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
            )
        deadline = started + STARTUP_DEADLINE_S
        while not accepts_connections(self.port):
            if self.process.poll() is not None:
                self._reap()
                pytest.fail(f"secantus exited with {self.exited[-1]} on start:\n{self.log_tail()}")
            if time.monotonic() > deadline:
                self.kill()
                pytest.fail(f"secantus did not listen on {self.port} within {STARTUP_DEADLINE_S}s:\n{self.log_tail()}")
            time.sleep(0.05)
        with MongoClient(self.uri, serverSelectionTimeoutMS=STARTUP_DEADLINE_S * 1000) as client:
            client.admin.command("ping")
        return time.monotonic() - started

    def kill(self) -> None:
        """SIGKILL the server (and its process group) and reap it."""
        if self.process is None:
            return
        with contextlib.suppress(ProcessLookupError):  # it may have died on its own
            os.killpg(self.process.pid, signal.SIGKILL)
        self._reap()

    def signal(self, number: signal.Signals) -> None:
        """Send ``number`` (e.g. SIGSTOP, SIGCONT) to the server's process group."""
        assert self.process is not None, "not running"
        os.killpg(self.process.pid, number)

    def _reap(self) -> None:
        assert self.process is not None
        process, self.process = self.process, None
        self.exited.append(process.wait(timeout=10))

    def log_tail(self) -> str:
        return self.log.read_text(errors="replace")[-4000:] if self.log.exists() else "(no log)"


@pytest.fixture
def server(tmp_path: Path) -> Iterator[ServerProcess]:
    running = ServerProcess(tmp_path)
    try:
        yield running
    finally:
        running.kill()


def pymongo_error_in_chain(error: BaseException) -> PyMongoError | None:
    """The first pymongo error in ``error``'s cause/context chain (Strands may wrap it)."""
    seen: set[int] = set()
    current: BaseException | None = error
    while current is not None and id(current) not in seen:
        if isinstance(current, PyMongoError):
            return current
        seen.add(id(current))
        current = current.__cause__ or current.__context__
    return None


def fails_promptly(operation: Callable[[], object], bound_s: float = OUTAGE_BOUND_S) -> tuple[PyMongoError, float]:
    """Run ``operation``, which must raise a pymongo network error within ``bound_s``; return it and the time."""
    started = time.monotonic()
    with pytest.raises(BaseException) as failed:  # noqa: PT011 - a pymongo error in the chain is asserted below
        operation()
    elapsed = time.monotonic() - started
    error = pymongo_error_in_chain(failed.value)
    # ServerSelectionTimeoutError, AutoReconnect (NetworkTimeout, a reset socket) and the like
    assert isinstance(error, ConnectionFailure), f"not a network error: {failed.value!r}"
    assert elapsed < bound_s, f"{error!r} took {elapsed:.2f}s to raise (bound {bound_s:.1f}s)"
    return error, elapsed


def summary(messages: list[Any]) -> Summary:
    """(role, content) of each message, copied: Strands may edit its message dicts later."""
    return [(m["role"], copy.deepcopy(m["content"])) for m in messages]


def stored_summary(uri: str, layout: str) -> tuple[list[int], Summary]:
    """Message ids and (role, content) of everything stored for the agent, read with a client of its own."""
    with MongoClient(uri, serverSelectionTimeoutMS=5000) as client:
        messages = StoredSessions(client[DATABASE], layout).messages(SESSION, AGENT_ID)
    return [m["message_id"] for m in messages], summary([m["message"] for m in messages])


def test_sigkill_mid_turn_fails_fast_and_every_acknowledged_message_survives_a_restart(
    server: ServerProcess, layout: str
) -> None:
    timings: dict[str, float] = {"first start": server.start()}
    uri = server.uri
    acknowledged: list[Summary] = []
    """What the agent held after each completed turn (every one of its messages was acknowledged)."""
    at_kill: Summary = []

    @tool
    def pull_the_plug() -> str:
        """Kill the database server."""
        # Strands appended (and the manager stored) the user message and this tool call before running it.
        at_kill.extend(summary(agent.messages))
        server.kill()
        return "unplugged"

    model = ScriptedModel(["answer one", "answer two", ToolCall("pull_the_plug"), "never given"])
    manager = MongoDBSessionManager(
        SESSION, connection_string=uri, database_name=DATABASE, layout=layout, **CLIENT_OPTIONS
    )
    try:
        agent = Agent(model=model, tools=[pull_the_plug], session_manager=manager, callback_handler=None)
        for number in ("one", "two"):
            assert str(agent(f"question {number}")).strip() == f"answer {number}"
            acknowledged.append(summary(agent.messages))
            assert stored_summary(uri, layout) == (list(range(len(agent.messages))), acknowledged[-1])
        assert [len(turn) for turn in acknowledged] == [2, 4]

        # Turn three: the tool kills the server; storing the tool result then fails.
        _, timings["failed turn"] = fails_promptly(lambda: agent("question three"))
        assert server.exited == [-signal.SIGKILL]
        assert not accepts_connections(server.port)
        assert at_kill[:4] == acknowledged[-1]
        assert [role for role, _ in at_kill] == ["user", "assistant"] * 3
        assert at_kill[-1][1][0]["toolUse"]["name"] == "pull_the_plug"
        assert len(model.calls) == 3  # the model was not asked to go on without the tool result stored

        # The agent's memory now holds a message the store does not: it refuses at once, without I/O.
        started = time.monotonic()
        with pytest.raises(StaleAgentError, match="create a new Agent"):
            agent("question four")
        timings["stale agent refusal"] = time.monotonic() - started
        assert timings["stale agent refusal"] < 0.5
        assert len(model.calls) == 3

        # Reads through the same manager, and a new manager, fail within the timeouts too.
        _, timings["read during outage"] = fails_promptly(lambda: manager.repository.read_session(SESSION))
        _, timings["new manager during outage"] = fails_promptly(
            lambda: MongoDBSessionManager(
                SESSION, connection_string=uri, database_name=DATABASE, layout=layout, **CLIENT_OPTIONS
            )
        )

        # Restart on the same port and data directory.
        timings["restart"] = server.start()
        assert server.uri == uri

        # Every acknowledged message is stored: the two full turns and the half of turn three that was
        # acknowledged before the kill; the tool result that failed is not.
        assert stored_summary(uri, layout) == (list(range(6)), at_kill)

        # The manager that lived through the outage reconnects and reads all of it ...
        started = time.monotonic()
        assert manager.repository.read_session(SESSION) is not None
        timings["same manager reconnects"] = time.monotonic() - started
        listed = manager.repository.list_messages(SESSION, AGENT_ID)
        assert [m.message_id for m in listed] == list(range(6))
        assert summary([m.to_message() for m in listed]) == at_kill
        # ... but its old Agent stays stale: its memory holds the tool result the store never got.
        with pytest.raises(StaleAgentError):
            agent("question four")
        assert len(model.calls) == 3
    finally:
        manager.close()

    # A brand-new manager resumes exactly what was acknowledged, and the next turn works and is stored.
    resumed_model = ScriptedModel(["answer four"])
    with MongoDBSessionManager(
        SESSION, connection_string=uri, database_name=DATABASE, layout=layout, **CLIENT_OPTIONS
    ) as resumed_manager:
        resumed = Agent(
            model=resumed_model, tools=[pull_the_plug], session_manager=resumed_manager, callback_handler=None
        )
        assert summary(resumed.messages) == at_kill

        assert str(resumed("question four")).strip() == "answer four"

        final = summary(resumed.messages)
    # Strands answers the dangling tool call with an error result before the new question.
    tool_use_id = at_kill[-1][1][0]["toolUse"]["toolUseId"]
    assert final[:6] == at_kill
    assert final[6][0] == "user"
    assert [(block["toolResult"]["toolUseId"], block["toolResult"]["status"]) for block in final[6][1]] == [
        (tool_use_id, "error")
    ]
    assert final[7:] == [("user", [{"text": "question four"}]), ("assistant", [{"text": "answer four"}])]
    assert summary(resumed_model.calls[0]) == final[:-1]  # the model saw the whole acknowledged history
    assert stored_summary(uri, layout) == (list(range(len(final))), final)

    server.kill()
    assert server.exited == [-signal.SIGKILL, -signal.SIGKILL]
    print(f"\n[{layout}] " + ", ".join(f"{name}: {seconds:.3f}s" for name, seconds in timings.items()))


def settled_summary(uri: str, layout: str) -> tuple[list[int], Summary]:
    """What is stored once two reads 0.3 s apart agree (a write sent before a freeze may land after the thaw)."""
    previous = stored_summary(uri, layout)
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        time.sleep(0.3)
        current = stored_summary(uri, layout)
        if current == previous:
            return current
        previous = current
    pytest.fail("the stored messages kept changing after the server was resumed")


def test_frozen_server_times_out_within_timeout_ms_and_an_unacknowledged_write_lands_whole_or_not_at_all(
    server: ServerProcess, layout: str
) -> None:
    # SIGSTOP: the server keeps its sockets open and the kernel still accepts connections, but nothing answers,
    # so only client-side timeouts end an operation. timeoutMS bounds an operation including its retries
    # (socketTimeoutMS alone does not: a retried write against a frozen server took about 3 x socketTimeoutMS).
    timeout_ms = 2000
    timings: dict[str, float] = {"start": server.start()}
    uri = server.uri
    manager = MongoDBSessionManager(
        SESSION, connection_string=uri, database_name=DATABASE, layout=layout, timeoutMS=timeout_ms, **CLIENT_OPTIONS
    )
    try:
        agent = Agent(model=ScriptedModel.echo(), session_manager=manager, callback_handler=None)
        agent("before the freeze")
        acknowledged = summary(agent.messages)

        server.signal(signal.SIGSTOP)
        try:
            error, timings["turn against a frozen server"] = fails_promptly(
                lambda: agent("during the freeze"), bound_s=timeout_ms / 1000 + MARGIN_S
            )
            assert error.timeout, f"not a timeout: {error!r}"
        finally:
            server.signal(signal.SIGCONT)
        with pytest.raises(StaleAgentError):
            agent("after the freeze")

        # The same manager's client works again without a restart.
        started = time.monotonic()
        assert manager.repository.read_session(SESSION) is not None
        timings["same manager after the thaw"] = time.monotonic() - started
    finally:
        manager.close()

    # The user message that timed out was sent, not acknowledged: the server may still have applied it when it
    # resumed. Either way it is whole and stored once, after everything that was acknowledged.
    ids, stored = settled_summary(uri, layout)
    assert ids == list(range(len(stored)))
    assert stored[: len(acknowledged)] == acknowledged
    assert stored[len(acknowledged) :] in ([], [("user", [{"text": "during the freeze"}])])

    with MongoDBSessionManager(
        SESSION, connection_string=uri, database_name=DATABASE, layout=layout, timeoutMS=timeout_ms, **CLIENT_OPTIONS
    ) as resumed_manager:
        resumed = Agent(model=ScriptedModel.echo(), session_manager=resumed_manager, callback_handler=None)
        assert summary(resumed.messages) == stored
        assert str(resumed("after the thaw")).strip() == "echo: after the thaw"
        final = summary(resumed.messages)
    assert stored_summary(uri, layout) == (list(range(len(final))), final)
    print(
        f"\n[{layout}] landed after the thaw: {len(stored) > len(acknowledged)}, "
        + ", ".join(f"{name}: {seconds:.3f}s" for name, seconds in timings.items())
    )


def test_same_manager_resumes_with_a_new_agent_after_a_failed_write(
    new_manager: Callable[..., MongoDBSessionManager], stored: StoredSessions
) -> None:
    # Any failed append makes the Agent stale; a conflict is the cheapest to cause (no server kill needed).
    manager = new_manager("same")
    agent = Agent(model=ScriptedModel(["one"]), session_manager=manager, callback_handler=None)
    agent("first")
    other = Agent(model=ScriptedModel(["other"]), session_manager=new_manager("same"), callback_handler=None)
    other("another writer's turn")  # stores message ids 2 and 3
    with pytest.raises(SessionConflictError):
        agent("second")  # id 2 is taken: this Agent is stale
    assert stored.message_ids("same", AGENT_ID) == [0, 1, 2, 3]

    # StaleAgentError says "create a new Agent with this session id to resume": on the same manager too.
    fresh = Agent(model=ScriptedModel(["two"]), session_manager=manager, callback_handler=None)
    assert len(fresh.messages) == 4
    fresh("third")
    assert stored.message_ids("same", AGENT_ID) == [0, 1, 2, 3, 4, 5]
    with pytest.raises(StaleAgentError):
        agent("the stale Agent stays refused")
    assert stored.message_ids("same", AGENT_ID) == [0, 1, 2, 3, 4, 5]
    with pytest.raises(SessionException, match="unique"):
        Agent(model=ScriptedModel(), session_manager=manager, callback_handler=None)  # the id is taken again
