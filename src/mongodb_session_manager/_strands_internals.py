"""Every reliance on private internals of Strands (written against strands-agents 1.62), in one place.

The library relies on:

* ``SessionAgent._internal_state``: the dataclass field holding Strands-managed agent state
  (interrupt state, model state). It is read to store it and passed to rebuild a stored agent.
* ``RepositorySessionManager._latest_agent_message``, ``._last_synced_internal_state`` and
  ``._held_records``: per-agent records keyed by agent id. They are dropped so that a new Agent
  can take over the id of one that went stale.
* ``RepositorySessionManager.sync_agent`` recording its change-tracking baseline in
  ``_last_synced_internal_state`` after the repository's ``update_agent`` returns, even when that
  call wrote nothing: this is how a freshly initialised agent is marked as synced without a write.

:func:`problems` checks all of them against the installed Strands and names what changed; the
test suite runs it (``tests/test_strands_internals.py``). CLAUDE.md says how to check a release.
"""

import dataclasses
from contextlib import AbstractContextManager
from typing import Any

from strands.session.repository_session_manager import RepositorySessionManager
from strands.types.agent import LocalAgent
from strands.types.session import SessionAgent

INTERNAL_STATE_FIELD = "_internal_state"
AGENT_RECORDS = ("_latest_agent_message", "_last_synced_internal_state", "_held_records")
"""Per-agent records of ``RepositorySessionManager``, each a dict keyed by agent id."""
SYNC_BASELINE = "_last_synced_internal_state"
"""Where ``RepositorySessionManager.sync_agent`` records what it last synced for an agent."""


def internal_state_of(agent: SessionAgent) -> dict[str, Any]:
    """The Strands-managed state of a ``SessionAgent``."""
    state: dict[str, Any] = getattr(agent, INTERNAL_STATE_FIELD)
    return state


def session_agent(
    *,
    agent_id: str,
    state: dict[str, Any],
    conversation_manager_state: dict[str, Any],
    internal_state: dict[str, Any],
    created_at: str,
    updated_at: str,
) -> SessionAgent:
    """A ``SessionAgent`` with the given values, exactly (``from_dict`` would decode base64-wrapper shapes)."""
    return SessionAgent(
        agent_id=agent_id,
        state=state,
        conversation_manager_state=conversation_manager_state,
        created_at=created_at,
        updated_at=updated_at,
        **{INTERNAL_STATE_FIELD: internal_state},
    )


def forget_agent_records(manager: RepositorySessionManager, agent_id: str) -> None:
    """Drop what Strands' manager recorded for ``agent_id``, so a new Agent can take the id over."""
    for name in AGENT_RECORDS:
        records: dict[str, Any] = getattr(manager, name)
        records.pop(agent_id, None)


def record_sync_baseline(
    manager: RepositorySessionManager, agent: LocalAgent, *, writing_nothing: AbstractContextManager[None]
) -> None:
    """Make Strands record ``agent`` as synced without a write: its ``sync_agent``, with ``update_agent`` a no-op.

    ``writing_nothing`` is the block inside which the repository's ``update_agent`` writes nothing.
    """
    with writing_nothing:
        RepositorySessionManager.sync_agent(manager, agent)


def problems(manager: RepositorySessionManager, initialised_agent_id: str) -> list[str]:
    """What no longer holds in the installed Strands, for a manager that initialised and synced an agent."""
    found = []
    if INTERNAL_STATE_FIELD not in {field.name for field in dataclasses.fields(SessionAgent)}:
        found.append(f"strands.types.session.SessionAgent has no dataclass field {INTERNAL_STATE_FIELD!r}")
    for name in AGENT_RECORDS:
        if not isinstance(getattr(manager, name, None), dict):
            found.append(f"RepositorySessionManager.{name} is no longer a dict keyed by agent id")
    baseline = getattr(manager, SYNC_BASELINE, None)
    if isinstance(baseline, dict) and initialised_agent_id not in baseline:
        found.append(
            f"RepositorySessionManager.sync_agent no longer records its baseline in {SYNC_BASELINE} "
            "after an update_agent that wrote nothing"
        )
    return found
