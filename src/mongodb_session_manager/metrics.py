"""Token and latency metrics: what is recorded on assistant messages, and how it is summarised.

Each assistant message Strands produces carries the usage and latency of the model call that
produced it (``message["metadata"]``). That per-call figure is what gets summed. The agent's
``event_loop_metrics.accumulated_*`` values are running totals for the Agent object: they reset
when the Agent is re-created and do not yet include the call that produced the message being
written, so they are recorded separately, under ``agent_totals_before_this_call``, and never summed.
"""

from typing import Any

TOKEN_FIELDS = ("inputTokens", "outputTokens", "totalTokens", "cacheReadInputTokens", "cacheWriteInputTokens")
LATENCY_FIELDS = ("latencyMs", "timeToFirstByteMs")

MetricsDocument = dict[str, Any]


def assistant_message_metrics(message: Any, agent: Any) -> MetricsDocument | None:
    """The ``event_loop_metrics`` stored with an assistant message, or None for other messages."""
    if not isinstance(message, dict) or message.get("role") != "assistant":
        return None
    metadata = message.get("metadata") or {}
    usage = metadata.get("usage") or {}
    call_metrics = metadata.get("metrics") or {}
    recorded: MetricsDocument = {
        "usage": {name: usage[name] for name in TOKEN_FIELDS if name in usage},
        **{name: call_metrics[name] for name in LATENCY_FIELDS if name in call_metrics},
    }
    loop_metrics = getattr(agent, "event_loop_metrics", None)
    if loop_metrics is not None:
        accumulated_usage = loop_metrics.accumulated_usage
        recorded["agent_totals_before_this_call"] = {
            "usage": {name: accumulated_usage[name] for name in TOKEN_FIELDS if name in accumulated_usage},
            "latencyMs": loop_metrics.accumulated_metrics.get("latencyMs", 0),
            "cycle_count": loop_metrics.cycle_count,
        }
    return recorded


def _sum_of(field: str) -> dict[str, Any]:
    return {"$sum": {"$ifNull": [f"$message.event_loop_metrics.{field}", 0]}}


def totals_per_agent_stages() -> list[dict[str, Any]]:
    """Aggregation stages summing per-call metrics per agent, sorted by agent id.

    They take documents ``{"agent_id": ..., "message": <stored message, or missing>}``, one per
    message (a missing ``message`` stands for an agent with none), and give rows for :func:`summarise`.
    """
    is_measured = {"$ne": [{"$type": "$message.event_loop_metrics"}, "missing"]}
    return [
        {
            "$group": {
                "_id": "$agent_id",
                "messages": {"$sum": {"$cond": [{"$ne": [{"$type": "$message"}, "missing"]}, 1, 0]}},
                "model_calls": {"$sum": {"$cond": [is_measured, 1, 0]}},
                **{name: _sum_of(f"usage.{name}") for name in TOKEN_FIELDS},
                "latencyMs": _sum_of("latencyMs"),
                "max_latencyMs": {"$max": "$message.event_loop_metrics.latencyMs"},
            }
        },
        {"$sort": {"_id": 1}},
    ]


def empty_row(agent_id: str) -> dict[str, Any]:
    """The row of an agent with no messages."""
    return {
        "_id": agent_id,
        "messages": 0,
        "model_calls": 0,
        "latencyMs": 0,
        "max_latencyMs": None,
        **dict.fromkeys(TOKEN_FIELDS, 0),
    }


def _figures(row: dict[str, Any]) -> dict[str, Any]:
    calls = row["model_calls"]
    return {
        "messages": row["messages"],
        "model_calls": calls,
        "tokens": {name: row[name] for name in TOKEN_FIELDS},
        "latency_ms": {
            "total": row["latencyMs"],
            "mean": row["latencyMs"] / calls if calls else None,
            "max": row["max_latencyMs"],
        },
    }


def summarise(session_id: str, rows: list[dict[str, Any]]) -> dict[str, Any]:
    """Shape the per-agent rows of :func:`totals_per_agent_stages` into the public summary."""
    session_row: dict[str, Any] = {
        "messages": sum(row["messages"] for row in rows),
        "model_calls": sum(row["model_calls"] for row in rows),
        "latencyMs": sum(row["latencyMs"] for row in rows),
        "max_latencyMs": max((row["max_latencyMs"] for row in rows if row["max_latencyMs"] is not None), default=None),
        **{name: sum(row[name] for row in rows) for name in TOKEN_FIELDS},
    }
    return {
        "session_id": session_id,
        "agents": {row["_id"]: _figures(row) for row in rows},
        "totals": _figures(session_row),
    }
