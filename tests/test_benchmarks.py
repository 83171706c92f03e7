"""The command budgets that ``benchmarks/commands.py`` prints, asserted with the same measuring function.

Counts of commands do not depend on the machine, so they are exact. Resumes use 200 messages
here (1,000 in the benchmark): the command counts are the same, only the bytes differ. The
premise of ``benchmarks/growth.py`` (every compared turn does the same work) is checked too.
"""

import importlib
import sys
import uuid
from pathlib import Path
from typing import Any

import pytest
from pymongo import MongoClient
from strands import Agent
from strands.agent.conversation_manager import NullConversationManager

from mongodb_session_manager import MongoDBSessionManager, MongoDBSessionRepository

from command_counter import CommandCounter
from scripted_model import ScriptedModel
from stored_sessions import StoredSessions

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "benchmarks"))
commands = importlib.import_module("commands")
growth = importlib.import_module("growth")
server_writes = importlib.import_module("server_writes")
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
