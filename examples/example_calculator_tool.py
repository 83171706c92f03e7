"""An agent using strands-agents-tools' ``calculator``, persisted in MongoDB and resumed by a new Agent.

The agent asks the real ``calculator`` tool (SymPy) to evaluate an expression and to take a
derivative; every message, tool call and tool result is written to MongoDB as it happens. A new
manager and a new Agent with the same session id then restore the conversation, and the restored
agent is asked which calculations were done: its answer is built from the history it was given.

Offline by default: the model is ``ScriptedModel``, whose "decisions" are a lookup of the prompt
(which calculator call to make) and whose answers quote the tool results found in its input.
MongoDB is ``$MONGODB_URI``, else an embedded server with data under ``.data/example_calculator_tool/``.

    uv run python examples/example_calculator_tool.py
    uv run python examples/example_calculator_tool.py --in-memory --session-id maths-1
    OPENAI_API_KEY=... uv run --extra openai python examples/example_calculator_tool.py   # a real model

strands-agents-tools 0.8 logs a deprecation warning when ``calculator`` runs (it suggests its
``shell`` tool instead); the tool still works.
"""

import argparse
import logging

from strands import Agent
from strands.types.content import Messages
from strands_tools import calculator

from mongodb_session_manager import create_mongodb_session_manager

import failures
import local_mongodb
import model_provider
from scripted_model import ToolCall, Turn, last_user_text
from transcript import print_messages, print_metrics_summary

CALCULATIONS = {
    "What is the square root of 1764, times 3?": {"expression": "sqrt(1764) * 3"},
    "What is the derivative of x**3 * sin(x)?": {"expression": "x**3 * sin(x)", "mode": "derive", "wrt": "x"},
}
FOLLOW_UP = "Which calculations have we done so far?"


def calculator_calls(messages: Messages) -> list[str]:
    """``expression -> result`` for every calculator call in ``messages``."""
    inputs = {
        block["toolUse"]["toolUseId"]: block["toolUse"]["input"]
        for message in messages
        for block in message["content"]
        if "toolUse" in block
    }
    calls = []
    for message in messages:
        for block in message["content"]:
            if "toolResult" in block:
                tool_input = inputs.get(block["toolResult"]["toolUseId"], {})
                mode = f" ({tool_input['mode']})" if tool_input.get("mode") else ""
                result = block["toolResult"]["content"][0]["text"].removeprefix("Result: ")
                calls.append(f"{tool_input.get('expression')}{mode} -> {result}")
    return calls


def scripted_calculator_use(messages: Messages) -> Turn:
    """What the scripted model does: call the calculator for a known prompt, then quote the results."""
    if any("toolResult" in block for block in messages[-1]["content"]):
        return f"The calculator says: {calculator_calls(messages)[-1]}."
    prompt = last_user_text(messages)
    if prompt in CALCULATIONS:
        return ToolCall("calculator", CALCULATIONS[prompt])
    calls = calculator_calls(messages)
    return f"I can see {len(calls)} calculator calls in our conversation: {'; '.join(calls)}."


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    local_mongodb.add_session_id_argument(parser, "calculator")
    local_mongodb.add_mongodb_arguments(parser, "example_calculator_tool")
    model_provider.add_model_arguments(parser)
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING)
    logging.getLogger("strands_tools.calculator").setLevel(logging.ERROR)  # its deprecation warning, every call

    model = model_provider.build_model(args.provider, fallback=scripted_calculator_use)
    with local_mongodb.mongodb_uri(args) as uri:
        print(f"Session {args.session_id!r} in database {args.database!r}")
        with create_mongodb_session_manager(
            args.session_id, connection_string=uri, database_name=args.database
        ) as manager:
            agent = Agent(model=model, tools=[calculator], session_manager=manager, callback_handler=None)
            if agent.messages:
                print(f"(this session already holds {len(agent.messages)} messages from earlier runs)")
            for prompt in CALCULATIONS:
                print(f"\nuser      > {prompt}")
                print(f"assistant > {str(agent(prompt)).strip()}")

        print("\nA new manager and a new Agent with the same session id; messages restored from MongoDB:")
        with create_mongodb_session_manager(
            args.session_id, connection_string=uri, database_name=args.database
        ) as manager:
            resumed = Agent(model=model, tools=[calculator], session_manager=manager, callback_handler=None)
            print_messages(resumed.messages, last=12)
            print(f"\nuser      > {FOLLOW_UP}")
            print(f"assistant > {str(resumed(FOLLOW_UP)).strip()}\n")
            print_metrics_summary(manager.get_metrics_summary())


if __name__ == "__main__":
    with failures.in_one_line():
        main()
