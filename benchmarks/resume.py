"""Resume time and bytes transferred against session length, for both message layouts.

A resume is what every request of a web app does: ``MongoDBSessionManager(...)`` plus
``Agent(session_manager=...)``, which loads the stored conversation. Sessions of 10, 100, 1,000 and
10,000 messages (~300 bytes of text each) are built through the repository, then resumed several
times (median reported). Bytes are the BSON sizes of the replies (pymongo command monitoring).
Each session is also resumed with its sliding window (40) having already removed all older messages.

    uv run python benchmarks/resume.py [--sizes 10,100,1000,10000] [--repeats 7] [--uri mongodb://...]
"""

from __future__ import annotations

import argparse
import time
from typing import Any

from _common import (
    CommandCounter,
    Progress,
    median,
    mongodb_server,
    parse_args,
    print_table,
    unique_database,
    write_results,
)
from commands import LAYOUTS, build_session, resume
from pymongo import MongoClient
from strands.agent.conversation_manager import ConversationManager, SlidingWindowConversationManager
from strands.types.session import SessionAgent

from mongodb_session_manager import MongoDBSessionRepository

Client = MongoClient[dict[str, Any]]


def compact(names: list[str]) -> str:
    """``["find", "find", "getMore"]`` -> ``"2 find, 1 getMore"``."""
    return ", ".join(f"{names.count(name)} {name}" for name in dict.fromkeys(names))


def stored_bytes(client: Client, database_name: str, layout: str, session_id: str) -> int:
    """BSON bytes of the session: its document, plus its message documents in the split layout."""
    database = client[database_name]
    size = {"$bsonSize": "$$ROOT"}
    total = next(database["sessions"].aggregate([{"$match": {"_id": session_id}}, {"$project": {"size": size}}]))
    result: int = total["size"]
    if layout == "split":
        pipeline = [{"$match": {"session_id": session_id}}, {"$group": {"_id": None, "size": {"$sum": size}}}]
        result += next(database["sessions_messages"].aggregate(pipeline))["size"]
    return result


def time_resumes(
    client: Client, counter: CommandCounter, database_name: str, layout: str, session_id: str, window: int, repeats: int
) -> dict[str, Any]:
    """Resume ``repeats`` times (after one untimed warm-up); seconds, commands and reply bytes of each."""

    def conversation_manager() -> ConversationManager:
        return SlidingWindowConversationManager(window_size=window)

    resume(client, database_name, layout, session_id, conversation_manager)  # warm-up
    seconds, replies, sequences, loaded = [], [], [], []
    for _ in range(repeats):
        counter.reset()
        started = time.perf_counter()
        agent = resume(client, database_name, layout, session_id, conversation_manager)
        seconds.append(time.perf_counter() - started)
        replies.append(counter.reply_bytes())
        sequences.append(counter.names())
        loaded.append(len(agent.messages))
    return {
        "median_s": median(seconds),
        "seconds": seconds,
        "reply_bytes": median(replies),
        "commands": sequences[0],
        "messages_loaded": loaded[0],
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", default="10,100,1000,10000", help="session lengths in messages")
    parser.add_argument("--repeats", type=int, default=7, help="timed resumes per session (median reported)")
    parser.add_argument("--window", type=int, default=40, help="SlidingWindowConversationManager window (40)")
    args = parse_args(__doc__ or "", parser)
    sizes = [int(size) for size in args.sizes.split(",")]

    def conversation_manager() -> ConversationManager:
        return SlidingWindowConversationManager(window_size=args.window)

    results: list[dict[str, Any]] = []
    with mongodb_server(args.uri) as (uri, server):
        for layout in LAYOUTS:
            counter = CommandCounter()
            client: Client = MongoClient(uri, event_listeners=[counter])
            database_name = unique_database(f"resume_{layout}")
            repository = MongoDBSessionRepository(client=client, database_name=database_name, layout=layout)
            progress = Progress(len(sizes), f"{layout:>8}: session sizes")
            try:
                for size in sizes:
                    session_id = f"s{size}"
                    started = time.monotonic()
                    # stored as a sliding window left it before it ever trimmed (all messages loaded) ...
                    build_session(client, database_name, layout, session_id, size, conversation_manager)
                    build_seconds = time.monotonic() - started
                    whole = time_resumes(client, counter, database_name, layout, session_id, args.window, args.repeats)
                    # ... then as it leaves it once it has removed all but the last `window` messages
                    state = resume(client, database_name, layout, session_id, conversation_manager)
                    state.conversation_manager.removed_message_count = max(0, size - args.window)
                    repository.update_agent(session_id, SessionAgent.from_agent(state))
                    windowed = time_resumes(
                        client, counter, database_name, layout, session_id, args.window, args.repeats
                    )
                    results.append(
                        {
                            "layout": layout,
                            "messages": size,
                            "stored_bytes": stored_bytes(client, database_name, layout, session_id),
                            "build_s": build_seconds,
                            "whole": whole,
                            "window": windowed,
                        }
                    )
                    progress.advance()
                progress.close()
            finally:
                client.drop_database(database_name)
                client.close()

    def ms(seconds: float) -> str:
        return f"{seconds * 1000:.1f}" if seconds < 10 else f"{seconds * 1000:.0f}"

    rows = []
    for size in sizes:
        for entry in (entry for entry in results if entry["messages"] == size):
            rows.append(
                [
                    f"{size:,}",
                    entry["layout"],
                    f"{entry['stored_bytes']:,}",
                    ms(entry["whole"]["median_s"]),
                    f"{entry['whole']['reply_bytes']:,}",
                    compact(entry["whole"]["commands"]),
                    ms(entry["window"]["median_s"]),
                    f"{entry['window']['reply_bytes']:,}",
                    compact(entry["window"]["commands"]),
                ]
            )
    headers = [
        "messages",
        "layout",
        "stored B",
        "resume ms",
        "reply B",
        "commands",
        f"window {args.window}: ms",
        "reply B",
        "commands",
    ]
    title = f"Resume (manager + Agent), median of {args.repeats} ({server})"
    tables = [print_table(headers, rows, title=title)]
    parameters = {"sizes": sizes, "repeats": args.repeats, "window": args.window, "message_text_bytes": 300}
    write_results("resume", args, server, parameters, results, tables)


if __name__ == "__main__":
    main()
