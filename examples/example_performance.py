"""A demonstration of why web apps should share one connection pool (not the benchmark suite).

Each "request" creates a session manager for a new session, builds an Agent on it (one read,
two creation writes) and runs one turn (two writes), the way a chat endpoint does. It is timed two ways, alternating:

* new client: a ``MongoClient(uri)`` opened for each request, given to
  ``create_mongodb_session_manager(session_id, client=client)`` and closed afterwards: every request
  pays server discovery and connection handshakes. (Managers created with
  ``connection_string=uri`` would not show this: the library shares one client per connection
  string and options across them.)
* shared pool: ``initialize_global_factory(uri, ...)`` once, then
  ``get_global_factory().create_session_manager(session_id)`` per request.

It prints the median and p95 latency of each and their ratio. The figures depend on the machine
and the server: the embedded SecantusDB server runs inside this process, while against a remote
MongoDB a new client also pays network round trips, TLS and authentication, so the gap is
usually wider. The model is ``ScriptedModel`` (no model latency), so the time measured is the
session manager's and Strands' own; a real provider (``--provider``) would add its latency to
both sides. After each request its session is read back and deleted, untimed
(``--keep-sessions`` keeps them): the embedded server's lookups slow down as a collection grows,
which would blur the comparison.

    uv run python examples/example_performance.py                  # 50 requests each way
    uv run python examples/example_performance.py --requests 200 --in-memory
    MONGODB_URI=mongodb://localhost:27017 uv run python examples/example_performance.py
"""

import argparse
import logging
import math
import statistics
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, contextmanager
from typing import Any, NamedTuple

from pymongo import MongoClient
from strands import Agent
from strands.models.model import Model

from mongodb_session_manager import (
    MongoDBSessionManager,
    close_global_factory,
    create_mongodb_session_manager,
    get_global_factory,
    initialize_global_factory,
)

import failures
import local_mongodb
import model_provider

WARM_UP = 3


class Timing(NamedTuple):
    setup: float
    turn: float
    close: float
    total: float


def progress(done: int, total: int, width: int = 40) -> None:
    """A progress bar on stderr: redrawn in place on a terminal, a line per tenth otherwise."""
    bar = f"  [{'#' * (width * done // total):.<{width}}] {done}/{total}"
    if sys.stderr.isatty():
        sys.stderr.write(f"\r{bar}" + ("\n" if done == total else ""))
    elif done == total or 10 * done // total != 10 * (done - 1) // total:
        sys.stderr.write(f"{bar}\n")
    sys.stderr.flush()


def p95(values: list[float]) -> float:
    """The nearest-rank 95th percentile."""
    return sorted(values)[math.ceil(0.95 * len(values)) - 1]


OpenManager = Callable[[str], AbstractContextManager[MongoDBSessionManager]]


class NewClientPerRequest:
    """The anti-pattern: each request opens a ``MongoClient`` of its own and closes it afterwards."""

    def __init__(self, uri: str, database_name: str) -> None:
        self.uri = uri
        self.database_name = database_name
        self.clients_opened = 0

    @contextmanager
    def __call__(self, session_id: str) -> Iterator[MongoDBSessionManager]:
        client: MongoClient[dict[str, Any]] = MongoClient(self.uri)
        self.clients_opened += 1
        with (
            client,
            create_mongodb_session_manager(session_id, client=client, database_name=self.database_name) as manager,
        ):
            yield manager


def timed_request(open_manager: OpenManager, session_id: str, model: Model) -> Timing:
    """Milliseconds for one request: manager and Agent (setup), one turn, close."""
    started = time.perf_counter()
    with open_manager(session_id) as manager:
        agent = Agent(model=model, session_manager=manager, callback_handler=None)
        ready = time.perf_counter()
        agent("ping")
        answered = time.perf_counter()
    closed = time.perf_counter()
    return Timing(
        setup=(ready - started) * 1000,
        turn=(answered - ready) * 1000,
        close=(closed - answered) * 1000,
        total=(closed - started) * 1000,
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--requests", type=int, default=50, help="timed requests per approach (default %(default)s)")
    parser.add_argument("--keep-sessions", action="store_true", help="leave the sessions created in MongoDB")
    local_mongodb.add_mongodb_arguments(parser, "example_performance")
    model_provider.add_model_arguments(parser)
    args = parser.parse_args()
    if args.requests < 1:
        parser.error("--requests must be at least 1")
    logging.basicConfig(level=logging.WARNING)

    model = model_provider.build_model(args.provider)
    run_id = uuid.uuid4().hex[:8]
    with local_mongodb.mongodb_uri(args) as uri:
        factory = initialize_global_factory(uri, database_name=args.database)
        new_client = NewClientPerRequest(uri, args.database)
        approaches: dict[str, OpenManager] = {
            "new client": new_client,
            "shared pool": lambda sid: get_global_factory().create_session_manager(sid),
        }
        timings: dict[str, list[Timing]] = {name: [] for name in approaches}
        rounds = WARM_UP + args.requests
        print(f"\n{args.requests} timed requests per approach, alternating, after {WARM_UP} untimed warm-up each:")
        sessions = factory.client[args.database]["sessions"]
        stored_sessions = stored_messages = 0
        for i in range(rounds):
            for position, (name, open_manager) in enumerate(approaches.items(), start=1):
                session_id = f"perf-{run_id}-{name.replace(' ', '-')}-{i}"
                timing = timed_request(open_manager, session_id, model)
                if i >= WARM_UP:
                    timings[name].append(timing)
                # Untimed: read the session back (and delete it, so the collection does not grow).
                read_back = sessions.find_one if args.keep_sessions else sessions.find_one_and_delete
                document = read_back({"_id": session_id}, {"agents.default.messages.message_id": 1})
                if document is not None:
                    stored_sessions += 1
                    stored_messages += len(document["agents"]["default"]["messages"])
                progress(i * len(approaches) + position, rounds * len(approaches))

        print(f"\n  {'ms per request':<14} {'median':>7} {'p95':>7} | {'setup':>6} {'turn':>6} {'close':>6}  (medians)")
        medians = {}
        for name, values in timings.items():
            medians[name] = Timing(*(statistics.median(column) for column in zip(*values, strict=True)))
            m, worst = medians[name], p95([timing.total for timing in values])
            print(f"  {name:<14} {m.total:>7.1f} {worst:>7.1f} | {m.setup:>6.1f} {m.turn:>6.1f} {m.close:>6.1f}")
        new, pooled = medians["new client"], medians["shared pool"]
        print(
            f"  median request, new client / shared pool: {new.total / pooled.total:.1f}x "
            f"(setup alone: {new.setup / pooled.setup:.1f}x)"
        )
        stats = factory.get_connection_stats()
        print(
            f"  the shared pool handed out {stats['managers_created']} managers over "
            f"{stats['pool']['connections']['created']} connection(s); "
            f"the new-client requests opened (and closed) {new_client.clients_opened} clients"
        )

        print(f"\nRead back from MongoDB after each request: {stored_sessions} sessions, {stored_messages} messages")
        if args.keep_sessions:
            print(f"They are kept (session ids perf-{run_id}-*).")
        else:
            print("Each was deleted after being read (--keep-sessions keeps them).")
        close_global_factory()


if __name__ == "__main__":
    with failures.in_one_line():
        main()
