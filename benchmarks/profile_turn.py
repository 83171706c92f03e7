"""Where a turn's client-side time goes, function by function: this library, pymongo and bson.

Runs ``--turns`` turns (after ``--warmup``) of an Agent resuming a stored session of ``--length``
messages (window 40, so every turn stores two messages and the window offset), per layout, under
a deterministic profiler. Strands runs each invocation in a thread of its own, so ``cProfile``
is enabled in every thread started while profiling (``threading.setprofile``), and the
per-thread profiles are merged. The server runs in a child process (``--uri`` to use another),
so none of its code is in the profile.

Printed per layout: the library's functions and pymongo/bson's, ranked by their own time (µs per
turn) with calls per turn and inclusive time. A deterministic profiler inflates code that makes
many small calls, so read the times for ranking and the call counts as exact; the turn time
without the profiler is printed for scale. For sampled times, run the same turns under py-spy
(``--no-profile``) and summarise its raw output with ``--py-spy``::

    uv run python benchmarks/profile_turn.py [--layouts embedded,split] [--turns 1000] [--length 100]
    uvx py-spy record -r 1000 -f raw -o /tmp/turns.txt --threads -- \\
        .venv/bin/python benchmarks/profile_turn.py --no-profile --layouts split --turns 3000
    uv run python benchmarks/profile_turn.py --py-spy /tmp/turns.txt --turns 3000
"""

from __future__ import annotations

import argparse
import cProfile
import pstats
import re
import sys
import threading
import time
import timeit
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from _common import mongodb_server, print_table, unique_database
from bson import ObjectId
from commands import LAYOUTS, answer_metrics, text_message
from growth import prompt
from pymongo import MongoClient
from strands import Agent
from strands.types.content import Message
from strands.types.session import SessionMessage
from turn_split import PROMPT_BYTES, mongodb_agent

from mongodb_session_manager import (
    MongoDBSessionRepository,
    _documents,
    _split_layout,
    metrics,
    validation,
)
from mongodb_session_manager._known_sessions import KnownSessions
from mongodb_session_manager._resume import ResumeSnapshots

from scripted_model import ScriptedModel

CLIENT_PACKAGES = ("pymongo", "bson")
TOP = 25


@contextmanager
def profiled_threads() -> Iterator[list[cProfile.Profile]]:
    """Profile every thread started inside the block (the threads Strands runs each invocation in)."""
    profiles: list[cProfile.Profile] = []
    lock = threading.Lock()

    def start_profile(*_: Any) -> None:
        profile = cProfile.Profile()
        with lock:
            profiles.append(profile)
        profile.enable()  # replaces this bootstrap hook in the new thread

    threading.setprofile(start_profile)
    try:
        yield profiles
    finally:
        threading.setprofile(None)


def in_package(filename: str, package: str) -> bool:
    """Whether ``filename`` (absolute, or package-relative as py-spy prints it) is in ``package``."""
    return filename.startswith(f"{package}/") or f"/{package}/" in filename


def where(filename: str) -> str | None:
    """``"library"``, ``"pymongo"`` or ``"bson"`` for a function's file, else None."""
    if in_package(filename, "mongodb_session_manager"):
        return "library"
    for package in CLIENT_PACKAGES:
        if in_package(filename, package):
            return package
    return None


def ranked(stats: pstats.Stats, turns: int) -> list[list[Any]]:
    """Rows ``[where, function, calls/turn, own µs/turn, inclusive µs/turn]``, by own time."""
    rows = []
    for (filename, line, name), (_, calls, own, inclusive, _) in stats.stats.items():  # type: ignore[attr-defined]
        place = where(filename)
        if place is None:
            continue
        function = f"{Path(filename).name}:{line}({name})"
        rows.append([place, function, calls / turns, own / turns * 1e6, inclusive / turns * 1e6])
    rows.sort(key=lambda row: row[3], reverse=True)
    return rows


def run_turns(uri: str, layout: str, length: int, turns: int, warmup: int, profile: bool) -> dict[str, Any]:
    client: MongoClient[dict[str, Any]] = MongoClient(uri)
    database_name = unique_database(f"profile_{layout}")
    try:
        agent = mongodb_agent(client, database_name, layout, length)
        for turn in range(warmup):
            agent(prompt(turn, PROMPT_BYTES))
        started = time.perf_counter()
        for turn in range(turns // 10 if profile else 0):
            agent(prompt(turn, PROMPT_BYTES))
        unprofiled = (time.perf_counter() - started) / max(1, turns // 10)
        if not profile:
            started = time.perf_counter()
            for turn in range(turns):
                agent(prompt(turn, PROMPT_BYTES))
            return {"turn_s": (time.perf_counter() - started) / turns}
        with profiled_threads() as profiles:
            started = time.perf_counter()
            for turn in range(turns):
                agent(prompt(turn, PROMPT_BYTES))
            profiled = (time.perf_counter() - started) / turns
        stats = pstats.Stats(profiles[0])
        for other in profiles[1:]:
            stats.add(other)
        return {"turn_s": unprofiled, "profiled_turn_s": profiled, "stats": stats, "threads": len(profiles)}
    finally:
        client.drop_database(database_name)
        client.close()


# -- py-spy's raw output -----------------------------------------------------------------------------------

_FRAME = re.compile(r"^(?P<name>.+?) \((?P<file>[^()]+):(?P<line>\d+)\)$")
OWNERS = ("library", "pymongo", "bson", "strands")


def owner_of(filename: str) -> str | None:
    """Who a frame belongs to: this library, pymongo, bson, strands, or None (the standard library, others)."""
    place = where(filename)
    if place is not None:
        return place
    return "strands" if in_package(filename, "strands") else None


@dataclass
class Samples:
    """py-spy samples of the invocation threads: by owner, and per function (own and inclusive)."""

    by_owner: Counter[str]
    own: Counter[str]
    inclusive: Counter[str]
    places: dict[str, str]
    """Owner of each function seen."""


def read_py_spy(path: Path) -> Samples:
    """Count py-spy's raw samples (``-f raw``) of the threads Strands runs invocations in (``ThreadPoolExecutor``).

    A sample is charged to the innermost frame that belongs to the library, pymongo, bson or
    strands: what they call in the standard library (``datetime``, ``threading``, ``socket``...)
    counts as theirs.
    """
    by_owner: Counter[str] = Counter()
    own: Counter[str] = Counter()
    inclusive: Counter[str] = Counter()
    places: dict[str, str] = {}
    for line in path.read_text().splitlines():
        stack, _, count_text = line.rpartition(" ")
        frames = stack.split(";")
        if "ThreadPoolExecutor" not in frames[0]:
            continue
        count = int(count_text)
        charged: str | None = None
        seen: set[str] = set()
        for frame in frames[1:]:
            match = _FRAME.match(frame)
            if match is None:
                continue
            owner = owner_of(match["file"])
            if owner is None:
                continue
            function = f"{Path(match['file']).name}:{match['name']}"
            places[function] = owner
            charged = function
            if function not in seen:
                seen.add(function)
                inclusive[function] += count
        if charged is None:
            by_owner["other (event loop, threads)"] += count
        else:
            by_owner[places[charged]] += count
            own[charged] += count
    return Samples(by_owner, own, inclusive, places)


def summarise_py_spy(path: Path, turns: int, rate: int) -> None:
    """Print time per turn by owner, and per function of the library, pymongo and bson, from py-spy's raw output."""
    samples = read_py_spy(path)
    by_owner, own, inclusive, places = samples.by_owner, samples.own, samples.inclusive, samples.places
    per_turn = 1e6 / rate / turns
    total = sum(by_owner.values())
    owners = [[owner, f"{count * per_turn:.0f}", f"{count / total:.0%}"] for owner, count in by_owner.most_common()]
    owners.append(["all", f"{total * per_turn:.0f}", "100%"])
    print_table(["charged to", "µs/turn", "share"], owners, title=f"py-spy: the invocation threads' samples ({path})")
    for chosen in (("library",), ("pymongo", "bson")):
        rows = [
            [places[function], function, f"{count * per_turn:.1f}", f"{inclusive[function] * per_turn:.1f}"]
            for function, count in own.most_common()
            if places[function] in chosen
        ][:TOP]
        print_table(
            ["where", "function", "own µs/turn (with stdlib callees)", "inclusive µs/turn"],
            rows,
            title=f"py-spy: {' and '.join(chosen)}, by own time",
        )


MICRO = {
    "now": "now()",
    "to_datetime": "to_datetime(message.created_at)",
    "message_document": "message_document(message, moment, extra)",
    "encoded": "encoded(document)",
    "split_message_document": "split_message_document('s', 'a', generation, entry)",
    "assistant_message_metrics": "assistant_message_metrics(answer, agent)",
    "annotate_messages": "with repository.annotate_messages(**extra): pass",
    "writing": "with snapshots.writing('s'): pass",
    "generation": "known.generation('s', 'a')",
    "matching": "sessions.matching('s')",
    "validate_session_id": "validate_session_id('session-1')",
    "validate_field_name": "validate_field_name('agent-1', 'agent_id')",
}
"""The library's per-turn functions timed alone: the statement timing one call of each."""
GENERATOR_CONTEXT_MANAGERS = frozenset({"writing", "_scoped"})
"""``@contextmanager`` functions: cProfile counts a call on entering and on leaving the block."""


def micro_costs(uri: str) -> dict[str, float]:
    """CPU seconds per call of each :data:`MICRO` statement (best of 5 repeats, on an assistant message).

    Timed in this thread's CPU time, so that other processes on a busy machine do not count.
    """
    client: MongoClient[dict[str, Any]] = MongoClient(uri)
    database_name = unique_database("profile_micro")
    try:
        repository = MongoDBSessionRepository(client=client, database_name=database_name)
        answer: Message = {
            **text_message(1),
            "metadata": {"usage": answer_metrics(1)["usage"], "metrics": {"latencyMs": 100}},
        }
        message = SessionMessage.from_message(answer, 1)
        extra = {"event_loop_metrics": answer_metrics(1)}
        document = _documents.message_document(message, _documents.now(), extra)
        known = KnownSessions()
        generation = ObjectId()
        known.remember("s", generation, ["a"])
        namespace = {
            **vars(_documents),
            **vars(validation),
            "split_message_document": _split_layout.split_message_document,
            "assistant_message_metrics": metrics.assistant_message_metrics,
            "repository": repository,
            "answer": answer,
            "message": message,
            "extra": extra,
            "moment": _documents.now(),
            "document": document,
            "entry": _documents.encoded(document),
            "generation": generation,
            "known": known,
            "agent": Agent(model=ScriptedModel.echo(), callback_handler=None),
            "snapshots": ResumeSnapshots(),
            "sessions": repository._sessions,
        }
        costs = {}
        for name, statement in MICRO.items():
            number = 2000
            best = min(timeit.repeat(statement, number=number, repeat=5, globals=namespace, timer=time.thread_time))
            costs[name] = best / number
        return costs
    finally:
        client.drop_database(database_name)
        client.close()


def library_calls(rows: list[list[Any]]) -> Counter[str]:
    """Calls per turn of the library's functions, by name (the same name in several modules adds up)."""
    calls: Counter[str] = Counter()
    for place, function, per_turn, _, _ in rows:
        if place == "library":
            name = function.rpartition("(")[2].rstrip(")")
            calls[name] += per_turn / (2 if name in GENERATOR_CONTEXT_MANAGERS else 1)
    return calls


def print_micro(layout: str, rows: list[list[Any]], costs: dict[str, float]) -> None:
    """µs per turn of the :data:`MICRO` functions: calls per turn (cProfile, exact) times µs per call (alone)."""
    calls = library_calls(rows)
    per_turn = sorted(((calls[name] * cost, name) for name, cost in costs.items()), reverse=True)
    print_table(
        ["function", "calls/turn", "µs/call alone", "µs/turn"],
        [[name, f"{calls[name]:g}", f"{costs[name] * 1e6:.2f}", f"{seconds * 1e6:.1f}"] for seconds, name in per_turn],
        title=f"{layout}: the library's per-turn functions, CPU time alone (best of 5) times calls per turn",
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--uri", help="MongoDB URI (default: SecantusDB in memory in a child process)")
    parser.add_argument("--layouts", default=",".join(LAYOUTS), help="message layouts (embedded,split)")
    parser.add_argument("--turns", type=int, default=1000, help="profiled turns per layout (1000)")
    parser.add_argument("--warmup", type=int, default=30, help="turns before (30)")
    parser.add_argument("--length", type=int, default=100, help="messages stored before the turns (100)")
    parser.add_argument("--no-profile", action="store_true", help="run the turns without a profiler (for py-spy)")
    parser.add_argument("--py-spy", type=Path, help="summarise this py-spy raw file instead of running turns")
    parser.add_argument("--rate", type=int, default=1000, help="py-spy's sampling rate (-r) for --py-spy (1000)")
    args = parser.parse_args()
    if args.py_spy:
        summarise_py_spy(args.py_spy, args.turns, args.rate)
        return
    layouts = [layout.strip() for layout in args.layouts.split(",") if layout.strip()]
    with mongodb_server(args.uri, child_process=True) as (uri, server):
        costs = {} if args.no_profile else micro_costs(uri)
        for layout in layouts:
            figures = run_turns(uri, layout, args.length, args.turns, args.warmup, not args.no_profile)
            print(f"\n{layout}: {figures['turn_s'] * 1000:.2f} ms per turn without the profiler ({server})")
            if "stats" not in figures:
                continue
            under = figures["profiled_turn_s"] * 1000
            print(f"{under:.2f} ms per turn under it, {figures['threads']} threads profiled")
            rows = ranked(figures["stats"], args.turns)
            totals: Counter[str] = Counter()
            for place, _, _, own, _ in rows:
                totals[place] += own
            print(
                "own time per turn under cProfile, all functions: "
                + ", ".join(f"{place} {totals[place]:.0f} µs" for place in ("library", *CLIENT_PACKAGES))
            )
            for place in ("library", "pymongo+bson"):
                chosen = [row for row in rows if (row[0] == place) or (place != "library" and row[0] != "library")]
                print_table(
                    ["where", "function", "calls/turn", "own µs/turn", "inclusive µs/turn"],
                    [[p, f, f"{c:g}", f"{o:.1f}", f"{i:.1f}"] for p, f, c, o, i in chosen[:TOP]],
                    title=f"{layout}: {place}, by own time per turn (cProfile, {args.turns} turns)",
                )
            print_micro(layout, rows, costs)
    sys.stdout.flush()


if __name__ == "__main__":
    main()
