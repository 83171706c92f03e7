"""Listing one user's sessions among many: first-page and tenth-page latency as the collection grows.

One user has ``--user-sessions`` sessions (250: enough for ten pages of 20); other users' sessions
fill a collection to each of ``--sizes`` (1,000, 10,000 and 100,000), one database per size, in
one run. The sessions are clones of one real conversation (two turns of an Agent stored by the
library), inserted with ``insert_many``, with their own ids, generations, owners and
``updated_at`` spread over a year. Without ``--uri`` each layout gets an in-memory SecantusDB of
its own, standalone (no oplog: 100,000 sessions are built faster and fit in memory; reads are the
same). ``list_sessions`` runs on a repository scoped to the user: the first page, and the tenth
(its cursor found once by paging), in ``--repeats`` rounds over every size after a warm-up round;
the median is reported with its ratio to the smallest size (the goal: at most 1.5x). The
library's own filter, sort and limit are then shown to the server's ``explain``, and timed with
and without a forced collection scan.

    uv run python benchmarks/listing.py [--sizes 1000,10000,100000] [--user-sessions 250] [--repeats 9]
                                        [--layouts embedded,split] [--uri mongodb://...]
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

from _common import (
    CommandCounter,
    Progress,
    ScriptedModel,
    median,
    mongodb_server,
    parse_args,
    print_table,
    unique_database,
    write_results,
)
from bson import ObjectId
from pymongo import MongoClient, monitoring
from strands import Agent

from mongodb_session_manager import MongoDBSessionManager, MongoDBSessionRepository

Client = MongoClient[dict[str, Any]]
Document = dict[str, Any]

LAYOUTS = ("embedded", "split")
USER = "the-user"
PAGE = 20
INSERT_BATCH = 1000
START = datetime(2025, 1, 1, tzinfo=UTC)
YEAR_SECONDS = 365 * 24 * 3600


class Pipelines(monitoring.CommandListener):
    """Keeps the pipeline of the last ``aggregate`` sent, to show the server's plan for it."""

    def __init__(self) -> None:
        self.last: list[Document] = []

    def started(self, event: monitoring.CommandStartedEvent) -> None:
        if event.command_name == "aggregate":
            self.last = list(event.command["pipeline"])

    def succeeded(self, event: monitoring.CommandSucceededEvent) -> None: ...

    def failed(self, event: monitoring.CommandFailedEvent) -> None: ...


# -- building the sessions ---------------------------------------------------------------------------------


def template(client: Client, database_name: str, layout: str) -> tuple[Document, list[Document]]:
    """One real stored conversation (two turns), as its session document and its message documents."""
    manager = MongoDBSessionManager("template", client=client, database_name=database_name, layout=layout)
    agent = Agent(model=ScriptedModel.echo(), session_manager=manager, callback_handler=None)
    agent("What should I pack for a week of hiking in the Alps in September?")
    agent("And what if it rains every day?")
    database = client[database_name]
    document = database["sessions"].find_one_and_delete({"_id": "template"})
    assert document is not None
    messages = list(database["sessions_messages"].find({"session_id": "template"}, {"_id": 0}))
    database["sessions_messages"].delete_many({"session_id": "template"})
    return document, messages


def clones(
    session: Document, messages: list[Document], numbers: range, owner_of: Any
) -> Iterator[tuple[Document, list[Document]]]:
    """Session ``number`` for each of ``numbers``: the template with its own id, generation, owner and time."""
    for number in numbers:
        session_id = f"s{number:07d}"
        generation = ObjectId()
        owner = {"user_id": owner_of(number), "application_name": "bench"}
        updated_at = START + timedelta(seconds=(number * 7919) % YEAR_SECONDS)  # spread, not in insertion order
        yield (
            {
                **session,
                "_id": session_id,
                "session_id": session_id,
                "generation": generation,
                **owner,
                "created_at": updated_at - timedelta(minutes=5),
                "updated_at": updated_at,
            },
            [{**message, "session_id": session_id, "generation": generation, **owner} for message in messages],
        )


def insert(client: Client, database_name: str, sessions: Iterator[tuple[Document, list[Document]]], total: int) -> None:
    """Insert the sessions (and their split messages) in batches, with progress on stderr."""
    database = client[database_name]
    progress = Progress(total, "    inserting sessions")
    batch: list[Document] = []
    message_batch: list[Document] = []

    def flush() -> None:
        if batch:
            database["sessions"].insert_many(batch, ordered=False)
            progress.advance(len(batch))
        if message_batch:
            database["sessions_messages"].insert_many(message_batch, ordered=False)
        batch.clear()
        message_batch.clear()

    for session, messages in sessions:
        batch.append(session)
        message_batch.extend(messages)
        if len(batch) >= INSERT_BATCH:
            flush()
    flush()
    progress.close()


def other_user(number: int) -> str:
    return f"user-{number % 997}"


# -- measuring -------------------------------------------------------------------------------------------------


def tenth_page_cursor(repository: MongoDBSessionRepository) -> str:
    """The cursor of the user's tenth page, found by paging."""
    cursor = None
    for _ in range(9):
        cursor = repository.list_sessions(limit=PAGE, cursor=cursor).next_cursor
    assert cursor is not None
    return cursor


def timed_page(repository: MongoDBSessionRepository, cursor: str | None) -> float:
    started = time.perf_counter()
    page = repository.list_sessions(limit=PAGE, cursor=cursor)
    seconds = time.perf_counter() - started
    assert len(page.sessions) == PAGE
    return seconds


def plan(client: Client, database_name: str, pipeline: list[Document], repeats: int) -> dict[str, Any]:
    """The server's plan for the listing's own stages (filter, sort, limit), and their time with and without it.

    ``explain`` shows the winning plan; the same stages are then timed as they are (median of
    ``repeats``), and once with ``hint: {$natural: 1}``, which forces a collection scan: what the
    page would cost if no index served it.
    """
    stages = [stage for stage in pipeline if {"$match", "$sort", "$limit"} & set(stage)]
    sessions = client[database_name]["sessions"]
    explained = client[database_name].command(
        "explain", {"aggregate": "sessions", "pipeline": stages, "cursor": {}}, verbosity="queryPlanner"
    )
    planner = explained.get("queryPlanner") or explained["stages"][0]["$cursor"]["queryPlanner"]
    chain, stage = [], planner["winningPlan"]
    while stage:
        chain.append(stage["stage"] + (f" {stage['indexName']}" if "indexName" in stage else ""))
        stage = stage.get("inputStage")

    def timed(runs: int, **options: Any) -> float:
        seconds = []
        for _ in range(runs):
            started = time.perf_counter()
            list(sessions.aggregate(stages, **options))
            seconds.append(time.perf_counter() - started)
        return median(seconds)

    return {
        "winning_plan": " <- ".join(chain),
        "stages": stages,
        "stages_s": timed(repeats),
        "collection_scan_s": timed(1, hint={"$natural": 1}),
    }


def run_layout(uri: str, layout: str, sizes: list[int], user_sessions: int, repeats: int) -> list[dict[str, Any]]:
    """One database per size, the user's sessions in each; pages timed in rounds over every size; then dropped.

    Timing the sizes in turn, round after round, spreads any change in the machine's load over all
    of them alike.
    """
    counter, pipelines = CommandCounter(), Pipelines()
    client: Client = MongoClient(uri, event_listeners=[counter, pipelines])
    databases = {size: unique_database(f"listing_{layout}_{size}") for size in sizes}
    try:
        session, messages = template(client, databases[sizes[0]], layout)
        repositories, cursors, commands = {}, {}, {}
        for size, database_name in databases.items():
            MongoDBSessionRepository(client=client, database_name=database_name, layout=layout)  # indexes
            print(f"{layout}: {size:,} sessions, {user_sessions} of them {USER!r}'s", file=sys.stderr)
            users = clones(session, messages, range(user_sessions), lambda _: USER)
            insert(client, database_name, users, user_sessions)
            others = clones(session, messages, range(user_sessions, size), other_user)
            insert(client, database_name, others, size - user_sessions)
            repositories[size] = MongoDBSessionRepository(client=client, database_name=database_name, user_id=USER)
            cursors[size] = tenth_page_cursor(repositories[size])
            counter.reset()
            repositories[size].list_sessions(limit=PAGE, cursor=cursors[size])
            commands[size] = counter.names()
        first: dict[int, list[float]] = {size: [] for size in sizes}
        tenth: dict[int, list[float]] = {size: [] for size in sizes}
        progress = Progress(repeats + 1, f"{layout}: rounds of page reads")
        for round_number in range(repeats + 1):  # the first round is a warm-up
            for size in sizes:
                seconds = timed_page(repositories[size], None), timed_page(repositories[size], cursors[size])
                if round_number:
                    first[size].append(seconds[0])
                    tenth[size].append(seconds[1])
            progress.advance()
        progress.close()
        results = []
        for size in sizes:
            repositories[size].list_sessions(limit=PAGE, cursor=cursors[size])  # the pipeline to explain
            explained = plan(client, databases[size], pipelines.last, repeats)
            figures = {"first_s": median(first[size]), "tenth_s": median(tenth[size]), "first": first[size]}
            figures.update({"tenth": tenth[size], "commands": commands[size]})
            results.append({"layout": layout, "sessions": size, **figures, **explained})
        return results
    finally:
        for database_name in databases.values():
            client.drop_database(database_name)
        client.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", default="1000,10000,100000", help="stored sessions, all users together")
    parser.add_argument("--user-sessions", type=int, default=250, help="sessions of the listed user (at least 200)")
    parser.add_argument("--repeats", type=int, default=9, help="timed reads of each page (median reported)")
    parser.add_argument("--layouts", default=",".join(LAYOUTS), help="layouts to measure")
    args = parse_args(__doc__ or "", parser)
    sizes = sorted(int(size) for size in args.sizes.split(","))
    layouts = args.layouts.split(",")
    if args.user_sessions < PAGE * 10 or sizes[0] < args.user_sessions:
        parser.error("--user-sessions must be at least 200 and at most the smallest size")

    results: list[dict[str, Any]] = []
    server = ""
    for layout in layouts:
        # a server of its own per layout: SecantusDB keeps everything in memory
        with mongodb_server(args.uri, replica_set=False, cache_size="4G") as (uri, description):
            results.extend(run_layout(uri, layout, sizes, args.user_sessions, args.repeats))
            server = description

    def ms(seconds: float) -> str:
        return f"{seconds * 1000:.1f}"

    rows = []
    for entry in results:
        smallest = next(e for e in results if e["layout"] == entry["layout"] and e["sessions"] == sizes[0])
        rows.append(
            [
                entry["layout"],
                f"{entry['sessions']:,}",
                ms(entry["first_s"]),
                f"{entry['first_s'] / smallest['first_s']:.2f}x",
                ms(entry["tenth_s"]),
                f"{entry['tenth_s'] / smallest['tenth_s']:.2f}x",
                ", ".join(entry["commands"]),
            ]
        )
    headers = ["layout", "stored sessions", "page 1 ms", "ratio", "page 10 ms", "ratio", "commands per page"]
    title = (
        f"list_sessions for one user ({args.user_sessions} sessions), {PAGE} per page, "
        f"median of {args.repeats} ({server})"
    )
    tables = [print_table(headers, rows, title=title)]
    plans = [
        [
            entry["layout"],
            f"{entry['sessions']:,}",
            entry["winning_plan"],
            ms(entry["stages_s"]),
            ms(entry["collection_scan_s"]),
        ]
        for entry in results
    ]
    headers = ["layout", "stored sessions", "explain (page 10)", "filter+sort+limit ms", "forced collection scan ms"]
    tables.append(print_table(headers, plans, title="The tenth page's filter, sort and limit, without the summary"))
    parameters = {
        "sizes": sizes,
        "user_sessions": args.user_sessions,
        "page": PAGE,
        "repeats": args.repeats,
        "layouts": layouts,
    }
    write_results("listing", args, server, parameters, results, tables)


if __name__ == "__main__":
    main()
