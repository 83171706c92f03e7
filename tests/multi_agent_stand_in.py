"""A stand-in for a Graph or Swarm, for repository-level tests."""

from dataclasses import dataclass, field
from typing import Any


@dataclass
class FixedState:
    """The two members the repository uses of a multi-agent: its id and its serialized state."""

    id: str
    state: dict[str, Any] = field(default_factory=lambda: {"status": "executing"})

    def serialize_state(self) -> dict[str, Any]:
        return self.state
