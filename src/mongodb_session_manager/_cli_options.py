"""What every CLI command shares: the location arguments, the URI schemes and the client options."""

import argparse
import os
import re
from typing import Any

PROG = "python -m mongodb_session_manager"
URI_SCHEMES = ("mongodb://", "mongodb+srv://")
SERVER_SELECTION_TIMEOUT_MS = 5000
"""How long to look for a server when the URI does not say (pymongo's own default is 30 s)."""


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
