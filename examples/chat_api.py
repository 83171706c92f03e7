"""What the two FastAPI examples share: the caller's identity, session ids, connections, errors, endpoints, ``main``.

Not an example on its own: ``example_fastapi.py`` (plain JSON chat) and
``example_fastapi_streaming.py`` (server-sent events, used by the playground) build their apps from it.

* :func:`current_user` says who is calling. Here that is the ``X-User-Id`` request header: a
  stand-in for real authentication, and the one function to replace with yours. Every session
  endpoint works on the caller's sessions only: another user's session id answers exactly like an
  id that does not exist, so a caller cannot even learn that it exists.
* Session ids are qualified by the user (:func:`stored_session_id`): the API shows and accepts
  ``demo``, MongoDB stores ``ana/demo``. The library's session ids are one namespace for everyone,
  and a manager scoped to a user refuses another user's session but cannot hide that its id is
  taken: without the qualification, a chat in ``demo`` would answer 404 when another user holds
  ``demo`` and create it otherwise, which tells who holds which id and lets anyone squat a
  predictable one. An app must either qualify ids per user like this, or hand out only unguessable
  ids. The managers and repositories stay scoped to the user as well (defence in depth).
* :class:`Sessions` hands out session managers and repositories scoped to that user, in one of two
  connection modes: ``"factory"`` (the recommended one: ``initialize_global_factory`` at start-up,
  one shared connection pool, ``create_session_manager(session_id, user_id=...)`` per request) or
  ``"client-per-request"`` (a new ``MongoClient`` opened for every request and closed after it:
  the anti-pattern, kept for comparison in benchmarks).
* :func:`new_app` builds the app both examples start from: request bodies bounded in size (413)
  and nesting (422) before they are parsed, the library's typed errors mapped to HTTP status codes
  with short messages (401 without a user, 422 for invalid input, 404 for a session the caller
  cannot see, 409 for a conflicting turn, 413 for a session too large, 503/502 when MongoDB fails:
  the details of those two go to the server log only), and :func:`session_router`: the caller's
  sessions (the list, newest first, paged by cursor; title, deletion, fork, JSON export, history,
  metadata and statistics), plus ``/health`` and ``/stats`` (connection figures).
* :func:`serve` is the command line of both examples.

Everything that touches MongoDB is synchronous (pymongo is): those endpoints are plain ``def``
functions, which FastAPI runs in its threadpool, so no MongoDB round trip blocks the event loop.
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

import uvicorn
from fastapi import APIRouter, Depends, FastAPI, Header, HTTPException, Query, Request, Response
from fastapi.encoders import jsonable_encoder
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import BaseModel, Field, field_validator
from pydantic_core import PydanticCustomError
from pymongo import MongoClient
from pymongo.errors import ConnectionFailure, PyMongoError
from starlette.types import ASGIApp, Message, Receive, Scope, Send
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
    InvalidIdentifierError,
    SessionConflictError,
    SessionExistsError,
    SessionNotFoundError,
    SessionTooLargeError,
    StaleAgentError,
    printable,
)
from mongodb_session_manager.validation import MAX_IDENTIFIER_LENGTH, validate_field_name, validate_session_id

from chat_agent import SYSTEM_PROMPT, TOOLS, scripted_chat_responder
from chat_messages import iso, read_history, stored_fields
from local_mongodb import add_mongodb_arguments, mongodb_uri
from model_provider import add_model_arguments, build_model

ConnectionMode = Literal["factory", "client-per-request"]
CONNECTION_MODES: tuple[ConnectionMode, ...] = ("factory", "client-per-request")
ModelFactory = Callable[[], Model]

logger = logging.getLogger(__name__)

DEFAULT_AGENT_ID = "assistant"
LAYOUT: Literal["embedded"] = "embedded"
"""Where the app's sessions keep their messages; :func:`chat_messages.read_history` reads them there."""
USER_HEADER = "X-User-Id"
USER_ID_PATTERN = re.compile(r"[A-Za-z0-9._@-]{1,64}")
MAX_USER_ID_LENGTH = 64
SESSION_ID_SEPARATOR = "/"
MAX_SESSION_ID_LENGTH = MAX_IDENTIFIER_LENGTH - MAX_USER_ID_LENGTH - len(SESSION_ID_SEPARATOR)
"""A session id as the API shows it: short enough that qualified by any user it fits the library's limit."""
MAX_MESSAGE_CHARACTERS = 20_000
MAX_PAGE_SIZE = 100
MAX_DETAIL_CHARACTERS = 200
MAX_BODY_BYTES = 1024 * 1024
MAX_BODY_DEPTH = 64
MAX_METADATA_DEPTH = 32
PER_REQUEST_CLIENT_TIMEOUT_MS = 5_000
"""Server selection and connection timeouts of a per-request client: the shared pool's, so it gives up as soon."""
DATABASE_UNAVAILABLE = "the database is unavailable; try again"
DATABASE_FAILED = "the database could not complete the request; try again"


# -- who is calling --------------------------------------------------------------------------------


def current_user(x_user_id: Annotated[str | None, Header(description="who is calling (a stand-in)")] = None) -> str:
    """The caller's user id: THE place where real authentication plugs in.

    This stand-in believes the ``X-User-Id`` header, so any caller can claim any user: enough to
    show that every user sees only their own sessions, never enough for production. Replace the
    body with your authentication (verify a session cookie, or an OAuth/OIDC bearer token with
    ``fastapi.security.HTTPBearer`` and your identity provider) and return the verified user id;
    nothing else changes. A missing header is 401; an id that is not 1 to 64 of the characters
    ``A-Z a-z 0-9 . _ @ -``, 422.
    """
    if x_user_id is None:
        raise HTTPException(
            status_code=401,
            detail=f"missing {USER_HEADER} header: say which user is calling (a stand-in for real authentication)",
            headers={"WWW-Authenticate": USER_HEADER},
        )
    if not USER_ID_PATTERN.fullmatch(x_user_id):
        raise InvalidIdentifierError("user_id", x_user_id, "must be 1 to 64 of the characters A-Z a-z 0-9 . _ @ -")
    return x_user_id


def caller(request: Request, user_id: Annotated[str, Depends(current_user)]) -> str:
    """:func:`current_user`, remembered on the request so that errors can speak of the caller's session ids."""
    request.state.user_id = user_id
    return user_id


User = Annotated[str, Depends(caller)]


# -- session ids -----------------------------------------------------------------------------------


def stored_session_id(user_id: str, session_id: str) -> str:
    """The id MongoDB stores the caller's session ``session_id`` under: ``<user_id>/<session_id>``.

    User ids hold no ``/``, so the qualified id is unambiguous and no two users' ids ever collide.
    """
    validate_session_id(session_id)
    if len(session_id) > MAX_SESSION_ID_LENGTH:
        raise InvalidIdentifierError("session_id", session_id, f"must be at most {MAX_SESSION_ID_LENGTH} characters")
    return f"{user_id}{SESSION_ID_SEPARATOR}{session_id}"


def public_session_id(user_id: str, stored_id: str) -> str:
    """The id the API shows for the caller's stored session ``stored_id``."""
    return stored_id.removeprefix(f"{user_id}{SESSION_ID_SEPARATOR}")


def public_text(text: str, user_id: str | None) -> str:
    """``text`` (an error message quoting stored session ids) with the ids as the caller knows them."""
    if user_id is None:
        return text
    prefix = f"{user_id}{SESSION_ID_SEPARATOR}"
    return text.replace(f"'{prefix}", "'").replace(f'"{prefix}', '"')


def new_session_id(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex}"


# -- connections ---------------------------------------------------------------------------------


class TurnInProgressError(Exception):
    """A turn of the session is running; the request (another turn, a deletion) must wait for it to finish."""

    def __init__(self, session_id: str) -> None:
        super().__init__(f"a turn is in progress in session {session_id!r}; try again when it finishes")


class NothingToRetryError(Exception):
    """A retry was asked for, but the session's last message is not an unanswered user message with that text."""

    def __init__(self) -> None:
        super().__init__("nothing to retry: the last message of the session is not this message waiting for an answer")


def turn_prompt(agent: Agent, request: ChatRequest) -> str | None:
    """What the turn gives the Agent: the message, or None to answer the stored one (``request.retry``).

    Raises :class:`NothingToRetryError` when a retry finds no unanswered user message with the same text last.
    """
    if not request.retry:
        return request.message
    last = agent.messages[-1] if agent.messages else None
    if last is None or last["role"] != "user" or not all("text" in block for block in last["content"]):
        raise NothingToRetryError()
    if "".join(block["text"] for block in last["content"]) != request.message:
        raise NothingToRetryError()
    return None


class Sessions:
    """Session managers and repositories for the endpoints, scoped to one user, in the chosen connection mode.

    Every method takes the session id as the caller knows it and the caller's user id, and works on
    the stored, qualified id (:func:`stored_session_id`). ``expire_after`` (seconds, or None) is
    given to every session created: MongoDB's TTL index removes a session that long after its last write.
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
        self._running_turns: set[str] = set()

    def open(self) -> None:
        """At start-up: the global factory (one pool for the process) in factory mode."""
        if self.connection_mode == "factory":
            initialize_global_factory(
                connection_string=self.connection_string,
                database_name=self.database_name,
                collection_name=self.collection_name,
                layout=LAYOUT,
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
    def manager(self, session_id: str, user_id: str, *, create: bool = True) -> Iterator[MongoDBSessionManager]:
        """A manager for ``user_id``'s session ``session_id``, closed after the block.

        The session is created if new; with ``create=False`` a session that does not exist (never
        created, deleted, expired) raises :class:`SessionNotFoundError` instead, before anything is written.
        """
        stored_id = stored_session_id(user_id, session_id)
        self.requests = next(self._requests)
        with self._client() as client:
            if not create:
                with self._repository(client, user_id) as repository:
                    if repository.read_session(stored_id) is None:
                        raise SessionNotFoundError(f"session {stored_id!r} not found")
            if client is None:
                with get_global_factory().create_session_manager(stored_id, user_id=user_id) as manager:
                    yield manager
                return
            with create_mongodb_session_manager(
                stored_id,
                client=client,
                database_name=self.database_name,
                collection_name=self.collection_name,
                layout=LAYOUT,
                user_id=user_id,
                expire_after=self.expire_after,
            ) as manager:
                yield manager

    @contextmanager
    def repository(self, user_id: str) -> Iterator[MongoDBSessionRepository]:
        """A repository scoped to ``user_id``, for the endpoints that must not create a session.

        Its methods take stored session ids (:func:`stored_session_id`).
        """
        self.requests = next(self._requests)
        with self._client() as client, self._repository(client, user_id) as repository:
            yield repository

    def _repository(self, client: MongoClient[dict[str, Any]] | None, user_id: str) -> MongoDBSessionRepository:
        if client is None:
            return get_global_factory().create_repository(user_id=user_id)
        return MongoDBSessionRepository(
            client=client,
            database_name=self.database_name,
            collection_name=self.collection_name,
            layout=LAYOUT,
            user_id=user_id,
            expire_after=self.expire_after,
        )

    @contextmanager
    def _client(self) -> Iterator[MongoClient[dict[str, Any]] | None]:
        """Client-per-request mode: a client of this request's own (discovery, handshakes), closed after it.

        None in factory mode, where the global factory's shared client serves.
        """
        if self.connection_mode == "factory":
            yield None
            return
        client: MongoClient[dict[str, Any]] = MongoClient(
            self.connection_string,
            serverSelectionTimeoutMS=PER_REQUEST_CLIENT_TIMEOUT_MS,
            connectTimeoutMS=PER_REQUEST_CLIENT_TIMEOUT_MS,
        )
        with self._clients_lock:
            self.clients_opened += 1
        try:
            yield client
        finally:
            client.close()

    @contextmanager
    def claim(self, session_id: str, user_id: str) -> Iterator[None]:
        """Hold ``user_id``'s session for one turn (or a deletion); :class:`TurnInProgressError` (409) if held.

        A conversation has one writer at a time. The library detects overlapping writers across
        processes (the later message write fails with ``SessionConflictError``); within this process
        the overlap is refused up front, before anything is stored, instead of half-way through a turn.
        """
        stored_id = stored_session_id(user_id, session_id)
        with self._turns_lock:
            if stored_id in self._running_turns:
                raise TurnInProgressError(session_id)
            self._running_turns.add(stored_id)
        try:
            yield
        finally:
            with self._turns_lock:
                self._running_turns.discard(stored_id)

    @contextmanager
    def turn(self, session_id: str, user_id: str, *, create: bool = True) -> Iterator[MongoDBSessionManager]:
        """One turn: the session claimed (see :meth:`claim`) and a manager for it (see :meth:`manager`)."""
        with self.claim(session_id, user_id), self.manager(session_id, user_id, create=create) as manager:
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
    message: str = Field(min_length=1, max_length=MAX_MESSAGE_CHARACTERS, strict=True, description="the user's message")
    create: bool = Field(
        default=True,
        strict=True,
        description="create the session if it does not exist (false: 404 instead, e.g. when it was deleted meanwhile)",
    )
    retry: bool = Field(
        default=False,
        strict=True,
        description="answer the session's last message, a stored user message with this text that got no answer "
        "(its turn failed after storing it), instead of storing the message again; 409 if there is no such message",
    )


class MetadataUpdate(BaseModel):
    metadata: dict[str, Any] = Field(description="fields to set; other stored fields are kept")

    @field_validator("metadata")
    @classmethod
    def storable(cls, metadata: dict[str, Any]) -> dict[str, Any]:
        """Finite numbers only (JSON has no NaN or Infinity); each field's value nested at most 32 levels."""
        for key, value in metadata.items():
            check_metadata_value(value, f"metadata.{key}", f"metadata.{key}", 0)
        return metadata


def check_metadata_value(value: Any, path: str, field: str, depth: int) -> None:
    """Raise a validation error for a non-finite number (naming its ``path``) or a ``field`` nested too deep.

    ``depth`` is how many arrays and objects of the field hold ``value``.
    """
    if depth > MAX_METADATA_DEPTH:
        limit = {"field": printable(field[:80]), "limit": MAX_METADATA_DEPTH}
        raise PydanticCustomError("too_deep", "{field} is nested more than {limit} levels deep", limit)
    if isinstance(value, float) and not math.isfinite(value):
        raise PydanticCustomError(
            "not_finite", "{path} must be a finite number, not NaN or Infinity", {"path": printable(path[:80])}
        )
    children = value.items() if isinstance(value, dict) else enumerate(value) if isinstance(value, list) else ()
    for key, child in children:
        child_path = f"{path}.{key}" if isinstance(value, dict) else f"{path}[{key}]"
        check_metadata_value(child, child_path, field, depth + 1)


class TitleUpdate(BaseModel):
    title: str = Field(strict=True, description="the session's new title (1 to 200 characters)")


class ForkRequest(BaseModel):
    up_to_message_id: int | None = Field(
        default=None, ge=0, strict=True, description="copy the messages 0..n of the conversation (all without it)"
    )


class RequestBodyLimits:
    """Refuse a request body over ``max_bytes`` (413) or nested deeper than ``max_depth`` (422) before it is parsed.

    JSON parsers recurse per level: a body of a few kilobytes of ``[`` would otherwise exhaust
    Python's recursion limit (a 400 that says nothing) or reach MongoDB's own nesting limit.
    """

    def __init__(self, app: ASGIApp, max_bytes: int = MAX_BODY_BYTES, max_depth: int = MAX_BODY_DEPTH) -> None:
        self.app = app
        self.max_bytes = max_bytes
        self.max_depth = max_depth

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        too_large = JSONResponse({"detail": f"request body too large (at most {self.max_bytes:,} bytes)"}, 413)
        declared = dict(scope["headers"]).get(b"content-length", b"")
        if declared.isdigit() and int(declared) > self.max_bytes:
            await too_large(scope, receive, send)
            return
        body = bytearray()
        while True:
            message = await receive()
            if message["type"] != "http.request":  # the client went away
                return
            body += message.get("body", b"")
            if len(body) > self.max_bytes:
                await too_large(scope, receive, send)
                return
            if not message.get("more_body", False):
                break
        if nesting_depth(bytes(body)) > self.max_depth:
            detail = f"body: JSON nested more than {self.max_depth} levels deep"
            await JSONResponse({"detail": detail}, 422)(scope, receive, send)
            return
        await self.app(scope, replaying(bytes(body), receive), send)


JSON_STRING = re.compile(rb'"(?:[^"\\]|\\.)*+"', re.DOTALL)
JSON_BRACKET = re.compile(rb"[\[\]{}]")


def nesting_depth(body: bytes) -> int:
    """How deep the arrays and objects of a JSON text nest (brackets inside strings do not count)."""
    depth = deepest = 0
    for bracket in JSON_BRACKET.finditer(JSON_STRING.sub(b'""', body)):
        if bracket[0] in (b"[", b"{"):
            depth += 1
            deepest = max(deepest, depth)
        else:
            depth -= 1
    return deepest


def replaying(body: bytes, receive: Receive) -> Receive:
    """A ``receive`` that hands over ``body`` whole first, then waits on the connection (for a disconnect)."""
    sent = False

    async def replay() -> Message:
        nonlocal sent
        if sent:
            return await receive()
        sent = True
        return {"type": "http.request", "body": body, "more_body": False}

    return replay


# -- error mapping --------------------------------------------------------------------------------


def short(text: str, limit: int = MAX_DETAIL_CHARACTERS) -> str:
    """``text``, cut to ``limit`` characters."""
    return text if len(text) <= limit else text[: limit - 1] + "…"


def error_status(error: BaseException, user_id: str | None = None) -> tuple[int, str]:
    """The HTTP status and a short detail for an error raised while serving ``user_id``'s request.

    Strands wraps what fails inside its event loop (storing the answer, a tool cycle) in
    ``EventLoopException``; the error it wraps decides the status. Session ids in the detail are
    the caller's (:func:`public_text`). MongoDB's own messages (hosts, topology, server replies)
    never reach the client: the log has them.
    """
    while isinstance(error, EventLoopException):
        error = error.original_exception
    status, detail = 500, "internal error"
    if isinstance(error, InvalidArgumentError):
        status, detail = 422, str(error)
    elif isinstance(error, SessionNotFoundError):
        status, detail = 404, str(error)
    elif isinstance(error, TurnInProgressError | NothingToRetryError):
        status, detail = 409, str(error)
    elif isinstance(error, SessionConflictError | StaleAgentError):
        status, detail = 409, f"{error}. Another turn of this session got there first; reload the history and retry."
    elif isinstance(error, SessionExistsError):
        status, detail = 409, str(error)
    elif isinstance(error, SessionTooLargeError):
        status, detail = 413, str(error)
    elif isinstance(error, FactoryNotInitializedError | ConnectionFailure):
        status, detail = 503, DATABASE_UNAVAILABLE
    elif isinstance(error, PyMongoError):
        status, detail = 502, DATABASE_FAILED
    return status, short(public_text(detail, user_id))


def validation_detail(error: RequestValidationError) -> str:
    """FastAPI's validation errors as one short line, without echoing the refused input."""
    problems = error.errors()
    if not problems:
        return "invalid request"
    first = problems[0]
    where = ".".join(str(part) for part in first.get("loc", ()))
    more = f" (and {len(problems) - 1} more)" if len(problems) > 1 else ""
    return short(f"{where}: {first.get('msg', 'invalid')}{more}")


HANDLED_ERRORS: tuple[type[Exception], ...] = (
    InvalidArgumentError,
    SessionNotFoundError,
    TurnInProgressError,
    NothingToRetryError,
    SessionConflictError,
    StaleAgentError,
    SessionExistsError,
    SessionTooLargeError,
    FactoryNotInitializedError,
    PyMongoError,
    EventLoopException,
)


def install_error_handlers(app: FastAPI) -> None:
    """Answer the library's, Strands' and pymongo's errors with a status code and a short detail, not a 500."""

    def handle(request: Request, error: Exception) -> JSONResponse:
        status, detail = error_status(error, getattr(request.state, "user_id", None))
        if status >= 500:  # the client gets a short detail; the log keeps the whole story
            logger.error("%s %s failed", request.method, request.url.path, exc_info=error)
        return JSONResponse({"detail": detail}, status_code=status)

    def invalid_request(request: Request, error: Exception) -> JSONResponse:
        assert isinstance(error, RequestValidationError)
        return JSONResponse({"detail": validation_detail(error)}, status_code=422)

    def unexpected(request: Request, error: Exception) -> JSONResponse:
        # Starlette answers with this, then re-raises the error for the server to log.
        return JSONResponse({"detail": "internal error"}, status_code=500)

    for error_type in HANDLED_ERRORS:
        app.add_exception_handler(error_type, handle)
    app.add_exception_handler(RequestValidationError, invalid_request)
    app.add_exception_handler(Exception, unexpected)


# -- statistics and listings ---------------------------------------------------------------------------


def read_stats(repository: MongoDBSessionRepository, session_id: str, stored_id: str) -> dict[str, Any]:
    """Message counts, tokens and latency (summed in MongoDB) and the timestamps of a session the caller can see."""
    summary = repository.get_metrics_summary(stored_id)  # raises SessionNotFoundError
    stored = stored_fields(repository, stored_id, {"created_at": 1, "updated_at": 1})
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


def summary_json(summary: SessionSummary, user_id: str) -> dict[str, Any]:
    """One session of the caller's listing, as JSON."""
    return {
        "session_id": public_session_id(user_id, summary.session_id),
        "title": summary.title,
        "created_at": summary.created_at.isoformat(),
        "updated_at": summary.updated_at.isoformat(),
        "message_count": summary.message_count,
        "metadata": jsonable_encoder(summary.metadata),
    }


def export_filename(session_id: str) -> str:
    """A safe download file name for a session's export."""
    return f"session-{re.sub(r'[^A-Za-z0-9._-]', '_', session_id)[:100]}.json"


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
        return {
            "sessions": [summary_json(summary, user) for summary in page.sessions],
            "next_cursor": page.next_cursor,
        }

    @router.patch("/sessions/{session_id}")
    def rename(session_id: str, update: TitleUpdate, user: User) -> dict[str, Any]:
        """Set the session's title."""
        with sessions.repository(user) as repository:
            repository.set_title(stored_session_id(user, session_id), update.title)
        return {"session_id": session_id, "title": update.title}

    @router.delete("/sessions/{session_id}", status_code=204)
    def delete(session_id: str, user: User) -> Response:
        """Delete the session and everything stored for it (409 while one of its turns is running)."""
        with sessions.claim(session_id, user), sessions.repository(user) as repository:
            repository.delete_session(stored_session_id(user, session_id))
        return Response(status_code=204)

    @router.post("/sessions/{session_id}/fork", status_code=201)
    def fork(session_id: str, request: ForkRequest, user: User) -> dict[str, Any]:
        """Copy the session (up to ``up_to_message_id`` of the conversation) into a new session of the caller's."""
        source = stored_session_id(user, session_id)
        fork_id = new_session_id("fork")
        up_to = request.up_to_message_id
        with sessions.repository(user) as repository:
            repository.fork_session(
                source,
                stored_session_id(user, fork_id),
                up_to_message_id=up_to,
                agent_id=sessions.agent_id if up_to is not None else None,
            )
        return {"session_id": fork_id, "forked_from": session_id, "up_to_message_id": up_to}

    @router.get("/sessions/{session_id}/export")
    def export(session_id: str, user: User) -> JSONResponse:
        """Everything stored for the session, as a JSON download (session ids as the caller knows them)."""
        with sessions.repository(user) as repository:
            exported = repository.export_session(stored_session_id(user, session_id))
        exported["session_id"] = session_id
        if exported.get("forked_from"):
            exported["forked_from"]["session_id"] = public_session_id(user, exported["forked_from"]["session_id"])
        disposition = f'attachment; filename="{export_filename(session_id)}"'
        return JSONResponse(exported, headers={"Content-Disposition": disposition})

    @router.get("/sessions/{session_id}/history")
    def history(session_id: str, user: User) -> dict[str, Any]:
        """Every message, oldest first; assistant messages carry their stored ``event_loop_metrics``."""
        with sessions.repository(user) as repository:
            found = read_history(repository, stored_session_id(user, session_id), sessions.agent_id)
        return {"session_id": session_id, **found}

    @router.get("/sessions/{session_id}/metadata")
    def get_metadata(session_id: str, user: User) -> dict[str, Any]:
        with sessions.repository(user) as repository:
            metadata = repository.get_metadata(stored_session_id(user, session_id))
        return {"session_id": session_id, "metadata": jsonable_encoder(metadata)}

    @router.put("/sessions/{session_id}/metadata")
    def update_metadata(session_id: str, update: MetadataUpdate, user: User) -> dict[str, Any]:
        """Partial update: only the given fields change."""
        stored_id = stored_session_id(user, session_id)
        with sessions.repository(user) as repository:
            repository.update_metadata(stored_id, update.metadata)
            metadata = repository.get_metadata(stored_id)
        return {"session_id": session_id, "metadata": jsonable_encoder(metadata)}

    @router.delete("/sessions/{session_id}/metadata")
    def delete_metadata(
        session_id: str, user: User, keys: Annotated[list[str], Query(min_length=1, description="fields to remove")]
    ) -> dict[str, Any]:
        stored_id = stored_session_id(user, session_id)
        with sessions.repository(user) as repository:
            repository.delete_metadata(stored_id, keys)
            metadata = repository.get_metadata(stored_id)
        return {"session_id": session_id, "metadata": jsonable_encoder(metadata)}

    @router.get("/sessions/{session_id}/stats")
    def session_stats(session_id: str, user: User) -> dict[str, Any]:
        with sessions.repository(user) as repository:
            return read_stats(repository, session_id, stored_session_id(user, session_id))

    return router


def new_app(sessions: Sessions, title: str) -> FastAPI:
    """The app both examples start from: bounded request bodies, error mapping, the shared endpoints."""
    app = FastAPI(title=title, lifespan=sessions.lifespan())
    app.add_middleware(RequestBodyLimits)
    install_error_handlers(app)
    app.include_router(session_router(sessions))
    return app


# -- the command line -------------------------------------------------------------------------------

AppBuilder = Callable[[argparse.Namespace, str, ModelFactory], FastAPI]


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


def serve(
    description: str,
    example: str,
    default_port: int,
    build_app: AppBuilder,
    add_arguments: Callable[[argparse.ArgumentParser], None] | None = None,
    word_delay_ms: float = 0,
) -> None:
    """The command line of a chat example: parse the options, start MongoDB if needed, build the app, serve it.

    ``build_app(args, uri, model_factory)`` builds the app; ``add_arguments`` adds the example's own
    options. ``word_delay_ms`` (the ScriptedModel's pause between words) becomes ``--word-delay-ms``
    when it is not 0.
    """
    parser = argparse.ArgumentParser(description=description, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_server_arguments(parser, default_port)
    if add_arguments is not None:
        add_arguments(parser)
    if word_delay_ms:
        parser.add_argument(
            "--word-delay-ms", type=float, default=word_delay_ms, help="ScriptedModel's pause between words (ms)"
        )
    add_mongodb_arguments(parser, example)
    add_model_arguments(parser)
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO)

    delay = args.word_delay_ms if word_delay_ms else 0
    model = build_model(args.provider, fallback=scripted_chat_responder, word_delay_ms=delay)
    with mongodb_uri(args) as uri:
        app = build_app(args, uri, lambda: model)
        expiry = f"sessions expire {args.expire_after:g} s after their last write" if args.expire_after else "no expiry"
        print(f"Connection mode: {args.connection_mode}; {expiry}.")
        print(f"API docs: http://{args.host}:{args.port}/docs")
        uvicorn.run(app, host=args.host, port=args.port)
