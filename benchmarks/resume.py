"""Resume time and bytes transferred against session length, for both message layouts.

A resume is what every request of a web app does: ``MongoDBSessionManager(...)`` plus
``Agent(session_manager=...)``, which loads the stored conversation. Sessions of 10, 100, 1,000 and
10,000 messages (~300 bytes of text each) are built through the repository, then resumed several
times (median reported). Bytes are the BSON sizes of the replies (pymongo command monitoring).
Each session is also resumed with its sliding window (40) having already removed all older messages.

Strands' own local-file session managers are resumed in the same run, from a temporary directory:
``FileSessionManager`` (a JSON file per message; the window resume reads the files from its
offset) and ``SnapshotSessionManager`` over ``LocalFileStorage`` (one JSON snapshot of what the
Agent held: the whole session, or, windowed, the last 40 messages). Files on one machine are not
durable across machines; they show what MongoDB's durability costs here.

    uv run python benchmarks/resume.py [--sizes 10,100,1000,10000] [--repeats 7] [--uri mongodb://...]
"""

from __future__ import annotations

import argparse
import tempfile
import time
from collections.abc import Callable
from functools import partial
from pathlib import Path
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
from _peers import NOT_DURABLE, PEERS, peer_manager
from _peers import stored_bytes as stored_file_bytes
from commands import LAYOUTS, build_session, resume, text_message
from pymongo import MongoClient
from strands import Agent
from strands.agent.conversation_manager import ConversationManager, SlidingWindowConversationManager
from strands.session import FileSessionManager, SnapshotSessionManager
from strands.types.session import SessionAgent, SessionMessage

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
    resume_once: Callable[[], Agent], repeats: int, counter: CommandCounter | None = None
) -> dict[str, Any]:
    """Resume ``repeats`` times (after one untimed warm-up); seconds, commands and reply bytes of each."""
    resume_once()  # warm-up
    seconds, replies, sequences, loaded = [], [], [], []
    for _ in range(repeats):
        if counter is not None:
            counter.reset()
        started = time.perf_counter()
        agent = resume_once()
        seconds.append(time.perf_counter() - started)
        if counter is not None:
            replies.append(counter.reply_bytes())
            sequences.append(counter.names())
        loaded.append(len(agent.messages))
    return {
        "median_s": median(seconds),
        "seconds": seconds,
        "reply_bytes": median(replies) if replies else None,
        "commands": sequences[0] if sequences else None,
        "messages_loaded": loaded[0],
    }


def peer_agent(peer: str, session_id: str, directory: Path, window: int, messages: list[Any] | None = None) -> Agent:
    """A new manager of ``peer`` and a new Agent on it: a resume (or, with ``messages``, a new session)."""
    return Agent(
        model=ScriptedModel.echo(),
        messages=messages,
        session_manager=peer_manager(peer, session_id, directory),
        conversation_manager=SlidingWindowConversationManager(window_size=window),
        callback_handler=None,
    )


def build_peer_session(peer: str, session_id: str, directory: Path, size: int, window: int) -> None:
    """Store a session of ``size`` messages as ``peer`` does: files per message, or one snapshot of them all."""
    if peer == "files":
        agent = peer_agent(peer, session_id, directory, window)
        manager = agent._session_manager
        assert isinstance(manager, FileSessionManager)
        for index in range(size):
            manager.create_message(session_id, agent.agent_id, SessionMessage.from_message(text_message(index), index))
        return
    agent = peer_agent(peer, session_id, directory, window, [text_message(index) for index in range(size)])
    snapshots = agent._session_manager
    assert isinstance(snapshots, SnapshotSessionManager)
    snapshots.sync_agent(agent)


def window_peer_session(peer: str, session_id: str, directory: Path, size: int, window: int) -> None:
    """Store what the session looks like once its sliding window has removed all but ``window`` messages."""
    agent = peer_agent(peer, session_id, directory, window)
    removed = max(0, size - window)
    agent.conversation_manager.removed_message_count = removed
    if peer == "snapshot":
        del agent.messages[:removed]
    manager = agent._session_manager
    if isinstance(manager, FileSessionManager):
        manager.update_agent(session_id, SessionAgent.from_agent(agent))
    else:
        assert isinstance(manager, SnapshotSessionManager)
        manager.sync_agent(agent)


def time_peer(peer: str, sizes: list[int], window: int, repeats: int) -> list[dict[str, Any]]:
    """Build, resume whole, window and resume again each size, in a temporary directory removed at the end."""
    results = []
    progress = Progress(len(sizes), f"{peer:>8}: session sizes")
    with tempfile.TemporaryDirectory(prefix="bench_resume_") as name:
        for size in sizes:
            session_id = f"s{size}"
            directory = Path(name) / session_id  # a directory per session, to tell its bytes
            started = time.monotonic()
            build_peer_session(peer, session_id, directory, size, window)
            build_seconds = time.monotonic() - started
            stored = stored_file_bytes(directory)
            whole = time_resumes(partial(peer_agent, peer, session_id, directory, window), repeats)
            window_peer_session(peer, session_id, directory, size, window)
            windowed = time_resumes(partial(peer_agent, peer, session_id, directory, window), repeats)
            loaded = (whole["messages_loaded"], windowed["messages_loaded"])
            assert loaded == (size, min(size, window)), (peer, size, loaded)
            results.append(
                {
                    "layout": peer,
                    "messages": size,
                    "stored_bytes": stored,
                    "build_s": build_seconds,
                    "whole": whole,
                    "window": windowed,
                }
            )
            progress.advance()
    progress.close()
    return results


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
                    whole = time_resumes(
                        partial(resume, client, database_name, layout, session_id, conversation_manager),
                        args.repeats,
                        counter,
                    )
                    # ... then as it leaves it once it has removed all but the last `window` messages
                    state = resume(client, database_name, layout, session_id, conversation_manager)
                    state.conversation_manager.removed_message_count = max(0, size - args.window)
                    repository.update_agent(session_id, SessionAgent.from_agent(state))
                    windowed = time_resumes(
                        partial(resume, client, database_name, layout, session_id, conversation_manager),
                        args.repeats,
                        counter,
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
        for peer in PEERS:
            results.extend(time_peer(peer, sizes, args.window, args.repeats))

    def ms(seconds: float) -> str:
        return f"{seconds * 1000:.1f}" if seconds < 10 else f"{seconds * 1000:.0f}"

    def bytes_or_dash(value: float | None) -> str:
        return "-" if value is None else f"{value:,}"

    rows = []
    for size in sizes:
        for entry in (entry for entry in results if entry["messages"] == size):
            rows.append(
                [
                    f"{size:,}",
                    entry["layout"],
                    f"{entry['stored_bytes']:,}",
                    ms(entry["whole"]["median_s"]),
                    bytes_or_dash(entry["whole"]["reply_bytes"]),
                    compact(entry["whole"]["commands"]) if entry["whole"]["commands"] is not None else "-",
                    ms(entry["window"]["median_s"]),
                    bytes_or_dash(entry["window"]["reply_bytes"]),
                    compact(entry["window"]["commands"]) if entry["window"]["commands"] is not None else "-",
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
    print(NOT_DURABLE)
    parameters = {"sizes": sizes, "repeats": args.repeats, "window": args.window, "message_text_bytes": 300}
    write_results("resume", args, server, parameters, results, tables)


if __name__ == "__main__":
    main()
