"""What every CLI command shares: the location arguments, the client options, server errors in one line."""

import argparse
import os
import re
from typing import Any

from pymongo.errors import ConfigurationError, ConnectionFailure, ExecutionTimeout, OperationFailure, PyMongoError

PROG = "python -m mongodb_session_manager"
URI_SCHEMES = ("mongodb://", "mongodb+srv://")
SERVER_SELECTION_TIMEOUT_MS = 5000
"""How long to look for a server when the URI does not say (pymongo's own default is 30 s)."""
AUTHENTICATION_FAILED = 18
UNAUTHORIZED = 13
ERROR_EXCERPT_CHARS = 300
"""How much of a server error message is printed."""


def add_location_arguments(command: argparse.ArgumentParser) -> None:
    """Add ``--uri``, ``--database``, ``--collection`` and ``--messages-collection`` to ``command``."""
    command.add_argument(
        "--uri", default=os.environ.get("MONGODB_URI"), help="mongodb:// or mongodb+srv:// URI (default: $MONGODB_URI)"
    )
    command.add_argument("--database", required=True, help="database holding the sessions")
    command.add_argument("--collection", default="sessions", help="session collection (default: %(default)s)")
    command.add_argument("--messages-collection", help="messages collection (default: <collection>_messages)")


def client_options(uri: str) -> dict[str, Any]:
    """``serverSelectionTimeoutMS`` capped at a few seconds, unless the URI sets it."""
    options = re.split("[&;]", uri.partition("?")[2])
    if any(option.partition("=")[0].lower() == "serverselectiontimeoutms" for option in options):
        return {}
    return {"serverSelectionTimeoutMS": SERVER_SELECTION_TIMEOUT_MS}


def server_failure(error: PyMongoError, database: str, kept: str) -> tuple[str, int]:
    """The one line for a pymongo error, with the hint that fits it, and the exit status.

    ``kept`` tells what stays done when a command fails half-way; the hint says to run the command
    again only when that can help (a network error or timeout).
    """
    message = one_line(error)
    if isinstance(error, ConfigurationError):  # e.g. an SRV record that does not resolve
        return f"{message}; check the URI", 2
    if isinstance(error, OperationFailure) and error.code == AUTHENTICATION_FAILED:
        return "authentication failed; check the user and password in the URI (and authSource)", 1
    if isinstance(error, OperationFailure) and error.code == UNAUTHORIZED:
        return f"{message}; the URI's user may not do this: it needs readWrite on {database}; {kept}", 1
    transient = isinstance(error, ConnectionFailure | ExecutionTimeout) or error.timeout
    if transient or error.has_error_label("RetryableWriteError"):
        return f"{message}; check that the server is reachable, then run the command again ({kept})", 1
    return f"{message}; {kept}", 1


def one_line(error: Exception) -> str:
    """The error's message on one line, without pymongo's topology dump, at most ``ERROR_EXCERPT_CHARS``."""
    text = " ".join(str(error).split())
    text = re.sub(r" \(configured timeouts: [^)]*\)", "", text).split(", Timeout: ")[0].split(", full error: ")[0]
    return text if len(text) <= ERROR_EXCERPT_CHARS else text[:ERROR_EXCERPT_CHARS] + "..."
