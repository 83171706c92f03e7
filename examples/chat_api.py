"""What the two FastAPI examples share: connection handling, error mapping and the session endpoints.

Not an example on its own: ``example_fastapi.py`` (plain JSON chat) and
``example_fastapi_streaming.py`` (server-sent events, used by the playground) build their apps from it.

* :class:`Sessions` hands out session managers and repositories in one of two connection modes:
  ``"factory"`` (the recommended one: ``initialize_global_factory`` at start-up, one shared
  connection pool, ``get_global_factory().create_session_manager(session_id)`` per request) or
  ``"client-per-request"`` (a new ``MongoClient`` for every request, closed afterwards: the
  anti-pattern, kept for comparison in benchmarks).
* :func:`install_error_handlers` maps the library's typed errors to HTTP status codes.
* :func:`session_router` serves a session's history, metadata and statistics, plus ``/health``
  and ``/stats`` (connection-pool figures).

Everything here is synchronous (pymongo is): the endpoints are plain ``def`` functions, which
FastAPI runs in its threadpool, so no MongoDB round trip ever blocks the event loop.
"""

from __future__ import annotations

import argparse
import itertools
import os
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import AbstractAsyncContextManager, asynccontextmanager, contextmanager
from datetime import datetime
from typing import Annotated, Any, Literal

from fastapi import APIRouter, FastAPI, Query, Request
from fastapi.responses import JSONResponse
from pydantic import BaseModel, Field
from pymongo.errors import ConnectionFailure, PyMongoError
from strands import Agent
from strands.models.model import Model
from strands.types.content import Messages

from mongodb_session_manager import (
    MongoDBSessionManager,
    MongoDBSessionRepository,
    close_global_factory,
    create_mongodb_session_manager,
    get_global_factory,
    initialize_global_factory,
)
from mongodb_session_manager.errors import (
    FactoryNotInitializedError,
    InvalidIdentifierError,
    SessionConflictError,
    SessionNotFoundError,
    SessionTooLargeError,
    StaleAgentError,
)
from mongodb_session_manager.validation import validate_field_name, validate_session_id

from scripted_model import Turn, last_user_text

ConnectionMode = Literal["factory", "client-per-request"]
CONNECTION_MODES: tuple[ConnectionMode, ...] = ("factory", "client-per-request")
ModelFactory = Callable[[], Model]

DEFAULT_AGENT_ID = "assistant"
SYSTEM_PROMPT = "You are a helpful, concise assistant."


# -- connections ---------------------------------------------------------------------------------


class Sessions:
    """Session managers and repositories for the endpoints, in the chosen connection mode."""

    def __init__(
        self,
        connection_string: str,
        database_name: str,
        collection_name: str = "sessions",
        connection_mode: ConnectionMode = "factory",
        agent_id: str = DEFAULT_AGENT_ID,
    ) -> None:
        if connection_mode not in CONNECTION_MODES:
            raise ValueError(f"connection_mode must be one of {CONNECTION_MODES}, not {connection_mode!r}")
        self.connection_string = connection_string
        self.database_name = database_name
        self.collection_name = collection_name
        self.connection_mode = connection_mode
        self.agent_id = validate_field_name(agent_id, "agent_id")
        self.started = time.monotonic()
        self._requests = itertools.count(1)
        self.requests = 0
        self._turns_lock = threading.Lock()
        self._running_turns: set[str] = set()

    def open(self) -> None:
        """At start-up: the global factory (one pool for the process) in factory mode."""
        if self.connection_mode == "factory":
            initialize_global_factory(
                connection_string=self.connection_string,
                database_name=self.database_name,
                collection_name=self.collection_name,
                maxPoolSize=50,
            )

    def close(self) -> None:
        """At shutdown."""
        if self.connection_mode == "factory":
            close_global_factory()

    def lifespan(self) -> Callable[[FastAPI], AbstractAsyncContextManager[None]]:
        """A FastAPI ``lifespan`` handler opening and closing the connections."""

        @asynccontextmanager
        async def lifespan(app: FastAPI) -> Any:
            self.open()
            try:
                yield
            finally:
                self.close()

        return lifespan

    def create_manager(self, session_id: str) -> MongoDBSessionManager:
        """A manager for ``session_id`` (created in MongoDB if new); the caller closes it."""
        validate_session_id(session_id)
        self.requests = next(self._requests)
        if self.connection_mode == "factory":
            return get_global_factory().create_session_manager(session_id)
        return create_mongodb_session_manager(
            session_id,
            connection_string=self.connection_string,
            database_name=self.database_name,
            collection_name=self.collection_name,
        )

    @contextmanager
    def manager(self, session_id: str) -> Iterator[MongoDBSessionManager]:
        """A manager for ``session_id`` (created in MongoDB if new), closed after the block."""
        manager = self.create_manager(session_id)
        try:
            yield manager
        finally:
            manager.close()  # closes a client-per-request client; a no-op on the factory's shared pool

    def begin_turn(self, session_id: str) -> None:
        """Claim the session for one turn, or raise :class:`SessionConflictError` (409) if one is running.

        A conversation has one writer at a time. The library detects overlapping writers across
        processes (the later message write fails with ``SessionConflictError``); within this process
        the overlap is refused up front, before anything is stored, instead of half-way through a turn.
        """
        validate_session_id(session_id)
        with self._turns_lock:
            if session_id in self._running_turns:
                raise SessionConflictError(f"a turn is already running in session {session_id!r}")
            self._running_turns.add(session_id)

    def end_turn(self, session_id: str) -> None:
        with self._turns_lock:
            self._running_turns.discard(session_id)

    @contextmanager
    def turn(self, session_id: str) -> Iterator[MongoDBSessionManager]:
        """One turn: the session claimed (see :meth:`begin_turn`) and a manager for it, both released after."""
        self.begin_turn(session_id)
        try:
            with self.manager(session_id) as manager:
                yield manager
        finally:
            self.end_turn(session_id)

    @contextmanager
    def repository(self) -> Iterator[MongoDBSessionRepository]:
        """A repository for read and metadata endpoints: they must not create a session."""
        self.requests = next(self._requests)
        if self.connection_mode == "factory":
            factory = get_global_factory()
            repository = MongoDBSessionRepository(
                client=factory.client, database_name=factory.database_name, collection_name=factory.collection_name
            )
        else:
            repository = MongoDBSessionRepository(
                connection_string=self.connection_string,
                database_name=self.database_name,
                collection_name=self.collection_name,
            )
        try:
            yield repository
        finally:
            repository.close()

    def new_agent(
        self, manager: MongoDBSessionManager, model: Model, callback_handler: Callable[..., Any] | None = None
    ) -> Agent:
        """A new Agent for this request; the manager restores the session's conversation into it."""
        return Agent(
            model=model,
            agent_id=self.agent_id,
            session_manager=manager,
            system_prompt=SYSTEM_PROMPT,
            callback_handler=callback_handler,
        )


# -- request and response bodies -------------------------------------------------------------------


class ChatRequest(BaseModel):
    message: str = Field(min_length=1, max_length=20_000, description="the user's message")


class MetadataUpdate(BaseModel):
    metadata: dict[str, Any] = Field(description="fields to set; other stored fields are kept")


# -- error mapping --------------------------------------------------------------------------------


def error_status(error: BaseException) -> tuple[int, str]:
    """The HTTP status and detail for an error raised while serving a request."""
    if isinstance(error, InvalidIdentifierError):
        return 422, str(error)
    if isinstance(error, SessionNotFoundError):
        return 404, str(error)
    if isinstance(error, SessionConflictError | StaleAgentError):
        return 409, f"{error} (another turn of this session was running; nothing of this one was stored; retry)"
    if isinstance(error, SessionTooLargeError):
        return 413, str(error)
    if isinstance(error, FactoryNotInitializedError | ConnectionFailure):
        return 503, f"MongoDB unavailable: {error}"
    if isinstance(error, PyMongoError):
        return 502, f"MongoDB error: {error}"
    return 500, "internal error"


def install_error_handlers(app: FastAPI) -> None:
    """Answer the library's and pymongo's errors with a status code instead of a 500."""

    def handle(request: Request, error: Exception) -> JSONResponse:
        status, detail = error_status(error)
        return JSONResponse({"detail": detail}, status_code=status)

    for error_type in (
        InvalidIdentifierError,
        SessionNotFoundError,
        SessionConflictError,
        StaleAgentError,
        SessionTooLargeError,
        FactoryNotInitializedError,
        PyMongoError,
    ):
        app.add_exception_handler(error_type, handle)


# -- turn metrics and history ---------------------------------------------------------------------


def turn_metrics(agent: Agent, started: float, first_chunk: float | None = None) -> dict[str, Any]:
    """This turn's model usage and latency.

    The Agent is created for this request, so its accumulated event-loop metrics are exactly this
    turn's (all model calls of it, tool cycles included). ``duration_ms`` is the server's wall time.
    """
    loop_metrics = agent.event_loop_metrics
    usage = loop_metrics.accumulated_usage
    figures: dict[str, Any] = {
        "usage": {name: usage.get(name, 0) for name in ("inputTokens", "outputTokens", "totalTokens")},
        "model_latency_ms": loop_metrics.accumulated_metrics.get("latencyMs", 0),
        "cycles": loop_metrics.cycle_count,
        "duration_ms": round((time.monotonic() - started) * 1000, 1),
        "messages_in_session": len(agent.messages),
    }
    if first_chunk is not None:
        figures["time_to_first_chunk_ms"] = round((first_chunk - started) * 1000, 1)
    return figures


def message_text(message: dict[str, Any]) -> str:
    """The text of a stored message, with tool calls and results summarised."""
    parts = []
    for block in message.get("content", []):
        if "text" in block:
            parts.append(block["text"])
        elif "toolUse" in block:
            parts.append(f"[calls {block['toolUse'].get('name')}]")
        elif "toolResult" in block:
            parts.append("[tool result]")
    return "\n".join(parts)


def iso(value: Any) -> str | None:
    return value.isoformat() if isinstance(value, datetime) else None


def read_history(repository: MongoDBSessionRepository, session_id: str, agent_id: str) -> dict[str, Any]:
    """Every stored message of the agent, oldest first, with the metrics stored on assistant messages."""
    validate_session_id(session_id)
    document = repository.collection.find_one(
        {"_id": session_id}, {"created_at": 1, "updated_at": 1, f"agents.{agent_id}.messages": 1}
    )
    if document is None:
        raise SessionNotFoundError(f"session {session_id!r} not found")
    stored = (document.get("agents") or {}).get(agent_id, {}).get("messages", [])
    messages = []
    for entry in stored:
        shown = entry.get("redact_message") or entry["message"]
        item: dict[str, Any] = {
            "message_id": entry["message_id"],
            "role": shown["role"],
            "text": message_text(shown),
            "created_at": iso(entry.get("created_at")),
        }
        if "event_loop_metrics" in entry:
            recorded = entry["event_loop_metrics"]
            item["metrics"] = {"usage": recorded.get("usage", {}), "latency_ms": recorded.get("latencyMs")}
        messages.append(item)
    return {
        "session_id": session_id,
        "agent_id": agent_id,
        "created_at": iso(document.get("created_at")),
        "updated_at": iso(document.get("updated_at")),
        "messages": messages,
    }


def read_stats(repository: MongoDBSessionRepository, session_id: str) -> dict[str, Any]:
    """Message counts, tokens and latency (summed in MongoDB) and the session's timestamps."""
    summary = repository.get_metrics_summary(session_id)  # raises SessionNotFoundError
    document = repository.collection.find_one({"_id": session_id}, {"created_at": 1, "updated_at": 1}) or {}
    return {
        "session_id": session_id,
        "created_at": iso(document.get("created_at")),
        "updated_at": iso(document.get("updated_at")),
        "message_count": summary["totals"]["messages"],
        "model_calls": summary["totals"]["model_calls"],
        "tokens": summary["totals"]["tokens"],
        "latency_ms": summary["totals"]["latency_ms"],
        "agents": summary["agents"],
    }


# -- the shared endpoints -------------------------------------------------------------------------


def session_router(sessions: Sessions) -> APIRouter:
    """History, metadata and statistics of a session, plus health and connection statistics."""
    router = APIRouter()

    @router.get("/health")
    def health() -> dict[str, Any]:
        return {"status": "ok", "connection_mode": sessions.connection_mode}

    @router.get("/stats")
    def server_stats() -> dict[str, Any]:
        """Connection figures: the shared pool's in factory mode."""
        stats: dict[str, Any] = {
            "connection_mode": sessions.connection_mode,
            "requests": sessions.requests,
            "uptime_s": round(time.monotonic() - sessions.started, 1),
        }
        if sessions.connection_mode == "factory":
            stats["factory"] = get_global_factory().get_connection_stats()
        return stats

    @router.get("/sessions/{session_id}/history")
    def history(session_id: str) -> dict[str, Any]:
        with sessions.repository() as repository:
            return read_history(repository, session_id, sessions.agent_id)

    @router.get("/sessions/{session_id}/metadata")
    def get_metadata(session_id: str) -> dict[str, Any]:
        with sessions.repository() as repository:
            return {"session_id": session_id, "metadata": repository.get_metadata(session_id)}

    @router.put("/sessions/{session_id}/metadata")
    def update_metadata(session_id: str, update: MetadataUpdate) -> dict[str, Any]:
        """Partial update: only the given fields change."""
        with sessions.repository() as repository:
            repository.update_metadata(session_id, update.metadata)
            return {"session_id": session_id, "metadata": repository.get_metadata(session_id)}

    @router.delete("/sessions/{session_id}/metadata")
    def delete_metadata(
        session_id: str, keys: Annotated[list[str], Query(min_length=1, description="fields to remove")]
    ) -> dict[str, Any]:
        with sessions.repository() as repository:
            repository.delete_metadata(session_id, keys)
            return {"session_id": session_id, "metadata": repository.get_metadata(session_id)}

    @router.get("/sessions/{session_id}/stats")
    def session_stats(session_id: str) -> dict[str, Any]:
        with sessions.repository() as repository:
            return read_stats(repository, session_id)

    return router


# -- the scripted model's answers and command-line options ----------------------------------------


def scripted_chat_responder(messages: Messages) -> Turn:
    """What ScriptedModel answers in the chat examples: the prompt back, and how much history it was sent.

    The count shows that the conversation was restored from MongoDB: each request builds a new Agent.
    """
    earlier = len(messages) - 1
    return (
        f'You said: "{last_user_text(messages)}". This answer is scripted (ScriptedModel, not an LLM; '
        f"see --provider). With it the model received {earlier} earlier message{'s' if earlier != 1 else ''} "
        "of this session, restored from MongoDB."
    )


def add_server_arguments(parser: argparse.ArgumentParser, default_port: int) -> None:
    """``--host``, ``--port`` and ``--connection-mode``."""
    group = parser.add_argument_group("server")
    group.add_argument("--host", default=os.environ.get("HOST", "127.0.0.1"), help="address to listen on")
    group.add_argument(
        "--port", type=int, default=int(os.environ.get("PORT", default_port)), help="port (default %(default)s)"
    )
    group.add_argument(
        "--connection-mode",
        choices=CONNECTION_MODES,
        default=os.environ.get("CONNECTION_MODE", "factory"),
        help="factory: one shared pool (default); client-per-request: a new MongoClient per request, for comparison",
    )


def connection_mode(value: str) -> ConnectionMode:
    if value not in CONNECTION_MODES:
        raise ValueError(f"connection mode must be one of {CONNECTION_MODES}, not {value!r}")
    return value
