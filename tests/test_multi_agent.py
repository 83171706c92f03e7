"""Graph and Swarm state persists in the session document and resumes through a new manager."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from pymongo import MongoClient
from pymongo.database import Database
from strands import Agent
from strands.hooks import BeforeNodeCallEvent, HookRegistry
from strands.multiagent import GraphBuilder, Status, Swarm
from strands.multiagent.graph import Graph
from strands.session.file_session_manager import FileSessionManager
from strands.session.session_manager import SessionManager
from strands.types.session import Session, SessionType

from mongodb_session_manager import MongoDBSessionManager, MongoDBSessionRepository
from mongodb_session_manager.errors import InvalidIdentifierError, SessionNotFoundError

from command_counter import HANDSHAKE_COMMANDS, CommandCounter
from helpers import texts
from multi_agent_stand_in import FixedState
from scripted_model import Raise, ScriptedModel, ToolCall

NewManager = Callable[..., MongoDBSessionManager]

HANDOFF = ToolCall("handoff_to_agent", {"agent_name": "b", "message": "your turn", "context": {"k": "v"}})


class Crash(BaseException):
    """Not an ``Exception``: escapes Strands' error handling like a process crash would."""


@dataclass
class ApprovalGate:
    """Interrupts the graph before node ``b`` and records the responses it is resumed with."""

    responses: list[Any] = field(default_factory=list)

    def register_hooks(self, registry: HookRegistry, **kwargs: Any) -> None:
        registry.add_callback(BeforeNodeCallEvent, self.before_node)

    def before_node(self, event: BeforeNodeCallEvent) -> None:
        if event.node_id == "b":
            self.responses.append(event.interrupt("approve_b", reason={"node": "b"}))


def build_graph(manager: SessionManager, model_a: ScriptedModel, model_b: ScriptedModel, gate: ApprovalGate) -> Graph:
    builder = GraphBuilder()
    builder.add_node(Agent(name="a", model=model_a, callback_handler=None), "a")
    builder.add_node(Agent(name="b", model=model_b, callback_handler=None), "b")
    builder.add_edge("a", "b")
    builder.set_entry_point("a")
    builder.set_graph_id("g1")
    builder.set_execution_timeout(60)
    builder.set_hook_providers([gate])
    builder.set_session_manager(manager)
    return builder.build()


def build_swarm(
    manager: SessionManager, model_a: ScriptedModel, model_b: ScriptedModel, swarm_id: str = "sw1"
) -> Swarm:
    agents = [
        Agent(name="a", model=model_a, callback_handler=None),
        Agent(name="b", model=model_b, callback_handler=None),
    ]
    return Swarm(agents, session_manager=manager, id=swarm_id)


def stored_entry(mongo_db: Database[dict[str, Any]], session_id: str, multi_agent_id: str) -> dict[str, Any]:
    document = mongo_db["sessions"].find_one({"_id": session_id})
    assert document is not None, f"session {session_id!r} was not stored"
    entry: dict[str, Any] = document["multi_agents"][multi_agent_id]
    return entry


def crash_swarm(new_manager: NewManager, session_id: str) -> None:
    """Run a swarm whose agent ``a`` hands off to ``b`` and whose ``b`` then crashes."""
    manager = new_manager(session_id)
    swarm = build_swarm(manager, ScriptedModel([HANDOFF, "handed off"]), ScriptedModel([Raise(Crash())]))
    with pytest.raises(Crash):
        swarm("task")


def prompt_text(messages: list[dict[str, Any]]) -> str:
    return "\n".join(texts(messages))


# -- Graph ------------------------------------------------------------------------------------


def test_interrupted_graph_is_stored_and_resumes_with_a_new_manager(
    new_manager: NewManager, mongo_db: Database[dict[str, Any]]
) -> None:
    model_a, model_b = ScriptedModel(["A done"]), ScriptedModel(["B done"])
    first = build_graph(new_manager("graph-session"), model_a, model_b, ApprovalGate())

    interrupted = first("task")

    assert interrupted.status == Status.INTERRUPTED
    assert [(i.name, i.reason) for i in interrupted.interrupts] == [("approve_b", {"node": "b"})]
    assert (len(model_a.calls), len(model_b.calls)) == (1, 0)
    entry = stored_entry(mongo_db, "graph-session", "g1")
    state = entry["state"]
    assert entry["multi_agent_id"] == "g1"
    assert (state["type"], state["id"], state["status"]) == ("graph", "g1", "interrupted")
    assert state["completed_nodes"] == ["a"]
    assert state["next_nodes_to_execute"] == ["b"]
    assert state["interrupted_nodes"] == ["b"]
    assert state["execution_order"] == ["a"]
    assert state["current_task"] == "task"
    assert list(state["node_results"]) == ["a"]
    assert state["node_results"]["a"]["result"]["message"]["content"] == [{"text": "A done"}]
    stored_interrupts = state["_internal_state"]["interrupt_state"]
    assert stored_interrupts["activated"] is True
    assert list(stored_interrupts["interrupts"]) == [interrupted.interrupts[0].id]

    # A new process: new manager (same session id), fresh models, nothing carried over in memory.
    resumed_a, resumed_b, gate = ScriptedModel([]), ScriptedModel(["B done"]), ApprovalGate()
    second = build_graph(new_manager("graph-session"), resumed_a, resumed_b, gate)
    assert second.state.status == Status.INTERRUPTED
    assert [node.node_id for node in second.state.completed_nodes] == ["a"]

    result = second([{"interruptResponse": {"interruptId": interrupted.interrupts[0].id, "response": "yes"}}])

    assert result.status == Status.COMPLETED
    assert [node.node_id for node in result.execution_order] == ["a", "b"]
    assert gate.responses == ["yes"]
    assert resumed_a.calls == []
    assert len(resumed_b.calls) == 1
    state = stored_entry(mongo_db, "graph-session", "g1")["state"]
    assert state["status"] == "completed"
    assert sorted(state["completed_nodes"]) == ["a", "b"]
    assert state["next_nodes_to_execute"] == []
    assert state["execution_order"] == ["a", "b"]
    assert state["node_results"]["b"]["result"]["message"]["content"] == [{"text": "B done"}]
    assert state["_internal_state"]["interrupt_state"]["activated"] is False

    # A completed graph restores to a fresh, pending one.
    third = build_graph(new_manager("graph-session"), ScriptedModel([]), ScriptedModel([]), ApprovalGate())
    assert third.state.status == Status.PENDING
    assert third.state.completed_nodes == set()
    assert third.state.execution_order == []


# -- Swarm ------------------------------------------------------------------------------------


def test_crashed_swarm_is_stored_and_resumes_at_the_handoff_target(
    new_manager: NewManager, mongo_db: Database[dict[str, Any]]
) -> None:
    crash_swarm(new_manager, "swarm-session")

    entry = stored_entry(mongo_db, "swarm-session", "sw1")
    state = entry["state"]
    assert (state["type"], state["id"], state["status"]) == ("swarm", "sw1", "executing")
    assert state["node_history"] == ["a"]
    assert state["next_nodes_to_execute"] == ["b"]
    assert state["current_task"] == "task"
    assert state["context"]["handoff_message"] == "your turn"
    assert state["context"]["shared_context"] == {"a": {"k": "v"}}
    assert list(state["node_results"]) == ["a"]
    assert state["node_results"]["a"]["result"]["message"]["content"] == [{"text": "handed off"}]

    resumed_a, resumed_b = ScriptedModel([]), ScriptedModel(["B final"])
    second = build_swarm(new_manager("swarm-session"), resumed_a, resumed_b)
    assert second.state.completion_status == Status.EXECUTING

    result = second("task")

    assert result.status == Status.COMPLETED
    assert [node.node_id for node in result.node_history] == ["a", "b"]
    assert resumed_a.calls == []
    assert len(resumed_b.calls) == 1
    # b received the restored handoff message and the shared context a left behind.
    assert "your turn" in prompt_text(resumed_b.calls[0])
    assert "'k': 'v'" in prompt_text(resumed_b.calls[0])
    state = stored_entry(mongo_db, "swarm-session", "sw1")["state"]
    assert state["status"] == "completed"
    assert state["node_history"] == ["a", "b"]
    assert state["next_nodes_to_execute"] == []
    assert state["node_results"]["b"]["result"]["message"]["content"] == [{"text": "B final"}]

    # A completed swarm restores to a fresh one, which runs the next task from the entry point.
    fresh_a, fresh_b = ScriptedModel(["A alone"]), ScriptedModel([])
    third = build_swarm(new_manager("swarm-session"), fresh_a, fresh_b)
    assert third.state.completion_status == Status.PENDING
    assert third.state.node_history == []

    again = third("another task")

    assert again.status == Status.COMPLETED
    assert [node.node_id for node in again.node_history] == ["a"]
    assert (len(fresh_a.calls), fresh_b.calls) == (1, [])
    state = stored_entry(mongo_db, "swarm-session", "sw1")["state"]
    assert (state["status"], state["node_history"], state["current_task"]) == ("completed", ["a"], "another task")


def test_resuming_a_swarm_costs_the_session_read_and_one_state_read(
    new_manager: NewManager,
    counting_client: tuple[MongoClient[dict[str, Any]], CommandCounter],
    layout: str,
) -> None:
    crash_swarm(new_manager, "counted")
    client, counter = counting_client
    counter.reset()

    manager = new_manager("counted", client=client)
    swarm = build_swarm(manager, ScriptedModel([]), ScriptedModel([]))

    # read_session (embedded: one aggregate; split: the session document, and no agent has messages to
    # fetch), then a fresh read of the multi-agent state; no write on restore.
    session_read = "aggregate" if layout == "embedded" else "find"
    assert counter.names(excluding={*HANDSHAKE_COMMANDS, "createIndexes"}) == [session_read, "find"]
    assert swarm.state.completion_status == Status.EXECUTING
    assert [node.node_id for node in swarm.state.node_history] == ["a"]


def test_multi_agent_with_an_unsafe_id_is_refused_before_anything_is_written(
    new_manager: NewManager, mongo_db: Database[dict[str, Any]]
) -> None:
    manager = new_manager("unsafe")
    before = mongo_db["sessions"].find_one({"_id": "unsafe"})

    with pytest.raises(InvalidIdentifierError):
        build_swarm(manager, ScriptedModel([]), ScriptedModel([]), swarm_id="a.b")

    assert mongo_db["sessions"].find_one({"_id": "unsafe"}) == before
    assert before is not None
    assert before["multi_agents"] == {}


# -- Repository contract ----------------------------------------------------------------------


@pytest.fixture
def session_id(repository: MongoDBSessionRepository) -> str:
    repository.create_session(Session(session_id="contract", session_type=SessionType.AGENT))
    return "contract"


def test_read_multi_agent_returns_none_when_nothing_was_stored(
    repository: MongoDBSessionRepository, session_id: str
) -> None:
    assert repository.read_multi_agent(session_id, "never-created") is None
    assert repository.read_multi_agent("no-such-session", "never-created") is None
    assert repository.read_session(session_id) is not None  # also through the session-read snapshot
    assert repository.read_multi_agent(session_id, "never-created") is None


def test_update_multi_agent_that_was_never_created_raises_and_writes_nothing(
    repository: MongoDBSessionRepository, session_id: str, mongo_db: Database[dict[str, Any]]
) -> None:
    before = mongo_db["sessions"].find_one({"_id": session_id})

    with pytest.raises(SessionNotFoundError, match="never-created"):
        repository.update_multi_agent(session_id, FixedState("never-created", {"v": 1}))  # type: ignore[arg-type]
    with pytest.raises(SessionNotFoundError, match="no-such-session"):
        repository.update_multi_agent("no-such-session", FixedState("m", {"v": 1}))  # type: ignore[arg-type]

    assert mongo_db["sessions"].find_one({"_id": session_id}) == before
    assert mongo_db["sessions"].count_documents({}) == 1


def test_create_multi_agent_twice_keeps_the_first_state(
    repository: MongoDBSessionRepository, session_id: str, mongo_db: Database[dict[str, Any]]
) -> None:
    repository.create_multi_agent(session_id, FixedState("m1", {"v": 1, "nested": {"x": [1, 2]}}))  # type: ignore[arg-type]
    first = stored_entry(mongo_db, session_id, "m1")

    repository.create_multi_agent(session_id, FixedState("m1", {"v": 2}))  # type: ignore[arg-type]

    assert stored_entry(mongo_db, session_id, "m1") == first
    assert first["state"] == {"v": 1, "nested": {"x": [1, 2]}}
    assert repository.read_multi_agent(session_id, "m1") == {"v": 1, "nested": {"x": [1, 2]}}

    repository.update_multi_agent(session_id, FixedState("m1", {"v": 3}))  # type: ignore[arg-type]

    updated = stored_entry(mongo_db, session_id, "m1")
    assert updated["state"] == {"v": 3}
    assert updated["created_at"] == first["created_at"]
    assert updated["updated_at"] >= first["updated_at"]
    assert repository.read_multi_agent(session_id, "m1") == {"v": 3}


@pytest.mark.parametrize("bad_id", ["a.b", "$x", "", "nul\x00byte", 7])
def test_invalid_multi_agent_id_raises_and_writes_nothing(
    repository: MongoDBSessionRepository, session_id: str, mongo_db: Database[dict[str, Any]], bad_id: Any
) -> None:
    before = mongo_db["sessions"].find_one({"_id": session_id})
    multi_agent = FixedState(bad_id, {"v": 1})

    with pytest.raises(InvalidIdentifierError) as created:
        repository.create_multi_agent(session_id, multi_agent)  # type: ignore[arg-type]
    with pytest.raises(InvalidIdentifierError):
        repository.update_multi_agent(session_id, multi_agent)  # type: ignore[arg-type]
    with pytest.raises(InvalidIdentifierError):
        repository.read_multi_agent(session_id, bad_id)

    assert created.value.field == "multi_agent_id"
    after = mongo_db["sessions"].find_one({"_id": session_id})
    assert after == before
    assert after is not None
    assert after["multi_agents"] == {}


# -- Freshness --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "backend",
    [
        "file",
        "mongodb",
    ],
)
def test_swarm_built_later_restores_the_current_state_not_the_one_seen_at_manager_creation(
    backend: str, new_manager: NewManager, tmp_path: Path
) -> None:
    def make_manager() -> SessionManager:
        if backend == "file":
            return FileSessionManager("stale", storage_dir=str(tmp_path))
        return new_manager("stale")

    with pytest.raises(Crash):
        build_swarm(make_manager(), ScriptedModel([HANDOFF, "handed off"]), ScriptedModel([Raise(Crash())]))("task")
    early = make_manager()  # opened while the swarm is still crashed mid-run
    finisher = build_swarm(make_manager(), ScriptedModel([]), ScriptedModel(["B final"]))
    assert finisher("task").status == Status.COMPLETED  # another worker finishes the run

    late_a, late_b = ScriptedModel(["A again"]), ScriptedModel(["B again"])
    late = build_swarm(early, late_a, late_b)

    # The stored run is complete, so the swarm must start fresh rather than re-run b.
    assert late.state.completion_status == Status.PENDING
    assert late.state.node_history == []
    result = late("next task")
    assert [node.node_id for node in result.node_history] == ["a"]
    assert (len(late_a.calls), late_b.calls) == (1, [])
