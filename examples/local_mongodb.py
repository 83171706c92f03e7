"""Where the examples find MongoDB: ``MONGODB_URI`` if set, else an embedded server they start.

The embedded server is SecantusDB, a MongoDB wire-protocol server written in Python (a dev and
examples dependency, GPL-2.0, never imported by the library). By default it keeps its data on
disk under ``.data/<example>/`` in the repository, so a second run continues the first one;
``--in-memory`` keeps nothing.
"""

import argparse
import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

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


def without_password(uri: str) -> str:
    """``uri`` safe to print: any password replaced by ``***``."""
    parts = urlsplit(uri)
    if parts.password is None:
        return uri
    return urlunsplit(parts._replace(netloc=parts.netloc.replace(f":{parts.password}@", ":***@", 1)))


def failing_fast(uri: str) -> str:
    """``uri`` with ``serverSelectionTimeoutMS`` added, unless it already sets one."""
    if "serverselectiontimeoutms=" in uri.lower():
        return uri
    separator = "&" if "?" in uri else ("?" if urlsplit(uri).path else "/?")
    return f"{uri}{separator}serverSelectionTimeoutMS={SERVER_SELECTION_TIMEOUT_MS}"


@contextmanager
def mongodb_uri(args: argparse.Namespace) -> Iterator[str]:
    """Yield the URI from ``args``, starting (and finally stopping) an embedded server if none was given."""
    if args.uri:
        print(f"MongoDB: {without_password(args.uri)}")
        yield failing_fast(args.uri)
        return
    from secantus import SecantusDBServer  # type: ignore[import-untyped]

    if args.in_memory:
        storage, where = ":memory:", "in memory"
    else:
        args.data_dir.mkdir(parents=True, exist_ok=True)
        storage, where = str(args.data_dir), f"data in {args.data_dir}"
    server = SecantusDBServer(host="127.0.0.1", port=0, storage_path=storage)
    try:
        server.start()
    except Exception as error:
        raise SystemExit(
            f"could not start the embedded server on {storage} ({error}); is another example using that "
            "data folder? Stop it, or pass --in-memory or --data-dir"
        ) from error
    print(f"MongoDB: embedded SecantusDB server at {server.uri} ({where})")
    try:
        yield server.uri
    finally:
        server.stop()
