"""MongoDB commands and reply bytes per operation, for both message layouts.

Counted with pymongo command monitoring (``tests/command_counter.py``), so the figures do not
depend on the machine: ``tests/test_benchmarks.py`` asserts them by calling :func:`measure`.

    uv run python benchmarks/commands.py [--messages 1000] [--window 40] [--uri mongodb://...]
"""

from __future__ import annotations

import argparse
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from typing import Any

from _common import (
    CommandCounter,
    ScriptedModel,
    mongodb_server,
    parse_args,
    print_table,
    unique_database,
    write_results,
)
from pymongo import MongoClient
from strands import Agent, tool
from strands.agent.conversation_manager import (
    ConversationManager,
    NullConversationManager,
    SlidingWindowConversationManager,
)
from strands.types.content import Message
from strands.types.session import SessionAgent, SessionMessage

from mongodb_session_manager import MongoDBSessionManager, MongoDBSessionRepository
from mongodb_session_manager._documents import encoded, message_document, now

from scripted_model import ToolCall

LAYOUTS = ("embedded", "split")
OPERATIONS = ("new session", "plain turn", "tool turn", "resume", "resume, window")
PROMPT_BYTES = 300
EMBEDDED_BATCH = 500

Client = MongoClient[dict[str, Any]]


@tool
def add(a: int, b: int) -> int:
    """Add two integers."""
    return a + b


# -- building stored sessions quickly ------------------------------------------------------------------


def text_message(index: int, size: int = PROMPT_BYTES) -> Message:
    """Message ``index`` of a plain conversation: even ones from the user, odd ones from the assistant."""
    role = "user" if index % 2 == 0 else "assistant"
    text = f"{role} message {index} "
    return {"role": role, "content": [{"text": text + "x" * max(0, size - len(text))}]}


def answer_metrics(index: int) -> dict[str, Any]:
    """What the manager stores on an assistant message (``event_loop_metrics``), with plausible numbers."""
    usage = {"inputTokens": 10 * (index + 1), "outputTokens": 50, "totalTokens": 10 * (index + 1) + 50}
    return {"usage": usage, "latencyMs": 100, "agent_totals_before_this_call": {"usage": usage, "latencyMs": 100}}


def store_messages(repository: MongoDBSessionRepository, session_id: str, agent_id: str, count: int) -> None:
    """Append ``count`` messages (ids 0..count-1) to an existing agent, quickly, in the stored shape.

    Split layout: ``repository.create_message`` for each (one insert each, the production path).
    Embedded layout: ``create_message`` pushes into a document the server rewrites on every push
    (on SecantusDB about 100 ms per push at 1,000 messages), so the entries are encoded by the
    library's own ``message_document`` (what ``create_message`` stores) and pushed in batches.
    ``tests/test_benchmarks.py`` checks that both ways store the same thing.
    """
    if repository.layout == "split":
        for index in range(count):
            message = SessionMessage.from_message(text_message(index), index)
            extra = {"event_loop_metrics": answer_metrics(index)} if index % 2 else {}
            with repository.annotate_messages(**extra):
                repository.create_message(session_id, agent_id, message)
        return
    for start in range(0, count, EMBEDDED_BATCH):
        batch = []
        for index in range(start, min(count, start + EMBEDDED_BATCH)):
            message = SessionMessage.from_message(text_message(index), index)
            extra = {"event_loop_metrics": answer_metrics(index)} if index % 2 else {}
            batch.append(encoded(message_document(message, now(), extra), "message"))
        repository.collection.update_one(
            {"_id": session_id},
            {"$push": {f"agents.{agent_id}.messages": {"$each": batch}}, "$set": {"updated_at": now()}},
        )


def build_session(
    client: Client,
    database_name: str,
    layout: str,
    session_id: str,
    messages: int,
    conversation_manager: Callable[[], ConversationManager] = NullConversationManager,
    removed: int = 0,
    collection_name: str = "sessions",
) -> None:
    """A stored session of ``messages`` messages whose conversation manager had removed ``removed`` of them.

    The session and agent are created by a real manager and Agent (so the stored conversation-manager
    state names the right class); the removal is stored with ``update_agent``, as a sync would.
    """
    manager = MongoDBSessionManager(
        session_id, client=client, database_name=database_name, collection_name=collection_name, layout=layout
    )
    cm = conversation_manager()
    agent = Agent(model=ScriptedModel([]), session_manager=manager, conversation_manager=cm, callback_handler=None)
    store_messages(manager.repository, session_id, agent.agent_id, messages)
    if removed:
        cm.removed_message_count = removed
        manager.repository.update_agent(session_id, SessionAgent.from_agent(agent))


def resume(
    client: Client,
    database_name: str,
    layout: str,
    session_id: str,
    conversation_manager: Callable[[], ConversationManager] = NullConversationManager,
) -> Agent:
    """What a request does to continue a session: a new manager and a new Agent."""
    manager = MongoDBSessionManager(session_id, client=client, database_name=database_name, layout=layout)
    return Agent(
        model=ScriptedModel.echo(),
        session_manager=manager,
        conversation_manager=conversation_manager(),
        callback_handler=None,
    )


# -- the measurement ------------------------------------------------------------------------------------


@dataclass
class Measurement:
    """The commands one operation sent, in order, and the BSON bytes of their replies."""

    operation: str
    sequence: list[str]
    reply_bytes: int
    messages_in_agent: int
    commands: dict[str, int] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.commands = {name: self.sequence.count(name) for name in dict.fromkeys(self.sequence)}


def measure(
    client: Client,
    counter: CommandCounter,
    database_name: str,
    layout: str,
    resume_messages: int = 1000,
    window_size: int = 40,
) -> dict[str, Measurement]:
    """Run each operation once on ``client`` (which reports to ``counter``) and record what it sent.

    Index creation happens once per process and client; a repository is built before counting,
    so it is not counted (it is not part of any operation in a running application).
    """
    MongoDBSessionRepository(client=client, database_name=database_name, layout=layout)
    results: dict[str, Measurement] = {}

    def record(operation: str, agent: Agent) -> None:
        commands = counter.commands()
        results[operation] = Measurement(
            operation,
            [command.name for command in commands],
            sum(command.reply_bytes or 0 for command in commands),
            len(agent.messages),
        )

    # a new session: manager + Agent, then a plain turn (the second; the first is the same)
    counter.reset()
    manager = MongoDBSessionManager("new", client=client, database_name=database_name, layout=layout)
    agent = Agent(model=ScriptedModel.echo(), session_manager=manager, callback_handler=None)
    record("new session", agent)
    agent("first " + "x" * PROMPT_BYTES)
    counter.reset()
    agent("second " + "x" * PROMPT_BYTES)
    record("plain turn", agent)

    # a tool turn: user message, toolUse, toolResult, answer, and the agent state sync
    model = ScriptedModel(["hi", ToolCall("add", {"a": 1, "b": 2}), "3"])
    manager = MongoDBSessionManager("tool", client=client, database_name=database_name, layout=layout)
    agent = Agent(model=model, tools=[add], session_manager=manager, callback_handler=None)
    agent("hello")
    counter.reset()
    agent("add 1 and 2")
    record("tool turn", agent)

    # resume of the whole history
    build_session(client, database_name, layout, "long", resume_messages)
    counter.reset()
    agent = resume(client, database_name, layout, "long")
    record("resume", agent)

    # resume with a sliding window that had already removed all but window_size messages
    def window() -> ConversationManager:
        return SlidingWindowConversationManager(window_size=window_size)

    removed = max(0, resume_messages - window_size)
    build_session(client, database_name, layout, "windowed", resume_messages, window, removed)
    counter.reset()
    agent = resume(client, database_name, layout, "windowed", window)
    record("resume, window", agent)
    return results


# -- the command line ------------------------------------------------------------------------------------


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--messages", type=int, default=1000, help="messages in the resumed sessions (1000)")
    parser.add_argument("--window", type=int, default=40, help="SlidingWindowConversationManager window (40)")
    args = parse_args(__doc__ or "", parser)
    with mongodb_server(args.uri) as (uri, server):
        figures: dict[str, dict[str, Any]] = {}
        for layout in LAYOUTS:
            counter = CommandCounter()
            client: Client = MongoClient(uri, event_listeners=[counter])
            database_name = unique_database(f"commands_{layout}")
            try:
                measured = measure(client, counter, database_name, layout, args.messages, args.window)
            finally:
                client.drop_database(database_name)
                client.close()
            figures[layout] = {operation: asdict(measurement) for operation, measurement in measured.items()}

    labels = {
        "new session": "new session (manager + Agent)",
        "plain turn": "plain turn",
        "tool turn": "tool turn (4 messages + state)",
        "resume": f"resume, {args.messages} messages",
        "resume, window": f"resume, {args.messages} messages, window {args.window}",
    }
    rows = []
    for operation in OPERATIONS:
        row: list[Any] = [labels[operation]]
        for layout in LAYOUTS:
            measurement = figures[layout][operation]
            row += [
                len(measurement["sequence"]),
                ", ".join(f"{count} {name}" for name, count in measurement["commands"].items()) or "-",
                f"{measurement['reply_bytes']:,}",
            ]
        rows.append(row)
    headers = ["operation"] + [f"{layout} {column}" for layout in LAYOUTS for column in ("#", "commands", "reply B")]
    table = print_table(headers, rows, title=f"MongoDB commands per operation ({server})")
    parameters = {"resume_messages": args.messages, "window_size": args.window, "prompt_bytes": PROMPT_BYTES}
    write_results("commands", args, server, parameters, figures, [table])


if __name__ == "__main__":
    main()
