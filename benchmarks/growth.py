"""Does a turn get slower as the conversation grows? Turn latency over N turns, per layout and without persistence.

Every configuration runs the same conversation: a real ``strands.Agent`` with ``ScriptedModel.echo()``,
~300-byte prompts. The stored session always grows by two messages per turn. What the Agent keeps in
memory (and sends to the model) is chosen with ``--window``:

* ``--window 40`` (default): ``SlidingWindowConversationManager(window_size=40)``, Strands' default
  and what a long-running agent uses. The conversation first runs the 20 turns that fill the window,
  timed and reported apart; then the ``--turns`` measured turns, in which the Agent's own work per
  turn is the same from the first to the last (it starts each turn holding 40 messages and trims 2
  after it, so the session manager stores its new offset every turn). Any growth is the storage's.
* ``--window 0``: ``NullConversationManager``, the history is never trimmed: Strands' own per-turn
  work then grows with it (it copies and serialises the whole history on every model call).

"baseline" is the same Agent with no session manager. "files" and "snapshot" are Strands' own
local-file session managers (``FileSessionManager``, and ``SnapshotSessionManager`` over
``LocalFileStorage``) in a temporary directory: what a user picks without a database. Files on
one machine are not durable across machines; they show what MongoDB's durability costs here.
The claim checked: with ``layout="split"``
the median of the last 10 measured turns is at most 1.5 times the median of the first 10. Exit
status 1 if not. The ratio counted from the conversation's first turn is printed as well.

Without ``--uri`` the server is an in-memory SecantusDB presenting itself as a one-member replica
set, as for the other benchmarks and the tests. pymongo then makes every write retryable, and
SecantusDB scans every retryable-write record it keeps (30 minutes' worth, up to 10,000) twice per
write: every write gets slower the more writes the whole server has taken, whatever the session.
mongod looks the record up by session, so that cost does not grow there. ``--secantus-standalone``
starts SecantusDB standalone instead (no retryable writes, no oplog), to see the curve without it.

    uv run python benchmarks/growth.py [--turns 1000] [--window 40] [--uri mongodb://...]
"""

from __future__ import annotations

import argparse
import copy
import gc
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path
from typing import Any

from _common import (
    Progress,
    ScriptedModel,
    median,
    microseconds,
    mongodb_server,
    parse_args,
    print_table,
    unique_database,
    write_results,
)
from _peers import NOT_DURABLE, PEERS, TimedFileSessionManager, peer_manager
from pymongo import MongoClient, monitoring
from strands import Agent
from strands.agent.conversation_manager import (
    ConversationManager,
    NullConversationManager,
    SlidingWindowConversationManager,
)

from mongodb_session_manager import MongoDBSessionManager

LAYOUTS = ("split", "embedded")
CONFIGURATIONS = ("baseline", *LAYOUTS, *PEERS)
MANAGED = CONFIGURATIONS[1:]
"""Configurations with a session manager (timed hooks)."""
CLAIM_RATIO = 1.5


def prompt(turn: int, size: int) -> str:
    text = f"Turn {turn}: please summarise the following notes. "
    return text + "lorem ipsum " * max(0, (size - len(text)) // 12)


class CommandTime(monitoring.CommandListener):
    """Adds up the durations pymongo measured for the commands sent (request to reply, client side)."""

    def __init__(self) -> None:
        self.seconds = 0.0
        self.commands = 0

    def started(self, event: monitoring.CommandStartedEvent) -> None:
        pass

    def succeeded(self, event: monitoring.CommandSucceededEvent) -> None:
        self.seconds += event.duration_micros / 1e6
        self.commands += 1

    def failed(self, event: monitoring.CommandFailedEvent) -> None:
        self.seconds += event.duration_micros / 1e6
        self.commands += 1


class TimedManager(MongoDBSessionManager):
    """The library's manager, adding up the time spent in its hooks (message appends and agent syncs)."""

    seconds = 0.0

    def append_message(self, message: Any, agent: Any, **kwargs: Any) -> None:
        started = time.perf_counter()
        try:
            super().append_message(message, agent, **kwargs)
        finally:
            self.seconds += time.perf_counter() - started

    def sync_agent(self, agent: Any, **kwargs: Any) -> None:
        started = time.perf_counter()
        try:
            super().sync_agent(agent, **kwargs)
        finally:
            self.seconds += time.perf_counter() - started


class Run:
    """One configuration's figures: per measured turn unless said otherwise, times in seconds."""

    def __init__(self) -> None:
        self.filling_latencies: list[float] = []
        """Latency of each turn that filled the Agent's window, before the measured ones."""
        self.filling_commands: list[int] = []
        """MongoDB commands sent during each of those turns."""
        self.latencies: list[float] = []
        self.manager: list[float] = []
        """Time spent in the session manager's hooks during each turn (MongoDB included)."""
        self.mongodb: list[float] = []
        """Time spent in MongoDB commands during each turn."""
        self.commands: list[int] = []
        """MongoDB commands sent during each turn."""
        self.history_copy: dict[int, float] = {}
        """What one deep copy of the history costs, by the conversation's turn index, for the first and
        last ``edge`` measured turns."""


def conversation_manager(window: int) -> ConversationManager:
    """What the Agent keeps: the last ``window`` messages, or everything when ``window`` is 0."""
    return SlidingWindowConversationManager(window_size=window) if window else NullConversationManager()


def new_agent(
    configuration: str,
    client: MongoClient[dict[str, Any]],
    database_name: str,
    session_id: str,
    window: int,
    directory: Path,
) -> Agent:
    """The configuration's Agent: MongoDB layouts in ``database_name``, Strands' file managers under ``directory``."""
    model = ScriptedModel.echo(record_calls=False)  # a recording model deep-copies the history per call
    if configuration == "baseline":
        return Agent(model=model, conversation_manager=conversation_manager(window), callback_handler=None)
    manager: Any
    if configuration in PEERS:
        manager = peer_manager(configuration, session_id, directory)
    else:
        manager = TimedManager(session_id, client=client, database_name=database_name, layout=configuration)
    return Agent(
        model=model,
        session_manager=manager,
        conversation_manager=conversation_manager(window),
        callback_handler=None,
    )


def filling_turns(window: int) -> int:
    """The turns before the first one after which the Agent trims its window (each turn adds two messages)."""
    return window // 2


def run(configuration: str, uri: str, turns: int, prompt_bytes: int, edge: int, window: int) -> Run:
    """One conversation: the turns that fill the window, then ``turns`` measured turns.

    A few turns of another conversation warm the process up first.
    """
    timer = CommandTime()
    client: MongoClient[dict[str, Any]] = MongoClient(uri, event_listeners=[timer])
    database_name = unique_database(f"growth_{configuration}")
    directory = tempfile.TemporaryDirectory(prefix="bench_growth_")
    try:
        files = Path(directory.name)
        warm_up = new_agent(configuration, client, database_name, "warm-up", window, files)
        for turn in range(5):
            warm_up(prompt(turn, prompt_bytes))
        agent = new_agent(configuration, client, database_name, "growth", window, files)
        manager: Any = agent._session_manager if configuration in MANAGED else None
        fill = filling_turns(window)
        total = fill + turns
        progress = Progress(total, f"{configuration:>8}: turn")
        figures = Run()
        for turn in range(total):
            text = prompt(turn, prompt_bytes)
            timer.seconds = 0.0
            timer.commands = 0
            if manager is not None:
                manager.seconds = 0.0
            started = time.perf_counter()
            agent(text)
            latency = time.perf_counter() - started
            progress.advance()
            if turn < fill:
                figures.filling_latencies.append(latency)
                figures.filling_commands.append(timer.commands)
                continue
            figures.latencies.append(latency)
            figures.mongodb.append(timer.seconds)
            figures.commands.append(timer.commands)
            figures.manager.append(manager.seconds if manager is not None else 0.0)
            if turn < fill + edge or turn >= total - edge:
                started = time.perf_counter()
                copy.deepcopy(agent.messages[:-1])  # the history sent to the model (Strands copies it per call)
                figures.history_copy[turn] = time.perf_counter() - started
        progress.close()
        held = len(agent.messages)  # Strands trims an odd window one message further, to start on a user message
        assert held == (2 * (window // 2) if window else 2 * total), held
        if isinstance(manager, (TimedManager, TimedFileSessionManager)):  # every turn was stored
            repository = manager.repository if isinstance(manager, TimedManager) else manager
            stored = repository.list_messages("growth", agent.agent_id, offset=2 * total - 2)
            assert [message.message_id for message in stored] == [2 * total - 2, 2 * total - 1]
        return figures
    finally:
        client.drop_database(database_name)
        client.close()
        directory.cleanup()
        gc.collect()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--turns", type=int, default=1000, help="turns per configuration (1000)")
    parser.add_argument("--prompt-bytes", type=int, default=300, help="size of each prompt (300)")
    parser.add_argument("--edge", type=int, default=10, help="how many first and last turns to compare (10)")
    parser.add_argument(
        "--window", type=int, default=40, help="messages the Agent keeps (40); 0 keeps the whole history"
    )
    parser.add_argument(
        "--secantus-standalone",
        action="store_true",
        help="without --uri: start SecantusDB standalone (no retryable-write records, which slow its writes down)",
    )
    args = parse_args(__doc__ or "", parser)
    edge = args.edge
    if edge < 1:
        parser.error("--edge must be at least 1")
    if args.turns < 2 * edge:
        parser.error("--turns must be at least twice --edge")
    if args.window < 0 or args.window == 1:
        parser.error("--window must be 0 (keep everything) or at least 2 (Strands cannot trim a window of 1)")
    if args.uri and args.secantus_standalone:
        parser.error("--secantus-standalone applies only to the SecantusDB started without --uri")

    runs: dict[str, Run] = {}
    seconds: dict[str, float] = {}
    fill = filling_turns(args.window)
    with mongodb_server(args.uri, replica_set=not args.secantus_standalone) as (uri, server):
        for configuration in CONFIGURATIONS:
            started = time.monotonic()
            runs[configuration] = run(configuration, uri, args.turns, args.prompt_bytes, edge, args.window)
            seconds[configuration] = time.monotonic() - started

    def first(values: list[float]) -> float:
        return median(values[:edge])

    def last(values: list[float]) -> float:
        return median(values[-edge:])

    def ms(value: float) -> str:
        return f"{value * 1000:.2f}"

    baseline = runs["baseline"].latencies
    # per turn, minus the baseline's time for the same turn
    net = {name: [t - b for t, b in zip(r.latencies, baseline, strict=True)] for name, r in runs.items()}

    def ratio(values: list[float]) -> float | None:
        return last(values) / first(values) if first(values) > 0 else None

    def ratio_from_first_turn(measured: Run) -> float | None:
        return ratio(measured.filling_latencies + measured.latencies)

    def shown(values: list[float]) -> str:
        found = ratio(values)
        return f"{ms(first(values))} -> {ms(last(values))} ({found:.2f}x)" if found else "-"

    figures: dict[str, Any] = {}
    rows = []
    for name in CONFIGURATIONS:
        measured = runs[name]
        copies = list(measured.history_copy.values())
        entry: dict[str, Any] = {
            "median_first_s": first(measured.latencies),
            "median_last_s": last(measured.latencies),
            "ratio": ratio(measured.latencies),
            "filling_turns_median_s": median(measured.filling_latencies) if measured.filling_latencies else None,
            "ratio_from_first_turn": ratio_from_first_turn(measured),
            "history_copy_first_s": median(copies[:edge]),
            "history_copy_last_s": median(copies[-edge:]),
            "total_s": seconds[name],
        }
        row = [name, ms(entry["median_first_s"]), ms(entry["median_last_s"]), f"{entry['ratio']:.2f}"]
        if name == "baseline":
            row += ["-", "-", "-"]
        else:
            entry |= {
                "manager_median_first_s": first(measured.manager),
                "manager_median_last_s": last(measured.manager),
                "manager_ratio": ratio(measured.manager),
                "net_median_first_s": first(net[name]),
                "net_median_last_s": last(net[name]),
            }
            if name in LAYOUTS:
                entry |= {
                    "commands_per_turn": dict(Counter(measured.commands)),
                    "filling_commands_per_turn": dict(Counter(measured.filling_commands)),
                    "mongodb_median_first_s": first(measured.mongodb),
                    "mongodb_median_last_s": last(measured.mongodb),
                    "mongodb_ratio": ratio(measured.mongodb),
                }
            row += [
                shown(measured.manager),
                shown(measured.mongodb) if name in LAYOUTS else "-",
                f"{ms(entry['net_median_first_s'])} -> {ms(entry['net_median_last_s'])}",
            ]
        row += [ms(entry["history_copy_first_s"]) + " -> " + ms(entry["history_copy_last_s"]), f"{seconds[name]:.0f}"]
        rows.append(row)
        figures[name] = entry | {
            "filling_s": microseconds(measured.filling_latencies),
            "latencies_s": microseconds(measured.latencies),
            "manager_s": microseconds(measured.manager),
            "mongodb_s": microseconds(measured.mongodb),
        }
    headers = [
        "configuration",
        f"first {edge} ms",
        f"last {edge} ms",
        "last/first",
        "in session manager ms",
        "of which MongoDB ms",
        "minus baseline ms",
        "1 history copy ms",
        "run s",
    ]
    agent_keeps = (
        f"the Agent keeps the last {args.window} messages (measured after the {fill} turns that fill them)"
        if args.window
        else "history never trimmed"
    )
    title = (
        f"Median turn latency, first {edge} vs last {edge} of {args.turns} turns, {agent_keeps}, "
        f"{args.prompt_bytes}-byte prompts ({server})"
    )
    tables = [print_table(headers, rows, title=title)]
    print(
        "in session manager: time inside the manager's hooks (appends, agent syncs), MongoDB included; "
        "of which MongoDB: the turn's commands as timed by pymongo;\nminus baseline: per turn, minus the "
        "baseline's time for the same turn (noisy); 1 history copy: one deep copy of the history the model is sent "
        "(Strands 1.62 makes two per model call, and JSON-encodes it twice for its trace spans)\n" + NOT_DURABLE
    )

    buckets = min(10, args.turns)
    size = args.turns // buckets
    curve_rows = []
    for bucket in range(buckets):
        bucket_turns = slice(bucket * size, (bucket + 1) * size)
        curve_rows.append(
            [
                f"{bucket_turns.start + 1}-{bucket_turns.stop}",
                *(ms(median(runs[name].latencies[bucket_turns])) for name in CONFIGURATIONS),
                *(ms(median(runs[name].manager[bucket_turns])) for name in MANAGED),
                *(ms(median(runs[name].mongodb[bucket_turns])) for name in LAYOUTS),
            ]
        )
    curve_headers = [
        "measured turns",
        *(f"{name} ms" for name in CONFIGURATIONS),
        *(f"{name} in manager ms" for name in MANAGED),
        *(f"{name} in MongoDB ms" for name in LAYOUTS),
    ]
    tables.append(print_table(curve_headers, curve_rows, title="Median turn latency per bucket of turns"))

    split = figures["split"]
    held = split["ratio"] is not None and split["ratio"] <= CLAIM_RATIO
    verdict = (
        f"Claim: with layout='split', median of the last {edge} turns / first {edge} <= {CLAIM_RATIO}: "
        f"{split['ratio']:.2f} -> {'PASS' if held else 'FAIL'}\n"
        f"  the baseline (same Agent, no persistence) grows {figures['baseline']['ratio']:.2f}x by itself; "
        f"split's time in the session manager: {split['manager_ratio']:.2f}x "
        f"({ms(split['manager_median_first_s'])} -> {ms(split['manager_median_last_s'])} ms), "
        f"of which MongoDB commands: {split['mongodb_ratio']:.2f}x; commands per measured turn (count: turns): "
        f"{split['commands_per_turn']}"
    )
    if fill:
        verdict += f"\n  the {fill} turns that filled the window before (not compared), median: " + ", ".join(
            f"{name} {ms(figures[name]['filling_turns_median_s'])} ms" for name in CONFIGURATIONS
        )
        verdict += (
            f"; split's commands per filling turn: {split['filling_commands_per_turn']}\n"
            f"  counted from the conversation's first turn instead (the window still filling): "
            f"split {split['ratio_from_first_turn']:.2f}x, baseline {figures['baseline']['ratio_from_first_turn']:.2f}x"
        )
    print("\n" + verdict, flush=True)
    tables.append(verdict)
    figures["claim"] = {"split_ratio_at_most": CLAIM_RATIO, "split_ratio": split["ratio"], "held": held}
    parameters = {
        "turns": args.turns,
        "filling_turns": fill,
        "prompt_bytes": args.prompt_bytes,
        "edge": edge,
        "window": args.window,
        "secantus_standalone": args.secantus_standalone,
    }
    results_name = "growth" + ("" if args.window else "_untrimmed")
    results_name += "_standalone" if args.secantus_standalone else ""
    write_results(results_name, args, server, parameters, figures, tables)
    sys.exit(0 if held else 1)


if __name__ == "__main__":
    main()
