"""How the examples fail: a failure the user can fix is one line on stderr with a hint, and exit status 1.

Every example runs its ``main`` inside :func:`in_one_line`::

    if __name__ == "__main__":
        with failures.in_one_line():
            main()

Expected failures are the ones a user causes or can fix: MongoDB unreachable or misconfigured, an
invalid session id, a session stored in the other layout, the library's other typed errors, a model
provider without credentials, network or package. The example helpers raise :class:`ExampleError`
for what they detect themselves (a URI that is not one, a server that does not answer or refuses
the credentials, a data folder in use). Anything else is a bug and keeps its traceback. Strands
wraps errors raised inside its event loop in ``EventLoopException`` (and logs them): the error it
wraps is the one reported, once.
"""

import logging
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager

import botocore.exceptions  # type: ignore[import-untyped]
import httpx
from pymongo.errors import ConfigurationError, ConnectionFailure
from strands.types.exceptions import EventLoopException, ModelThrottledException

from mongodb_session_manager.errors import (
    InvalidIdentifierError,
    LayoutMismatchError,
    MongoDBSessionError,
    SessionConflictError,
    StaleAgentError,
)

EXIT_STATUS = 1
INTERRUPTED_EXIT_STATUS = 130
EXCERPT_CHARS = 160
OFFLINE = "or pass --provider scripted"


class ExampleError(Exception):
    """A failure the user can fix, already worded as one line with a hint."""


class _NotLoggedTwice(logging.Filter):
    """Drops Strands' own log line for a failed event-loop cycle: the error it wraps is reported anyway."""

    def filter(self, record: logging.LogRecord) -> bool:
        return "event loop cycle failed" not in record.getMessage()


@contextmanager
def in_one_line() -> Iterator[None]:
    """Report an expected failure in the block as ``error: ...`` on stderr and exit 1; let bugs raise."""
    event_loop_log, not_twice = logging.getLogger("strands.event_loop.event_loop"), _NotLoggedTwice()
    event_loop_log.addFilter(not_twice)
    try:
        yield
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        raise SystemExit(INTERRUPTED_EXIT_STATUS) from None
    except Exception as error:
        line = one_line(error)
        if line is None:
            raise
        print(f"error: {line}", file=sys.stderr)
        raise SystemExit(EXIT_STATUS) from None
    finally:
        event_loop_log.removeFilter(not_twice)


def one_line(error: BaseException) -> str | None:
    """What to tell the user about ``error``, as one line with a hint; ``None`` if it is not an expected failure."""
    while isinstance(error, EventLoopException):
        error = error.original_exception
    describers: tuple[Callable[[BaseException], str | None], ...] = (
        _example,
        _mongodb,
        _session_library,
        _bedrock,
        _openai,
        _ollama,
        _model_provider,
    )
    for describe in describers:
        if (line := describe(error)) is not None:
            return " ".join(line.split())
    return None


def excerpt(text: object) -> str:
    """``text`` cut to a short excerpt, safe to quote in a one-line message."""
    text = " ".join(str(text).split())
    return text if len(text) <= EXCERPT_CHARS else f"{text[: EXCERPT_CHARS - 3]}..."


def connection_reason(error: ConnectionFailure) -> str:
    """Why pymongo could not talk to the server, without its timeouts and topology description."""
    reason = str(error).split(" (configured timeouts", 1)[0].split(", Timeout:", 1)[0]
    return excerpt(reason)


def _example(error: BaseException) -> str | None:
    return str(error) if isinstance(error, ExampleError) else None


def _mongodb(error: BaseException) -> str | None:
    if isinstance(error, ConnectionFailure):
        return (
            f"MongoDB stopped answering ({connection_reason(error)}); check that it is still running, "
            "then run again: what was stored so far is kept"
        )
    if isinstance(error, ConfigurationError):
        return f"invalid MongoDB settings: {excerpt(error)}; check --uri / $MONGODB_URI"
    return None


def _session_library(error: BaseException) -> str | None:
    if isinstance(error, InvalidIdentifierError):
        option = "--session-id (or $SESSION_ID)" if error.field == "session_id" else error.field
        return f"{error}; pass another {option}"
    if isinstance(error, LayoutMismatchError):
        migrate = (
            ", or migrate it (python -m mongodb_session_manager migrate --help)"
            if error.stored_layout == "embedded"
            else ""
        )
        return (
            f"session {excerpt(repr(error.session_id))} is stored in the {error.stored_layout!r} layout, "
            f"not {error.configured_layout!r}: open it with layout {error.stored_layout!r} "
            f"or pass another --session-id{migrate}"
        )
    if isinstance(error, SessionConflictError | StaleAgentError):
        return f"{excerpt(error)} (another process wrote to this session at the same time); run again to continue"
    if isinstance(error, MongoDBSessionError):
        return excerpt(error)
    return None


def _bedrock(error: BaseException) -> str | None:
    if isinstance(error, botocore.exceptions.NoCredentialsError):
        return (
            "Amazon Bedrock needs AWS credentials and none were found: configure them (aws configure, "
            f"$AWS_PROFILE, or $AWS_ACCESS_KEY_ID and $AWS_SECRET_ACCESS_KEY), {OFFLINE}"
        )
    if isinstance(error, botocore.exceptions.NoRegionError):
        return f"Amazon Bedrock needs an AWS region: set $AWS_REGION, {OFFLINE}"
    if isinstance(error, botocore.exceptions.ClientError):
        details = error.response.get("Error", {})
        return (
            f"Amazon Bedrock refused the request ({details.get('Code')}: {excerpt(details.get('Message'))}); "
            f"check your AWS credentials, region and access to $BEDROCK_MODEL_ID, {OFFLINE}"
        )
    if isinstance(error, botocore.exceptions.BotoCoreError):
        return f"Amazon Bedrock: {excerpt(error)}; check your AWS configuration and network, {OFFLINE}"
    return None


def _openai(error: BaseException) -> str | None:
    try:
        import openai
    except ImportError:
        return None
    if isinstance(error, openai.AuthenticationError):
        return f"OpenAI refused the API key in $OPENAI_API_KEY; check it, {OFFLINE}"
    if isinstance(error, openai.APIConnectionError):
        return f"cannot reach the OpenAI API ({excerpt(error)}); check your network, {OFFLINE}"
    if isinstance(error, openai.APIStatusError):
        return (
            f"OpenAI answered {error.status_code} ({excerpt(error.message)}); "
            f"check $OPENAI_MODEL_ID and your account, {OFFLINE}"
        )
    if isinstance(error, openai.OpenAIError):
        return f"OpenAI: {excerpt(error)}; {OFFLINE}"
    return None


def _ollama(error: BaseException) -> str | None:
    try:
        import ollama
    except ImportError:
        return None
    if isinstance(error, ollama.ResponseError):
        return (
            f"Ollama answered {error.status_code} ({excerpt(error.error)}); pull the model "
            f"(ollama pull $OLLAMA_MODEL_ID), {OFFLINE}"
        )
    return None


def _model_provider(error: BaseException) -> str | None:
    if isinstance(error, httpx.TransportError):
        try:
            url = error.request.url
            where = f" at {url.scheme}://{url.netloc.decode()}"
        except RuntimeError:  # raised without a request
            where = ""
        return (
            f"cannot reach the model server{where} ({excerpt(error)}); check that it is running "
            f"(Ollama: $OLLAMA_HOST), {OFFLINE}"
        )
    if isinstance(error, ModelThrottledException):
        return f"the model provider is throttling requests ({excerpt(error)}); wait and run again"
    return None
