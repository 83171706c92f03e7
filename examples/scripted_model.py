"""A deterministic, offline ``strands`` model for the examples and the tests.

``ScriptedModel`` plays back a list of scripted turns, one per model call, as Bedrock
ConverseStream-shaped events, so a real ``strands.Agent`` (and Graph / Swarm) can run
without any network access::

    model = ScriptedModel([
        ToolCall("add", {"a": 1, "b": 2}),   # call 1: the model asks for a tool
        "The answer is 3.",                  # call 2: after the tool result, it answers
    ])
    agent = Agent(model=model, tools=[add], callback_handler=None)

A turn is one of:

* ``str`` - a plain text answer (``stopReason`` ``end_turn``);
* ``ToolCall(name, input)`` - a single tool call (``stopReason`` ``tool_use``);
* ``Reply(text, *tool_calls, redact_user_input=None)`` - text, optionally followed by tool calls;
  with ``redact_user_input`` a guardrail intervenes and asks for the user input to be redacted;
* ``Raise(error)`` - the model call raises ``error`` (to test failures and resumption).

When the script runs out the model raises ``ScriptExhaustedError``, unless a ``fallback``
responder is given; ``ScriptedModel.echo()`` answers every call with ``"echo: <last user text>"``.

Every response ends with a ``metadata`` event whose numbers are derived only from the request
and the turn, so they can be asserted exactly:

* ``inputTokens``  = 10 * number of messages sent to the model
* ``outputTokens`` = number of whitespace-separated words in the text + 1 per tool call
* ``totalTokens``  = input + output
* ``latencyMs``    = the model's ``latency_ms`` (default 100)
"""

from __future__ import annotations

import asyncio
import copy
import json
import re
import threading
from collections.abc import AsyncGenerator, Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, TypedDict, TypeVar

from pydantic import BaseModel
from strands.models.model import Model
from strands.types.content import Messages, SystemContentBlock
from strands.types.event_loop import StopReason
from strands.types.streaming import StreamEvent
from strands.types.tools import ToolChoice, ToolSpec

if TYPE_CHECKING:
    from strands.agent.agent_metadata import AgentMetadata

T = TypeVar("T", bound=BaseModel)

__all__ = [
    "Raise",
    "Reply",
    "Responder",
    "ScriptExhaustedError",
    "ScriptedModel",
    "ScriptedModelConfig",
    "ToolCall",
    "Turn",
    "echo_responder",
    "last_user_text",
]


class ScriptExhaustedError(RuntimeError):
    """Raised when a ``ScriptedModel`` is called more times than it has scripted turns."""


@dataclass(frozen=True)
class ToolCall:
    """A tool call the model makes: ``ToolCall("get_weather", {"city": "Paris"})``."""

    name: str
    input: Mapping[str, Any] = field(default_factory=dict)
    tool_use_id: str | None = None
    """Fixed toolUseId; by default one is derived from the conversation length."""


@dataclass(frozen=True, init=False)
class Reply:
    """One model response: some text, optionally followed by tool calls.

    ``Reply("hi")``, ``Reply("Let me check.", ToolCall("lookup", {"q": "x"}))``,
    ``Reply("", ToolCall("a"), ToolCall("b"))``.
    """

    text: str
    tool_calls: tuple[ToolCall, ...]
    redact_user_input: str | None
    """If set, a guardrail intervenes: the user's input is to be replaced by this text."""

    def __init__(self, text: str = "", *tool_calls: ToolCall, redact_user_input: str | None = None) -> None:
        """Create a response with ``text`` and any number of ``tool_calls``."""
        object.__setattr__(self, "text", text)
        object.__setattr__(self, "tool_calls", tuple(tool_calls))
        object.__setattr__(self, "redact_user_input", redact_user_input)

    @property
    def stop_reason(self) -> StopReason:
        """``guardrail_intervened``, ``tool_use`` when the response calls tools, else ``end_turn``."""
        if self.redact_user_input is not None:
            return "guardrail_intervened"
        return "tool_use" if self.tool_calls else "end_turn"


@dataclass(frozen=True)
class Raise:
    """A turn on which the model call fails: ``Raise(RuntimeError("model down"))``.

    Any ``BaseException`` works; a ``BaseException`` that is not an ``Exception`` (e.g. a custom
    ``class Crash(BaseException)``) escapes Strands' error handling and so simulates a process
    crash in the middle of a Graph or Swarm run.
    """

    error: BaseException


Turn = str | ToolCall | Reply | Raise
"""What a script entry may be; see the module docstring."""

Responder = Callable[[Messages], Turn]
"""Produces a turn from the messages sent to the model; used once the script is exhausted."""


class ScriptedModelConfig(TypedDict, total=False):
    """Configuration of a ``ScriptedModel`` (mirrors other providers' config dicts)."""

    model_id: str
    latency_ms: int
    word_delay_ms: float
    context_window_limit: int | None


def _as_reply(turn: Turn) -> Reply:
    if isinstance(turn, Raise):
        raise turn.error
    if isinstance(turn, Reply):
        return turn
    if isinstance(turn, ToolCall):
        return Reply("", turn)
    if isinstance(turn, str):
        return Reply(turn)
    raise TypeError(f"a scripted turn must be str, ToolCall, Reply or Raise, not {turn!r}")


def last_user_text(messages: Messages) -> str:
    """Text of the most recent user message that has any text (tool results are skipped)."""
    for message in reversed(messages):
        if message["role"] != "user":
            continue
        texts = [block["text"] for block in message["content"] if "text" in block]
        if texts:
            return "\n".join(texts)
    return ""


def echo_responder(messages: Messages) -> Turn:
    """Answer ``"echo: <last user text>"``."""
    return f"echo: {last_user_text(messages)}"


class ScriptedModel(Model):
    """A ``strands`` model that plays back scripted turns; see the module docstring."""

    def __init__(
        self,
        script: Iterable[Turn] = (),
        *,
        fallback: Responder | None = None,
        latency_ms: int = 100,
        word_delay_ms: float = 0,
        model_id: str = "scripted",
        record_calls: bool = True,
    ) -> None:
        """Create a model that answers call ``n`` with ``script[n]``.

        Args:
            script: The turns to play back, one per model call.
            fallback: Called for every call after the script is exhausted; without it
                such a call raises ``ScriptExhaustedError``.
            latency_ms: The ``metrics.latencyMs`` reported for every response.
            word_delay_ms: When positive, text is streamed one word per event with this pause
                between words, like a real model typing; otherwise it arrives in one event.
            model_id: Reported in ``get_config()``.
            record_calls: Keep a deep copy of every request in ``calls`` (tests read it). Turn it
                off in benchmarks: copying the whole history costs more with every turn.
        """
        self._script: list[Turn] = list(script)
        for turn in self._script:
            if not isinstance(turn, str | ToolCall | Reply | Raise):
                raise TypeError(f"a scripted turn must be str, ToolCall, Reply or Raise, not {turn!r}")
        self._fallback = fallback
        self._lock = threading.Lock()
        self._position = 0
        self.config: ScriptedModelConfig = {
            "model_id": model_id,
            "latency_ms": latency_ms,
            "word_delay_ms": word_delay_ms,
        }
        self.calls: list[Messages] = []
        """A deep copy of the messages sent on each call, in call order (if ``record_calls``)."""
        self._record_calls = record_calls
        self._call_count = 0

    @classmethod
    def echo(cls, script: Iterable[Turn] = (), **kwargs: Any) -> ScriptedModel:
        """A model that plays ``script``, then answers ``"echo: <last user text>"`` forever."""
        return cls(script, fallback=echo_responder, **kwargs)

    @property
    def remaining(self) -> int:
        """How many scripted turns have not been played yet."""
        return len(self._script) - self._position

    # -- Model interface -------------------------------------------------------------------

    def update_config(self, **model_config: Any) -> None:
        """Update the configuration (``latency_ms`` changes later responses)."""
        self.config.update(model_config)  # type: ignore[typeddict-item]

    def get_config(self) -> ScriptedModelConfig:
        """Return the configuration."""
        return self.config

    async def structured_output(
        self,
        output_model: type[T],
        prompt: Messages,
        system_prompt: str | None = None,
        **kwargs: Any,
    ) -> AsyncGenerator[dict[str, T | Any], None]:
        """Consume the next turn and validate it as ``output_model``.

        The turn is either a ``ToolCall`` whose input holds the fields, or a text ``Reply``
        holding a JSON object.
        """
        reply = self._next_reply(prompt)
        if reply.tool_calls:
            output = output_model.model_validate(dict(reply.tool_calls[0].input))
        else:
            output = output_model.model_validate_json(reply.text)
        yield {"output": output}

    async def stream(
        self,
        messages: Messages,
        tool_specs: list[ToolSpec] | None = None,
        system_prompt: str | None = None,
        *,
        tool_choice: ToolChoice | None = None,
        system_prompt_content: list[SystemContentBlock] | None = None,
        invocation_state: dict[str, Any] | None = None,
        cancel_signal: threading.Event | None = None,
        agent_metadata: AgentMetadata | None = None,
        structured_output_model: type[BaseModel] | None = None,
        **kwargs: Any,
    ) -> AsyncGenerator[StreamEvent, None]:
        """Play the next turn as ConverseStream events."""
        reply = self._next_reply(messages)
        delay_s = self.config.get("word_delay_ms", 0) / 1000
        for event in self._events(reply, messages):
            if delay_s > 0 and "text" in event.get("contentBlockDelta", {}).get("delta", {}):
                for word in re.findall(r"\S+\s*", event["contentBlockDelta"]["delta"]["text"]):
                    await asyncio.sleep(delay_s)
                    yield {"contentBlockDelta": {**event["contentBlockDelta"], "delta": {"text": word}}}
                continue
            yield event

    # -- internals ---------------------------------------------------------------------------

    def _next_reply(self, messages: Messages) -> Reply:
        with self._lock:
            self._call_count += 1
            if self._record_calls:
                self.calls.append(copy.deepcopy(messages))
            if self._position < len(self._script):
                turn = self._script[self._position]
                self._position += 1
                return _as_reply(turn)
            call_number = self._call_count
        if self._fallback is None:
            raise ScriptExhaustedError(
                f"ScriptedModel has {len(self._script)} scripted turn(s) but was called "
                f"{call_number} time(s); last user text: {last_user_text(messages)!r}"
            )
        return _as_reply(self._fallback(messages))

    def _events(self, reply: Reply, messages: Messages) -> list[StreamEvent]:
        events: list[StreamEvent] = [{"messageStart": {"role": "assistant"}}]
        index = 0
        if reply.text:
            events += [
                {"contentBlockStart": {"contentBlockIndex": index, "start": {}}},
                {
                    "contentBlockDelta": {
                        "contentBlockIndex": index,
                        "delta": {"text": reply.text},
                    }
                },
                {"contentBlockStop": {"contentBlockIndex": index}},
            ]
            index += 1
        for position, call in enumerate(reply.tool_calls):
            tool_use_id = call.tool_use_id or f"tooluse_{len(messages)}_{position}"
            events += [
                {
                    "contentBlockStart": {
                        "contentBlockIndex": index,
                        "start": {"toolUse": {"toolUseId": tool_use_id, "name": call.name}},
                    }
                },
                {
                    "contentBlockDelta": {
                        "contentBlockIndex": index,
                        "delta": {"toolUse": {"input": json.dumps(dict(call.input))}},
                    }
                },
                {"contentBlockStop": {"contentBlockIndex": index}},
            ]
            index += 1
        input_tokens = 10 * len(messages)
        output_tokens = len(reply.text.split()) + len(reply.tool_calls)
        if reply.redact_user_input is not None:
            events.append({"redactContent": {"redactUserContentMessage": reply.redact_user_input}})
        events += [
            {"messageStop": {"stopReason": reply.stop_reason}},
            {
                "metadata": {
                    "usage": {
                        "inputTokens": input_tokens,
                        "outputTokens": output_tokens,
                        "totalTokens": input_tokens + output_tokens,
                    },
                    "metrics": {"latencyMs": self.config.get("latency_ms", 100)},
                }
            },
        ]
        return events
