"""The FastAPI example app under load: a shared factory against a new MongoClient per request.

The app (``examples/example_fastapi.py``, ``create_app(...)``) runs under uvicorn in a child process
on a free loopback port, with ``ScriptedModel`` answering. N concurrent clients (asyncio + httpx),
each with its own session, each send a bounded number of chat requests one after the other; every
request builds a new manager and Agent that resumes the session, answers and stores two messages. All
requests come from one user (`X-User-Id: benchmark`, the app's stand-in for authentication).
Reported per connection mode: requests/s, p50/p90/p99 latency, errors, and whether every message
was stored.

    uv run python benchmarks/concurrency.py [--clients 1,8,32] [--requests 25] [--uri mongodb://...]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import socket
import subprocess
import sys
import time
import uuid
from pathlib import Path
from typing import Any

import httpx
from _common import (
    EXAMPLES,
    Progress,
    median,
    microseconds,
    mongodb_server,
    parse_args,
    percentile,
    print_table,
    unique_database,
    write_results,
)
from pymongo import MongoClient

MODES = ("factory", "client-per-request")
PROMPT_BYTES = 300
STARTUP_TIMEOUT_S = 60
USER = "benchmark"


# -- the app, in a child process ----------------------------------------------------------------------


def serve(uri: str, database_name: str, port: int, mode: str) -> None:
    """Run the example app (``--serve``): what the child process does."""
    import uvicorn

    from chat_agent import scripted_chat_responder
    from example_fastapi import create_app
    from scripted_model import ScriptedModel

    def model_factory() -> ScriptedModel:
        return ScriptedModel(fallback=scripted_chat_responder, record_calls=False)

    app = create_app(uri, database_name, model_factory, connection_mode=mode)
    uvicorn.run(app, host="127.0.0.1", port=port, log_level="warning", access_log=False)


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


def start_app(uri: str, database_name: str, mode: str) -> tuple[subprocess.Popen[bytes], str]:
    port = free_port()
    command = [
        sys.executable,
        str(Path(__file__).resolve()),
        "--serve",
        "--uri",
        uri,
        "--database",
        database_name,
        "--port",
        str(port),
        "--connection-mode",
        mode,
    ]
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [os.environ.get("PYTHONPATH"), str(EXAMPLES)]))}
    process = subprocess.Popen(command, env=env)
    base_url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + STARTUP_TIMEOUT_S
    while True:
        if process.poll() is not None:
            raise RuntimeError(f"the app exited with status {process.returncode} before it answered")
        try:
            if httpx.get(f"{base_url}/health", timeout=1).status_code == 200:
                return process, base_url
        except httpx.TransportError:
            pass
        if time.monotonic() > deadline:
            stop_app(process)
            raise RuntimeError(f"the app did not answer /health within {STARTUP_TIMEOUT_S} s")
        time.sleep(0.1)


def stop_app(process: subprocess.Popen[bytes]) -> None:
    process.terminate()
    try:
        process.wait(timeout=15)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()


# -- the load --------------------------------------------------------------------------------------------


def prompt(client: int, turn: int) -> str:
    text = f"Client {client}, question {turn}: "
    return text + "x" * (PROMPT_BYTES - len(text))


async def load(
    base_url: str, mode: str, clients: int, requests: int, warmup: int
) -> tuple[list[float], list[int], float, list[str]]:
    """Warm-up requests (not timed), then ``requests`` timed ones per client; latencies, statuses, seconds."""
    sessions = [f"bench-{mode}-{index}-{uuid.uuid4().hex[:6]}" for index in range(clients)]
    latencies: list[float] = []
    statuses: list[int] = []
    progress = Progress(clients * requests, f"{mode:>18}: requests")
    limits = httpx.Limits(max_connections=clients, max_keepalive_connections=clients)
    user = {"X-User-Id": USER}  # the app's stand-in for authentication: every session belongs to a user
    async with httpx.AsyncClient(base_url=base_url, timeout=120, limits=limits, headers=user) as http:

        async def conversation(index: int, turns: range, timed: bool) -> None:
            for turn in turns:
                started = time.perf_counter()
                response = await http.post(f"/sessions/{sessions[index]}/chat", json={"message": prompt(index, turn)})
                if timed:
                    latencies.append(time.perf_counter() - started)
                    statuses.append(response.status_code)
                    progress.advance()

        await asyncio.gather(*(conversation(index, range(warmup), False) for index in range(clients)))
        started = time.perf_counter()
        await asyncio.gather(*(conversation(index, range(warmup, warmup + requests), True) for index in range(clients)))
        seconds = time.perf_counter() - started
    progress.close()
    return latencies, statuses, seconds, sessions


def stored_messages(uri: str, database_name: str, sessions: list[str]) -> list[int]:
    """How many messages each session holds, read straight from MongoDB (either layout).

    The app stores the caller's session ``s`` as ``<user>/s`` (``chat_api.stored_session_id``).
    """
    from chat_api import stored_session_id

    client: MongoClient[dict[str, Any]] = MongoClient(uri)
    try:
        database = client[database_name]
        counts = []
        for session_id in (stored_session_id(USER, session) for session in sessions):
            document = database["sessions"].find_one({"_id": session_id}) or {}
            agents = document.get("agents") or {}
            embedded = sum(len(agent.get("messages") or []) for agent in agents.values())
            split = database["sessions_messages"].count_documents({"session_id": session_id})
            counts.append(embedded + split)
        return counts
    finally:
        client.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--clients", default="1,8,32", help="concurrent clients, one session each; a list runs each")
    parser.add_argument("--requests", type=int, default=25, help="timed chat requests per client (25)")
    parser.add_argument("--warmup", type=int, default=2, help="untimed requests per client first (2)")
    parser.add_argument("--modes", default=",".join(MODES), help="connection modes to compare")
    parser.add_argument("--serve", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--database", help=argparse.SUPPRESS)
    parser.add_argument("--port", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--connection-mode", help=argparse.SUPPRESS)
    args = parse_args(__doc__ or "", parser)
    if args.serve:
        serve(args.uri, args.database, args.port, args.connection_mode)
        return
    modes = args.modes.split(",")

    levels = [int(level) for level in str(args.clients).split(",")]
    figures: dict[str, Any] = {}
    with mongodb_server(args.uri) as (uri, server):
        for mode in modes:
            database_name = unique_database(f"concurrency_{mode.replace('-', '_')}")
            process, base_url = start_app(uri, database_name, mode)
            try:
                for clients in levels:
                    latencies, statuses, seconds, sessions = asyncio.run(
                        load(base_url, mode, clients, args.requests, args.warmup)
                    )
                    expected = 2 * (args.warmup + args.requests)
                    counts = stored_messages(uri, database_name, sessions)
                    figures[f"{mode}, {clients}"] = {
                        "mode": mode,
                        "clients": clients,
                        "requests": len(latencies),
                        "seconds": seconds,
                        "requests_per_s": len(latencies) / seconds,
                        "p50_s": median(latencies),
                        "p90_s": percentile(latencies, 0.90),
                        "p99_s": percentile(latencies, 0.99),
                        "max_s": max(latencies),
                        "errors": sum(1 for status in statuses if status != 200),
                        "statuses": {str(status): statuses.count(status) for status in sorted(set(statuses))},
                        "messages_expected_per_session": expected,
                        "messages_stored_per_session": counts,
                        "all_stored": all(count == expected for count in counts),
                        "app_stats": httpx.get(f"{base_url}/stats", timeout=10).json(),
                        "latencies_s": microseconds(latencies),
                    }
            finally:
                stop_app(process)
                cleanup: MongoClient[dict[str, Any]] = MongoClient(uri)
                cleanup.drop_database(database_name)
                cleanup.close()

    def ms(seconds: float) -> str:
        return f"{seconds * 1000:.1f}"

    rows = [
        [
            entry["mode"],
            entry["clients"],
            entry["requests"],
            f"{entry['requests_per_s']:.1f}",
            ms(entry["p50_s"]),
            ms(entry["p90_s"]),
            ms(entry["p99_s"]),
            ms(entry["max_s"]),
            entry["errors"],
            "yes" if entry["all_stored"] else f"NO {entry['messages_stored_per_session']}",
        ]
        for entry in sorted(figures.values(), key=lambda entry: (entry["clients"], modes.index(entry["mode"])))
    ]
    headers = ["connection mode", "clients", "requests", "req/s", "p50 ms", "p90 ms", "p99 ms", "max ms", "errors"]
    headers.append("all stored")
    title = (
        f"FastAPI example app, N concurrent clients x {args.requests} chat requests "
        f"(+{args.warmup} warm-up each), one session per client, loopback ({server})"
    )
    tables = [print_table(headers, rows, title=title)]
    parameters = {
        "clients": levels,
        "requests_per_client": args.requests,
        "warmup_per_client": args.warmup,
        "prompt_bytes": PROMPT_BYTES,
        "modes": modes,
        "app": "examples/example_fastapi.py create_app(...) under uvicorn in a child process",
    }
    write_results("concurrency", args, server, parameters, figures, tables)
    if any(entry["errors"] or not entry["all_stored"] for entry in figures.values()):
        sys.exit(1)


if __name__ == "__main__":
    main()
