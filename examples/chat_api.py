"""What the two FastAPI examples share: the caller's identity, connections, error mapping and the session endpoints.

Not an example on its own: ``example_fastapi.py`` (plain JSON chat) and
``example_fastapi_streaming.py`` (server-sent events, used by the playground) build their apps from it.

* :func:`current_user` says who is calling. Here that is the ``X-User-Id`` request header: a
  stand-in for real authentication, and the one function to replace with yours. Every session
  endpoint works on the caller's sessions only: another user's session id answers 404, exactly
  like an id that does not exist, so a caller cannot even learn that it exists.
* :class:`Sessions` hands out session managers and repositories scoped to that user, in one of two
  connection modes: ``"factory"`` (the recommended one: ``initialize_global_factory`` at start-up,
  one shared connection pool, ``create_session_manager(session_id, user_id=...)`` per request) or
  ``"client-per-request"`` (a new ``MongoClient`` opened for every request and closed after it:
  the anti-pattern, kept for comparison in benchmarks).
* :func:`install_error_handlers` maps the library's typed errors to HTTP status codes, with short
  messages: 401 without a user, 422 for invalid input, 404 for a session the caller cannot see,
  409 for a conflicting turn or an id taken, 413 for a session too large, 503/502 when MongoDB fails.
* :func:`session_router` serves the caller's sessions: the list (newest first, paged by cursor),
  title, deletion, fork, JSON export, history, metadata and statistics; plus ``/health`` and
  ``/stats`` (connection figures).

Everything here is synchronous (pymongo is): the endpoints are plain ``def`` functions, which
FastAPI runs in its threadpool, so no MongoDB round trip ever blocks the event loop.
"""

from __future__ import annotations

import argparse
import itertools
import logging
import math
import os
import re
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import AbstractAsyncContextManager, asynccontextmanager, contextmanager
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends, FastAPI, Header, HTTPException, Query, Request, Response
from fastapi.encoders import jsonable_encoder
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import BaseModel, Field
from pymongo import MongoClient
from pymongo.errors import ConnectionFailure, PyMongoError
from strands import Agent
from strands.models.model import Model
from strands.types.exceptions import EventLoopException

from mongodb_session_manager import (
    MongoDBSessionManager,
    MongoDBSessionRepository,
    SessionSummary,
    close_global_factory,
    create_mongodb_session_manager,
    get_global_factory,
    initialize_global_factory,
)
from mongodb_session_manager.errors import (
    FactoryNotInitializedError,
    InvalidArgumentError,
    SessionConflictError,
    SessionExistsError,
    SessionNotFoundError,
    SessionTooLargeError,
    StaleAgentError,
)
from mongodb_session_manager.validation import validate_field_name, validate_owner, validate_session_id

from chat_agent import SYSTEM_PROMPT, TOOLS
from chat_messages import iso, read_history, stored_fields

ConnectionMode = Literal["factory", "client-per-request"]
CONNECTION_MODES: tuple[ConnectionMode, ...] = ("factory", "client-per-request")
ModelFactory = Callable[[], Model]

logger = logging.getLogger(__name__)

DEFAULT_AGENT_ID = "assistant"
USER_HEADER = "X-User-Id"
MAX_PAGE_SIZE = 100
MAX_DETAIL_CHARACTERS = 200


# -- who is calling --------------------------------------------------------------------------------


def current_user(x_user_id: Annotated[str | None, Header(description="who is calling (a stand-in)")] = None) -> str:
    """The caller's user id: THE place where real authentication plugs in.

    This stand-in believes the ``X-User-Id`` header, so any caller can claim any user: enough to
    show that every user sees only their own sessions, never enough for production. Replace the
    body with your authentication (verify a session cookie, or an OAuth/OIDC bearer token with
    ``fastapi.security.HTTPBearer`` and your identity provider) and return the verified user id;
    nothing else changes. A missing header is 401; an id that is not a safe identifier, 422.
    """
    if x_user_id is None:
        raise HTTPException(
            status_code=401,
            detail=f"missing {USER_HEADER} header: say which user is calling (a stand-in for real authentication)",
            headers={"WWW-Authenticate": USER_HEADER},
        )
    user_id = validate_owner(x_user_id, "user_id")
    assert user_id is not None
    return user_id


User = Annotated[str, Depends(current_user)]


# -- connections ---------------------------------------------------------------------------------


class Sessions:
    """Session managers and repositories for the endpoints, scoped to one user, in the chosen connection mode.

    ``expire_after`` (seconds, or None) is given to every session created: MongoDB's TTL index
    removes a session that long after its last write.
    """

    def __init__(
        self,
        connection_string: str,
        database_name: str,
        collection_name: str = "sessions",
        connection_mode: ConnectionMode = "factory",
        agent_id: str = DEFAULT_AGENT_ID,
        expire_after: float | None = None,
    ) -> None:
        if connection_mode not in CONNECTION_MODES:
            raise ValueError(f"connection_mode must be one of {CONNECTION_MODES}, not {connection_mode!r}")
        self.connection_string = connection_string
        self.database_name = database_name
        self.collection_name = collection_name
        self.connection_mode = connection_mode
        self.agent_id = validate_field_name(agent_id, "agent_id")
        self.expire_after = expire_after
        self.started = time.monotonic()
        self._requests = itertools.count(1)
        self.requests = 0
        self._clients_lock = threading.Lock()
        self.clients_opened = 0
        self._turns_lock = threading.Lock()
        self._running_turns: set[tuple[str, str]] = set()

    def open(self) -> None:
        """At start-up: the global factory (one pool for the process) in factory mode."""
        if self.connection_mode == "factory":
            initialize_global_factory(
                connection_string=self.connection_string,
                database_name=self.database_name,
                collection_name=self.collection_name,
                expire_after=self.expire_after,
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

    @contextmanager
    def manager(self, session_id: str, user_id: str) -> Iterator[MongoDBSessionManager]:
        """A manager for ``user_id``'s session ``session_id`` (created if new), closed after the block.

        Another user's session raises :class:`SessionNotFoundError`: the manager is scoped to ``user_id``.
        """
        validate_session_id(session_id)
        self.requests = next(self._requests)
        if self.connection_mode == "factory":
            with get_global_factory().create_session_manager(session_id, user_id=user_id) as manager:
                yield manager
            return
        with (
            self._new_client() as client,
            create_mongodb_session_manager(
                session_id,
                client=client,
                database_name=self.database_name,
                collection_name=self.collection_name,
                user_id=user_id,
                expire_after=self.expire_after,
            ) as manager,
        ):
            yield manager

    @contextmanager
    def repository(self, user_id: str) -> Iterator[MongoDBSessionRepository]:
        """A repository scoped to ``user_id``, for the endpoints that must not create a session."""
        self.requests = next(self._requests)
        if self.connection_mode == "factory":
            with get_global_factory().create_repository(user_id=user_id) as repository:
                yield repository
            return
        with (
            self._new_client() as client,
            MongoDBSessionRepository(
                client=client,
                database_name=self.database_name,
                collection_name=self.collection_name,
                user_id=user_id,
                expire_after=self.expire_after,
            ) as repository,
        ):
            yield repository

    @contextmanager
    def _new_client(self) -> Iterator[MongoClient[dict[str, Any]]]:
        """Client-per-request mode: a client of this request's own (discovery, handshakes), closed after it."""
        client: MongoClient[dict[str, Any]] = MongoClient(self.connection_string)
        with self._clients_lock:
            self.clients_opened += 1
        try:
            yield client
        finally:
            client.close()

    @contextmanager
    def claim(self, session_id: str, user_id: str) -> Iterator[None]:
        """Hold ``user_id``'s session for one turn (or a deletion); :class:`SessionConflictError` (409) if held.

        A conversation has one writer at a time. The library detects overlapping writers across
        processes (the later message write fails with ``SessionConflictError``); within this process
        the overlap is refused up front, before anything is stored, instead of half-way through a turn.
        Claims are per user, so another user's request learns nothing about this session.
        """
        key = (user_id, validate_session_id(session_id))
        with self._turns_lock:
            if key in self._running_turns:
                raise SessionConflictError(f"a turn is already running in session {session_id!r}")
            self._running_turns.add(key)
        try:
            yield
        finally:
            with self._turns_lock:
                self._running_turns.discard(key)

    @contextmanager
    def turn(self, session_id: str, user_id: str) -> Iterator[MongoDBSessionManager]:
        """One turn: the session claimed (see :meth:`claim`) and a manager for it, both released after."""
        with self.claim(session_id, user_id), self.manager(session_id, user_id) as manager:
            yield manager

    def new_agent(
        self, manager: MongoDBSessionManager, model: Model, callback_handler: Callable[..., Any] | None = None
    ) -> Agent:
        """A new Agent for this request; the manager restores the session's conversation into it."""
        return Agent(
            model=model,
            agent_id=self.agent_id,
            session_manager=manager,
            system_prompt=SYSTEM_PROMPT,
            tools=list(TOOLS),
            callback_handler=callback_handler,
        )


# -- request bodies ----------------------------------------------------------------------------------


class ChatRequest(BaseModel):
    message: str = Field(min_length=1, max_length=20_000, description="the user's message")


class MetadataUpdate(BaseModel):
    metadata: dict[str, Any] = Field(description="fields to set; other stored fields are kept")


class TitleUpdate(BaseModel):
    title: str = Field(description="the session's new title (1 to 200 characters)")


class ForkRequest(BaseModel):
    up_to_message_id: int | None = Field(
        default=None, ge=0, description="copy the messages 0..n of the conversation; omit to copy all of it"
    )


# -- error mapping --------------------------------------------------------------------------------


def short(text: str, limit: int = MAX_DETAIL_CHARACTERS) -> str:
    """``text``, cut to ``limit`` characters."""
    return text if len(text) <= limit else text[: limit - 1] + "…"


def error_status(error: BaseException) -> tuple[int, str]:
    """The HTTP status and a short detail for an error raised while serving a request.

    Strands wraps what fails inside its event loop (storing the answer, a tool cycle) in
    ``EventLoopException``; the error it wraps decides the status.
    """
    while isinstance(error, EventLoopException):
        error = error.original_exception
    if isinstance(error, InvalidArgumentError):
        return 422, short(str(error))
    if isinstance(error, SessionNotFoundError):
        return 404, short(str(error))
    if isinstance(error, SessionConflictError | StaleAgentError):
        return 409, short(f"{error}. Another turn of this session got there first; reload the history and retry.")
    if isinstance(error, SessionExistsError):
        return 409, short(str(error))
    if isinstance(error, SessionTooLargeError):
        return 413, short(str(error))
    if isinstance(error, FactoryNotInitializedError | ConnectionFailure):
        return 503, short(f"MongoDB unavailable: {error}")
    if isinstance(error, PyMongoError):
        return 502, short(f"MongoDB error: {error}")
    return 500, "internal error"


def validation_detail(error: RequestValidationError) -> str:
    """FastAPI's validation errors as one short line, without echoing the refused input."""
    problems = error.errors()
    if not problems:
        return "invalid request"
    first = problems[0]
    where = ".".join(str(part) for part in first.get("loc", ()))
    more = f" (and {len(problems) - 1} more)" if len(problems) > 1 else ""
    return short(f"{where}: {first.get('msg', 'invalid')}{more}")


def install_error_handlers(app: FastAPI) -> None:
    """Answer the library's, Strands' and pymongo's errors with a status code and a short detail, not a 500."""

    def handle(request: Request, error: Exception) -> JSONResponse:
        status, detail = error_status(error)
        if status >= 500:  # the client gets a short detail; the log keeps the whole story
            logger.error("%s %s failed", request.method, request.url.path, exc_info=error)
        return JSONResponse({"detail": detail}, status_code=status)

    def invalid_request(request: Request, error: Exception) -> JSONResponse:
        assert isinstance(error, RequestValidationError)
        return JSONResponse({"detail": validation_detail(error)}, status_code=422)

    def unexpected(request: Request, error: Exception) -> JSONResponse:
        # Starlette answers with this, then re-raises the error for the server to log.
        return JSONResponse({"detail": "internal error"}, status_code=500)

    for error_type in (
        InvalidArgumentError,
        SessionNotFoundError,
        SessionConflictError,
        StaleAgentError,
        SessionExistsError,
        SessionTooLargeError,
        FactoryNotInitializedError,
        PyMongoError,
        EventLoopException,
    ):
        app.add_exception_handler(error_type, handle)
    app.add_exception_handler(RequestValidationError, invalid_request)
    app.add_exception_handler(Exception, unexpected)


# -- statistics and listings ---------------------------------------------------------------------------


def read_stats(repository: MongoDBSessionRepository, session_id: str) -> dict[str, Any]:
    """Message counts, tokens and latency (summed in MongoDB) and the timestamps of a session the caller can see."""
    summary = repository.get_metrics_summary(session_id)  # raises SessionNotFoundError
    stored = stored_fields(repository, session_id, {"created_at": 1, "updated_at": 1})
    return {
        "session_id": session_id,
        "created_at": iso(stored.get("created_at")),
        "updated_at": iso(stored.get("updated_at")),
        "message_count": summary["totals"]["messages"],
        "model_calls": summary["totals"]["model_calls"],
        "tokens": summary["totals"]["tokens"],
        "latency_ms": summary["totals"]["latency_ms"],
        "agents": summary["agents"],
    }


def summary_json(summary: SessionSummary) -> dict[str, Any]:
    """One session of a listing, as JSON."""
    return {
        "session_id": summary.session_id,
        "title": summary.title,
        "created_at": summary.created_at.isoformat(),
        "updated_at": summary.updated_at.isoformat(),
        "message_count": summary.message_count,
        "metadata": jsonable_encoder(summary.metadata),
    }


def export_filename(session_id: str) -> str:
    """A safe download file name for a session's export."""
    return f"session-{re.sub(r'[^A-Za-z0-9._-]', '_', session_id)[:100]}.json"


def new_session_id(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex}"


# -- the shared endpoints -------------------------------------------------------------------------


def session_router(sessions: Sessions) -> APIRouter:
    """The caller's sessions (list, title, delete, fork, export, history, metadata, statistics), health, stats."""
    router = APIRouter()

    @router.get("/health")
    def health() -> dict[str, Any]:
        return {"status": "ok", "connection_mode": sessions.connection_mode}

    @router.get("/stats")
    def server_stats() -> dict[str, Any]:
        """Connection figures: the shared pool's in factory mode, the clients opened in client-per-request mode."""
        stats: dict[str, Any] = {
            "connection_mode": sessions.connection_mode,
            "requests": sessions.requests,
            "uptime_s": round(time.monotonic() - sessions.started, 1),
        }
        if sessions.connection_mode == "factory":
            stats["factory"] = get_global_factory().get_connection_stats()
        else:
            stats["clients_opened"] = sessions.clients_opened
        return stats

    @router.get("/sessions")
    def list_sessions(
        user: User,
        limit: Annotated[int, Query(ge=1, le=MAX_PAGE_SIZE, description="sessions per page")] = 20,
        cursor: Annotated[str | None, Query(max_length=2048, description="next_cursor of the previous page")] = None,
    ) -> dict[str, Any]:
        """The caller's sessions, most recently updated first; pass ``next_cursor`` back for the next page."""
        with sessions.repository(user) as repository:
            page = repository.list_sessions(limit=limit, cursor=cursor)
        return {"sessions": [summary_json(summary) for summary in page.sessions], "next_cursor": page.next_cursor}

    @router.patch("/sessions/{session_id}")
    def rename(session_id: str, update: TitleUpdate, user: User) -> dict[str, Any]:
        """Set the session's title."""
        with sessions.repository(user) as repository:
            repository.set_title(session_id, update.title)
        return {"session_id": session_id, "title": update.title}

    @router.delete("/sessions/{session_id}", status_code=204)
    def delete(session_id: str, user: User) -> Response:
        """Delete the session and everything stored for it (409 while one of its turns is running)."""
        with sessions.claim(session_id, user), sessions.repository(user) as repository:
            repository.delete_session(session_id)
        return Response(status_code=204)

    @router.post("/sessions/{session_id}/fork", status_code=201)
    def fork(session_id: str, request: ForkRequest, user: User) -> dict[str, Any]:
        """Copy the session (up to ``up_to_message_id`` of the conversation) into a new session of the caller's."""
        validate_session_id(session_id)
        fork_id = new_session_id("fork")
        up_to = request.up_to_message_id
        with sessions.repository(user) as repository:
            repository.fork_session(
                session_id, fork_id, up_to_message_id=up_to, agent_id=sessions.agent_id if up_to is not None else None
            )
        return {"session_id": fork_id, "forked_from": session_id, "up_to_message_id": up_to}

    @router.get("/sessions/{session_id}/export")
    def export(session_id: str, user: User) -> JSONResponse:
        """Everything stored for the session, as a JSON download."""
        with sessions.repository(user) as repository:
            exported = repository.export_session(session_id)
        disposition = f'attachment; filename="{export_filename(session_id)}"'
        return JSONResponse(jsonable_encoder(exported), headers={"Content-Disposition": disposition})

    @router.get("/sessions/{session_id}/history")
    def history(session_id: str, user: User) -> dict[str, Any]:
        """Every message, oldest first; assistant messages carry their stored ``event_loop_metrics``."""
        with sessions.repository(user) as repository:
            return read_history(repository, session_id, sessions.agent_id)

    @router.get("/sessions/{session_id}/metadata")
    def get_metadata(session_id: str, user: User) -> dict[str, Any]:
        with sessions.repository(user) as repository:
            return {"session_id": session_id, "metadata": jsonable_encoder(repository.get_metadata(session_id))}

    @router.put("/sessions/{session_id}/metadata")
    def update_metadata(session_id: str, update: MetadataUpdate, user: User) -> dict[str, Any]:
        """Partial update: only the given fields change."""
        with sessions.repository(user) as repository:
            repository.update_metadata(session_id, update.metadata)
            return {"session_id": session_id, "metadata": jsonable_encoder(repository.get_metadata(session_id))}

    @router.delete("/sessions/{session_id}/metadata")
    def delete_metadata(
        session_id: str, user: User, keys: Annotated[list[str], Query(min_length=1, description="fields to remove")]
    ) -> dict[str, Any]:
        with sessions.repository(user) as repository:
            repository.delete_metadata(session_id, keys)
            return {"session_id": session_id, "metadata": jsonable_encoder(repository.get_metadata(session_id))}

    @router.get("/sessions/{session_id}/stats")
    def session_stats(session_id: str, user: User) -> dict[str, Any]:
        with sessions.repository(user) as repository:
            return read_stats(repository, session_id)

    return router


# -- command-line options -------------------------------------------------------------------------------


def expire_after_seconds(value: str) -> float:
    """``--expire-after``: a positive number of seconds."""
    try:
        seconds = float(value)
    except ValueError:
        seconds = math.nan
    if not math.isfinite(seconds) or seconds <= 0:
        raise argparse.ArgumentTypeError(f"must be a positive number of seconds, not {value!r}")
    return seconds


def add_server_arguments(parser: argparse.ArgumentParser, default_port: int) -> None:
    """``--host``, ``--port``, ``--connection-mode`` and ``--expire-after``."""
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
    group.add_argument(
        "--expire-after",
        type=expire_after_seconds,
        metavar="SECONDS",
        help="sessions expire this many seconds after their last write (MongoDB's TTL index removes them); "
        "default: never",
    )


def connection_mode(value: str) -> ConnectionMode:
    if value not in CONNECTION_MODES:
        raise ValueError(f"connection mode must be one of {CONNECTION_MODES}, not {value!r}")
    return value
