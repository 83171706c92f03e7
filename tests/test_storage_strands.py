"""MongoDBStorage behind Strands' own users of ``Storage``, end to end with real Agents and ScriptedModel.

``SnapshotSessionManager`` (persist, resume in a new process, checkpoints, time travel, delete,
a Swarm resuming from its snapshot), ``Agent(storage=...)``, the context offloader and
``MemoryManager`` with ``FileMemoryStore``.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from pymongo import MongoClient
from pymongo.database import Database
from strands import Agent, tool
from strands._async import run_async
from strands.memory import MemoryManager
from strands.multiagent import Status, Swarm
from strands.session import SnapshotSessionManager
from strands.vended_memory_stores.file_memory_store import FileMemoryStore
from strands.vended_plugins.context_offloader import ContextOffloader

from mongodb_session_manager import MongoDBStorage

from scripted_model import Raise, ScriptedModel, ToolCall
from storage_support import visible_documents

Client = MongoClient[dict[str, Any]]
Db = Database[dict[str, Any]]

ROOT = Path(__file__).resolve().parent.parent
SNAPSHOTS = "session/{session}/scopes/agent/default/snapshots/"


class Crash(BaseException):
    """Not an ``Exception``: escapes Strands' error handling like a process crash would."""


@pytest.fixture
def storage(mongo_client: Client, database_name: str) -> MongoDBStorage:
    return MongoDBStorage(client=mongo_client, database_name=database_name)


def texts(messages: list[Any]) -> list[str]:
    return [block["text"] for message in messages for block in message["content"] if "text" in block]


def always(**kwargs: Any) -> bool:
    return True


def storage_read(storage: MongoDBStorage, key: str) -> bytes:
    """Read from sync code, as Strands does (``run_async``)."""
    data = run_async(lambda: storage.read(key))
    assert data is not None, key
    return data


async def test_a_session_persisted_by_one_process_resumes_and_travels_in_time_in_another(
    mongodb_uri: str, database_name: str, storage: MongoDBStorage, mongo_db: Db
) -> None:
    child = subprocess.run(
        [sys.executable, str(ROOT / "tests" / "snapshot_conversation_child.py"), mongodb_uri, database_name, "s1"],
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, "PYTHONPATH": str(ROOT / "examples")},
        check=False,
    )
    assert child.returncode == 0, child.stderr
    first, second = child.stdout.split()
    prefix = SNAPSHOTS.format(session="s1")
    assert await storage.list("session/") == [
        f"{prefix}immutable_history/snapshot_{first}.json",
        f"{prefix}immutable_history/snapshot_{second}.json",
        f"{prefix}snapshot_latest.json",
    ]

    manager = SnapshotSessionManager("s1", storage=storage)
    agent = Agent(model=ScriptedModel(["Teal, and Miso."]), session_manager=manager, callback_handler=None)
    assert texts(agent.messages) == [
        "My favourite colour is teal.",
        "Teal, noted.",
        "And my cat is called Miso.",
        "Miso, noted.",
    ]
    assert agent.state.get("turns") == 2
    assert await manager.list_snapshot_ids(agent) == [first, second]
    assert await manager.list_snapshot_ids(agent, limit=1) == [first]
    assert await manager.list_snapshot_ids(agent, start_after=first) == [second]
    checkpoint = await storage.read(f"{prefix}immutable_history/snapshot_{first}.json")

    agent("What do you know about me?")
    latest = json.loads(await storage.read(f"{prefix}snapshot_latest.json") or b"")
    assert len(latest["data"]["messages"]) == 6
    assert await manager.list_snapshot_ids(agent) == [first, second]  # no trigger here: no new checkpoint

    assert await manager.restore_snapshot(agent, snapshot_id=first)
    assert texts(agent.messages) == ["My favourite colour is teal.", "Teal, noted."]
    assert agent.state.get("turns") == 1
    assert await storage.read(f"{prefix}immutable_history/snapshot_{first}.json") == checkpoint

    await manager.delete_session()
    assert await storage.list("session/s1/") == []
    assert not [key for key in visible_documents(mongo_db) if key.startswith("session/s1/")]


async def test_checkpoints_page_and_restore(storage: MongoDBStorage) -> None:
    manager = SnapshotSessionManager("s2", storage=storage, snapshot_trigger=always)
    agent = Agent(model=ScriptedModel.echo(), session_manager=manager, callback_handler=None)
    for turn in range(5):
        await agent.invoke_async(f"turn {turn}")
    ids = await manager.list_snapshot_ids(agent)
    assert len(ids) == 5
    assert ids == sorted(ids)

    pages, cursor = [], None
    while page := await manager.list_snapshot_ids(agent, limit=2, start_after=cursor):
        pages.append(page)
        cursor = page[-1]
    assert pages == [ids[0:2], ids[2:4], ids[4:5]]

    assert await manager.restore_snapshot(agent, snapshot_id=ids[2])
    assert texts(agent.messages) == ["turn 0", "echo: turn 0", "turn 1", "echo: turn 1", "turn 2", "echo: turn 2"]
    forced = await manager.save_snapshot(agent, is_latest=False)
    assert await manager.list_snapshot_ids(agent, start_after=ids[4]) == [forced]


async def test_agent_storage_puts_snapshots_under_session(
    mongo_client: Client, database_name: str, mongo_db: Db
) -> None:
    tenant = MongoDBStorage(client=mongo_client, database_name=database_name, prefix="tenant-a")
    agent = Agent(
        model=ScriptedModel(["hello"]),
        storage=tenant,
        session_manager=SnapshotSessionManager("s3"),
        callback_handler=None,
    )
    await agent.invoke_async("hi")
    assert sorted(visible_documents(mongo_db)) == [
        "tenant-a/session/s3/scopes/agent/default/snapshots/snapshot_latest.json"
    ]
    assert await tenant.list() == ["session/s3/scopes/agent/default/snapshots/snapshot_latest.json"]


def test_a_swarm_resumes_from_its_snapshot(storage: MongoDBStorage) -> None:
    handoff = ToolCall("handoff_to_agent", {"agent_name": "b", "message": "your turn", "context": {"k": "v"}})

    def swarm(model_a: ScriptedModel, model_b: ScriptedModel) -> Swarm:
        agents = [
            Agent(name=name, model=model, callback_handler=None) for name, model in (("a", model_a), ("b", model_b))
        ]
        return Swarm(agents, session_manager=SnapshotSessionManager("s4", storage=storage), id="sw1")

    with pytest.raises(Crash):
        swarm(ScriptedModel([handoff, "handed off"]), ScriptedModel([Raise(Crash())]))("task")
    key = "session/s4/scopes/multiAgent/sw1/snapshots/snapshot_latest.json"
    state = json.loads(storage_read(storage, key))["data"]["state"]
    assert (state["status"], state["node_history"], state["next_nodes_to_execute"]) == ("executing", ["a"], ["b"])
    assert state["context"]["handoff_message"] == "your turn"

    resumed_a, resumed_b = ScriptedModel([]), ScriptedModel(["B final"])
    result = swarm(resumed_a, resumed_b)("task")

    assert result.status == Status.COMPLETED
    assert [node.node_id for node in result.node_history] == ["a", "b"]
    assert resumed_a.calls == []
    assert len(resumed_b.calls) == 1
    assert "your turn" in json.dumps(resumed_b.calls[0])
    state = json.loads(storage_read(storage, key))["data"]["state"]
    assert (state["status"], state["node_history"]) == ("completed", ["a", "b"])


@tool
def big_report() -> str:
    """Produce a long report."""
    return "\n".join(f"line {n}: status nominal" for n in range(12_000))


async def test_the_context_offloader_stores_an_oversized_tool_result_and_reads_it_back(
    storage: MongoDBStorage, mongo_db: Db
) -> None:
    model = ScriptedModel(
        [
            ToolCall("big_report", {}, tool_use_id="report-1"),
            ToolCall("retrieve_offloaded_content", {"reference": "report-1_0", "pattern": "line 7777:"}),
            "Line 7777 is nominal.",
        ]
    )
    agent = Agent(model=model, tools=[big_report], storage=storage, plugins=[ContextOffloader()], callback_handler=None)
    await agent.invoke_async("How is line 7777?")

    stored = visible_documents(mongo_db)["offloader/report-1_0"]
    assert stored["size"] > 300_000
    assert b"line 11999: status nominal" in (await storage.read("offloader/report-1_0") or b"")
    results = [block["toolResult"] for m in agent.messages for block in m["content"] if "toolResult" in block]
    assert results[0]["content"][0]["text"].startswith("[Offloaded: 1 blocks")
    assert "line 7777: status nominal" in json.dumps(results[1]["content"])


async def test_memories_added_in_one_session_are_found_by_search_in_another(
    mongodb_uri: str, database_name: str, mongo_db: Db
) -> None:
    fact = "# User preferences\nprefers dark mode\nwrites Python with uv"
    with MongoDBStorage(mongodb_uri, database_name) as first_process:
        agent = Agent(
            model=ScriptedModel([ToolCall("add_memory", {"entries": [fact]}), "Noted."]),
            memory_manager=MemoryManager(
                stores=[FileMemoryStore(name="facts", storage=first_process)], add_tool_config=True, injection=False
            ),
            session_manager=SnapshotSessionManager("monday", storage=first_process),
            callback_handler=None,
        )
        await agent.invoke_async("Remember that I prefer dark mode.")
    assert visible_documents(mongo_db)["memory/facts/user-preferences.md"]["value"] == fact.encode()

    with MongoDBStorage(mongodb_uri, database_name) as later_process:
        store = FileMemoryStore(name="facts", storage=later_process)
        agent = Agent(
            model=ScriptedModel(
                [ToolCall("search_memory", {"query": "dark mode preference"}), "You prefer dark mode."]
            ),
            memory_manager=MemoryManager(stores=[store], injection=False),
            session_manager=SnapshotSessionManager("tuesday", storage=later_process),
            callback_handler=None,
        )
        await agent.invoke_async("Which theme do I like?")
        found = [block["toolResult"] for m in agent.messages for block in m["content"] if "toolResult" in block]
        assert "prefers dark mode" in json.dumps(found[0]["content"])
        entries = await store.search("python uv")
        assert [entry.content for entry in entries] == [fact]
        assert entries[0].metadata == {"path": "user-preferences.md", "score": 2.0}
