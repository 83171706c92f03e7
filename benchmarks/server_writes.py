"""Does a write cost the server more the more writes it has taken? Plain pymongo inserts, no library.

Inserts ``--inserts`` message-sized documents (~300 bytes of text, the split layout's fields) one by
one into a collection with the split layout's unique index, and prints the median insert time per
block. Without ``--uri`` each case gets a fresh in-memory SecantusDB:

* replica set, pymongo's default: every write is retryable and carries a transaction number;
* replica set, ``retryWrites=false``: the same server, writes not retryable;
* standalone: SecantusDB without the replica-set advertisement or oplog (pymongo sends no numbers).

With ``--uri`` the server is yours, and the two client settings are compared on it. This is what
``growth.py`` and its README section rely on to tell the test server's growth from the library's.

    uv run python benchmarks/server_writes.py [--inserts 2000] [--blocks 10] [--uri mongodb://...]
"""

from __future__ import annotations

import argparse
import time
from typing import Any

from _common import Progress, median, mongodb_server, parse_args, print_table, unique_database, write_results
from bson import ObjectId
from pymongo import ASCENDING, MongoClient

TEXT = "lorem ipsum " * 25


def insert_times(uri: str, retry_writes: bool, inserts: int, label: str) -> list[float]:
    """Seconds taken by each of ``inserts`` single-document inserts, in order."""
    client: MongoClient[dict[str, Any]] = MongoClient(uri, retryWrites=retry_writes)
    database_name = unique_database("server_writes")
    try:
        collection = client[database_name]["messages"]
        collection.create_index(
            [("session_id", ASCENDING), ("agent_id", ASCENDING), ("message_id", ASCENDING)], unique=True
        )
        generation = ObjectId()
        progress = Progress(inserts, f"{label}: insert")
        seconds = []
        for message_id in range(inserts):
            document = {
                "session_id": "writes",
                "agent_id": "default",
                "generation": generation,
                "message_id": message_id,
                "message": {"role": "user", "content": [{"text": TEXT}]},
            }
            started = time.perf_counter()
            collection.insert_one(document)
            seconds.append(time.perf_counter() - started)
            progress.advance()
        progress.close()
        return seconds
    finally:
        client.drop_database(database_name)
        client.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--inserts", type=int, default=2000, help="inserts per case (2000)")
    parser.add_argument("--blocks", type=int, default=10, help="blocks the inserts are reported in (10)")
    args = parse_args(__doc__ or "", parser)
    if args.blocks < 1 or args.inserts < args.blocks:
        parser.error("--inserts must be at least --blocks, and --blocks at least 1")

    cases = [("replica set, retryable writes", True, True), ("replica set, retryWrites=false", True, False)]
    if not args.uri:
        cases.append(("standalone", False, True))
    measured: dict[str, list[float]] = {}
    servers: dict[str, str] = {}
    for label, replica_set, retry_writes in cases:
        with mongodb_server(args.uri, replica_set=replica_set) as (uri, description):  # a fresh one per case
            measured[label] = insert_times(uri, retry_writes, args.inserts, label)
            servers[label] = description

    size = args.inserts // args.blocks
    blocks = [slice(block * size, (block + 1) * size) for block in range(args.blocks)]
    medians = {label: [median(seconds[block]) for block in blocks] for label, seconds in measured.items()}
    rows = [
        [f"{block.start + 1}-{block.stop}", *(f"{medians[label][index] * 1000:.3f}" for label in measured)]
        for index, block in enumerate(blocks)
    ]
    rows.append(["last/first", *(f"{medians[label][-1] / medians[label][0]:.2f}x" for label in measured)])
    title = f"Median insert time (ms) per block of {size} inserts, one document per insert"
    tables = [print_table(["inserts", *measured], rows, title=title)]
    figures = {
        label: {"server": servers[label], "block_medians_s": [round(value, 6) for value in medians[label]]}
        for label in measured
    }
    write_results(
        "server_writes",
        args,
        "; ".join(sorted(set(servers.values()))),
        {"inserts": args.inserts, "blocks": args.blocks},
        figures,
        tables,
    )


if __name__ == "__main__":
    main()
