"""Creation of the MongoClients this library owns."""

from collections.abc import Callable
from typing import Any

from pymongo import MongoClient
from pymongo.driver_info import DriverInfo
from pymongo.errors import ConfigurationError

from ._connection_key import MASK, SECRET_OPTIONS, masked_uri, scrubbed
from ._version import __version__
from .errors import InvalidArgumentError

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
            given = sorted(client_kwargs) or ["connection_string"]
            raise InvalidArgumentError("client", given, "connection_string and client options only apply without one")
        return client, False
    if connection_string is None:
        raise InvalidArgumentError("connection_string", None, "pass either connection_string or client")
    if not isinstance(connection_string, str):
        raise InvalidArgumentError("connection_string", type(connection_string).__name__, "must be a str")
    return open_client(connection_string, **client_kwargs), True


def create_client(connection_string: str, **client_kwargs: Any) -> MongoClient[dict[str, Any]]:
    """Open a client that identifies this library to the server (visible in server logs)."""
    client_kwargs.setdefault("driver", DRIVER_INFO)
    return MongoClient(connection_string, **client_kwargs)


def create_checked_client(connection_string: str, **client_kwargs: Any) -> MongoClient[dict[str, Any]]:
    """:func:`create_client`, with options pymongo refuses raised as :class:`InvalidArgumentError`.

    The message is pymongo's, with the URI's and the options' credentials masked.
    """
    try:
        return create_client(connection_string, **client_kwargs)
    except (ConfigurationError, ValueError, TypeError, OSError) as error:  # OSError: a TLS file it cannot use
        reason = scrubbed(str(error), connection_string)
        for name, value in client_kwargs.items():
            if name.lower() in SECRET_OPTIONS and isinstance(value, str) and value:
                reason = reason.replace(value, MASK)
        raise InvalidArgumentError("client options", masked_uri(connection_string), reason) from error
