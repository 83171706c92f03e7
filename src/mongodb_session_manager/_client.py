"""Creation of the MongoClients this library owns."""

from typing import Any

from pymongo import MongoClient
from pymongo.driver_info import DriverInfo

from ._version import __version__

DRIVER_INFO = DriverInfo(name="mongodb-session-manager", version=__version__)


def create_client(connection_string: str, **client_kwargs: Any) -> MongoClient[dict[str, Any]]:
    """Open a client that identifies this library to the server (visible in server logs)."""
    client_kwargs.setdefault("driver", DRIVER_INFO)
    return MongoClient(connection_string, **client_kwargs)
