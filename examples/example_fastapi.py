"""FastAPI chat service: one global session-manager factory, a new Agent per request that resumes the session.

Shows the recommended web-app pattern: ``initialize_global_factory`` in the ``lifespan`` handler
(one connection pool for the process), ``get_global_factory().create_session_manager(session_id,
user_id=user)`` per request, a new ``strands.Agent`` per request that picks up the stored
conversation, and ``close_global_factory`` at shutdown. pymongo is synchronous, so every endpoint
is a plain ``def`` that FastAPI runs in its threadpool: no MongoDB round trip blocks the event loop.

Every session belongs to a user. The caller says who they are in the ``X-User-Id`` header: a
stand-in for real authentication (``chat_api.current_user`` is the one function to replace). A
request without it gets 401. Session ids are the caller's own: MongoDB stores ``demo`` of user
``ana`` as ``ana/demo`` (``chat_api.stored_session_id``), so two users' ``demo`` never meet and no
request tells a caller whether another user has a session of some id.

Run it (offline by default: ScriptedModel and an embedded SecantusDB under ``.data/example_fastapi/``)::

    uv run python examples/example_fastapi.py                 # http://127.0.0.1:8000/docs
    curl -X POST localhost:8000/sessions/demo/chat -H 'X-User-Id: ana' -H 'content-type: application/json' \\
         -d '{"message": "Hi"}'
    curl localhost:8000/sessions -H 'X-User-Id: ana'          # ana's sessions, newest first
    curl localhost:8000/sessions/demo/history -H 'X-User-Id: ana'
    curl -X PATCH localhost:8000/sessions/demo -H 'X-User-Id: ana' -H 'content-type: application/json' \\
         -d '{"title": "Greetings"}'
    curl localhost:8000/sessions/demo/history -H 'X-User-Id: bob'   # 404: bob has no "demo"

Endpoints: ``POST /sessions/{id}/chat`` (``{"message": ..., "create": false}`` answers 404 instead
of creating a session that does not exist; ``"retry": true`` answers the stored last message, one
whose turn failed after storing it, instead of storing it twice); ``GET /sessions?limit=&cursor=``
(the caller's sessions, newest first; pass ``next_cursor`` back for the next page); ``PATCH
/sessions/{id}`` (the title); ``DELETE /sessions/{id}``; ``POST /sessions/{id}/fork`` with
``{"up_to_message_id": n}`` (returns the new session's id); ``GET /sessions/{id}/export`` (a JSON
download); ``GET /sessions/{id}/history``; ``GET|PUT|DELETE /sessions/{id}/metadata`` (PUT is a
partial update, DELETE takes ``?keys=a&keys=b``); ``GET /sessions/{id}/stats``; ``GET /stats``
(connections) and ``GET /health``.
Errors: 401 without ``X-User-Id``; 422 (with a short message) for an invalid id, user, title,
cursor or body; 404 for a session the caller cannot see; 409 when a turn is sent to a session that
is still answering the previous one; 413 for a body over 1 MiB; 503 when MongoDB is unreachable.

``--expire-after SECONDS`` makes sessions expire that long after their last write (a TTL index
removes them). ``--connection-mode client-per-request`` opens (and closes) a new ``MongoClient``
for every request instead of sharing the pool: the anti-pattern the factory avoids, kept to compare
the two in benchmarks. Set ``MONGODB_URI`` (or ``--uri``) to use your own MongoDB and
``--provider`` for a real model.
"""

import argparse
import time
from typing import Any

from fastapi import FastAPI

import failures
from chat_api import ChatRequest, ConnectionMode, ModelFactory, Sessions, User, new_app, serve, turn_prompt
from chat_messages import next_message_id, turn_metrics


def create_app(
    connection_string: str,
    database_name: str,
    model_factory: ModelFactory,
    connection_mode: ConnectionMode = "factory",
    collection_name: str = "sessions",
    expire_after: float | None = None,
) -> FastAPI:
    """The chat app; ``model_factory`` gives the model of each request's Agent.

    ``expire_after``: seconds after its last write that a session expires (None: never).
    """
    sessions = Sessions(connection_string, database_name, collection_name, connection_mode, expire_after=expire_after)
    app = new_app(sessions, "mongodb-session-manager chat")

    @app.post("/sessions/{session_id}/chat")
    def chat(session_id: str, request: ChatRequest, user: User) -> dict[str, Any]:
        """One turn: a new Agent resumes the caller's session from MongoDB, answers, and stores the messages."""
        started = time.monotonic()
        with sessions.turn(session_id, user, create=request.create and not request.retry) as manager:
            agent = sessions.new_agent(manager, model_factory())
            prompt = turn_prompt(agent, request)
            user_message_id = next_message_id(agent) - (1 if prompt is None else 0)
            result = agent(prompt)
        return {
            "session_id": session_id,
            "user_message_id": user_message_id,
            "answer": str(result).strip(),
            "metrics": turn_metrics(agent, started),
        }

    return app


def build(args: argparse.Namespace, uri: str, model_factory: ModelFactory) -> FastAPI:
    return create_app(uri, args.database, model_factory, args.connection_mode, expire_after=args.expire_after)


if __name__ == "__main__":
    with failures.in_one_line():
        serve(__doc__ or "", "example_fastapi", 8000, build)
