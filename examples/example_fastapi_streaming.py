"""FastAPI chat with streamed answers (server-sent events): the backend of the chat playground.

Shows the global-factory pattern of ``example_fastapi.py`` with a streaming endpoint. Every
request builds a new ``strands.Agent`` that resumes the session from MongoDB; the answer is sent
as it is generated, and the last event carries the turn's metrics.

    uv run python examples/example_fastapi_streaming.py          # http://127.0.0.1:8880/docs
    curl -N -X POST localhost:8880/sessions/demo/chat/stream -H 'X-User-Id: ana' \\
         -H 'content-type: application/json' -d '{"message": "Hello there"}'

The caller names their user in the ``X-User-Id`` header (a stand-in for real authentication, see
``chat_api.current_user``); every session belongs to one user, and another user's session is 404.

The stream (``text/event-stream``)::

    event: start
    data: {"session_id": "demo", "restored_messages": 2, "user_message_id": 2}

    event: chunk
    data: {"text": "You "}                 # ... one event per text chunk

    event: tool_use                        # when the model calls a tool, and then its result:
    data: {"type": "tool_use", "tool_use_id": "t1", "name": "count_characters", "input": {"text": "hi"}}

    event: tool_result
    data: {"type": "tool_result", "tool_use_id": "t1", "status": "success", "text": "2 characters, ..."}

    event: done
    data: {"metrics": {"usage": {"inputTokens": 30, ...}, "model_latency_ms": 100, "duration_ms": 1830.2, ...}}

A failure after the stream started arrives as ``event: error`` with ``{"status", "detail"}`` (the
user message is stored by then; the answer is not); failures before it (no user, invalid session
id, another user's session, MongoDB unreachable) are plain HTTP errors and store nothing.

Keeping the event loop free. Strands calls the session manager from its hooks, inline, and pymongo
is synchronous: under ``agent.stream_async(...)`` in an ``async`` endpoint every message write would
run on the server's event-loop thread and stall every other request for a round trip. So the whole
turn runs in a worker thread: that thread creates the manager (one read) and the Agent, then drives
``agent.stream_async(...)`` on an event loop of its own, and hands each text chunk to the server's
loop through ``loop.call_soon_threadsafe`` into an ``asyncio.Queue`` that the SSE response drains.
The server's loop only moves bytes. If the client goes away mid-answer, the turn still completes
and is stored. A session answers one turn at a time: a message sent to it while the previous
answer is still being generated gets 409 before anything is stored (across processes the library's
own ``SessionConflictError`` guards the same rule).

Other endpoints (shared with ``example_fastapi.py``, all sync ``def``, run in FastAPI's threadpool):
``GET /sessions?limit=&cursor=``, ``PATCH|DELETE /sessions/{id}``, ``POST /sessions/{id}/fork``,
``GET /sessions/{id}/export``, ``GET /sessions/{id}/history``, ``GET|PUT|DELETE
/sessions/{id}/metadata`` (PUT partial, DELETE ``?keys=a&keys=b``), ``GET /sessions/{id}/stats``,
``GET /stats``, ``GET /health``.

CORS allows the playground's origins (``http://localhost:8881``, ``http://127.0.0.1:8881``) by
default; set others with ``--allowed-origins`` or ``$CHAT_ALLOWED_ORIGINS`` (comma separated).
``--expire-after SECONDS`` makes sessions expire that long after their last write.
``--connection-mode client-per-request`` is the per-request ``MongoClient`` anti-pattern, for comparison.
Offline by default: ScriptedModel (words arrive ``--word-delay-ms`` apart, so streaming is visible)
and an embedded SecantusDB under ``.data/example_fastapi_streaming/``.
"""

import argparse
import asyncio
import json
import logging
import os
import time
from collections.abc import AsyncIterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import ExitStack
from typing import Any

import uvicorn
from fastapi import FastAPI
from fastapi.middleware.cors import CORSMiddleware
from fastapi.responses import StreamingResponse
from starlette.concurrency import run_in_threadpool
from strands import Agent

from mongodb_session_manager.validation import validate_session_id

import failures
from chat_agent import scripted_chat_responder
from chat_api import (
    USER_HEADER,
    ChatRequest,
    ConnectionMode,
    ModelFactory,
    Sessions,
    User,
    add_server_arguments,
    connection_mode,
    error_status,
    install_error_handlers,
    session_router,
)
from chat_messages import next_message_id, tool_events, turn_metrics
from local_mongodb import add_mongodb_arguments, mongodb_uri
from model_provider import add_model_arguments, build_model

PLAYGROUND_ORIGINS = ("http://localhost:8881", "http://127.0.0.1:8881")
MAX_CONCURRENT_TURNS = 64

Event = tuple[str, dict[str, Any]]


def sse(event: str, data: dict[str, Any]) -> str:
    """One server-sent event."""
    return f"event: {event}\ndata: {json.dumps(data)}\n\n"


def create_app(
    connection_string: str,
    database_name: str,
    model_factory: ModelFactory,
    connection_mode: ConnectionMode = "factory",
    collection_name: str = "sessions",
    allowed_origins: Sequence[str] = PLAYGROUND_ORIGINS,
    max_concurrent_turns: int = MAX_CONCURRENT_TURNS,
    expire_after: float | None = None,
) -> FastAPI:
    """The streaming chat app; ``allowed_origins`` are the browser origins CORS lets in.

    Turns run in a pool of ``max_concurrent_turns`` threads of their own (a turn holds its thread
    for the whole answer, so asyncio's small default pool would queue turns behind each other).
    ``expire_after``: seconds after its last write that a session expires (None: never).
    """
    sessions = Sessions(connection_string, database_name, collection_name, connection_mode, expire_after=expire_after)
    turn_threads = ThreadPoolExecutor(max_workers=max_concurrent_turns, thread_name_prefix="chat-turn")
    app = FastAPI(title="mongodb-session-manager streaming chat", lifespan=sessions.lifespan())
    app.add_middleware(
        CORSMiddleware,
        allow_origins=list(allowed_origins),
        allow_credentials=False,
        allow_methods=["GET", "POST", "PUT", "PATCH", "DELETE"],
        allow_headers=["Content-Type", USER_HEADER],
        expose_headers=["Content-Disposition"],
    )
    install_error_handlers(app)
    app.include_router(session_router(sessions))

    def start_turn(session_id: str, user: str) -> tuple[ExitStack, Agent]:
        """In a worker thread: claim the session, open a manager (reads or creates it), build an Agent resuming it.

        The returned stack releases the manager and the claim; :func:`run_turn` closes it when the turn ends.
        """
        turn = ExitStack()
        try:
            manager = turn.enter_context(sessions.turn(session_id, user))  # 409 if a turn is still running
            return turn, sessions.new_agent(manager, model_factory())
        except BaseException:
            turn.close()
            raise

    def run_turn(turn: ExitStack, agent: Agent, prompt: str, started: float, emit: Any) -> None:
        """In a worker thread: stream the answer on this thread's own event loop, emitting events."""
        first_chunk: float | None = None

        async def stream() -> None:
            nonlocal first_chunk
            async for event in agent.stream_async(prompt):
                if text := event.get("data"):
                    if first_chunk is None:
                        first_chunk = time.monotonic()
                    emit(("chunk", {"text": text}))
                elif message := event.get("message"):
                    for tool_event in tool_events(message):
                        emit(tool_event)

        try:
            asyncio.run(stream())
            emit(("done", {"metrics": turn_metrics(agent, started, first_chunk)}))
        except Exception as error:
            logging.getLogger(__name__).exception("a turn failed")
            status, detail = error_status(error)
            emit(("error", {"status": status, "detail": detail}))
        finally:
            turn.close()
            emit(None)

    @app.post("/sessions/{session_id}/chat/stream")
    async def chat_stream(session_id: str, request: ChatRequest, user: User) -> StreamingResponse:
        """One turn, streamed as server-sent events: ``start``, ``chunk``/``tool_use``/``tool_result``..., then
        ``done`` or ``error``."""
        started = time.monotonic()
        validate_session_id(session_id)
        turn, agent = await run_in_threadpool(start_turn, session_id, user)
        loop = asyncio.get_running_loop()
        queue: asyncio.Queue[Event | None] = asyncio.Queue()

        def emit(item: Event | None) -> None:
            loop.call_soon_threadsafe(queue.put_nowait, item)

        opening = {
            "session_id": session_id,
            "restored_messages": len(agent.messages),
            "user_message_id": next_message_id(agent),
        }
        worker = loop.run_in_executor(turn_threads, run_turn, turn, agent, request.message, started, emit)

        async def events() -> AsyncIterator[str]:
            yield sse("start", opening)
            while (item := await queue.get()) is not None:
                yield sse(*item)
            await worker

        return StreamingResponse(
            events(), media_type="text/event-stream", headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"}
        )

    return app


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_server_arguments(parser, default_port=8880)
    parser.add_argument(
        "--allowed-origins",
        default=os.environ.get("CHAT_ALLOWED_ORIGINS", ",".join(PLAYGROUND_ORIGINS)),
        help="comma-separated browser origins allowed by CORS (default: $CHAT_ALLOWED_ORIGINS or %(default)s)",
    )
    parser.add_argument(
        "--word-delay-ms", type=float, default=60, help="ScriptedModel's pause between words (default %(default)s)"
    )
    add_mongodb_arguments(parser, "example_fastapi_streaming")
    add_model_arguments(parser)
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO)

    origins = [origin.strip() for origin in args.allowed_origins.split(",") if origin.strip()]
    model = build_model(args.provider, fallback=scripted_chat_responder, word_delay_ms=args.word_delay_ms)
    with mongodb_uri(args) as uri:
        app = create_app(
            uri,
            args.database,
            lambda: model,
            connection_mode(args.connection_mode),
            allowed_origins=origins,
            expire_after=args.expire_after,
        )
        expiry = f"sessions expire {args.expire_after:g} s after their last write" if args.expire_after else "no expiry"
        print(f"Connection mode: {args.connection_mode}; {expiry}. CORS origins: {', '.join(origins)}")
        print(f"API docs: http://{args.host}:{args.port}/docs")
        uvicorn.run(app, host=args.host, port=args.port)


if __name__ == "__main__":
    with failures.in_one_line():
        main()
