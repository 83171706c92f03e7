"""Where the examples find MongoDB: ``MONGODB_URI`` if set, else an embedded server they start.

The embedded server is SecantusDB, a MongoDB wire-protocol server written in Python (a dev and
examples dependency, GPL-2.0, never imported by the library). By default it keeps its data on
disk under ``.data/<example>/`` in the repository, so a second run continues the first one;
``--in-memory`` keeps nothing.

What the user gets wrong here fails in one line (:class:`failures.ExampleError`) before the example
starts: a URI that is not one (refused before any connection attempt), a server that does not answer
a ping within ``serverSelectionTimeoutMS`` (5 s unless the URI sets it), a data folder another example holds.
"""

import argparse
import os
import sys
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

from pymongo import MongoClient
from pymongo.errors import ConfigurationError, ConnectionFailure, OperationFailure

from failures import ExampleError, connection_reason, excerpt

DATA_ROOT = Path(__file__).resolve().parent.parent / ".data"


def add_session_id_argument(parser: argparse.ArgumentParser, default: str) -> None:
    """Add ``--session-id`` (default ``$SESSION_ID``, else ``default``: a fixed id, so a second run continues)."""
    parser.add_argument(
        "--session-id", default=os.environ.get("SESSION_ID", default), help="default: $SESSION_ID or %(default)s"
    )


def add_mongodb_arguments(parser: argparse.ArgumentParser, example: str) -> None:
    """Add ``--uri``, ``--database``, ``--data-dir`` and ``--in-memory`` (defaults from the environment)."""
    group = parser.add_argument_group("MongoDB")
    group.add_argument(
        "--uri",
        default=os.environ.get("MONGODB_URI"),
        help="MongoDB URI (default: $MONGODB_URI; unset starts an embedded SecantusDB server)",
    )
    group.add_argument("--database", default=os.environ.get("MONGODB_DATABASE", "examples"), help="database name")
    group.add_argument(
        "--data-dir",
        type=Path,
        default=Path(os.environ.get("MONGODB_DATA_DIR", DATA_ROOT / example)),
        help="where the embedded server keeps its data (default: $MONGODB_DATA_DIR or %(default)s)",
    )
    group.add_argument("--in-memory", action="store_true", help="embedded server keeps nothing on disk")


SERVER_SELECTION_TIMEOUT_MS = 5000
"""How long the examples wait for an unreachable server before failing (pymongo's default is 30 s)."""

URI_SCHEMES = ("mongodb://", "mongodb+srv://")
AUTHENTICATION_FAILED = 18


def without_password(uri: str) -> str:
    """``uri`` safe to print: any password replaced by ``***`` (in a string that is no URI, all before ``@``)."""
    if not uri.startswith(URI_SCHEMES):
        return f"***@{uri.rpartition('@')[2]}" if "@" in uri else uri
    parts = urlsplit(uri)
    if parts.password is None:
        return uri
    return urlunsplit(parts._replace(netloc=parts.netloc.replace(f":{parts.password}@", ":***@", 1)))


def checked_uri(uri: str) -> str:
    """``uri`` if it is a MongoDB connection string; else :class:`ExampleError`, before any connection attempt."""
    if not uri.startswith(URI_SCHEMES):
        raise ExampleError(
            f"{excerpt(repr(without_password(uri)))} (--uri or $MONGODB_URI) is not a MongoDB URI: give one "
            "starting with mongodb:// or mongodb+srv://, or unset it to use the embedded server"
        )
    return uri


def failing_fast(uri: str) -> str:
    """``uri`` with ``serverSelectionTimeoutMS`` added, unless it already sets one."""
    if "serverselectiontimeoutms=" in uri.lower():
        return uri
    separator = "&" if "?" in uri else ("?" if urlsplit(uri).path else "/?")
    return f"{uri}{separator}serverSelectionTimeoutMS={SERVER_SELECTION_TIMEOUT_MS}"


def check_answering(uri: str, shown: str) -> None:
    """Ping the server at ``uri``: :class:`ExampleError` naming it as ``shown`` if it cannot be used.

    That is: the URI does not parse, the server does not answer, or it refuses the credentials.
    """
    try:
        client = MongoClient[dict[str, Any]](uri)
    except (ConfigurationError, ValueError) as error:  # pymongo's URI parser raises both
        raise ExampleError(f"invalid MongoDB URI {shown}: {excerpt(error)}; check --uri / $MONGODB_URI") from error
    try:
        with client:
            client.admin.command("ping")
    except ConnectionFailure as error:
        raise ExampleError(
            f"cannot reach MongoDB at {shown} ({connection_reason(error)}): is it running? "
            "Check --uri / $MONGODB_URI, or unset it to use the embedded server"
        ) from error
    except OperationFailure as error:
        if error.code != AUTHENTICATION_FAILED:
            raise
        raise ExampleError(
            f"MongoDB at {shown} refused the user name or password: check the credentials in --uri / $MONGODB_URI"
        ) from error


@contextmanager
def mongodb_uri(args: argparse.Namespace) -> Iterator[str]:
    """Yield the URI from ``args``, starting (and finally stopping) an embedded server if none was given."""
    if not args.uri:
        with embedded_server(args) as uri:
            yield uri
        return
    uri = failing_fast(checked_uri(args.uri))
    shown = without_password(args.uri)
    print(f"MongoDB: {shown}")
    check_answering(uri, shown)
    yield uri


@contextmanager
def embedded_server(args: argparse.Namespace) -> Iterator[str]:
    """Start SecantusDB on ``args.data_dir`` (or in memory), yield its URI, stop it afterwards."""
    try:
        from secantus import SecantusDBServer  # type: ignore[import-untyped]
    except ImportError as error:
        raise ExampleError(
            "the embedded MongoDB server (secantusdb) is not installed: run the examples with `uv run` from a "
            "checkout, which installs their dependencies, or set MONGODB_URI"
        ) from error
    try:
        if not args.in_memory:
            args.data_dir.mkdir(parents=True, exist_ok=True)
        with native_stderr_held():
            server = SecantusDBServer(
                host="127.0.0.1", port=0, storage_path=":memory:" if args.in_memory else str(args.data_dir)
            )
        server.start()
    except Exception as error:
        raise ExampleError(start_failure(args, error)) from error
    where = "in memory" if args.in_memory else f"data in {args.data_dir}"
    print(f"MongoDB: embedded SecantusDB server at {server.uri} ({where})")
    try:
        yield server.uri
    finally:
        server.stop()


def start_failure(args: argparse.Namespace, error: Exception) -> str:
    """Why the embedded server did not start, and what to do about it."""
    if not args.in_memory and "busy" in str(error).lower():  # WiredTiger: the folder's lock is taken
        return (
            f"the data folder {args.data_dir} is in use by another process (another example running on it?): "
            "stop that one, or pass --in-memory or --data-dir DIR"
        )
    where = "in memory" if args.in_memory else f"on {args.data_dir}"
    return f"could not start the embedded server {where} ({excerpt(error)}); pass --in-memory or --data-dir DIR"


@contextmanager
def native_stderr_held() -> Iterator[None]:
    """Hold what is written to file descriptor 2 in the block; let it out only if the block succeeds.

    WiredTiger, under SecantusDB, prints its errors (such as a data folder locked by another
    process) straight to the process's stderr. When that fails, the example reports it in one line
    instead; when it succeeds, anything held is written out as usual.
    """
    sys.stderr.flush()
    saved = os.dup(2)
    with tempfile.TemporaryFile() as held:
        os.dup2(held.fileno(), 2)
        try:
            yield
        finally:
            sys.stderr.flush()
            os.dup2(saved, 2)
            os.close(saved)
        held.seek(0)
        if text := held.read().decode(errors="replace"):
            sys.stderr.write(text)
