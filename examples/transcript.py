"""Printing helpers shared by the examples: messages, stored documents and metrics summaries."""

from collections.abc import Iterable, Mapping
from pprint import pformat
from typing import Any


def text_of(message: Mapping[str, Any]) -> str:
    """One line for a Strands message: its text, tool calls and tool results."""
    parts = []
    for block in message["content"]:
        if "text" in block:
            parts.append(block["text"].strip())
        elif "toolUse" in block:
            parts.append(f"<calls {block['toolUse']['name']}({block['toolUse']['input']})>")
        elif "toolResult" in block:
            texts = [item["text"] for item in block["toolResult"]["content"] if "text" in item]
            parts.append(f"<tool result: {' '.join(texts)}>")
    return " ".join(parts)


def print_messages(messages: Iterable[Mapping[str, Any]], last: int | None = None) -> None:
    """Print ``role | text`` for each message (only the ``last`` ones when given)."""
    messages = list(messages)
    if last is not None and len(messages) > last:
        print(f"  ... {len(messages) - last} earlier messages not shown")
        messages = messages[-last:]
    for message in messages:
        print(f"  {message['role']:<9} | {text_of(message)}")


def shape(value: Any) -> Any:
    """A document's structure with type names for values, each list shown by its last item."""
    if isinstance(value, Mapping):
        return {key: shape(item) for key, item in value.items()}
    if isinstance(value, list):
        return [f"{len(value)} items, the last:", shape(value[-1])] if value else []
    return type(value).__name__


def print_metrics_summary(summary: Mapping[str, Any]) -> None:
    """Print the session totals of ``manager.get_metrics_summary()``."""
    print("Metrics summary (summed by MongoDB from the metrics stored on assistant messages):")
    print(pformat(summary["totals"], sort_dicts=False))
