"""Strands ``Storage`` backends side by side, and the two ways of keeping an agent's session in MongoDB.

1. **Operations**: median latency (and MongoDB commands) of ``write``, ``read``, ``delete``,
   ``list`` of 100 and of 10,000 keys under a prefix, and ``search`` over 10,000 values, for
   ``MongoDBStorage``, Strands' ``LocalFileStorage`` (a temporary directory) and ``InMemoryStorage``.
2. **Snapshots**: ``SnapshotSessionManager`` on each backend: ``save_snapshot`` of a conversation of
   ``--turns`` turns, and a resume (manager + Agent).
3. **Sessions**: a whole turn and a resume with ``MongoDBSessionManager`` (message log, both layouts)
   against ``SnapshotSessionManager`` on ``MongoDBStorage`` and on ``LocalFileStorage``.

    uv run python benchmarks/storage.py [--repeats 50] [--value-bytes 2000] [--list-sizes 100,10000]
                                        [--search-values 10000] [--turns 20] [--uri mongodb://...]
"""

from __future__ import annotations

import argparse
import asyncio
import random
import tempfile
import time
from collections.abc import Awaitable, Callable, Iterator
from contextlib import contextmanager
from typing import Any

from _common import (
    CommandCounter,
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
from pymongo import MongoClient
from strands import Agent
from strands.session import SnapshotSessionManager
from strands.session.session_manager import SessionManager
from strands.storage import InMemoryStorage, LocalFileStorage

from mongodb_session_manager import MongoDBSessionManager, MongoDBStorage

Client = MongoClient[dict[str, Any]]
Storage = MongoDBStorage | LocalFileStorage | InMemoryStorage

BACKENDS = ("MongoDBStorage", "LocalFileStorage", "InMemoryStorage")
SESSIONS = ("message log, embedded", "message log, split", "snapshots, MongoDBStorage", "snapshots, LocalFileStorage")
PROMPT_BYTES = 300
SETUP_CONCURRENCY = 32
VOCABULARY = 5000
"""Distinct words in the generated values, drawn with Zipf-like frequencies (as in text)."""


def word(rank: int) -> str:
    """A pronounceable pseudo-word, distinct for every rank."""
    syllables = ("ka", "lo", "mi", "su", "ra", "ve", "to", "pa", "ni", "de", "go", "bu", "si", "ze", "lu", "fo")
    letters, rank = [], rank + 16
    while rank:
        rank, digit = divmod(rank, 16)
        letters.append(syllables[digit])
    return "".join(reversed(letters))


WORDS = [word(rank) for rank in range(VOCABULARY)]
WEIGHTS = [1 / (rank + 1) ** 1.1 for rank in range(VOCABULARY)]
QUERY = f"What was decided about {WORDS[40]} and the {WORDS[400]} of {WORDS[2000]}?"
"""Three words: a common one, a rarer one and a rare one (plus stop words, which search ignores)."""


def compact(names: list[str]) -> str:
    """``["find", "find", "getMore"]`` -> ``"2 find, 1 getMore"``."""
    return ", ".join(f"{names.count(name)} {name}" for name in dict.fromkeys(names)) or "-"


def ms(seconds: float) -> str:
    return f"{seconds * 1000:.3f}" if seconds < 0.001 else f"{seconds * 1000:.2f}"


def value_of(index: int, size: int) -> bytes:
    """A text value of ``size`` bytes (seeded): words of a Zipf-distributed vocabulary, like notes or tool output."""
    rng = random.Random(index)
    text = " ".join(rng.choices(WORDS, WEIGHTS, k=size // 4 + 1))
    return text.encode()[: text.rfind(" ", 0, size)]


class Timer:
    """Times awaited calls; counts the commands of the first one when given a counter."""

    def __init__(self, counter: CommandCounter | None) -> None:
        self.counter = counter

    async def run(self, repeats: int, call: Callable[[int], Awaitable[Any]]) -> dict[str, Any]:
        seconds: list[float] = []
        commands: list[str] = []
        for index in range(repeats):
            if self.counter is not None:
                self.counter.reset()
            started = time.perf_counter()
            await call(index)
            seconds.append(time.perf_counter() - started)
            if index == 0 and self.counter is not None:
                commands = self.counter.names()
        return {"median_s": median(seconds), "seconds": microseconds(seconds), "commands": commands}


async def fill(storage: Storage, keys: list[str], size: int) -> None:
    """Write ``keys`` (untimed), a few at a time."""
    for first in range(0, len(keys), SETUP_CONCURRENCY):
        batch = keys[first : first + SETUP_CONCURRENCY]
        await asyncio.gather(*(storage.write(key, value_of(first + n, size)) for n, key in enumerate(batch)))


async def operations(
    storage: Storage, filler: Storage, counter: CommandCounter | None, args: argparse.Namespace
) -> dict[str, Any]:
    """The protocol's operations on one backend; ``filler`` (the same store) writes what is listed and searched."""
    timer, value = Timer(counter), value_of(0, args.value_bytes)
    figures: dict[str, Any] = {}
    await storage.write("warm-up", value)  # MongoDB creates its indexes here
    figures["write, new key"] = await timer.run(args.repeats, lambda n: storage.write(f"ops/{n}", value))
    figures["write, overwrite"] = await timer.run(args.repeats, lambda n: storage.write("ops/0", value))
    binary = random.Random(0).randbytes(args.value_bytes)  # not UTF-8: no search tokens, no index entries
    figures["write, new key, binary value"] = await timer.run(args.repeats, lambda n: storage.write(f"bin/{n}", binary))
    figures["read"] = await timer.run(args.repeats, lambda n: storage.read(f"ops/{n}"))
    figures["read, missing key"] = await timer.run(args.repeats, lambda n: storage.read(f"missing/{n}"))
    figures["delete"] = await timer.run(args.repeats, lambda n: storage.delete(f"ops/{n}"))
    for size in args.list_sizes:
        await fill(filler, [f"list{size}/{n:06d}" for n in range(size)], 100)
        keys = await storage.list(f"list{size}/")
        assert len(keys) == size, (size, len(keys))
        figures[f"list, {size:,} keys"] = await timer.run(
            args.list_repeats, lambda n, s=size: storage.list(f"list{s}/")
        )
    await fill(filler, [f"search/fact-{n:06d}.md" for n in range(args.search_values)], 200)
    view = storage.namespace("search")
    found = len(await view.search(QUERY))
    figures[f"search, {args.search_values:,} values"] = {
        **await timer.run(args.list_repeats, lambda n: view.search(QUERY)),
        "matches": found,
    }
    return figures


def conversation_agent(manager: SessionManager) -> Agent:
    return Agent(model=ScriptedModel.echo(record_calls=False), session_manager=manager, callback_handler=None)


def talk(agent: Agent, turns: int) -> list[float]:
    seconds = []
    for turn in range(turns):
        started = time.perf_counter()
        agent(f"turn {turn}: " + "x" * PROMPT_BYTES)
        seconds.append(time.perf_counter() - started)
    return seconds


async def snapshots(storage: Storage, counter: CommandCounter | None, args: argparse.Namespace) -> dict[str, Any]:
    """``save_snapshot`` and a resume with ``SnapshotSessionManager`` on one backend."""
    timer = Timer(counter)
    manager = SnapshotSessionManager("bench-snapshots", storage=storage)
    agent = await asyncio.to_thread(conversation_agent, manager)
    await asyncio.to_thread(talk, agent, args.turns)
    latest = await storage.read("session/bench-snapshots/scopes/agent/default/snapshots/snapshot_latest.json")
    assert latest is not None

    def resume() -> Agent:
        return conversation_agent(SnapshotSessionManager("bench-snapshots", storage=storage))

    resumed = await asyncio.to_thread(resume)
    assert len(resumed.messages) == 2 * args.turns
    return {
        "snapshot_bytes": len(latest),
        "save": await timer.run(args.repeats, lambda n: manager.save_snapshot(agent, is_latest=True)),
        "resume": await timer.run(args.repeats, lambda n: asyncio.to_thread(resume)),
    }


@contextmanager
def session_manager_factory(
    kind: str, client: Client, database_name: str, directory: str
) -> Iterator[Callable[[str], SessionManager]]:
    """New session managers of one kind, as a web app creates them per request."""
    if kind.startswith("message log"):
        layout = kind.split(", ")[1]
        yield lambda session_id: MongoDBSessionManager(
            session_id, client=client, database_name=database_name, layout=layout
        )
        return
    storage: Storage
    if kind.endswith("MongoDBStorage"):
        storage = MongoDBStorage(client=client, database_name=database_name)
    else:
        storage = LocalFileStorage(directory)
    yield lambda session_id: SnapshotSessionManager(session_id, storage=storage)


def sessions(client: Client, counter: CommandCounter, database_name: str, args: argparse.Namespace) -> dict[str, Any]:
    """A turn and a resume with each way of keeping a session."""
    figures: dict[str, Any] = {}
    progress = Progress(len(SESSIONS), "sessions")
    with tempfile.TemporaryDirectory() as directory:
        for kind in SESSIONS:
            with session_manager_factory(kind, client, database_name, directory) as new_manager:
                session_id = f"bench-{kind.replace(', ', '-')}"
                conversation_agent(new_manager(f"{session_id}-warm-up"))("warm up")  # indexes, imports
                agent = conversation_agent(new_manager(session_id))
                counter.reset()
                turns = talk(agent, args.turns)
                turn_commands = len(counter.names()) / args.turns
                counter.reset()
                conversation_agent(new_manager(session_id))
                resume_commands = counter.names()
                resumes = []
                for _ in range(args.repeats):
                    started = time.perf_counter()
                    resumed = conversation_agent(new_manager(session_id))
                    resumes.append(time.perf_counter() - started)
                assert len(resumed.messages) == 2 * args.turns, (kind, len(resumed.messages))
                figures[kind] = {
                    "turn_median_s": median(turns),
                    "turn_seconds": microseconds(turns),
                    "commands_per_turn": turn_commands,
                    "resume_median_s": median(resumes),
                    "resume_commands": resume_commands,
                }
            progress.advance()
    progress.close()
    return figures


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeats", type=int, default=50, help="timed calls per operation (median reported)")
    parser.add_argument("--list-repeats", type=int, default=7, help="timed list and search calls")
    parser.add_argument("--value-bytes", type=int, default=2000, help="size of the values written and read")
    parser.add_argument("--list-sizes", default="100,10000", help="keys under the listed prefixes")
    parser.add_argument("--search-values", type=int, default=10_000, help="values searched (200 bytes each)")
    parser.add_argument("--turns", type=int, default=20, help="turns in the conversations snapshotted and resumed")
    args = parse_args(__doc__ or "", parser)
    args.list_sizes = [int(size) for size in args.list_sizes.split(",")]

    results: dict[str, Any] = {"sessions": {}, "snapshots": {}, "operations": {}}
    with mongodb_server(args.uri) as (uri, server), tempfile.TemporaryDirectory() as directory:
        counter = CommandCounter()
        client: Client = MongoClient(uri, event_listeners=[counter])
        # Writes only done to set up list and search, without retryable-write records: SecantusDB slows
        # down with every retryable write it has taken recently (benchmarks/server_writes.py), mongod does not.
        filling_client: Client = MongoClient(uri, retryWrites=False)
        database_name = unique_database("storage")
        try:
            results["sessions"] = sessions(client, counter, database_name, args)
            progress = Progress(len(BACKENDS), "backends")
            for backend in BACKENDS:
                storage: Storage
                filler: Storage
                if backend == "MongoDBStorage":
                    storage = MongoDBStorage(client=client, database_name=database_name)
                    filler = MongoDBStorage(client=filling_client, database_name=database_name)
                elif backend == "LocalFileStorage":
                    storage = filler = LocalFileStorage(directory)
                else:
                    storage = filler = InMemoryStorage()
                backend_counter = counter if backend == "MongoDBStorage" else None
                results["snapshots"][backend] = asyncio.run(snapshots(storage, backend_counter, args))
                results["operations"][backend] = asyncio.run(operations(storage, filler, backend_counter, args))
                progress.advance()
            progress.close()
        finally:
            client.drop_database(database_name)
            client.close()
            filling_client.close()

    tables = print_tables(results, args, server)
    parameters = {
        "repeats": args.repeats,
        "list_repeats": args.list_repeats,
        "value_bytes": args.value_bytes,
        "list_sizes": args.list_sizes,
        "search_values": args.search_values,
        "search_query": QUERY,
        "turns": args.turns,
        "prompt_bytes": PROMPT_BYTES,
    }
    write_results("storage", args, server, parameters, results, tables)


def print_tables(results: dict[str, Any], args: argparse.Namespace, server: str) -> list[str]:
    operations = results["operations"]
    rows = []
    for operation, mongo in operations["MongoDBStorage"].items():
        row = [operation, ms(mongo["median_s"]), compact(mongo["commands"])]
        row += [ms(operations[backend][operation]["median_s"]) for backend in BACKENDS[1:]]
        rows.append(row)
    headers = ["operation", "MongoDBStorage ms", "commands", "LocalFileStorage ms", "InMemoryStorage ms"]
    search = operations["MongoDBStorage"][f"search, {args.search_values:,} values"]
    title = (
        f"Storage operations, median ({args.repeats} calls; list and search {args.list_repeats}); "
        f"{args.value_bytes:,}-byte values; the search matches {search['matches']:,} values ({server})"
    )
    tables = [print_table(headers, rows, title=title)]

    rows = []
    for backend in BACKENDS:
        figures = results["snapshots"][backend]
        rows.append(
            [
                backend,
                f"{figures['snapshot_bytes']:,}",
                ms(figures["save"]["median_s"]),
                compact(figures["save"]["commands"]),
                ms(figures["resume"]["median_s"]),
                compact(figures["resume"]["commands"]),
            ]
        )
    headers = ["backend", "snapshot B", "save ms", "save commands", "resume ms", "resume commands"]
    title = f"SnapshotSessionManager: save_snapshot and resume (manager + Agent) of {args.turns} turns, median"
    tables.append(print_table(headers, rows, title=title))

    rows = []
    for kind, figures in results["sessions"].items():
        rows.append(
            [
                kind,
                ms(figures["turn_median_s"]),
                f"{figures['commands_per_turn']:g}" if not kind.endswith("LocalFileStorage") else "-",
                ms(figures["resume_median_s"]),
                compact(figures["resume_commands"]) if not kind.endswith("LocalFileStorage") else "-",
            ]
        )
    headers = ["session kept as", "turn ms", "commands per turn", "resume ms", "resume commands"]
    title = f"A whole turn (Agent included) over {args.turns} turns, and a resume, median"
    tables.append(print_table(headers, rows, title=title))
    return tables


if __name__ == "__main__":
    main()
