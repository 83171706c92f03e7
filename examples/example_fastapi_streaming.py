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

``{"message": ..., "retry": true}`` answers the session's last message when its turn failed after
storing it (``start`` then comes at once), instead of storing it a second time.

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
import ipaddress
import json
import logging
import os
import time
from collections.abc import AsyncIterator, Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import ExitStack
from contextvars import ContextVar
from typing import Any
from urllib.parse import urlsplit

from fastapi import FastAPI
from fastapi.middleware.cors import CORSMiddleware
from fastapi.responses import JSONResponse, StreamingResponse
from starlette.concurrency import run_in_threadpool
from starlette.datastructures import Headers
from starlette.responses import Response
from starlette.types import ASGIApp, Receive, Scope, Send
from strands import Agent
from strands.hooks import HookOrder, MessageAddedEvent

import failures
from chat_api import (
    USER_HEADER,
    ChatRequest,
    ConnectionMode,
    ModelFactory,
    Sessions,
    User,
    error_status,
    new_app,
    serve,
    stored_session_id,
    turn_prompt,
)
from chat_messages import next_message_id, tool_events, turn_metrics

PLAYGROUND_PORT = 8881
PLAYGROUND_ORIGINS = ("http://localhost:8881", "http://127.0.0.1:8881")
MAX_CONCURRENT_TURNS = 64

logger = logging.getLogger(__name__)

Event = tuple[str, dict[str, Any]]
_request_host: ContextVar[str | None] = ContextVar("request_host", default=None)


def sse(event: str, data: dict[str, Any]) -> str:
    """One server-sent event."""
    return f"event: {event}\ndata: {json.dumps(data)}\n\n"


class PlaygroundCORS(CORSMiddleware):
    """CORS for the configured origins, plus the playground page served from the address this API is reached at.

    With ``playground_port``, a page at ``http://H:<playground_port>`` is admitted when ``H`` is the
    host the request itself was sent to (the API at ``H:<its port>``) and an IP address or
    ``localhost``. So the playground opened from a phone at whatever address the machine has on the
    network (``make playground HOST=0.0.0.0``) reaches its API. Host names are not admitted this way:
    a name whose DNS answer changes (DNS rebinding) could make another site's page look like this host.
    """

    def __init__(self, app: ASGIApp, /, playground_port: int | None = None, **options: Any) -> None:
        super().__init__(app, **options)
        self.playground_port = playground_port

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        token = _request_host.set(Headers(scope=scope).get("host") if scope["type"] == "http" else None)
        try:
            await super().__call__(scope, receive, send)
        finally:
            _request_host.reset(token)

    def is_allowed_origin(self, origin: str) -> bool:
        return super().is_allowed_origin(origin) or self.is_playground_on_this_host(origin)

    def is_playground_on_this_host(self, origin: str) -> bool:
        host = _request_host.get()
        if self.playground_port is None or host is None:
            return False
        page, api = urlsplit(origin), urlsplit(f"//{host}")
        try:
            same_port = page.port == self.playground_port
        except ValueError:
            return False
        same_host = page.hostname == api.hostname and literal(api.hostname)
        return page.scheme in ("http", "https") and same_port and same_host


def literal(hostname: str | None) -> bool:
    """Whether ``hostname`` is an IP address or ``localhost`` (names that no DNS answer can redirect)."""
    if hostname == "localhost":
        return True
    try:
        ipaddress.ip_address(hostname or "")
    except ValueError:
        return False
    return True


def announce_when_stored(agent: Agent, announce: Callable[[], None]) -> None:
    """Call ``announce`` once the first message of the turn (the user's) is stored.

    The session manager stores each message from its ``MessageAddedEvent`` callback; this callback
    runs after it (``HookOrder.SDK_LAST``), and not at all when storing failed (the error stops the
    event's callbacks).
    """
    announced = False

    def stored(event: MessageAddedEvent) -> None:
        nonlocal announced
        if not announced:
            announced = True
            announce()

    agent.add_hook(stored, MessageAddedEvent, order=HookOrder.SDK_LAST)


def create_app(
    connection_string: str,
    database_name: str,
    model_factory: ModelFactory,
    connection_mode: ConnectionMode = "factory",
    collection_name: str = "sessions",
    allowed_origins: Sequence[str] = PLAYGROUND_ORIGINS,
    max_concurrent_turns: int = MAX_CONCURRENT_TURNS,
    expire_after: float | None = None,
    playground_port: int | None = None,
) -> FastAPI:
    """The streaming chat app; ``allowed_origins`` are the browser origins CORS lets in.

    ``playground_port``: also let in the playground page on that port of the host the API is reached
    at (see :class:`PlaygroundCORS`). Turns run in a pool of ``max_concurrent_turns`` threads of
    their own (a turn holds its thread for the whole answer, so asyncio's small default pool would
    queue turns behind each other). ``expire_after``: seconds after its last write that a session
    expires (None: never).
    """
    sessions = Sessions(connection_string, database_name, collection_name, connection_mode, expire_after=expire_after)
    turn_threads = ThreadPoolExecutor(max_workers=max_concurrent_turns, thread_name_prefix="chat-turn")
    app = new_app(sessions, "mongodb-session-manager streaming chat")
    app.add_middleware(
        PlaygroundCORS,
        playground_port=playground_port,
        allow_origins=list(allowed_origins),
        allow_credentials=False,
        allow_methods=["GET", "POST", "PUT", "PATCH", "DELETE"],
        allow_headers=["Content-Type", USER_HEADER],
        expose_headers=["Content-Disposition"],
    )

    def start_turn(session_id: str, user: str, request: ChatRequest) -> tuple[ExitStack, Agent, str | None]:
        """In a worker thread: claim the session, open a manager (reads or creates it), build an Agent resuming it.

        Also returns the prompt (None: answer the stored message, a retry). The returned stack releases
        the manager and the claim; :func:`run_turn` closes it when the turn ends.
        """
        turn = ExitStack()
        try:
            manager = turn.enter_context(
                sessions.turn(session_id, user, create=request.create and not request.retry)
            )  # 409: one running
            agent = sessions.new_agent(manager, model_factory())
            return turn, agent, turn_prompt(agent, request)
        except BaseException:
            turn.close()
            raise

    def run_turn(turn: ExitStack, agent: Agent, prompt: str | None, started: float, user: str, emit: Any) -> None:
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
            status, detail = error_status(error, user)
            if status >= 500:
                logger.error("a turn failed", exc_info=error)
            else:
                logger.info("a turn was refused (%d): %s", status, detail)
            emit(("error", {"status": status, "detail": detail}))
        finally:
            turn.close()
            emit(None)

    @app.post("/sessions/{session_id}/chat/stream", response_model=None)
    async def chat_stream(session_id: str, request: ChatRequest, user: User) -> Response:
        """One turn, streamed as server-sent events: ``start`` (once the user message is stored),
        ``chunk``/``tool_use``/``tool_result``..., then ``done`` or ``error``."""
        started = time.monotonic()
        stored_session_id(user, session_id)  # 422 for an invalid id, before any work
        turn, agent, prompt = await run_in_threadpool(start_turn, session_id, user, request)
        loop = asyncio.get_running_loop()
        queue: asyncio.Queue[Event | None] = asyncio.Queue()

        def emit(item: Event | None) -> None:
            loop.call_soon_threadsafe(queue.put_nowait, item)

        opening = {
            "session_id": session_id,
            "restored_messages": len(agent.messages),
            "user_message_id": next_message_id(agent) - (1 if prompt is None else 0),
        }
        if prompt is None:  # a retry: the user message is stored already
            emit(("start", opening))
        else:
            announce_when_stored(agent, lambda: emit(("start", opening)))
        worker = loop.run_in_executor(turn_threads, run_turn, turn, agent, prompt, started, user, emit)

        first = await queue.get()
        if first is None or first[0] != "start":  # the user message was not stored: nothing was
            await worker
            status, detail = (first[1]["status"], first[1]["detail"]) if first else (500, "internal error")
            return JSONResponse({"detail": detail}, status_code=status)

        async def events() -> AsyncIterator[str]:
            yield sse(*first)
            while (item := await queue.get()) is not None:
                yield sse(*item)
            await worker

        return StreamingResponse(
            events(), media_type="text/event-stream", headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"}
        )

    return app


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """``--allowed-origins`` and ``--playground-port``: who CORS lets in."""
    parser.add_argument(
        "--allowed-origins",
        default=os.environ.get("CHAT_ALLOWED_ORIGINS", ",".join(PLAYGROUND_ORIGINS)),
        help="comma-separated browser origins allowed by CORS (default: $CHAT_ALLOWED_ORIGINS or %(default)s)",
    )
    parser.add_argument(
        "--playground-port",
        type=int,
        default=int(os.environ.get("PLAYGROUND_PORT", PLAYGROUND_PORT)),
        help="also allow the playground page on this port of the address the API is reached at, "
        "when that is an IP address or localhost (default: $PLAYGROUND_PORT or %(default)s; 0: no)",
    )


def build(args: argparse.Namespace, uri: str, model_factory: ModelFactory) -> FastAPI:
    origins = [origin.strip() for origin in args.allowed_origins.split(",") if origin.strip()]
    page_port = args.playground_port or None
    same_host = f"; and the page on port {page_port} of the address this API is reached at" if page_port else ""
    print(f"CORS origins: {', '.join(origins)}{same_host}")
    return create_app(
        uri,
        args.database,
        model_factory,
        args.connection_mode,
        allowed_origins=origins,
        expire_after=args.expire_after,
        playground_port=page_port,
    )


if __name__ == "__main__":
    with failures.in_one_line():
        serve(__doc__ or "", "example_fastapi_streaming", 8880, build, add_arguments, word_delay_ms=60)
