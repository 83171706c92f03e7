"""Quick start: a Strands agent whose conversation and state live in MongoDB, across runs.

Runs offline with nothing to configure: unless ``MONGODB_URI`` (or ``--uri``) names a server, it
starts an embedded MongoDB wire-protocol server (SecantusDB) keeping its data under
``.data/quickstart/`` (``--in-memory`` keeps nothing), and the agent's model is ``ScriptedModel``,
a deterministic local model, so no credentials are needed.

It talks to an agent (one tool call), then builds a new Agent with the same session id and prints
the conversation and agent state restored from MongoDB, the metrics summary and the shape of the
stored document. The session id is fixed (``quickstart``), so running it again continues the same
conversation: the agent's state counts the runs, and the scripted model answers from the history
it was given.

    uv run python examples/quickstart.py            # run it twice: the second run continues
    uv run python examples/quickstart.py --in-memory
    uv run python examples/quickstart.py --layout split --session-id split-demo   # one document per message
    MONGODB_URI=mongodb://localhost:27017 uv run python examples/quickstart.py --session-id demo
    uv run python examples/quickstart.py --provider bedrock   # a real model (see model_provider.py)
"""

import argparse
import logging
from pprint import pformat

from strands import Agent, tool
from strands.types.content import Messages

from mongodb_session_manager import create_mongodb_session_manager

import failures
import local_mongodb
import model_provider
from scripted_model import ToolCall, Turn
from transcript import print_messages, print_metrics_summary, shape

PROMPTS = ("What is 19 + 23?", "How many messages have I sent you in this conversation so far?")


@tool
def add(a: float, b: float) -> float:
    """Add two numbers."""
    return a + b


def count_from_history(messages: Messages) -> Turn:
    """The scripted answer to the second prompt, computed from the history the model is given."""
    from_user = [m for m in messages if m["role"] == "user" and any("text" in block for block in m["content"])]
    return f"You have sent me {len(from_user)} messages so far ({len(messages)} messages in all, tool calls included)."


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    local_mongodb.add_session_id_argument(parser, "quickstart")
    parser.add_argument(
        "--layout",
        choices=("embedded", "split"),
        default="embedded",
        help="where the messages are stored: in the session document (default) or one document each",
    )
    local_mongodb.add_mongodb_arguments(parser, "quickstart")
    model_provider.add_model_arguments(parser)
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING)

    model = model_provider.build_model(
        args.provider, [ToolCall("add", {"a": 19, "b": 23}), "19 + 23 = 42."], fallback=count_from_history
    )
    with local_mongodb.mongodb_uri(args) as uri:
        print(f"Session {args.session_id!r} in database {args.database!r}, {args.layout} layout\n")
        manager = create_mongodb_session_manager(
            args.session_id, connection_string=uri, database_name=args.database, layout=args.layout
        )
        agent = Agent(model=model, tools=[add], session_manager=manager, callback_handler=None)
        runs = (agent.state.get("runs") or 0) + 1
        agent.state.set("runs", runs)
        if agent.messages:
            print(f"Run {runs}: {len(agent.messages)} messages restored from MongoDB, continuing the conversation.")
        else:
            print(f"Run {runs}: a new conversation.")
        for prompt in PROMPTS:
            print(f"user      > {prompt}")
            print(f"assistant > {str(agent(prompt)).strip()}")
        manager.close()

        print("\nA new manager and a new Agent with the same session id restore everything from MongoDB:")
        with create_mongodb_session_manager(
            args.session_id, connection_string=uri, database_name=args.database, layout=args.layout
        ) as manager:
            restored = Agent(model=model, tools=[add], session_manager=manager, callback_handler=None)
            print_messages(restored.messages, last=12)
            print(f"  agent state: {restored.state.get()}")

            print()
            print_metrics_summary(manager.get_metrics_summary())
            sessions = manager.repository.collection
            document = sessions.find_one({"_id": args.session_id})
            messages = sessions.database[f"{sessions.name}_messages"]
            apart = messages.count_documents({"session_id": args.session_id}) if args.layout == "split" else 0
        print("\nShape of the stored session document:")
        print(pformat(shape(document), sort_dicts=False, width=110))
        if apart:
            print(f"Its messages are {apart} documents of their own, in the {messages.name!r} collection.")

    if args.uri:
        print(f"\nRun again to continue session {args.session_id!r}; --session-id NAME starts another one.")
    elif args.in_memory:
        print("\nThe in-memory server kept nothing; without --in-memory a second run continues this conversation.")
    else:
        print(f"\nRun again to continue session {args.session_id!r} (data in {args.data_dir}).")


if __name__ == "__main__":
    with failures.in_one_line():
        main()
