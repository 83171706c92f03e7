"""FastAPI chat with streamed answers (server-sent events): the backend of the chat playground.

Shows the global-factory pattern of ``example_fastapi.py`` with a streaming endpoint. Every
request builds a new ``strands.Agent`` that resumes the session from MongoDB; the answer is sent
as it is generated, and the last event carries the turn's metrics.

    uv run python examples/example_fastapi_streaming.py          # http://127.0.0.1:8880/docs
    curl -N -X POST localhost:8880/sessions/demo/chat/stream \\
         -H 'content-type: application/json' -d '{"message": "Hello there"}'

The stream (``text/event-stream``)::

    event: start
    data: {"session_id": "demo", "restored_messages": 2}

    event: chunk
    data: {"text": "You "}                 # ... one event per text chunk

    event: done
    data: {"metrics": {"usage": {"inputTokens": 30, ...}, "model_latency_ms": 100, "duration_ms": 1830.2, ...}}

A failure after the stream started arrives as ``event: error`` with ``{"status", "detail"}``;
failures before it (invalid session id, MongoDB unreachable) are plain HTTP errors.

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
``GET /sessions/{id}/history``, ``GET|PUT|DELETE /sessions/{id}/metadata`` (PUT partial,
DELETE ``?keys=a&keys=b``), ``GET /sessions/{id}/stats``, ``GET /stats``, ``GET /health``.

CORS allows the playground's origins (``http://localhost:8881``, ``http://127.0.0.1:8881``) by
default; set others with ``--allowed-origins`` or ``$CHAT_ALLOWED_ORIGINS`` (comma separated).
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
from typing import Any

import uvicorn
from fastapi import FastAPI
from fastapi.middleware.cors import CORSMiddleware
from fastapi.responses import StreamingResponse
from starlette.concurrency import run_in_threadpool
from strands import Agent

from mongodb_session_manager import MongoDBSessionManager
from mongodb_session_manager.validation import validate_session_id

import failures
from chat_api import (
    ChatRequest,
    ConnectionMode,
    ModelFactory,
    Sessions,
    add_server_arguments,
    connection_mode,
    error_status,
    install_error_handlers,
    scripted_chat_responder,
    session_router,
    turn_metrics,
)
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
) -> FastAPI:
    """The streaming chat app; ``allowed_origins`` are the browser origins CORS lets in.

    Turns run in a pool of ``max_concurrent_turns`` threads of their own (a turn holds its thread
    for the whole answer, so asyncio's small default pool would queue turns behind each other).
    """
    sessions = Sessions(connection_string, database_name, collection_name, connection_mode)
    turn_threads = ThreadPoolExecutor(max_workers=max_concurrent_turns, thread_name_prefix="chat-turn")
    app = FastAPI(title="mongodb-session-manager streaming chat", lifespan=sessions.lifespan())
    app.add_middleware(
        CORSMiddleware,
        allow_origins=list(allowed_origins),
        allow_credentials=False,
        allow_methods=["GET", "POST", "PUT", "DELETE"],
        allow_headers=["Content-Type"],
    )
    install_error_handlers(app)
    app.include_router(session_router(sessions))

    def start_turn(session_id: str) -> tuple[MongoDBSessionManager, Agent]:
        """In a worker thread: claim the session, open a manager (reads or creates it), build an Agent resuming it."""
        sessions.begin_turn(session_id)  # 409 if a turn is still running in this session
        try:
            manager = sessions.create_manager(session_id)
        except BaseException:
            sessions.end_turn(session_id)
            raise
        try:
            return manager, sessions.new_agent(manager, model_factory())
        except BaseException:
            manager.close()
            sessions.end_turn(session_id)
            raise

    def run_turn(manager: MongoDBSessionManager, agent: Agent, prompt: str, started: float, emit: Any) -> None:
        """In a worker thread: stream the answer on this thread's own event loop, emitting events."""
        first_chunk: float | None = None

        async def stream() -> None:
            nonlocal first_chunk
            async for event in agent.stream_async(prompt):
                if text := event.get("data"):
                    if first_chunk is None:
                        first_chunk = time.monotonic()
                    emit(("chunk", {"text": text}))

        try:
            asyncio.run(stream())
            emit(("done", {"metrics": turn_metrics(agent, started, first_chunk)}))
        except Exception as error:
            logging.getLogger(__name__).exception("turn failed in session %r", manager.session_id)
            status, detail = error_status(error)
            emit(("error", {"status": status, "detail": detail}))
        finally:
            manager.close()
            sessions.end_turn(manager.session_id)
            emit(None)

    @app.post("/sessions/{session_id}/chat/stream")
    async def chat_stream(session_id: str, request: ChatRequest) -> StreamingResponse:
        """One turn, streamed as server-sent events: ``start``, ``chunk``..., then ``done`` or ``error``."""
        started = time.monotonic()
        validate_session_id(session_id)
        manager, agent = await run_in_threadpool(start_turn, session_id)
        loop = asyncio.get_running_loop()
        queue: asyncio.Queue[Event | None] = asyncio.Queue()

        def emit(item: Event | None) -> None:
            loop.call_soon_threadsafe(queue.put_nowait, item)

        restored = len(agent.messages)
        worker = loop.run_in_executor(turn_threads, run_turn, manager, agent, request.message, started, emit)

        async def events() -> AsyncIterator[str]:
            yield sse("start", {"session_id": session_id, "restored_messages": restored})
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
            uri, args.database, lambda: model, connection_mode(args.connection_mode), allowed_origins=origins
        )
        print(f"Connection mode: {args.connection_mode}. CORS origins: {', '.join(origins)}")
        print(f"API docs: http://{args.host}:{args.port}/docs")
        uvicorn.run(app, host=args.host, port=args.port)


if __name__ == "__main__":
    with failures.in_one_line():
        main()
