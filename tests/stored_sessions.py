"""What a layout stored, read straight from the database, so one test can check either layout."""

from typing import Any

import bson
from pymongo.database import Database

LAYOUTS = ("embedded", "split")
SESSIONS = "sessions"
MESSAGES = "sessions_messages"

Document = dict[str, Any]


class StoredSessions:
    """Raw reads of the session documents and messages of one layout (default collection names)."""

    def __init__(self, database: Database[Document], layout: str) -> None:
        self.database = database
        self.layout = layout

    def document(self, session_id: str) -> Document | None:
        """The session document as stored."""
        return self.database[SESSIONS].find_one({"_id": session_id})

    def everything(self) -> dict[str, list[Document]]:
        """Every stored session document and message document (either layout), to compare before and after."""
        return {name: list(self.database[name].find().sort("_id", 1)) for name in (SESSIONS, MESSAGES)}

    def messages(self, session_id: str, agent_id: str) -> list[Document]:
        """The agent's stored messages in ``message_id`` order, each as its embedded entry would look."""
        if self.layout == "embedded":
            document = self.document(session_id) or {}
            messages: list[Document] = ((document.get("agents") or {}).get(agent_id) or {}).get("messages") or []
            return messages
        query = {"session_id": session_id, "agent_id": agent_id}
        projection = {"_id": 0, "session_id": 0, "agent_id": 0, "generation": 0}
        return list(self.database[MESSAGES].find(query, projection).sort("message_id", 1))

    def message_ids(self, session_id: str, agent_id: str) -> list[int]:
        """The agent's stored message ids, in order."""
        return [message["message_id"] for message in self.messages(session_id, agent_id)]

    def total_bytes(self, session_id: str) -> int:
        """BSON bytes stored for the session: its document, plus its message documents in the split layout."""
        document = self.document(session_id)
        total = len(bson.encode(document)) if document is not None else 0
        if self.layout == "split":
            total += sum(len(bson.encode(raw)) for raw in self.database[MESSAGES].find({"session_id": session_id}))
        return total


def everything(database: Database[Document]) -> dict[str, list[Document]]:
    """Every stored session document and message document, whichever layout stored them."""
    return {name: list(database[name].find().sort("_id", 1)) for name in (SESSIONS, MESSAGES)}
