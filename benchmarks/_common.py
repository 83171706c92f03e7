"""What the benchmarks share: the server, arguments, statistics, tables, progress and the results file.

Every benchmark runs against a real MongoDB wire-protocol server: ``--uri`` or ``$MONGODB_URI``
if given, otherwise an in-memory SecantusDB started in this process (a development dependency).
Agents are real ``strands.Agent``s driven by ``ScriptedModel`` from ``examples/``.
"""

from __future__ import annotations

import argparse
import datetime
import importlib.metadata
import json
import math
import os
import platform
import socket
import statistics
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
BENCHMARKS = ROOT / "benchmarks"
RESULTS = BENCHMARKS / "results"
EXAMPLES = ROOT / "examples"
TESTS = ROOT / "tests"

for _directory in (EXAMPLES, TESTS):  # ScriptedModel, CommandCounter (and the example apps)
    if str(_directory) not in sys.path:
        sys.path.insert(0, str(_directory))

from command_counter import CommandCounter  # noqa: E402
from scripted_model import ScriptedModel  # noqa: E402

__all__ = [
    "CommandCounter",
    "Progress",
    "ScriptedModel",
    "load_average",
    "median",
    "microseconds",
    "mongodb_server",
    "parse_args",
    "percentile",
    "print_table",
    "unique_database",
    "write_results",
]

LOAD_AT_START = ", ".join(f"{value:.2f}" for value in os.getloadavg())
"""The load averages when the benchmark started (the machine is shared: timings depend on it)."""

PACKAGES = ("mongodb-session-manager", "strands-agents", "pymongo", "secantusdb", "fastapi", "uvicorn", "httpx")


# -- arguments and the server -------------------------------------------------------------------


def parse_args(description: str, parser: argparse.ArgumentParser | None = None) -> argparse.Namespace:
    """Parse ``--uri`` (default ``$MONGODB_URI``) and ``--no-save`` plus whatever ``parser`` already has."""
    parser = parser or argparse.ArgumentParser(description=description)
    parser.add_argument(
        "--uri",
        default=os.environ.get("MONGODB_URI"),
        help="MongoDB URI (default: $MONGODB_URI; unset starts an in-memory SecantusDB in this process)",
    )
    parser.add_argument("--no-save", action="store_true", help="do not write benchmarks/results/<name>.json")
    return parser.parse_args()


@contextmanager
def mongodb_server(
    uri: str | None, *, replica_set: bool = True, child_process: bool = False, cache_size: str = "1G"
) -> Iterator[tuple[str, str]]:
    """Yield ``(uri, description)``: ``uri`` if given, else an in-memory SecantusDB started here.

    SecantusDB presents itself as a one-member replica set unless ``replica_set`` is False: then it
    is a standalone server (no oplog), and pymongo sends no retryable-write numbers to it. It runs
    in this process unless ``child_process`` (then it does not share the interpreter lock with
    the code measured, and a profile of this process holds no server code). In memory it holds
    at most ``cache_size`` (data, indexes and oplog).
    """
    if uri:
        yield uri, "given by --uri / $MONGODB_URI"
        return
    topology = "one-member replica set" if replica_set else "standalone"
    if child_process:
        with secantus_child_process(replica_set) as child_uri:
            yield child_uri, f"SecantusDB in memory, {topology}, in a child process"
        return
    from secantus import SecantusDBServer  # type: ignore[import-untyped]

    server = SecantusDBServer(
        host="127.0.0.1",
        port=0,
        storage_path=":memory:",
        replica_set_name="secantus" if replica_set else None,
        cache_size=cache_size,
    )
    server.start()
    try:
        yield server.uri, f"SecantusDB in memory, {topology}, in this process (it shares the GIL with the benchmark)"
    finally:
        server.stop()


@contextmanager
def secantus_child_process(replica_set: bool) -> Iterator[str]:
    """Run ``python -m secantus`` in memory on a free loopback port; yield its URI once it answers."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    command = [sys.executable, "-m", "secantus", "--host", "127.0.0.1", "--port", str(port)]
    command += ["--storage-path", ":memory:", "--log-level", "WARNING"]
    if not replica_set:
        command.append("--standalone")
    child = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    uri = f"mongodb://127.0.0.1:{port}/?directConnection=true"
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                with socket.create_connection(("127.0.0.1", port), timeout=1):
                    break
            except OSError:
                if child.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError(f"SecantusDB did not start: {' '.join(command)}") from None
                time.sleep(0.05)
        yield uri
    finally:
        child.terminate()
        try:
            child.wait(timeout=15)
        except subprocess.TimeoutExpired:
            child.kill()
            child.wait()


def unique_database(prefix: str) -> str:
    """A fresh database name, so runs never see each other's data."""
    return f"bench_{prefix}_{uuid.uuid4().hex[:8]}"


# -- statistics -------------------------------------------------------------------------------------


def median(values: Sequence[float]) -> float:
    return statistics.median(values)


def microseconds(seconds: Sequence[float]) -> list[float]:
    """Seconds rounded to the microsecond, to keep results files small."""
    return [round(value, 6) for value in seconds]


def percentile(values: Sequence[float], fraction: float) -> float:
    """Nearest-rank percentile: ``percentile(latencies, 0.99)``."""
    ordered = sorted(values)
    rank = max(1, math.ceil(fraction * len(ordered)))
    return ordered[rank - 1]


# -- output --------------------------------------------------------------------------------------------


def print_table(headers: Sequence[str], rows: Sequence[Sequence[Any]], title: str | None = None) -> str:
    """Print ``rows`` as a Markdown table (it reads well in a terminal and pastes into the README)."""
    cells = [[str(header) for header in headers], *[[str(cell) for cell in row] for row in rows]]
    widths = [max(len(row[column]) for row in cells) for column in range(len(headers))]

    def line(row: Sequence[str]) -> str:
        return "| " + " | ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True)) + " |"

    text = "\n".join([line(cells[0]), "|" + "|".join("-" * (width + 2) for width in widths) + "|"])
    text += "".join("\n" + line(row) for row in cells[1:])
    if title:
        text = f"\n{title}\n\n{text}"
    print(text, flush=True)
    return text


class Progress:
    """``label 40/100 12.5/s, eta 5s`` on stderr, redrawn at most every half second."""

    def __init__(self, total: int, label: str) -> None:
        self.total = total
        self.label = label
        self.done = 0
        self.started = time.monotonic()
        self._drawn = 0.0
        self._interactive = sys.stderr.isatty()

    def advance(self, count: int = 1) -> None:
        self.done += count
        now = time.monotonic()
        if now - self._drawn >= (0.5 if self._interactive else 10.0) or self.done == self.total:
            self._drawn = now
            self._draw(now)

    def _draw(self, now: float) -> None:
        elapsed = now - self.started
        rate = self.done / elapsed if elapsed > 0 else 0.0
        eta = (self.total - self.done) / rate if rate > 0 else float("inf")
        text = f"{self.label} {self.done}/{self.total} {rate:.1f}/s, {elapsed:.0f}s elapsed, eta {eta:.0f}s"
        sys.stderr.write(f"\r{text}\033[K" if self._interactive else f"{text}\n")
        sys.stderr.flush()

    def close(self) -> float:
        """Finish the line; return the seconds since the start."""
        elapsed = time.monotonic() - self.started
        if self._interactive:
            sys.stderr.write("\n")
        sys.stderr.flush()
        return elapsed


def load_average() -> str:
    """The 1, 5 and 15-minute load averages, as ``uptime`` shows them (the machine is shared: say how busy)."""
    return ", ".join(f"{value:.2f}" for value in os.getloadavg())


def versions() -> dict[str, str | None]:
    found: dict[str, str | None] = {}
    for package in PACKAGES:
        try:
            found[package] = importlib.metadata.version(package)
        except importlib.metadata.PackageNotFoundError:
            found[package] = None
    return found


def machine() -> dict[str, Any]:
    return {
        "platform": platform.platform(),
        "machine": platform.machine(),
        "processor": platform.processor() or None,
        "cpus": os.cpu_count(),
        "python": platform.python_version(),
        "implementation": platform.python_implementation(),
    }


def write_results(
    name: str, args: argparse.Namespace, server: str, parameters: dict[str, Any], figures: Any, tables: Sequence[str]
) -> Path | None:
    """Write ``benchmarks/results/<name>.json`` (unless ``--no-save``) and say where.

    Prints the load averages (1, 5, 15 minutes) at the start and now: the machine may be shared.
    """
    load = {"start": LOAD_AT_START, "end": load_average()}
    print(f"\nload average (1, 5, 15 min): {load['start']} at the start, {load['end']} at the end", flush=True)
    if args.no_save:
        return None
    RESULTS.mkdir(parents=True, exist_ok=True)
    path = RESULTS / f"{name}.json"
    document = {
        "benchmark": name,
        "date": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
        "command": " ".join([Path(sys.argv[0]).name, *sys.argv[1:]]),
        "server": server,
        "machine": machine(),
        "load_average": load,
        "versions": versions(),
        "parameters": parameters,
        "figures": figures,
        "tables": list(tables),
    }
    path.write_text(json.dumps(document, indent=2, default=str) + "\n")
    print(f"\nresults written to {path.relative_to(ROOT)}", flush=True)
    return path
