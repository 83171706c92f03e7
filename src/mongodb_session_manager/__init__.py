"""MongoDB session persistence for Strands Agents, and a MongoDB backend for Strands' ``Storage``.

Typed errors live in :mod:`mongodb_session_manager.errors`.
"""

from ._version import __version__
from .listing import SessionPage, SessionSummary
from .mongodb_connection_pool import MongoDBConnectionPool
from .mongodb_session_factory import (
    MongoDBSessionManagerFactory,
    close_global_factory,
    get_global_factory,
    initialize_global_factory,
)
from .mongodb_session_manager import MongoDBSessionManager, create_mongodb_session_manager
from .mongodb_session_repository import MongoDBSessionRepository
from .storage import MongoDBStorage

__all__ = [
    "MongoDBConnectionPool",
    "MongoDBSessionManager",
    "MongoDBSessionManagerFactory",
    "MongoDBSessionRepository",
    "MongoDBStorage",
    "SessionPage",
    "SessionSummary",
    "__version__",
    "close_global_factory",
    "create_mongodb_session_manager",
    "get_global_factory",
    "initialize_global_factory",
]
