"""Strands session manager backed by :class:`MongoDBSessionRepository`, recording model metrics."""

import logging
import weakref
from contextlib import AbstractContextManager, nullcontext
from datetime import timedelta
from types import TracebackType
from typing import TYPE_CHECKING, Any

from pymongo import MongoClient
from strands.session.repository_session_manager import RepositorySessionManager
from strands.types.agent import LocalAgent
from strands.types.content import Message

from ._binding import SessionBinding, bound
from ._schema import Layout
from ._strands_internals import forget_agent_records, record_sync_baseline
from .errors import StaleAgentError, excerpt
from .metrics import assistant_message_metrics
from .mongodb_session_repository import MongoDBSessionRepository, agent_already_stored
from .validation import validate_session_id

if TYPE_CHECKING:
    from strands.multiagent.base import MultiAgentBase

logger = logging.getLogger(__name__)


class MongoDBSessionManager(RepositorySessionManager):
    """Persists an agent's conversation and state in MongoDB.

    Pass it to ``strands.Agent(session_manager=...)``. Every assistant message is stored with an
    ``event_loop_metrics`` field (tokens and latency of the model call that produced it), written
    in the same command as the message. Extra keyword arguments are ``MongoClient`` options,
    used only when the manager creates its own client from ``connection_string``.

    Each Agent (and Graph or Swarm) is bound to the session as it was when it was initialised:
    if the session is deleted, or deleted and created again under the same id, its later writes
    raise ``SessionNotFoundError`` and never land in the new session. A new Agent starts afresh.
    """

    def __init__(
        self,
        session_id: str,
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
        **kwargs: Any,
    ) -> None:
        """Acquire the shared client (or borrow ``client``) and load or create the session ``session_id``.

        ``layout`` and ``messages_collection_name`` choose where messages are stored (see
        :class:`MongoDBSessionRepository`).
        """
        validate_session_id(session_id)
        repository = MongoDBSessionRepository(
            connection_string=connection_string,
            database_name=database_name,
            collection_name=collection_name,
            client=client,
            layout=layout,
            messages_collection_name=messages_collection_name,
            user_id=user_id,
            application_name=application_name,
            expire_after=expire_after,
            **kwargs,
        )
        try:
            super().__init__(session_id=session_id, session_repository=repository)
        except BaseException:
            repository.close()
            raise
        self.repository = repository
        self._stale_agents: weakref.WeakSet[LocalAgent] = weakref.WeakSet()
        self._agent_ids_gone_stale: set[str] = set()
        self._agent_bindings: dict[str, SessionBinding] = {}
        self._multi_agent_bindings: dict[str, SessionBinding] = {}

    def initialize(self, agent: LocalAgent, **kwargs: Any) -> None:
        """Create or restore the agent, bind it to the session as it is now, and record it as synced.

        Without the sync baseline, Strands' first sync of every new manager rewrites the agent's
        unchanged state: one wasted write per request in a web app that resumes per request.
        An agent id whose Agent went stale may be initialised again with a new Agent, which
        resumes from what is stored; the stale Agent stays refused.
        """
        if agent.agent_id in self._agent_ids_gone_stale:
            self._agent_ids_gone_stale.discard(agent.agent_id)
            forget_agent_records(self, agent.agent_id)
        binding = SessionBinding(self.session_id)
        with bound(binding):
            super().initialize(agent, **kwargs)
            record_sync_baseline(self, agent, writing_nothing=agent_already_stored())
        self._agent_bindings[agent.agent_id] = binding

    def append_message(self, message: Message, agent: LocalAgent, **kwargs: Any) -> None:
        """Persist a message; assistant messages carry their model call's metrics in the same write.

        If the write fails (another writer already stored this message id, the server is
        unreachable, the document is full), the error propagates and the Agent is marked stale:
        its conversation in memory no longer matches the store. Its later appends raise
        :class:`StaleAgentError` and its state is no longer synced, so it cannot leave a gap or
        overwrite another writer's data. Create a new Agent with the same session id (on this
        manager or another) to resume.
        """
        self._refuse_if_stale(agent)
        recorded = assistant_message_metrics(message, agent)
        extra_fields = {"event_loop_metrics": recorded} if recorded is not None else {}
        try:
            with self._as_writer(agent), self.repository.annotate_messages(**extra_fields):
                super().append_message(message, agent, **kwargs)
        except Exception:
            self._mark_stale(agent)
            raise

    def sync_agent(self, agent: LocalAgent, **kwargs: Any) -> None:
        """Persist the agent's state; skipped (with a warning) for a stale Agent."""
        if agent in self._stale_agents:
            logger.warning(
                "session_id=<%s>, agent_id=<%s> | not syncing a stale agent; re-create it to resume",
                self.session_id,
                agent.agent_id,
            )
            return
        with self._as_writer(agent):
            super().sync_agent(agent, **kwargs)

    def redact_latest_message(self, redact_message: Message, agent: LocalAgent, **kwargs: Any) -> None:
        """Rewrite the agent's latest message; refused for a stale Agent (it may be another writer's).

        If the rewrite fails, the Agent goes stale like after a failed append: its memory holds
        the redacted message while the store does not.
        """
        self._refuse_if_stale(agent)
        try:
            with self._as_writer(agent):
                super().redact_latest_message(redact_message, agent, **kwargs)
        except Exception:
            self._mark_stale(agent)
            raise

    def initialize_multi_agent(self, source: "MultiAgentBase", **kwargs: Any) -> None:
        """Create or restore the Graph or Swarm's state, binding it to the session as it is now."""
        binding = SessionBinding(self.session_id)
        with bound(binding):
            super().initialize_multi_agent(source, **kwargs)
        self._multi_agent_bindings[source.id] = binding

    def sync_multi_agent(self, source: "MultiAgentBase", **kwargs: Any) -> None:
        """Persist the Graph or Swarm's state into the session it was initialised against."""
        binding = self._multi_agent_bindings.get(source.id)
        with bound(binding) if binding is not None else nullcontext():
            super().sync_multi_agent(source, **kwargs)

    def _as_writer(self, agent: LocalAgent) -> AbstractContextManager[None]:
        """Bind the repository calls in this block to the session ``agent`` was initialised against."""
        binding = self._agent_bindings.get(agent.agent_id)
        return bound(binding) if binding is not None else nullcontext()

    def _mark_stale(self, agent: LocalAgent) -> None:
        self._stale_agents.add(agent)
        self._agent_ids_gone_stale.add(agent.agent_id)

    def _refuse_if_stale(self, agent: LocalAgent) -> None:
        if agent in self._stale_agents:
            raise StaleAgentError(
                f"agent {excerpt(agent.agent_id)} of session {excerpt(self.session_id)} missed a write and no longer "
                "matches what is stored; create a new Agent with this session id to resume"
            )

    def get_metrics_summary(self) -> dict[str, Any]:
        """Token and latency totals of this session (see ``MongoDBSessionRepository.get_metrics_summary``)."""
        return self.repository.get_metrics_summary(self.session_id)

    def close(self) -> None:
        """Give the shared client back (the last user closes it); a borrowed client stays open."""
        self.repository.close()

    def __enter__(self) -> "MongoDBSessionManager":
        """Use the manager as a context manager that closes it on exit."""
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        """Close the manager."""
        self.close()


def create_mongodb_session_manager(
    session_id: str,
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
    **kwargs: Any,
) -> MongoDBSessionManager:
    """``MongoDBSessionManager(...)`` with the same arguments.

    A ``connection_string`` uses the process-wide client shared by every user of that deployment
    and those options; ``client`` borrows one. ``layout="split"`` stores each message as its own
    document (no session size limit).
    """
    return MongoDBSessionManager(
        session_id,
        connection_string=connection_string,
        database_name=database_name,
        collection_name=collection_name,
        client=client,
        layout=layout,
        messages_collection_name=messages_collection_name,
        user_id=user_id,
        application_name=application_name,
        expire_after=expire_after,
        **kwargs,
    )
