"""Erasing one user: time and commands of ``delete_sessions`` for a user with 1,000 sessions, both layouts.

The user's sessions sit among other users' (``--others``, 9,000 by default), all clones of one real
conversation (two turns, four messages) built as ``benchmarks/listing.py`` builds them. Each repeat
inserts the user's sessions again, erases them with ``delete_sessions`` (timed, commands counted),
checks that nothing of the user is left and that every other session is, then times a second run,
which finds nothing to erase.

    uv run python benchmarks/erase.py [--sessions 1000] [--others 9000] [--repeats 3] [--uri mongodb://...]
"""

from __future__ import annotations

import argparse
import time
from typing import Any

from _common import (
    CommandCounter,
    median,
    mongodb_server,
    parse_args,
    print_table,
    unique_database,
    write_results,
)
from listing import LAYOUTS, clones, insert, other_user, template
from pymongo import MongoClient

from mongodb_session_manager import MongoDBSessionRepository

Client = MongoClient[dict[str, Any]]
USER = "leaving-user"


def compact(names: list[str]) -> str:
    """``["find", "update", "find"]`` -> ``"2 find, 1 update"``."""
    return ", ".join(f"{names.count(name)} {name}" for name in dict.fromkeys(names))


def erase_once(
    client: Client,
    counter: CommandCounter,
    database_name: str,
    layout: str,
    built: tuple[dict[str, Any], list[dict[str, Any]]],
    sessions: int,
    others: int,
) -> dict[str, Any]:
    """Insert the user's sessions, erase them, verify; seconds and commands of the erase and of a second run."""
    database = client[database_name]
    session, messages = built
    insert(client, database_name, clones(session, messages, range(others, others + sessions), lambda _: USER), sessions)
    stored_messages = database["sessions_messages"].count_documents({"user_id": USER})
    repository = MongoDBSessionRepository(client=client, database_name=database_name, layout=layout)

    counter.reset()
    started = time.perf_counter()
    erased = repository.delete_sessions(user_id=USER)
    seconds = time.perf_counter() - started
    commands = counter.names()
    counter.reset()
    started = time.perf_counter()
    again = repository.delete_sessions(user_id=USER)
    second_seconds = time.perf_counter() - started
    second_commands = counter.names()

    assert erased == sessions, erased
    assert again == 0, again
    assert database["sessions"].count_documents({"user_id": USER}) == 0
    assert database["sessions_messages"].count_documents({"user_id": USER}) == 0
    assert database["sessions"].count_documents({}) == others
    return {
        "seconds": seconds,
        "commands": commands,
        "messages": stored_messages if layout == "split" else 0,
        "second_run_s": second_seconds,
        "second_run_commands": second_commands,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sessions", type=int, default=1000, help="sessions of the erased user")
    parser.add_argument("--others", type=int, default=9000, help="other users' sessions, kept")
    parser.add_argument("--repeats", type=int, default=3, help="erases per layout (median reported)")
    args = parse_args(__doc__ or "", parser)

    results: list[dict[str, Any]] = []
    with mongodb_server(args.uri) as (uri, server):
        for layout in LAYOUTS:
            counter = CommandCounter()
            client: Client = MongoClient(uri, event_listeners=[counter])
            database_name = unique_database(f"erase_{layout}")
            try:
                MongoDBSessionRepository(client=client, database_name=database_name, layout=layout)  # indexes
                built = template(client, database_name, layout)
                insert(client, database_name, clones(*built, range(args.others), other_user), args.others)
                runs = [
                    erase_once(client, counter, database_name, layout, built, args.sessions, args.others)
                    for _ in range(args.repeats)
                ]
                results.append({"layout": layout, "runs": runs})
            finally:
                client.drop_database(database_name)
                client.close()

    rows = []
    for entry in results:
        runs = entry["runs"]
        seconds = median([run["seconds"] for run in runs])
        rows.append(
            [
                entry["layout"],
                f"{args.sessions:,}",
                f"{runs[0]['messages']:,}",
                f"{seconds * 1000:.0f}",
                f"{args.sessions / seconds:,.0f}",
                f"{len(runs[0]['commands'])}: {compact(runs[0]['commands'])}",
                f"{median([run['second_run_s'] for run in runs]) * 1000:.1f} ms, "
                f"{compact(runs[0]['second_run_commands'])}",
            ]
        )
    headers = ["layout", "sessions", "split messages", "erase ms", "sessions/s", "commands", "second run"]
    title = (
        f"delete_sessions for a user with {args.sessions:,} sessions among {args.others:,} others' "
        f"(median of {args.repeats}; {server})"
    )
    tables = [print_table(headers, rows, title=title)]
    parameters = {"sessions": args.sessions, "others": args.others, "repeats": args.repeats}
    write_results("erase", args, server, parameters, results, tables)


if __name__ == "__main__":
    main()
