"""Quick start: a Strands agent whose conversation and state live in MongoDB.

Runs offline by default: it starts an embedded MongoDB wire-protocol server (SecantusDB, a dev
dependency, in memory) unless ``MONGODB_URI`` or ``--uri`` names a server, and the agent uses
``ScriptedModel``, a deterministic local model, so no cloud credentials are needed.

    uv run python examples/quickstart.py
    MONGODB_URI=mongodb://localhost:27017 uv run python examples/quickstart.py --session-id demo
"""

import argparse
import logging
import os
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pprint import pformat
from typing import Any

from pymongo import MongoClient
from strands import Agent, tool

from mongodb_session_manager import create_mongodb_session_manager

from scripted_model import ScriptedModel, ToolCall


@tool
def add(a: float, b: float) -> float:
    """Add two numbers."""
    return a + b


@contextmanager
def mongodb_server(uri: str | None) -> Iterator[str]:
    """Yield ``uri``, or start an embedded in-memory server for the duration of the block."""
    if uri:
        print(f"Using MongoDB at {uri}")
        yield uri
        return
    from secantus import SecantusDBServer  # type: ignore[import-untyped]

    server = SecantusDBServer(host="127.0.0.1", port=0, storage_path=":memory:")
    server.start()
    print(f"Started an embedded MongoDB wire server (SecantusDB, in memory) at {server.uri}")
    try:
        yield server.uri
    finally:
        server.stop()


def text_of(message: dict[str, Any]) -> str:
    parts = []
    for block in message["content"]:
        if "text" in block:
            parts.append(block["text"])
        elif "toolUse" in block:
            parts.append(f"<calls {block['toolUse']['name']}({block['toolUse']['input']})>")
        elif "toolResult" in block:
            parts.append(f"<tool result {block['toolResult']['content']}>")
    return " ".join(parts)


def shape(value: Any) -> Any:
    """The document's structure, each list shown by its last item, for printing."""
    if isinstance(value, dict):
        return {key: shape(item) for key, item in value.items()}
    if isinstance(value, list):
        return [f"{len(value)} items, the last:", shape(value[-1])] if value else []
    return type(value).__name__


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--uri", default=os.environ.get("MONGODB_URI"), help="MongoDB URI (default: $MONGODB_URI)")
    parser.add_argument("--database", default=os.environ.get("MONGODB_DATABASE", "quickstart"))
    parser.add_argument("--session-id", default=os.environ.get("SESSION_ID", f"quickstart-{uuid.uuid4().hex[:8]}"))
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING)

    with mongodb_server(args.uri) as uri:
        print(f"Session {args.session_id!r} in database {args.database!r}\n")
        print("The model is ScriptedModel: scripted, offline answers (not a real LLM).")
        model = ScriptedModel([ToolCall("add", {"a": 19, "b": 23}), "19 + 23 = 42.", "You asked me to add 19 and 23."])
        manager = create_mongodb_session_manager(args.session_id, connection_string=uri, database_name=args.database)
        agent = Agent(model=model, tools=[add], session_manager=manager, callback_handler=None)
        agent.state.set("favourite_number", 42)
        for prompt in ("What is 19 + 23?", "What did I ask you?"):
            print(f"user      > {prompt}")
            print(f"assistant > {agent(prompt)}".rstrip())
        manager.close()

        print("\nA new manager and a new Agent with the same session id restore the conversation:")
        manager = create_mongodb_session_manager(args.session_id, connection_string=uri, database_name=args.database)
        restored = Agent(model=ScriptedModel([]), tools=[add], session_manager=manager, callback_handler=None)
        for message in restored.messages:
            print(f"  {message['role']:<9} | {text_of(message)}")
        print(f"  agent state: favourite_number = {restored.state.get('favourite_number')}")

        print("\nMetrics summary (summed by MongoDB from the metrics stored on assistant messages):")
        print(pformat(manager.get_metrics_summary()["totals"], sort_dicts=False))
        manager.close()

        with MongoClient(uri) as client:
            document = client[args.database]["sessions"].find_one({"_id": args.session_id})
        print("\nShape of the stored session document:")
        print(pformat(shape(document), sort_dicts=False, width=110))


if __name__ == "__main__":
    main()
