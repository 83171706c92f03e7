"""Async streaming with ``agent.stream_async`` in a script, with live metrics, persisted in MongoDB.

The answer is printed chunk by chunk as it arrives. After each model call the example prints
what it measured while streaming (chunks, time to first and last chunk) next to the usage and
latency the model reported; after each message it reads MongoDB to show that the message is
already stored; after each turn it prints the Agent's ``event_loop_metrics``. Finally it prints
what MongoDB holds: every message, the ``event_loop_metrics`` stored on the assistant messages,
and the metrics summary aggregated by MongoDB.

Offline by default: ``ScriptedModel`` streams its scripted answers one word at a time
(``--word-delay-ms``, so streaming is visible) and reports a fixed latency of 100 ms. MongoDB is
``$MONGODB_URI``, else an embedded server with data under ``.data/example_stream_async/``.

    uv run python examples/example_stream_async.py
    uv run python examples/example_stream_async.py --in-memory --word-delay-ms 120
    OLLAMA_HOST=http://localhost:11434 uv run --extra ollama python examples/example_stream_async.py  # real model
"""

import argparse
import asyncio
import logging
import time
from typing import Any

from strands import Agent

from mongodb_session_manager import MongoDBSessionManager, create_mongodb_session_manager

import failures
import local_mongodb
import model_provider
from transcript import print_metrics_summary, text_of

PROMPTS = ("What does streaming change for a user?", "And what ends up in MongoDB?")
SCRIPT = (
    "Streaming sends the answer in pieces while the model is still producing it, so the first words "
    "appear long before the last ones. Each piece reaches this script as one event of stream_async.",
    "Only complete messages: the session manager writes each one when it is added to the conversation, "
    "with the tokens and latency of the model call that produced it.",
)


def stored_messages(manager: MongoDBSessionManager, agent_id: str) -> list[dict[str, Any]]:
    """The agent's messages as stored in MongoDB right now (one read)."""
    document = manager.repository.collection.find_one({"_id": manager.session_id}, {f"agents.{agent_id}.messages": 1})
    return list((document or {}).get("agents", {}).get(agent_id, {}).get("messages", []))


async def stream_turn(agent: Agent, manager: MongoDBSessionManager, turn: int, prompt: str) -> None:
    print(f"\nuser      > {prompt}\nassistant > ", end="", flush=True)
    started = time.perf_counter()
    chunks: list[float] = []
    async for event in agent.stream_async(prompt):
        if "data" in event:
            chunks.append(time.perf_counter() - started)
            print(event["data"], end="", flush=True)
        elif "metadata" in event.get("event", {}):
            usage, reported = event["event"]["metadata"]["usage"], event["event"]["metadata"].get("metrics", {})
            first, last = (f"{chunks[0] * 1000:.0f} ms", f"{chunks[-1] * 1000:.0f} ms") if chunks else ("-", "-")
            print(
                f"\n  [model call: {len(chunks)} chunks, first after {first}, last after {last}; "
                f"tokens in {usage['inputTokens']} / out {usage['outputTokens']} / total {usage['totalTokens']}; "
                f"model-reported latency {reported.get('latencyMs')} ms]"
            )
        elif "message" in event:
            count = len(stored_messages(manager, agent.agent_id))
            print(f"  [{event['message']['role']} message complete: MongoDB already holds {count} messages]")
        elif "result" in event:
            metrics = event["result"].metrics
            print(
                f"  [turn {turn}: {time.perf_counter() - started:.2f} s, agent.event_loop_metrics: "
                f"cycle_count {metrics.cycle_count}, accumulated {metrics.accumulated_usage['totalTokens']} tokens "
                f"and {metrics.accumulated_metrics['latencyMs']} ms model latency]"
            )


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    local_mongodb.add_session_id_argument(parser, "stream-async")
    parser.add_argument("--word-delay-ms", type=float, default=40, help="scripted model: pause between words")
    local_mongodb.add_mongodb_arguments(parser, "example_stream_async")
    model_provider.add_model_arguments(parser)
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING)

    model = model_provider.build_model(args.provider, SCRIPT, word_delay_ms=args.word_delay_ms)
    with local_mongodb.mongodb_uri(args) as uri:
        print(f"Session {args.session_id!r} in database {args.database!r}")
        with create_mongodb_session_manager(
            args.session_id, connection_string=uri, database_name=args.database
        ) as manager:
            agent = Agent(model=model, session_manager=manager, callback_handler=None)
            if agent.messages:
                print(f"(this session already holds {len(agent.messages)} messages from earlier runs)")
            for turn, prompt in enumerate(PROMPTS, start=1):
                await stream_turn(agent, manager, turn, prompt)

            print("\nWhat MongoDB stored for this agent (message_id, role, text, event_loop_metrics):")
            for stored in stored_messages(manager, agent.agent_id)[-2 * len(PROMPTS) :]:
                print(f"  #{stored['message_id']} {stored['message']['role']:<9} | {text_of(stored['message'])[:70]}")
                if "event_loop_metrics" in stored:
                    print(f"      event_loop_metrics: {stored['event_loop_metrics']}")
            print()
            print_metrics_summary(manager.get_metrics_summary())


if __name__ == "__main__":
    with failures.in_one_line():
        asyncio.run(main())
