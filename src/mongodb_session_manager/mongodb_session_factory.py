"""A factory handing out session managers that share one connection pool, and a global instance of it.

In a web app, call :func:`initialize_global_factory` once at start-up (FastAPI: in the
``lifespan`` handler), ``get_global_factory().create_session_manager(session_id)`` per request,
and :func:`close_global_factory` at shutdown.
"""

import logging
import threading
from datetime import timedelta
from typing import Any

from pymongo import MongoClient

from ._client import open_or_borrow
from ._schema import Layout, default_messages_collection_name, validate_layout
from .errors import (
    FactoryAlreadyInitializedError,
    FactoryNotInitializedError,
    InvalidArgumentError,
    MongoDBSessionError,
)
from .mongodb_connection_pool import MongoDBConnectionPool
from .mongodb_session_manager import MongoDBSessionManager
from .mongodb_session_repository import MongoDBSessionRepository
from .validation import validate_expire_after, validate_owner

logger = logging.getLogger(__name__)


class MongoDBSessionManagerFactory:
    """Creates :class:`MongoDBSessionManager` instances over one shared ``MongoClient``.

    With ``client`` the factory borrows it and never closes it. Otherwise it acquires the
    process-wide :class:`MongoDBConnectionPool` with ``connection_string`` and
    ``client_kwargs`` (pool sizes, timeouts), and :meth:`close` releases it. Indexes are ensured
    here, once, so a new manager costs neither connection set-up nor an index command.
    """

    def __init__(
        self,
        connection_string: str | None = None,
        database_name: str = "strands",
        collection_name: str = "sessions",
        client: MongoClient[Any] | None = None,
        *,
        layout: Layout = "embedded",
        messages_collection_name: str | None = None,
        user_id: str | None = None,
        application_name: str | None = None,
        expire_after: float | timedelta | None = None,
        **client_kwargs: Any,
    ) -> None:
        """Acquire (or borrow) the client and ensure the indexes of ``layout``.

        ``application_name`` scopes every manager and repository it creates; ``user_id`` and
        ``expire_after`` are their defaults, which :meth:`create_session_manager` may override.
        """
        self.layout = validate_layout(layout)
        self.user_id = validate_owner(user_id, "user_id")
        self.application_name = validate_owner(application_name, "application_name")
        self.expire_after = validate_expire_after(expire_after)
        self._client, self._pooled = open_or_borrow(
            connection_string, client, client_kwargs, MongoDBConnectionPool.acquire
        )
        self.database_name = database_name
        self.collection_name = collection_name
        self.messages_collection_name = messages_collection_name or default_messages_collection_name(collection_name)
        self._closed = False
        self._lock = threading.Lock()
        self._managers_created = 0
        try:
            # A repository creates the indexes its layout needs (once per process and client).
            MongoDBSessionRepository(
                client=self._client,
                database_name=database_name,
                collection_name=collection_name,
                layout=layout,
                messages_collection_name=self.messages_collection_name,
            )
        except BaseException:
            self.close()
            raise

    @property
    def client(self) -> MongoClient[Any]:
        """The shared client (read on every call: after ``fork()`` the pool hands the child its own)."""
        if self._closed:
            raise MongoDBSessionError("this factory is closed")
        if not self._pooled:
            return self._client
        client = MongoDBConnectionPool.client_in_this_process(self._client)
        if client is None:
            raise MongoDBSessionError("the shared connection pool was closed under this factory")
        return client

    def create_session_manager(self, session_id: str, **kwargs: Any) -> MongoDBSessionManager:
        """A manager for ``session_id`` on the shared client.

        ``kwargs`` may set ``user_id`` and ``expire_after`` for this session, and override the
        collection or layout.
        """
        manager = MongoDBSessionManager(session_id, client=self.client, **self._defaults(kwargs))
        with self._lock:
            self._managers_created += 1
        return manager

    def create_repository(self, **kwargs: Any) -> MongoDBSessionRepository:
        """A repository on the shared client with this factory's settings (``user_id=...`` scopes it to one user)."""
        return MongoDBSessionRepository(client=self.client, **self._defaults(kwargs))

    def _defaults(self, kwargs: dict[str, Any]) -> dict[str, Any]:
        if kwargs.get("application_name", self.application_name) != self.application_name:
            raise InvalidArgumentError(
                "application_name", kwargs["application_name"], "is set for the whole factory and cannot be changed"
            )
        return {
            "database_name": self.database_name,
            "collection_name": self.collection_name,
            "layout": self.layout,
            "messages_collection_name": self.messages_collection_name,
            "user_id": self.user_id,
            "application_name": self.application_name,
            "expire_after": self.expire_after,
            **kwargs,
        }

    def get_connection_stats(self) -> dict[str, Any]:
        """Pool figures (for a pooled factory) plus how many managers this factory created."""
        with self._lock:
            managers_created = self._managers_created
        pool = MongoDBConnectionPool.get_pool_stats(self._client) if self._pooled else {"borrowed_client": True}
        return {
            "closed": self._closed,
            "database_name": self.database_name,
            "collection_name": self.collection_name,
            "layout": self.layout,
            "managers_created": managers_created,
            "pool": pool,
        }

    def close(self) -> None:
        """Release the shared pool (a borrowed client stays open). Safe to call twice."""
        with self._lock:
            if self._closed:
                return
            self._closed = True
        if self._pooled:
            MongoDBConnectionPool.release(self._client)


_ALREADY_INITIALISED = "the global factory is already initialised; call close_global_factory() first"
_global_lock = threading.Lock()
_global_factory: MongoDBSessionManagerFactory | None = None


def initialize_global_factory(
    connection_string: str | None = None,
    database_name: str = "strands",
    collection_name: str = "sessions",
    client: MongoClient[Any] | None = None,
    *,
    layout: Layout = "embedded",
    messages_collection_name: str | None = None,
    user_id: str | None = None,
    application_name: str | None = None,
    expire_after: float | timedelta | None = None,
    **client_kwargs: Any,
) -> MongoDBSessionManagerFactory:
    """Create the process's global factory (see :class:`MongoDBSessionManagerFactory`); raises if one is open."""
    global _global_factory
    if _global_factory is not None:
        raise FactoryAlreadyInitializedError(_ALREADY_INITIALISED)
    factory = MongoDBSessionManagerFactory(
        connection_string,
        database_name,
        collection_name,
        client=client,
        layout=layout,
        messages_collection_name=messages_collection_name,
        user_id=user_id,
        application_name=application_name,
        expire_after=expire_after,
        **client_kwargs,
    )
    with _global_lock:
        if _global_factory is None:
            _global_factory = factory
            logger.info("global session manager factory ready (%s.%s)", database_name, collection_name)
            return factory
    factory.close()  # another thread initialised it while this one was connecting
    raise FactoryAlreadyInitializedError(_ALREADY_INITIALISED)


def get_global_factory() -> MongoDBSessionManagerFactory:
    """The global factory; raises :class:`FactoryNotInitializedError` before initialisation."""
    with _global_lock:
        if _global_factory is None:
            raise FactoryNotInitializedError("call initialize_global_factory() first (e.g. in the app's lifespan)")
        return _global_factory


def close_global_factory() -> None:
    """Close and forget the global factory. A no-op when there is none."""
    global _global_factory
    with _global_lock:
        factory, _global_factory = _global_factory, None
    if factory is not None:
        factory.close()
        logger.info("global session manager factory closed")
