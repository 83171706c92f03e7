"""Split-layout resume: the two ``find``s the library sends, against one ``$lookup`` aggregation.

The library resumes a split session with two reads: the session document, then every agent's
messages from its conversation manager's offset. The alternative measured here is one aggregation
on the session document with a ``$lookup`` (pipeline form, on the unique message index) that brings
each agent's messages along. Both return the same messages; this prints their median time, per
session size, and the ratio. The aggregation also has a hard limit the finds do not: its one result
document holds every message, so past 16 MiB of messages it fails, where a split session is meant
to grow without one.

    uv run python benchmarks/split_resume_lookup.py [--sizes 100,1000,10000] [--repeats 9]
"""

from __future__ import annotations

import argparse
import time
from typing import Any

from _common import median, mongodb_server, parse_args, print_table, unique_database, write_results
from commands import build_session
from pymongo import MongoClient

from mongodb_session_manager._schema import GENERATION_FIELD, messages_from

Client = MongoClient[dict[str, Any]]
SESSIONS, MESSAGES = "sessions", "sessions_messages"
PROJECTION = {"_id": 0, "session_id": 0, GENERATION_FIELD: 0}


def two_finds(client: Client, database_name: str, session_id: str) -> int:
    """What ``SplitLayout.read_for_resume`` sends: the session document, then its agents' messages."""
    database = client[database_name]
    document = database[SESSIONS].find_one({"_id": session_id})
    assert document is not None
    ranges = [messages_from(session_id, agent_id, 0, document[GENERATION_FIELD]) for agent_id in document["agents"]]
    return len(list(database[MESSAGES].find({"$or": ranges} if len(ranges) > 1 else ranges[0], PROJECTION)))


def one_lookup(client: Client, database_name: str, session_id: str) -> int:
    """One aggregation: the session document with its messages joined in."""
    join = {
        "$lookup": {
            "from": MESSAGES,
            "let": {"generation": f"${GENERATION_FIELD}"},
            "pipeline": [
                {"$match": {"session_id": session_id, "message_id": {"$gte": 0}}},
                {"$match": {"$expr": {"$eq": [f"${GENERATION_FIELD}", "$$generation"]}}},
                {"$project": PROJECTION},
            ],
            "as": "messages",
        }
    }
    [document] = client[database_name][SESSIONS].aggregate([{"$match": {"_id": session_id}}, join])
    return len(document["messages"])


def timed(read: Any, client: Client, database_name: str, session_id: str, repeats: int) -> tuple[float, int]:
    seconds, found = [], 0
    for _ in range(repeats):
        started = time.perf_counter()
        found = read(client, database_name, session_id)
        seconds.append(time.perf_counter() - started)
    return median(seconds), found


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="100,1000,10000", help="messages per session (default: %(default)s)")
    parser.add_argument("--repeats", type=int, default=9, help="timed reads per size and query (default: %(default)s)")
    args = parse_args(parser.description or "", parser)
    sizes = [int(size) for size in args.sizes.split(",")]
    rows, figures = [], []
    with mongodb_server(args.uri) as (uri, server):
        client: Client = MongoClient(uri)
        database_name = unique_database("split_resume_lookup")
        try:
            for size in sizes:
                session_id = f"s{size}"
                build_session(client, database_name, "split", session_id, size)
                finds, found_by_finds = timed(two_finds, client, database_name, session_id, args.repeats)
                lookup, found_by_lookup = timed(one_lookup, client, database_name, session_id, args.repeats)
                assert found_by_finds == found_by_lookup == size, (found_by_finds, found_by_lookup, size)
                figures.append({"messages": size, "two_finds_s": finds, "one_lookup_s": lookup})
                rows.append([f"{size:,}", f"{finds * 1000:.1f}", f"{lookup * 1000:.1f}", f"{lookup / finds:.2f}"])
        finally:
            client.drop_database(database_name)
            client.close()
    table = print_table(
        ["messages", "2 finds, median ms", "1 $lookup, median ms", "$lookup / finds"],
        rows,
        title="Split-layout resume: two finds against one $lookup aggregation",
    )
    write_results("split_resume_lookup", args, server, {"sizes": sizes, "repeats": args.repeats}, figures, [table])


if __name__ == "__main__":
    main()
