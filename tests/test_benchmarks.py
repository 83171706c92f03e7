"""The command budgets that ``benchmarks/commands.py`` prints, asserted with the same measuring function.

Counts of commands do not depend on the machine, so they are exact. Resumes use 200 messages
here (1,000 in the benchmark): the command counts are the same, only the bytes differ. The
premise of ``benchmarks/growth.py`` (every compared turn does the same work) is checked too, and
the other benchmarks run with tiny parameters: what they count is asserted, never their timings.
"""

import argparse
import asyncio
import importlib
import json
import subprocess
import sys
import uuid
from pathlib import Path
from typing import Any

import pytest
from pymongo import MongoClient
from strands import Agent
from strands.agent.conversation_manager import NullConversationManager

from mongodb_session_manager import MongoDBSessionManager, MongoDBSessionRepository, MongoDBStorage

from command_counter import CommandCounter
from scripted_model import ScriptedModel
from stored_sessions import StoredSessions

BENCHMARKS = Path(__file__).resolve().parent.parent / "benchmarks"
sys.path.insert(0, str(BENCHMARKS))
commands = importlib.import_module("commands")
growth = importlib.import_module("growth")
peers = importlib.import_module("_peers")
profile_turn = importlib.import_module("profile_turn")
resume = importlib.import_module("resume")
server_writes = importlib.import_module("server_writes")
storage_benchmark = importlib.import_module("storage")
turn_split = importlib.import_module("turn_split")
listing = importlib.import_module("listing")
erase = importlib.import_module("erase")

RESUME_MESSAGES = 200
WINDOW = 40

EXPECTED: dict[str, dict[str, list[str]]] = {
    "embedded": {
        "new session": ["aggregate", "findAndModify", "findAndModify"],
        "plain turn": ["findAndModify"] * 2,
        "tool turn": ["findAndModify"] * 5,
        "resume": ["aggregate"],
        "resume, window": ["aggregate"],
    },
    "split": {
        "new session": ["find", "findAndModify", "findAndModify"],
        "plain turn": ["insert", "findAndModify", "insert"],
        "tool turn": ["insert", "findAndModify", "insert", "insert", "findAndModify", "insert"],
        "resume": ["find", "find"],
        "resume, window": ["find", "find"],
    },
}
MESSAGES_IN_AGENT = {
    "new session": 0,
    "plain turn": 4,
    "tool turn": 6,
    "resume": RESUME_MESSAGES,
    "resume, window": WINDOW,
}


@pytest.fixture(scope="module")
def measured(mongodb_uri: str) -> dict[str, dict[str, Any]]:
    """Both layouts measured once for the module, as the benchmark measures them."""
    results = {}
    for layout in commands.LAYOUTS:
        counter = CommandCounter()
        client: MongoClient[dict[str, Any]] = MongoClient(
            mongodb_uri, serverSelectionTimeoutMS=5000, event_listeners=[counter]
        )
        database_name = f"t_benchmark_commands_{layout}_{uuid.uuid4().hex[:8]}"
        try:
            results[layout] = commands.measure(client, counter, database_name, layout, RESUME_MESSAGES, WINDOW)
        finally:
            client.drop_database(database_name)
            client.close()
    return results


@pytest.mark.parametrize(
    ("layout", "operation"),
    [(layout, operation) for layout in commands.LAYOUTS for operation in commands.OPERATIONS],
)
def test_commands_per_operation(measured: dict[str, dict[str, Any]], layout: str, operation: str) -> None:
    measurement = measured[layout][operation]
    assert measurement.messages_in_agent == MESSAGES_IN_AGENT[operation]
    assert measurement.sequence == EXPECTED[layout][operation]


def test_a_window_resume_reads_only_the_window(measured: dict[str, dict[str, Any]]) -> None:
    for layout in commands.LAYOUTS:
        whole, window = measured[layout]["resume"].reply_bytes, measured[layout]["resume, window"].reply_bytes
        assert window < whole * (WINDOW / RESUME_MESSAGES) * 1.5, (layout, window, whole)


def test_the_quick_builder_stores_what_create_message_stores(
    mongo_client: MongoClient[dict[str, Any]], database_name: str
) -> None:
    """``store_messages`` bypasses ``create_message`` for the embedded layout; the stored entries must match."""
    count = 6
    stored = StoredSessions(mongo_client[database_name], "embedded")
    commands.build_session(mongo_client, database_name, "embedded", "quick", count)
    manager = MongoDBSessionManager("slow", client=mongo_client, database_name=database_name)
    agent = Agent(
        model=ScriptedModel([]),
        session_manager=manager,
        conversation_manager=NullConversationManager(),
        callback_handler=None,
    )
    repository: MongoDBSessionRepository = manager.repository
    for index in range(count):
        message = commands.SessionMessage.from_message(commands.text_message(index), index)
        extra = {"event_loop_metrics": commands.answer_metrics(index)} if index % 2 else {}
        with repository.annotate_messages(**extra):
            repository.create_message("slow", agent.agent_id, message)

    def without_times(entries: list[dict[str, Any]]) -> list[dict[str, Any]]:
        return [{k: v for k, v in entry.items() if k not in ("created_at", "updated_at")} for entry in entries]

    quick = stored.messages("quick", agent.agent_id)
    assert len(quick) == count
    assert without_times(quick) == without_times(stored.messages("slow", agent.agent_id))
    assert [list(entry) for entry in quick] == [list(entry) for entry in stored.messages("slow", agent.agent_id)]


@pytest.mark.parametrize(("window", "filling", "commands_per_turn"), [(4, 2, 4), (5, 2, 4), (0, 0, 3)])
def test_growth_compares_only_turns_that_send_the_same_commands(
    mongodb_uri: str, window: int, filling: int, commands_per_turn: int
) -> None:
    """The turns before the Agent's window first trims are kept apart: each sends 3 commands.

    Every compared turn sends the same commands: 2 messages, the session check of the turn's first
    message and, with a window, the conversation manager's new offset (without one, the offset never
    changes). ``run`` checks every turn was stored.
    """
    turns, edge = 6, 2
    figures = growth.run("split", mongodb_uri, turns=turns, prompt_bytes=60, edge=edge, window=window)
    assert growth.filling_turns(window) == filling
    assert len(figures.filling_latencies) == filling
    assert figures.filling_commands == [3] * filling
    assert len(figures.latencies) == len(figures.manager) == len(figures.mongodb) == turns
    assert figures.commands == [commands_per_turn] * turns
    first, last = range(filling, filling + edge), range(filling + turns - edge, filling + turns)
    assert sorted(figures.history_copy) == [*first, *last]


@pytest.mark.parametrize("retry_writes", [True, False])
def test_server_writes_times_every_insert_and_leaves_nothing_behind(
    mongodb_uri: str, mongo_client: MongoClient[dict[str, Any]], retry_writes: bool
) -> None:
    seconds = server_writes.insert_times(mongodb_uri, retry_writes, inserts=5, label="test")
    assert len(seconds) == 5
    assert all(value > 0 for value in seconds)
    assert not [name for name in mongo_client.list_database_names() if name.startswith("bench_server_writes_")]


def test_storage_benchmark_counts_the_commands_of_every_operation(
    counting_client: tuple[MongoClient[dict[str, Any]], CommandCounter], database_name: str
) -> None:
    """``benchmarks/storage.py`` with tiny parameters: the commands it reports are the library's budgets."""
    client, counter = counting_client
    args = argparse.Namespace(repeats=2, list_repeats=1, value_bytes=100, list_sizes=[3, 7], search_values=12, turns=2)
    storage = MongoDBStorage(client=client, database_name=database_name)
    operations = asyncio.run(storage_benchmark.operations(storage, storage, counter, args))
    assert {name: figures["commands"] for name, figures in operations.items()} == {
        "write, new key": ["findAndModify"],
        "write, overwrite": ["findAndModify"],
        "write, new key, binary value": ["findAndModify"],
        "read": ["find"],
        "read, missing key": ["find"],
        "delete": ["findAndModify"],
        "list, 3 keys": ["find"],
        "list, 7 keys": ["find"],
        "search, 12 values": ["aggregate"],
    }
    snapshots = asyncio.run(storage_benchmark.snapshots(storage, counter, args))
    assert (snapshots["save"]["commands"], snapshots["resume"]["commands"]) == (["findAndModify"], ["find"])

    sessions = storage_benchmark.sessions(client, counter, database_name, args)
    assert {kind: (figures["commands_per_turn"], figures["resume_commands"]) for kind, figures in sessions.items()} == {
        "message log, embedded": (2, ["aggregate"]),
        "message log, split": (3, ["find", "find"]),  # 2 inserts + the turn's session check
        "snapshots, MongoDBStorage": (1, ["find"]),
        "snapshots, LocalFileStorage": (0, []),
    }


@pytest.mark.parametrize("peer", peers.PEERS)
def test_growth_runs_strands_file_managers_and_times_their_hooks(mongodb_uri: str, peer: str) -> None:
    turns = 4
    figures = growth.run(peer, mongodb_uri, turns=turns, prompt_bytes=60, edge=2, window=4)
    assert len(figures.latencies) == len(figures.manager) == turns
    assert all(seconds > 0 for seconds in figures.manager)
    assert figures.commands == [0] * turns  # files only: nothing reaches MongoDB


@pytest.mark.parametrize("peer", peers.PEERS)
def test_resume_times_strands_file_managers_whole_and_windowed(peer: str) -> None:
    """``time_peer`` checks the resumed Agents hold the whole session, then only the window."""
    (result,) = resume.time_peer(peer, [12], window=4, repeats=1)
    assert result["layout"] == peer
    assert (result["whole"]["messages_loaded"], result["window"]["messages_loaded"]) == (12, 4)
    assert result["stored_bytes"] > 12 * 300
    assert result["whole"]["commands"] is None


PER_CONVERSATION = {
    "embedded": ["aggregate", "findAndModify", "findAndModify"],
    "split": ["find", "find", "insert", "findAndModify", "insert"],
}
"""What a conversation (a resume of one agent, then one turn of two messages) sends after index creation."""


@pytest.mark.parametrize("layout", commands.LAYOUTS)
def test_per_conversation_counts_commands_and_connections_of_every_client(mongodb_uri: str, layout: str) -> None:
    """Run in a process of its own: its listeners are registered globally, for good, to see the library's clients."""
    code = (
        "import json, sys, per_conversation as p; "
        "figures = p.measure(sys.argv[1], sys.argv[2], 2, block=2, warmup=1); "
        "print(json.dumps({mode: measured.summary() for mode, measured in figures.items()}))"
    )
    finished = subprocess.run(
        [sys.executable, "-c", code, mongodb_uri, layout],
        cwd=BENCHMARKS,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert finished.returncode == 0, finished.stderr[-2000:]
    summary = json.loads(finished.stdout.splitlines()[-1])
    expected = " ".join(PER_CONVERSATION[layout])
    assert all(summary[mode]["failures"] == [] for mode in summary)
    for mode in ("connection string", "factory", "borrowed client"):
        assert summary[mode]["conversations"] == 2
        assert summary[mode]["command_sequences"] == {expected: 2}, mode
        assert summary[mode]["connections_per_conversation"] == 0, mode
        assert summary[mode]["pools_per_conversation"] == 0, mode


@pytest.mark.parametrize("layout", commands.LAYOUTS)
def test_turn_split_measures_the_same_turn_in_every_configuration(mongodb_uri: str, layout: str) -> None:
    turns = 3
    series = turn_split.measure(mongodb_uri, layout, length=50, turns=turns, warmup=1)
    assert set(series) == {turn_split.AGENT_ALONE, turn_split.BOOKKEEPING, layout}
    # two messages and the window's new offset (and, split, the turn's session check)
    assert series[layout].commands == [{"embedded": 3, "split": 4}[layout]] * turns
    assert series[turn_split.BOOKKEEPING].commands == series[turn_split.AGENT_ALONE].commands == [0] * turns
    assert all(seconds > 0 for seconds in series[turn_split.BOOKKEEPING].hooks)
    assert series[turn_split.AGENT_ALONE].hooks == [0.0] * turns
    parts = turn_split.split_of(series, layout)
    assert parts["total_s"] > parts["commands_s"] > 0


def test_dict_repository_resumes_from_the_window_offset() -> None:
    agent = turn_split.dict_agent(50)
    assert len(agent.messages) == turn_split.WINDOW
    assert agent.messages[0] == commands.text_message(50 - turn_split.WINDOW)


@pytest.mark.parametrize("layout", commands.LAYOUTS)
def test_profile_turn_counts_the_library_calls_of_a_turn_exactly(mongodb_uri: str, layout: str) -> None:
    turns = 4
    figures = profile_turn.run_turns(mongodb_uri, layout, length=50, turns=turns, warmup=1, profile=True)
    calls = profile_turn.library_calls(profile_turn.ranked(figures["stats"], turns))
    assert calls["append_message"] == 2  # the manager's, per turn: the prompt and the answer
    assert calls["update_agent"] == 1  # the window's new offset
    assert calls["create_message"] == 4  # the repository's and the layout's, for two messages


def test_profile_turn_reads_py_spy_raw_output(tmp_path: Path) -> None:
    """Samples of invocation threads only, each charged to its innermost library, pymongo, bson or strands frame."""
    raw = tmp_path / "raw.txt"
    frames = [
        "thread (1): ThreadPoolExecutor-0_0",
        "append_message (strands/session/repository_session_manager.py:95)",
        "create_message (mongodb_session_manager/mongodb_session_repository.py:260)",
    ]
    lines = [
        ";".join([*frames, "now (datetime.py:1)"]) + " 30",
        ";".join([*frames, "insert_one (pymongo/synchronous/collection.py:880)", "sendall (socket.py:1)"]) + " 20",
        "thread (1): ThreadPoolExecutor-0_0;run (asyncio/runners.py:1) 5",
        "thread (2): MainThread;main (benchmarks/x.py:1) 99",
    ]
    raw.write_text("\n".join(lines) + "\n")
    samples = profile_turn.read_py_spy(raw)
    assert samples.by_owner == {"library": 30, "pymongo": 20, "other (event loop, threads)": 5}
    repository = "mongodb_session_repository.py:create_message"
    assert samples.own == {repository: 30, "collection.py:insert_one": 20}
    assert samples.inclusive[repository] == 50
    assert samples.inclusive["repository_session_manager.py:append_message"] == 50


def run_main(module: Any, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], *args: str) -> str:
    """Run a benchmark's ``main`` with ``args`` (and ``--no-save``); return what it printed."""
    monkeypatch.setattr(sys, "argv", [f"{module.__name__}.py", *args, "--no-save"])
    module.main()
    return capsys.readouterr().out


def table_rows(printed: str) -> list[list[str]]:
    return [
        [cell.strip() for cell in line.strip("|").split("|")] for line in printed.splitlines() if line.startswith("| ")
    ]


def test_listing_pages_one_user_among_many_in_one_command(
    mongodb_uri: str,
    mongo_client: MongoClient[dict[str, Any]],
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    printed = run_main(
        listing,
        monkeypatch,
        capsys,
        "--uri",
        mongodb_uri,
        "--sizes",
        "210,400",
        "--user-sessions",
        "210",
        "--repeats",
        "1",
    )
    rows = table_rows(printed)
    pages = [row for row in rows if row[-1] == "aggregate"]
    assert [(row[0], row[1]) for row in pages] == [
        ("embedded", "210"),
        ("embedded", "400"),
        ("split", "210"),
        ("split", "400"),
    ]
    assert all(row[3] == "1.00x" for row in pages if row[1] == "210")
    plans = [row for row in rows if row[0] in listing.LAYOUTS and row[-1] != "aggregate"]
    assert len(plans) == 4
    assert all(row[2] for row in plans)  # the server's winning plan, named
    assert not [name for name in mongo_client.list_database_names() if name.startswith("bench_listing_")]


def test_erase_counts_the_commands_of_erasing_a_user(
    mongodb_uri: str, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    printed = run_main(
        erase, monkeypatch, capsys, "--uri", mongodb_uri, "--sessions", "25", "--others", "5", "--repeats", "1"
    )

    rows = {row[0]: row for row in table_rows(printed) if row[0] in erase.LAYOUTS}
    assert rows["embedded"][2] == "0"
    assert rows["split"][2] == "100"  # four messages a session
    for row in rows.values():
        # one batch (find, mark expired, delete messages, delete documents), an empty batch, the sweep
        assert row[5] == "6: 2 find, 1 update, 2 delete, 1 aggregate"
        assert row[6].endswith("1 find, 1 aggregate")
