"""The assistant behind the FastAPI chat examples: its system prompt, its one tool, and its scripted answers.

Every request builds a new ``strands.Agent`` with :data:`SYSTEM_PROMPT` and :data:`TOOLS`; the
session manager restores the conversation into it. With the default ``--provider scripted``
:func:`scripted_chat_responder` answers (see ``scripted_model.py``), offline and deterministically:

* a message starting with "count" calls the ``count_characters`` tool, then reports its result;
* a message mentioning "markdown" gets a short Markdown sample (headings, lists, code, a link);
* anything else is quoted back with how many earlier messages the model received, which shows that
  the conversation was restored from MongoDB (each request builds a new Agent).
"""

import re

from strands import tool
from strands.types.content import Messages

from scripted_model import ToolCall, Turn, last_user_text

SYSTEM_PROMPT = (
    "You are a helpful, concise assistant. Format answers in Markdown. "
    "Use the count_characters tool whenever you are asked to count characters, letters or words."
)

COUNT_REQUEST = re.compile(r"\s*count\b[\s:,]*(?:the\s+\w+\s+in\s+)?(?P<text>.*)", re.IGNORECASE | re.DOTALL)

MARKDOWN_SAMPLE = """## What this playground renders

Answers are **Markdown**, rendered safely:

1. headings, *emphasis* and **strong** text
2. lists, like this one
3. `inline code` and code blocks:

```python
manager = factory.create_session_manager(session_id, user_id=user)
```

Links open in a new tab: [Strands Agents](https://strandsagents.com). Raw HTML is shown as text: <b>not bold</b>."""


@tool
def count_characters(text: str) -> str:
    """Count the characters, letters and words of ``text`` exactly (language models miscount them).

    Args:
        text: The text to count.
    """
    counts = {"character": len(text), "letter": sum(c.isalpha() for c in text), "word": len(text.split())}
    return ", ".join(f"{n} {name}{'' if n == 1 else 's'}" for name, n in counts.items())


TOOLS = [count_characters]


def scripted_chat_responder(messages: Messages) -> Turn:
    """What ScriptedModel answers in the chat examples (see the module docstring)."""
    latest = messages[-1]
    results = [block["toolResult"] for block in latest["content"] if "toolResult" in block]
    if latest["role"] == "user" and results:
        counted = " ".join(item.get("text", "") for result in results for item in result["content"])
        return f"The `count_characters` tool counted **{counted}**."
    prompt = last_user_text(messages)
    if request := COUNT_REQUEST.fullmatch(prompt):
        return ToolCall("count_characters", {"text": request["text"] or prompt})
    if "markdown" in prompt.lower():
        return MARKDOWN_SAMPLE
    earlier = len(messages) - 1
    return (
        f'You said: "{prompt}". This answer is scripted (**ScriptedModel**, not an LLM; see `--provider`). '
        f"With it the model received {earlier} earlier message{'s' if earlier != 1 else ''} "
        "of this session, restored from MongoDB."
    )
