"""A conversation per manager: the connection-string path against the factory and a borrowed client.

Each conversation is what a web request does: a new manager, which resumes a stored session of a
few turns, a new Agent, one turn, and ``manager.close()``. Three ways to get the manager:

* ``connection string``: ``create_mongodb_session_manager(session_id, connection_string=uri, ...)``;
* ``factory``: ``initialize_global_factory(uri, ...)`` once, then
  ``get_global_factory().create_session_manager(session_id)`` per conversation;
* ``borrowed client``: ``create_mongodb_session_manager(session_id, client=client, ...)`` on a
  ``MongoClient`` the application holds.

Commands, pool connections and pools are counted with listeners registered globally
(``pymongo.monitoring.register``), so they also see the clients the library creates itself.
Driver housekeeping (``hello``, ``endSessions``, ...) is not counted as a command. Modes take
turns in blocks of ``--block`` conversations, each block starting from nothing (no factory, no
client, no manager of the block's mode open), so the server's own drift over the run is shared
evenly; the first ``--warmup`` conversations of each block are not measured. The goal checked:
the median of the connection-string path is at most 1.1 times the factory's. ``--check`` exits 1
if it is not met.

    uv run python benchmarks/per_conversation.py [--conversations 200] [--layouts embedded,split] [--check]
"""

from __future__ import annotations

import argparse
import sys
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

from _common import (
    Progress,
    ScriptedModel,
    median,
    microseconds,
    mongodb_server,
    parse_args,
    percentile,
    print_table,
    unique_database,
    write_results,
)
from commands import LAYOUTS, build_session
from pymongo import MongoClient, monitoring
from strands import Agent
from strands.agent.conversation_manager import SlidingWindowConversationManager

from mongodb_session_manager import (
    MongoDBSessionManager,
    close_global_factory,
    create_mongodb_session_manager,
    get_global_factory,
    initialize_global_factory,
)

from command_counter import HANDSHAKE_COMMANDS

MODES = ("connection string", "factory", "borrowed client")
REFERENCE_MODE = "factory"
GOAL_MODE = "connection string"
GOAL_RATIO = 1.1
SEEDED_MESSAGES = 6
"""Messages of each stored session before its conversation (three turns)."""
WINDOW = 40
PROMPT = "Please continue where we left off. " + "x" * 250

Client = MongoClient[dict[str, Any]]
MakeManager = Callable[[str], MongoDBSessionManager]


# -- counting what every client of the process does ---------------------------------------------------


class ProcessMonitor(monitoring.CommandListener, monitoring.ConnectionPoolListener):
    """Counts commands (by name), pool connections and pools created, by every client of the process.

    Registered with ``pymongo.monitoring.register`` before any client exists: global listeners are
    given to every client created afterwards, the library's own included. It listens to no
    topology or server events: with such a listener, pymongo runs an events thread that makes
    ``MongoClient.close()`` wait about 0.5 s for it.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.commands: list[str] = []
        self.connections = 0
        self.pools = 0
        self.failed_commands: list[str] = []
        """Commands that failed (a retried write shows here): name and failure."""

    def reset(self) -> None:
        with self._lock:
            self.commands.clear()
            self.connections = 0
            self.pools = 0
            self.failed_commands.clear()

    def counted_commands(self) -> list[str]:
        with self._lock:
            return [name for name in self.commands if name not in HANDSHAKE_COMMANDS]

    # CommandListener
    def started(self, event: monitoring.CommandStartedEvent) -> None:
        with self._lock:
            self.commands.append(event.command_name)

    def succeeded(self, event: monitoring.CommandSucceededEvent) -> None:
        pass

    def failed(self, event: monitoring.CommandFailedEvent) -> None:
        with self._lock:
            self.failed_commands.append(f"{event.command_name}: {event.failure}"[:200])

    # ConnectionPoolListener
    def connection_created(self, event: monitoring.ConnectionCreatedEvent) -> None:
        with self._lock:
            self.connections += 1

    def pool_created(self, event: monitoring.PoolCreatedEvent) -> None:
        with self._lock:
            self.pools += 1

    def pool_ready(self, event: monitoring.PoolReadyEvent) -> None:
        pass

    def pool_cleared(self, event: monitoring.PoolClearedEvent) -> None:
        pass

    def pool_closed(self, event: monitoring.PoolClosedEvent) -> None:
        pass

    def connection_ready(self, event: monitoring.ConnectionReadyEvent) -> None:
        pass

    def connection_closed(self, event: monitoring.ConnectionClosedEvent) -> None:
        pass

    def connection_check_out_started(self, event: monitoring.ConnectionCheckOutStartedEvent) -> None:
        pass

    def connection_check_out_failed(self, event: monitoring.ConnectionCheckOutFailedEvent) -> None:
        pass

    def connection_checked_out(self, event: monitoring.ConnectionCheckedOutEvent) -> None:
        pass

    def connection_checked_in(self, event: monitoring.ConnectionCheckedInEvent) -> None:
        pass


_monitor: ProcessMonitor | None = None


def process_monitor() -> ProcessMonitor:
    """The process's one monitor, registered on first use (pymongo has no way to unregister it)."""
    global _monitor
    if _monitor is None:
        _monitor = ProcessMonitor()
        monitoring.register(_monitor)
    return _monitor


# -- the three modes -----------------------------------------------------------------------------------


@contextmanager
def mode_managers(mode: str, uri: str, database_name: str, collection_name: str, layout: str) -> Iterator[MakeManager]:
    """What a block of conversations of ``mode`` needs: a way to make a manager, set up and torn down here."""
    options: dict[str, Any] = {"database_name": database_name, "collection_name": collection_name, "layout": layout}
    if mode == "connection string":
        yield lambda session_id: create_mongodb_session_manager(session_id, connection_string=uri, **options)
    elif mode == "factory":
        initialize_global_factory(uri, **options)
        try:
            yield lambda session_id: get_global_factory().create_session_manager(session_id)
        finally:
            close_global_factory()
    elif mode == "borrowed client":
        client: Client = MongoClient(uri)
        try:
            yield lambda session_id: create_mongodb_session_manager(session_id, client=client, **options)
        finally:
            client.close()
    else:
        raise ValueError(f"unknown mode {mode!r}")


def converse(make_manager: MakeManager, session_id: str) -> None:
    """One conversation: a new manager resumes the session, a new Agent answers one prompt, the manager closes."""
    manager = make_manager(session_id)
    try:
        agent = Agent(
            model=ScriptedModel.echo(record_calls=False),
            session_manager=manager,
            conversation_manager=SlidingWindowConversationManager(window_size=WINDOW),
            callback_handler=None,
        )
        resumed = len(agent.messages)
        agent(PROMPT)
    finally:
        manager.close()
    if resumed != SEEDED_MESSAGES or len(agent.messages) != SEEDED_MESSAGES + 2:
        raise AssertionError(f"{session_id}: resumed {resumed} messages, held {len(agent.messages)} after the turn")


# -- the measurement ------------------------------------------------------------------------------------


@dataclass
class ModeFigures:
    """Per measured conversation of one mode: seconds, commands sent, pool connections and pools created."""

    seconds: list[float] = field(default_factory=list)
    commands: list[list[str]] = field(default_factory=list)
    connections: list[int] = field(default_factory=list)
    pools: list[int] = field(default_factory=list)
    failures: list[str] = field(default_factory=list)
    """Conversations that raised (not timed): session id and error."""

    def summary(self) -> dict[str, Any]:
        sequences = Counter(tuple(sequence) for sequence in self.commands)
        return {
            "conversations": len(self.seconds),
            "median_s": median(self.seconds),
            "p95_s": percentile(self.seconds, 0.95),
            "commands_per_conversation": sum(map(len, self.commands)) / len(self.commands),
            "command_sequences": {" ".join(sequence): count for sequence, count in sequences.most_common()},
            "connections_per_conversation": sum(self.connections) / len(self.connections),
            "pools_per_conversation": sum(self.pools) / len(self.pools),
            "failures": self.failures,
            "seconds": microseconds(self.seconds),
        }


def blocks(conversations: int, block: int) -> list[int]:
    """Measured conversations per round: ``block`` each, the last round taking what is left."""
    return [min(block, conversations - start) for start in range(0, conversations, block)]


def measure(
    uri: str,
    layout: str,
    conversations: int,
    *,
    block: int = 5,
    warmup: int = 1,
    modes: tuple[str, ...] = MODES,
    progress: Progress | None = None,
) -> dict[str, ModeFigures]:
    """Run ``conversations`` measured conversations of each mode on ``layout``, in rounds of blocks.

    Every conversation resumes a session of its own, stored beforehand with ``SEEDED_MESSAGES``
    messages, so each does the same work. Each block has a collection of its own: SecantusDB
    scans a whole collection for a ``findAndModify`` (``explain``: ``COLLSCAN``, even on ``_id``),
    so with every session in one collection each embedded write would cost more the more sessions
    the run has stored (mongod finds the document by its ``_id`` index). The database is dropped
    at the end.
    """
    monitor = process_monitor()
    database_name = unique_database(f"per_conversation_{layout}")
    seeder: Client = MongoClient(uri)
    figures = {mode: ModeFigures() for mode in modes}
    rounds = blocks(conversations, block)

    def session_ids(mode: str, round_index: int, count: int) -> list[str]:
        return [f"{mode.replace(' ', '-')}-{round_index}-{index}" for index in range(count)]

    def collection(mode: str, round_index: int) -> str:
        return f"sessions_{mode.replace(' ', '_')}_{round_index}"

    def window() -> SlidingWindowConversationManager:
        return SlidingWindowConversationManager(window_size=WINDOW)

    try:
        for round_index, measured in enumerate(rounds):
            for mode in modes:
                for session_id in session_ids(mode, round_index, warmup + measured):
                    name = collection(mode, round_index)
                    build_session(seeder, database_name, layout, session_id, SEEDED_MESSAGES, window, 0, name)
        for round_index, measured in enumerate(rounds):
            # the block order rotates, so that no mode always follows the same one
            shift = round_index % len(modes)
            for mode in modes[shift:] + modes[:shift]:
                with mode_managers(mode, uri, database_name, collection(mode, round_index), layout) as make_manager:
                    for index, session_id in enumerate(session_ids(mode, round_index, warmup + measured)):
                        monitor.reset()
                        started = time.perf_counter()
                        try:
                            converse(make_manager, session_id)
                        except Exception as error:  # counted and shown, not timed: the run goes on
                            failed = "; ".join(monitor.failed_commands) or "none"
                            figures[mode].failures.append(
                                f"{session_id}: {type(error).__name__}: {str(error)[:200]} (failed commands: {failed})"
                            )
                            continue
                        finally:
                            if progress is not None:
                                progress.advance()
                        seconds = time.perf_counter() - started
                        if index < warmup:
                            continue
                        figures[mode].seconds.append(seconds)
                        figures[mode].commands.append(monitor.counted_commands())
                        figures[mode].connections.append(monitor.connections)
                        figures[mode].pools.append(monitor.pools)
    finally:
        seeder.drop_database(database_name)
        seeder.close()
    return figures


# -- the command line ------------------------------------------------------------------------------------


def compact(sequence: str) -> str:
    """``"aggregate findAndModify findAndModify"`` -> ``"1 aggregate, 2 findAndModify"``."""
    names = sequence.split()
    return ", ".join(f"{names.count(name)} {name}" for name in dict.fromkeys(names)) or "-"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--conversations", type=int, default=200, help="measured conversations per mode (200)")
    parser.add_argument("--block", type=int, default=5, help="measured conversations per block of one mode (5)")
    parser.add_argument("--warmup", type=int, default=1, help="unmeasured conversations opening each block (1)")
    parser.add_argument("--layouts", default=",".join(LAYOUTS), help="message layouts (embedded,split)")
    parser.add_argument("--check", action="store_true", help=f"exit 1 unless every ratio goal (<= {GOAL_RATIO}) holds")
    args = parse_args(__doc__ or "", parser)
    layouts = [layout.strip() for layout in args.layouts.split(",") if layout.strip()]
    if unknown := [layout for layout in layouts if layout not in LAYOUTS]:
        parser.error(f"unknown layout {unknown[0]!r}: choose from {', '.join(LAYOUTS)}")
    if args.conversations < 1 or args.block < 1 or args.warmup < 0:
        parser.error("--conversations and --block must be at least 1, --warmup at least 0")

    process_monitor()  # before any client exists
    figures: dict[str, Any] = {}
    per_layout = args.conversations + args.warmup * len(blocks(args.conversations, args.block))
    with mongodb_server(args.uri) as (uri, server):
        for layout in layouts:
            progress = Progress(per_layout * len(MODES), f"{layout:>8}: conversations")
            measured = measure(uri, layout, args.conversations, block=args.block, warmup=args.warmup, progress=progress)
            progress.close()
            figures[layout] = {mode: measured[mode].summary() for mode in MODES}

    rows = []
    verdicts = []
    for layout in layouts:
        reference = figures[layout][REFERENCE_MODE]["median_s"]
        for mode in MODES:
            entry = figures[layout][mode]
            entry["ratio_to_factory"] = entry["median_s"] / reference
            sequence = next(iter(entry["command_sequences"]))
            rows.append(
                [
                    layout,
                    mode,
                    f"{entry['median_s'] * 1000:.2f}",
                    f"{entry['p95_s'] * 1000:.2f}",
                    f"{entry['ratio_to_factory']:.2f}",
                    f"{entry['commands_per_conversation']:g}",
                    compact(sequence) + ("" if len(entry["command_sequences"]) == 1 else " (most often)"),
                    f"{entry['connections_per_conversation']:g}",
                    f"{entry['pools_per_conversation']:g}",
                    len(entry["failures"]),
                ]
            )
        goal = figures[layout][GOAL_MODE]["ratio_to_factory"]
        held = goal <= GOAL_RATIO
        figures[layout]["goal"] = {"mode": GOAL_MODE, "ratio_at_most": GOAL_RATIO, "ratio": goal, "held": held}
        verdicts.append(
            f"Goal ({layout}): {GOAL_MODE} median / factory median <= {GOAL_RATIO}: {goal:.2f} -> "
            f"{'MET' if held else 'NOT MET'}"
        )
    headers = [
        "layout",
        "mode",
        "median ms",
        "p95 ms",
        "/ factory",
        "commands",
        "commands sent",
        "connections opened",
        "pools created",
        "failed",
    ]
    title = (
        f"One conversation (new manager, resume of {SEEDED_MESSAGES} messages, one turn, close), "
        f"{args.conversations} measured per mode and layout ({server})"
    )
    tables = [print_table(headers, rows, title=title)]
    print(
        "commands: per conversation, driver housekeeping (hello, endSessions, ...) not counted; connections "
        "opened: pool connections created (ConnectionCreatedEvent); pools created: connection pools "
        "(PoolCreatedEvent, one per server a new MongoClient finds);\nall counted by listeners registered "
        "globally, so the library's own clients are counted too"
    )
    failures = [failure for layout in layouts for mode in MODES for failure in figures[layout][mode]["failures"]]
    if failures:
        verdicts.append(f"{len(failures)} conversation(s) failed (not timed), first: {failures[0]}")
    verdict = "\n".join(verdicts)
    print("\n" + verdict, flush=True)
    tables.append(verdict)
    parameters = {
        "conversations": args.conversations,
        "block": args.block,
        "warmup_per_block": args.warmup,
        "layouts": layouts,
        "seeded_messages": SEEDED_MESSAGES,
        "window": WINDOW,
    }
    write_results("per_conversation", args, server, parameters, figures, tables)
    if args.check and not all(figures[layout]["goal"]["held"] for layout in layouts):
        sys.exit(1)


if __name__ == "__main__":
    main()
