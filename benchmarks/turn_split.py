"""Where one turn's time goes, per layout, at two session lengths.

For each layout, three Agents take turns, one turn each in rotation (the order shifting every
round), so that the machine's noise, and the server's work left over from the previous turn, fall
on all alike:

* ``agent alone``: the Agent with no session manager, holding the same 40 messages;
* ``bookkeeping``: Strands' ``RepositorySessionManager`` over a dict-backed ``SessionRepository``
  (:class:`DictRepository`, which only keeps references): the Agent plus Strands' own session
  bookkeeping, without any storage;
* the layout: ``MongoDBSessionManager`` with ``layout="embedded"`` or ``"split"``.

Every Agent has a ``SlidingWindowConversationManager(window_size=40)`` and resumes a session that
already holds ``length`` messages (built quickly through the repository, as ``commands.py`` does),
so each turn stores two messages and the new window offset (3 commands). A turn of a layout splits
into:

* **in MongoDB commands**: the durations pymongo measured for the turn's commands (request
  encoding, the round trip with the server's work, reply decoding);
* **Agent alone**;
* **Strands' bookkeeping**: the time in the dict-backed manager's hooks (``append_message``,
  ``sync_agent``: all a session manager does in a turn);
* **the rest**: this library plus pymongo's client side outside the commands (server selection,
  sessions, retry logic, monitoring), found as total minus the three above (difference of
  medians); and, measured directly with less noise, the same thing inside the session manager's
  hooks: the hooks' time minus the commands minus the dict manager's hooks. That is split again:
  **pymongo's client side** is the time inside the pymongo calls a turn makes (``insert_one``,
  ``find_one_and_update``, timed by wrapping them while the layout's Agent runs) minus their
  commands; **the library** is the rest in hooks minus that.

It is measured at two session lengths (``--lengths``, default 100 and 2,000 messages: turns 50
and 1,000 of a conversation) to show whether the library's own part grows with the session.

    uv run python benchmarks/turn_split.py [--lengths 100,2000] [--turns 300] [--warmup 20] [--secantus-process]
"""

from __future__ import annotations

import argparse
import functools
import time
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

from _common import (
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
from commands import LAYOUTS, build_session, text_message
from growth import CommandTime, prompt
from pymongo import MongoClient
from pymongo.collection import Collection
from strands import Agent
from strands.agent.conversation_manager import SlidingWindowConversationManager
from strands.session import RepositorySessionManager, SessionRepository
from strands.types.agent import LocalAgent
from strands.types.content import Message
from strands.types.session import Session, SessionAgent, SessionMessage

from mongodb_session_manager import MongoDBSessionManager

WINDOW = 40
PROMPT_BYTES = 300
AGENT_ALONE = "agent alone"
BOOKKEEPING = "bookkeeping"
SESSION_ID = "turn-split"

Client = MongoClient[dict[str, Any]]


class DictRepository(SessionRepository):
    """A ``SessionRepository`` in dicts, keeping references: Strands' bookkeeping with no storage cost."""

    def __init__(self) -> None:
        self.sessions: dict[str, Session] = {}
        self.agents: dict[tuple[str, str], SessionAgent] = {}
        self.messages: dict[tuple[str, str], list[SessionMessage]] = {}

    def create_session(self, session: Session, **kwargs: Any) -> Session:
        self.sessions[session.session_id] = session
        return session

    def read_session(self, session_id: str, **kwargs: Any) -> Session | None:
        return self.sessions.get(session_id)

    def create_agent(self, session_id: str, session_agent: SessionAgent, **kwargs: Any) -> None:
        self.agents[(session_id, session_agent.agent_id)] = session_agent
        self.messages.setdefault((session_id, session_agent.agent_id), [])

    def read_agent(self, session_id: str, agent_id: str, **kwargs: Any) -> SessionAgent | None:
        return self.agents.get((session_id, agent_id))

    def update_agent(self, session_id: str, session_agent: SessionAgent, **kwargs: Any) -> None:
        self.agents[(session_id, session_agent.agent_id)] = session_agent

    def create_message(self, session_id: str, agent_id: str, session_message: SessionMessage, **kwargs: Any) -> None:
        self.messages[(session_id, agent_id)].append(session_message)

    def read_message(self, session_id: str, agent_id: str, message_id: int, **kwargs: Any) -> SessionMessage | None:
        messages = self.messages.get((session_id, agent_id), [])
        return messages[message_id] if message_id < len(messages) else None

    def update_message(self, session_id: str, agent_id: str, session_message: SessionMessage, **kwargs: Any) -> None:
        self.messages[(session_id, agent_id)][session_message.message_id] = session_message

    def list_messages(
        self, session_id: str, agent_id: str, limit: int | None = None, offset: int = 0, **kwargs: Any
    ) -> list[SessionMessage]:
        messages = self.messages.get((session_id, agent_id), [])
        return messages[offset : None if limit is None else offset + limit]

    def create_multi_agent(self, session_id: str, multi_agent: Any, **kwargs: Any) -> None:
        raise NotImplementedError

    def read_multi_agent(self, session_id: str, multi_agent_id: str, **kwargs: Any) -> dict[str, Any] | None:
        raise NotImplementedError

    def update_multi_agent(self, session_id: str, multi_agent: Any, **kwargs: Any) -> None:
        raise NotImplementedError


class HookTimer:
    """Mixin for a ``RepositorySessionManager``: adds up the time spent in its per-turn hooks."""

    seconds = 0.0

    def append_message(self, message: Message, agent: LocalAgent, **kwargs: Any) -> None:
        started = time.perf_counter()
        try:
            super().append_message(message, agent, **kwargs)  # type: ignore[misc]
        finally:
            self.seconds += time.perf_counter() - started

    def sync_agent(self, agent: LocalAgent, **kwargs: Any) -> None:
        started = time.perf_counter()
        try:
            super().sync_agent(agent, **kwargs)  # type: ignore[misc]
        finally:
            self.seconds += time.perf_counter() - started


class TimedDictManager(HookTimer, RepositorySessionManager):
    """Strands' ``RepositorySessionManager`` (over a :class:`DictRepository`), hooks timed."""


class TimedMongoDBManager(HookTimer, MongoDBSessionManager):
    """The library's manager, hooks timed."""


def window() -> SlidingWindowConversationManager:
    return SlidingWindowConversationManager(window_size=WINDOW)


def new_agent(manager: Any = None, messages: list[Message] | None = None) -> Agent:
    return Agent(
        model=ScriptedModel.echo(record_calls=False),
        messages=messages,
        session_manager=manager,
        conversation_manager=window(),
        callback_handler=None,
    )


def dict_agent(length: int) -> Agent:
    """An Agent resuming a dict-stored session of ``length`` messages whose window removed all but 40."""
    repository = DictRepository()
    first = new_agent(TimedDictManager(SESSION_ID, repository))
    for index in range(length):
        repository.create_message(SESSION_ID, first.agent_id, SessionMessage.from_message(text_message(index), index))
    first.conversation_manager.removed_message_count = max(0, length - WINDOW)
    repository.update_agent(SESSION_ID, SessionAgent.from_agent(first))
    return new_agent(TimedDictManager(SESSION_ID, repository))


def mongodb_agent(client: Client, database_name: str, layout: str, length: int) -> Agent:
    """An Agent resuming a stored session of ``length`` messages whose window removed all but 40."""
    build_session(client, database_name, layout, SESSION_ID, length, window, removed=max(0, length - WINDOW))
    manager = TimedMongoDBManager(SESSION_ID, client=client, database_name=database_name, layout=layout)
    return new_agent(manager)


TIMED_CALLS = ("insert_one", "find_one_and_update")
"""The pymongo calls of a turn: message appends (split) and conditional session-document writes."""


class PyMongoCalls:
    """Adds up the wall time spent inside ``Collection.insert_one`` and ``find_one_and_update`` while enabled.

    The methods are wrapped on the class for the life of the object (``close`` restores them):
    each call still runs pymongo's own code, it is only timed.
    """

    def __init__(self) -> None:
        self.seconds = 0.0
        self.enabled = False
        self._originals = {name: getattr(Collection, name) for name in TIMED_CALLS}
        for name, original in self._originals.items():
            setattr(Collection, name, self._timed(original))

    def _timed(self, original: Any) -> Any:
        @functools.wraps(original)
        def timed(*args: Any, **kwargs: Any) -> Any:
            if not self.enabled:
                return original(*args, **kwargs)
            started = time.perf_counter()
            try:
                return original(*args, **kwargs)
            finally:
                self.seconds += time.perf_counter() - started

        return timed

    def close(self) -> None:
        for name, original in self._originals.items():
            setattr(Collection, name, original)


@dataclass
class Series:
    """Per measured turn of one configuration: seconds in total, in the hooks, in pymongo calls and in commands."""

    total: list[float] = field(default_factory=list)
    hooks: list[float] = field(default_factory=list)
    pymongo_s: list[float] = field(default_factory=list)
    commands_s: list[float] = field(default_factory=list)
    commands: list[int] = field(default_factory=list)


def measure(
    uri: str, layout: str, length: int, turns: int, warmup: int, progress: Progress | None = None
) -> dict[str, Series]:
    """Run ``warmup`` + ``turns`` turns of the Agent alone, the dict manager and ``layout`` in rotation."""
    timer = CommandTime()
    client: Client = MongoClient(uri, event_listeners=[timer])
    database_name = unique_database(f"turn_split_{layout}")
    configurations = (AGENT_ALONE, BOOKKEEPING, layout)
    calls = PyMongoCalls()
    try:
        start = max(0, length - WINDOW)
        agents: dict[str, Agent] = {
            AGENT_ALONE: new_agent(messages=[text_message(index) for index in range(start, length)]),
            BOOKKEEPING: dict_agent(length),
            layout: mongodb_agent(client, database_name, layout, length),
        }
        held = {name: len(agent.messages) for name, agent in agents.items()}
        assert set(held.values()) == {min(length, WINDOW)}, held
        series = {name: Series() for name in configurations}
        for turn in range(warmup + turns):
            text = prompt(length // 2 + turn, PROMPT_BYTES)
            shift = turn % len(configurations)  # each configuration runs after each other one as often
            for name in configurations[shift:] + configurations[:shift]:
                agent = agents[name]
                manager: Any = agent._session_manager
                if manager is not None:
                    manager.seconds = 0.0
                timer.seconds, timer.commands = 0.0, 0
                calls.seconds, calls.enabled = 0.0, name == layout
                started = time.perf_counter()
                agent(text)
                total = time.perf_counter() - started
                calls.enabled = False
                if turn < warmup:
                    continue
                series[name].total.append(total)
                series[name].hooks.append(manager.seconds if manager is not None else 0.0)
                series[name].pymongo_s.append(calls.seconds)
                series[name].commands_s.append(timer.seconds)
                series[name].commands.append(timer.commands)
            if progress is not None:
                progress.advance()
        return series
    finally:
        calls.close()
        client.drop_database(database_name)
        client.close()


def split_of(series: dict[str, Series], layout: str) -> dict[str, float]:
    """A layout's turn, split into its parts (medians over the measured turns, in seconds)."""
    measured = series[layout]
    agent_alone = median(series[AGENT_ALONE].total)
    bookkeeping = median(series[BOOKKEEPING].hooks)
    total = median(measured.total)
    commands = median(measured.commands_s)
    per_turn = list(zip(measured.hooks, measured.pymongo_s, measured.commands_s, strict=True))
    hooks_rest = [hooks - in_commands for hooks, _, in_commands in per_turn]
    client_side = [in_pymongo - in_commands for _, in_pymongo, in_commands in per_turn]
    library = [hooks - in_pymongo for hooks, in_pymongo, _ in per_turn]
    return {
        "total_s": total,
        "commands_s": commands,
        "agent_alone_s": agent_alone,
        "bookkeeping_s": bookkeeping,
        "rest_s": total - commands - agent_alone - bookkeeping,
        "hooks_s": median(measured.hooks),
        "dict_turn_s": median(series[BOOKKEEPING].total),
        "rest_in_hooks_s": median(hooks_rest) - bookkeeping,
        "pymongo_client_side_s": median(client_side),
        "library_s": median(library) - bookkeeping,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--lengths", default="100,2000", help="messages stored before the measured turns")
    parser.add_argument("--turns", type=int, default=300, help="measured turns per configuration and length (300)")
    parser.add_argument("--warmup", type=int, default=20, help="turns before the measured ones (20)")
    parser.add_argument(
        "--secantus-process",
        action="store_true",
        help="without --uri: run SecantusDB in a child process (not sharing this process's interpreter lock)",
    )
    args = parse_args(__doc__ or "", parser)
    lengths = [int(length) for length in args.lengths.split(",")]
    if args.turns < 1 or args.warmup < 0 or min(lengths) < 0:
        parser.error("--turns must be at least 1, --warmup and --lengths at least 0")

    results: dict[str, Any] = {layout: {} for layout in LAYOUTS}
    with mongodb_server(args.uri, child_process=args.secantus_process) as (uri, server):
        for layout in LAYOUTS:
            for length in lengths:
                progress = Progress(args.warmup + args.turns, f"{layout:>8}, {length:>6} messages: turn")
                series = measure(uri, layout, length, args.turns, args.warmup, progress)
                progress.close()
                results[layout][str(length)] = {
                    "split": split_of(series, layout),
                    "commands_per_turn": dict(Counter(series[layout].commands)),
                    "series": {
                        name: {
                            "total_s": microseconds(values.total),
                            "hooks_s": microseconds(values.hooks),
                            "pymongo_s": microseconds(values.pymongo_s),
                            "commands_s": microseconds(values.commands_s),
                        }
                        for name, values in series.items()
                    },
                }

    def ms(seconds: float) -> str:
        return f"{seconds * 1000:.2f}"

    rows = []
    for layout in LAYOUTS:
        for length in lengths:
            parts = results[layout][str(length)]["split"]
            commands = results[layout][str(length)]["commands_per_turn"]
            rows.append(
                [
                    layout,
                    f"{length:,}",
                    ms(parts["total_s"]),
                    ms(parts["commands_s"]),
                    ms(parts["agent_alone_s"]),
                    ms(parts["bookkeeping_s"]),
                    ms(parts["rest_s"]),
                    ms(parts["rest_in_hooks_s"]),
                    ms(parts["pymongo_client_side_s"]),
                    ms(parts["library_s"]),
                    ", ".join(f"{count}: {turns}" for count, turns in sorted(commands.items())),
                ]
            )
    headers = [
        "layout",
        "stored messages",
        "turn ms",
        "in MongoDB commands ms",
        "Agent alone ms",
        "Strands bookkeeping ms",
        "rest ms",
        "rest in hooks ms",
        "of which pymongo client side ms",
        "of which library ms",
        "commands per turn: turns",
    ]
    title = (
        f"One turn split, median of {args.turns} turns after {args.warmup}, Agent window {WINDOW}, "
        f"{PROMPT_BYTES}-byte prompts ({server})"
    )
    tables = [print_table(headers, rows, title=title)]
    print(
        "Strands bookkeeping: time in the hooks of RepositorySessionManager over a dict repository; rest = turn - "
        "commands - Agent alone - Strands bookkeeping (difference of medians): this library plus pymongo's client "
        "side outside its commands;\nrest in hooks = time in the session manager's hooks - their commands - the "
        "dict manager's hooks (per turn, then the median): the same, measured directly;\nof which pymongo client side "
        "= time inside insert_one/find_one_and_update - their commands; of which library = hooks - those pymongo calls "
        "- the dict manager's hooks"
    )
    if len(lengths) > 1:
        first, last = str(lengths[0]), str(lengths[-1])
        growth = []
        for layout in LAYOUTS:
            for part in ("rest_in_hooks_s", "library_s"):
                before, after = (results[layout][key]["split"][part] for key in (first, last))
                label = f"{layout} {part.removesuffix('_s').replace('_', ' ')}"
                ratio = f" ({after / before:.2f}x)" if before > 0 else ""
                growth.append(f"{label} {ms(before)} -> {ms(after)} ms{ratio}")
        verdict = f"From {lengths[0]:,} to {lengths[-1]:,} stored messages: " + "; ".join(growth)
        print("\n" + verdict, flush=True)
        tables.append(verdict)
    parameters = {
        "lengths": lengths,
        "turns": args.turns,
        "warmup": args.warmup,
        "window": WINDOW,
        "prompt_bytes": PROMPT_BYTES,
        "secantus_process": args.secantus_process,
    }
    write_results("turn_split", args, server, parameters, results, tables)


if __name__ == "__main__":
    main()
