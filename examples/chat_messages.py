"""What the chat endpoints say about messages: stored history, content blocks, tool events and turn metrics.

A stored Strands message holds content blocks (text, ``toolUse``, ``toolResult``, images, ...).
The endpoints describe each block as JSON the page can show: ``{"type": "text", "text"}``,
``{"type": "tool_use", "tool_use_id", "name", "input"}``, ``{"type": "tool_result", "tool_use_id",
"status", "text"}``, or ``{"type": "other", "kind"}`` for anything else (an image, a document).
"""

import json
import time
from datetime import UTC, datetime
from typing import Any

from strands import Agent
from strands.types.content import Message

from mongodb_session_manager import MongoDBSessionRepository
from mongodb_session_manager.errors import LayoutMismatchError, SessionNotFoundError
from mongodb_session_manager.validation import validate_field_name, validate_session_id


def content_blocks(message: Message) -> list[dict[str, Any]]:
    """The message's content blocks as JSON for the page (see the module docstring)."""
    blocks: list[dict[str, Any]] = []
    for block in message.get("content", []):
        if "text" in block:
            blocks.append({"type": "text", "text": block["text"]})
        elif "toolUse" in block:
            use = block["toolUse"]
            blocks.append(
                {"type": "tool_use", "tool_use_id": use["toolUseId"], "name": use["name"], "input": use["input"]}
            )
        elif "toolResult" in block:
            result = block["toolResult"]
            blocks.append(
                {
                    "type": "tool_result",
                    "tool_use_id": result["toolUseId"],
                    "status": result.get("status", "success"),
                    "text": tool_result_text(result["content"]),
                }
            )
        else:
            blocks.append({"type": "other", "kind": next(iter(block), "unknown")})
    return blocks


def tool_result_text(items: Any) -> str:
    """A tool result's content as text: its text items, JSON items serialised, other items named."""
    parts = []
    for item in items:
        if "text" in item:
            parts.append(item["text"])
        elif "json" in item:
            parts.append(json.dumps(item["json"], ensure_ascii=False, default=str))
        else:
            parts.append(f"[{next(iter(item), 'content')}]")
    return "\n".join(parts)


def message_text(message: Message) -> str:
    """The text of a message, with tool calls and results summarised (for clients that show text only)."""
    parts = []
    for block in content_blocks(message):
        if block["type"] == "text":
            parts.append(block["text"])
        elif block["type"] == "tool_use":
            parts.append(f"[calls {block['name']}]")
        elif block["type"] == "tool_result":
            parts.append("[tool result]")
    return "\n".join(parts)


def tool_events(message: Message) -> list[tuple[str, dict[str, Any]]]:
    """The streaming events announcing a message's tool calls (``tool_use``) and results (``tool_result``)."""
    return [(block["type"], block) for block in content_blocks(message) if block["type"] in ("tool_use", "tool_result")]


def iso(value: Any) -> str | None:
    return value.isoformat() if isinstance(value, datetime) else None


def stored_fields(repository: MongoDBSessionRepository, session_id: str, projection: dict[str, Any]) -> dict[str, Any]:
    """Fields of a stored session document that no library method returns, read in the repository's scope.

    The filter repeats what the library applies to every read: the repository's owner (so it never
    shows another user's session) and "not expired" (MongoDB's TTL monitor removes expired sessions
    only once a minute; until then the library treats them as absent). Raises
    :class:`SessionNotFoundError` like the library does.
    """
    owner = {"user_id": repository.user_id} if repository.user_id is not None else {}
    live = {"expires_at": {"$not": {"$lte": datetime.now(UTC)}}}
    document = repository.collection.find_one({"_id": session_id, **owner, **live}, projection)
    if document is None:
        raise SessionNotFoundError(f"session {session_id!r} not found")
    return document


def read_history(repository: MongoDBSessionRepository, session_id: str, agent_id: str) -> dict[str, Any]:
    """Every stored message of the agent, oldest first, each assistant message with its stored metrics: one read.

    Read straight from the session document (:func:`stored_fields`, in the repository's scope: another
    user's session raises :class:`SessionNotFoundError`, like a missing or expired one), because the
    library stores the model's usage and latency on each assistant message (``event_loop_metrics``),
    a field that Strands' ``SessionMessage`` (what ``list_messages`` returns) does not carry. That
    document holds the messages in the embedded layout, the one the chat app uses (``chat_api.LAYOUT``);
    ``export_session`` would read either layout, but it encodes stored values for JSON and the library
    has no public decoder for them.
    """
    validate_session_id(session_id)
    validate_field_name(agent_id, "agent_id")
    document = stored_fields(
        repository,
        session_id,
        {"created_at": 1, "updated_at": 1, "message_layout": 1, f"agents.{agent_id}.messages": 1},
    )
    layout = document.get("message_layout", "embedded")
    if layout != "embedded":
        raise LayoutMismatchError(session_id, layout, "embedded")
    entries = ((document.get("agents") or {}).get(agent_id) or {}).get("messages") or []
    messages = []
    for entry in entries:
        shown = entry.get("redact_message") or entry["message"]
        item: dict[str, Any] = {
            "message_id": entry["message_id"],
            "role": shown["role"],
            "text": message_text(shown),
            "content": content_blocks(shown),
            "redacted": entry.get("redact_message") is not None,
            "created_at": iso(entry.get("created_at")),
        }
        if "event_loop_metrics" in entry:
            item["event_loop_metrics"] = entry["event_loop_metrics"]
        messages.append(item)
    return {
        "agent_id": agent_id,
        "created_at": iso(document.get("created_at")),
        "updated_at": iso(document.get("updated_at")),
        "messages": messages,
    }


def next_message_id(agent: Agent) -> int:
    """The id the session manager gives the next message of ``agent``.

    Message ids count every message of the session; the Agent holds those past the ones its
    conversation manager removed, so the next id is the removed count plus what it holds.
    """
    return agent.conversation_manager.removed_message_count + len(agent.messages)


def turn_metrics(agent: Agent, started: float, first_chunk: float | None = None) -> dict[str, Any]:
    """This turn's model usage and latency.

    The Agent is created for this request, so its accumulated event-loop metrics are exactly this
    turn's (all model calls of it, tool cycles included). ``duration_ms`` is the server's wall time;
    ``messages_in_session`` counts every message of the conversation, those the conversation
    manager no longer sends to the model included.
    """
    loop_metrics = agent.event_loop_metrics
    usage = loop_metrics.accumulated_usage
    figures: dict[str, Any] = {
        "usage": {name: usage.get(name, 0) for name in ("inputTokens", "outputTokens", "totalTokens")},
        "model_latency_ms": loop_metrics.accumulated_metrics.get("latencyMs", 0),
        "cycles": loop_metrics.cycle_count,
        "duration_ms": round((time.monotonic() - started) * 1000, 1),
        "messages_in_session": next_message_id(agent),
    }
    if first_chunk is not None:
        figures["time_to_first_chunk_ms"] = round((first_chunk - started) * 1000, 1)
    return figures
