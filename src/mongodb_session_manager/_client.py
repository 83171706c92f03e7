"""Creation of the MongoClients this library owns."""

from collections.abc import Callable
from typing import Any

from pymongo import MongoClient
from pymongo.driver_info import DriverInfo

from ._version import __version__

DRIVER_INFO = DriverInfo(name="mongodb-session-manager", version=__version__)


def open_or_borrow(
    connection_string: str | None,
    client: MongoClient[Any] | None,
    client_kwargs: dict[str, Any],
    open_client: Callable[..., MongoClient[Any]],
) -> tuple[MongoClient[Any], bool]:
    """Borrow ``client``, or open one with ``open_client(connection_string, **client_kwargs)``.

    Returns the client and whether it was opened here. Exactly one of the two must be given.
    """
    if client is not None:
        if client_kwargs or connection_string is not None:
            raise ValueError("connection_string and client options only apply when no client is given")
        return client, False
    if connection_string is None:
        raise ValueError("pass either connection_string or client")
    return open_client(connection_string, **client_kwargs), True


def create_client(connection_string: str, **client_kwargs: Any) -> MongoClient[dict[str, Any]]:
    """Open a client that identifies this library to the server (visible in server logs)."""
    client_kwargs.setdefault("driver", DRIVER_INFO)
    return MongoClient(connection_string, **client_kwargs)
