"""What a fork of a session holds: a copy of its record, cut after one message of one agent if asked.

The fork keeps the source's owners, metadata, multi-agent state and every agent's state as they are
now (state has no history). With ``up_to_message_id`` it keeps only the messages ``0..up_to_message_id``
of the chosen agent, and clamps that agent's conversation-manager offset (``removed_message_count``)
to the messages kept; other agents are copied whole. The fork's title is the source's title (or
first prompt) followed by :data:`FORK_MARKER`, and ``forked_from`` says where it came from.
"""

from dataclasses import replace
from datetime import datetime

from ._documents import removed_message_count
from ._schema import Document
from ._session_record import SessionRecord
from .errors import InvalidArgumentError, SessionNotFoundError, excerpt
from .validation import MAX_TITLE_LENGTH

FORK_MARKER = " (fork)"
"""Appended to the source's title to make the fork's."""


def forked(
    source: SessionRecord, new_session_id: str, *, up_to_message_id: int | None, agent_id: str | None, at: datetime
) -> SessionRecord:
    """The record of a fork of ``source`` made at ``at`` (arguments checked as ``fork_session`` documents)."""
    messages = dict(source.messages)
    agents = dict(source.agents)
    first_prompt = source.first_prompt
    if up_to_message_id is None:
        if agent_id is not None:
            raise InvalidArgumentError("agent_id", agent_id, "only applies with up_to_message_id")
    else:
        agent_id = _agent_to_cut(source, agent_id)
        kept = messages.get(agent_id, [])
        if up_to_message_id >= len(kept):
            raise SessionNotFoundError(
                f"message {up_to_message_id} of agent {excerpt(agent_id)} not found in session "
                f"{excerpt(source.session_id)}"
            )
        messages[agent_id] = kept[: up_to_message_id + 1]
        agents[agent_id] = _clamped(agents[agent_id], up_to_message_id + 1)
        if first_prompt is not None and first_prompt.get("agent_id") == agent_id:
            first_prompt = first_prompt if first_prompt.get("message_id", 0) <= up_to_message_id else None
    return replace(
        source,
        session_id=new_session_id,
        created_at=at,
        updated_at=at,
        title=_fork_title(source),
        first_prompt=first_prompt,
        expires_at=None,
        forked_from={
            "session_id": source.session_id,
            "agent_id": agent_id,
            "up_to_message_id": up_to_message_id,
            "at": at,
        },
        agents=agents,
        messages=messages,
    )


def _agent_to_cut(source: SessionRecord, agent_id: str | None) -> str:
    """The agent whose messages are cut: ``agent_id``, or the session's only agent."""
    if agent_id is not None:
        if agent_id not in source.agents:
            raise SessionNotFoundError(f"agent {excerpt(agent_id)} not found in session {excerpt(source.session_id)}")
        return agent_id
    if len(source.agents) == 1:
        return next(iter(source.agents))
    if not source.agents:
        raise SessionNotFoundError(f"session {excerpt(source.session_id)} has no agent, so no message to fork after")
    names = ", ".join(excerpt(name) for name in list(source.agents)[:5])
    raise InvalidArgumentError(
        "agent_id", None, f"is required: session {excerpt(source.session_id)} has {len(source.agents)} agents ({names})"
    )


def _clamped(entry: Document, kept: int) -> Document:
    """The agent entry with its conversation manager's offset no further than the ``kept`` messages."""
    state = dict(entry.get("conversation_manager_state") or {})
    if removed_message_count(entry) > kept:
        state["removed_message_count"] = kept
    return {**entry, "conversation_manager_state": state}


def _fork_title(source: SessionRecord) -> str | None:
    base = source.title or (source.first_prompt or {}).get("text")
    if not isinstance(base, str) or not base.strip():
        return None
    return base[: MAX_TITLE_LENGTH - len(FORK_MARKER)] + FORK_MARKER
