"""FastAPI chat service: one global session-manager factory, a new Agent per request that resumes the session.

Shows the recommended web-app pattern: ``initialize_global_factory`` in the ``lifespan`` handler
(one connection pool for the process), ``get_global_factory().create_session_manager(session_id)``
per request, a new ``strands.Agent`` per request that picks up the stored conversation, and
``close_global_factory`` at shutdown. pymongo is synchronous, so every endpoint is a plain ``def``
that FastAPI runs in its threadpool: no MongoDB round trip blocks the event loop.

Run it (offline by default: ScriptedModel and an embedded SecantusDB under ``.data/example_fastapi/``)::

    uv run python examples/example_fastapi.py                 # http://127.0.0.1:8000/docs
    curl -X POST localhost:8000/sessions/demo/chat -H 'content-type: application/json' -d '{"message": "Hi"}'
    curl localhost:8000/sessions/demo/history
    curl -X PUT localhost:8000/sessions/demo/metadata -H 'content-type: application/json' \\
         -d '{"metadata": {"priority": "high"}}'
    curl localhost:8000/sessions/demo/stats

Endpoints: ``POST /sessions/{id}/chat``, ``GET /sessions/{id}/history``, ``GET|PUT|DELETE
/sessions/{id}/metadata`` (PUT is a partial update, DELETE takes ``?keys=a&keys=b``),
``GET /sessions/{id}/stats``, ``GET /stats`` (connection pool) and ``GET /health``.
Errors: 422 for an invalid session id or body, 404 for an unknown session, 409 when a turn is sent
to a session that is still answering the previous one, 503 when MongoDB is unreachable.

``--connection-mode client-per-request`` opens (and closes) a new ``MongoClient`` for every request
instead: the anti-pattern the factory avoids, kept to compare the two in benchmarks. Set
``MONGODB_URI`` (or ``--uri``) to use your own MongoDB and ``--provider`` for a real model.
"""

import argparse
import logging
import time
from typing import Any

import uvicorn
from fastapi import FastAPI

import failures
from chat_api import (
    ChatRequest,
    ConnectionMode,
    ModelFactory,
    Sessions,
    add_server_arguments,
    connection_mode,
    install_error_handlers,
    scripted_chat_responder,
    session_router,
    turn_metrics,
)
from local_mongodb import add_mongodb_arguments, mongodb_uri
from model_provider import add_model_arguments, build_model


def create_app(
    connection_string: str,
    database_name: str,
    model_factory: ModelFactory,
    connection_mode: ConnectionMode = "factory",
    collection_name: str = "sessions",
) -> FastAPI:
    """The chat app; ``model_factory`` gives the model of each request's Agent."""
    sessions = Sessions(connection_string, database_name, collection_name, connection_mode)
    app = FastAPI(title="mongodb-session-manager chat", lifespan=sessions.lifespan())
    install_error_handlers(app)
    app.include_router(session_router(sessions))

    @app.post("/sessions/{session_id}/chat")
    def chat(session_id: str, request: ChatRequest) -> dict[str, Any]:
        """One turn: a new Agent resumes the session from MongoDB, answers, and stores both messages."""
        started = time.monotonic()
        with sessions.turn(session_id) as manager:
            agent = sessions.new_agent(manager, model_factory())
            result = agent(request.message)
        return {"session_id": session_id, "answer": str(result).strip(), "metrics": turn_metrics(agent, started)}

    return app


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_server_arguments(parser, default_port=8000)
    add_mongodb_arguments(parser, "example_fastapi")
    add_model_arguments(parser)
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO)

    model = build_model(args.provider, fallback=scripted_chat_responder)
    with mongodb_uri(args) as uri:
        app = create_app(uri, args.database, lambda: model, connection_mode(args.connection_mode))
        print(f"Connection mode: {args.connection_mode}. API docs: http://{args.host}:{args.port}/docs")
        uvicorn.run(app, host=args.host, port=args.port)


if __name__ == "__main__":
    with failures.in_one_line():
        main()
