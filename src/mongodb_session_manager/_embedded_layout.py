"""The embedded layout: each agent's messages are an array inside the session document.

Every message write is one conditional ``find_one_and_update`` on the session document (see
:mod:`._session_documents`), and a resume is one aggregation that slices each agent's array.
"""

from bson.raw_bson import RawBSONDocument

from . import metrics
from ._documents import now
from ._schema import UPDATED_AT_FIELD, Document, agent_path
from ._session_documents import Expect, SessionDocuments
from .errors import SessionNotFoundError, excerpt

END_OF_ARRAY = 2**31 - 1
"""A ``$slice`` count meaning "to the end" (MongoDB requires a positive count)."""


class EmbeddedLayout:
    """Messages in ``agents.<agent_id>.messages`` of the session document."""

    def __init__(self, sessions: SessionDocuments) -> None:
        """Store messages in the session documents of ``sessions``."""
        self._sessions = sessions
        self.new_agent_fields: Document = {"messages": []}

    def create_message(
        self, session_id: str, agent_id: str, message_id: int, entry: RawBSONDocument, *, opening: Document | None
    ) -> None:
        """Push the message if the agent exists and does not have ``message_id`` yet; move ``updated_at``."""
        update = {
            "$push": {f"{agent_path(agent_id)}.messages": entry},
            "$set": {UPDATED_AT_FIELD: now()},
            **(opening or {}),
        }
        expect = Expect.agent(agent_id, message_id=message_id, message_present=False)
        self._sessions.write(session_id, update, added_bytes=len(entry.raw), expect=expect)

    def update_message(self, session_id: str, agent_id: str, message_id: int, body: RawBSONDocument) -> None:
        """Rewrite the message in place (``arrayFilters``: positional ``$`` fails on nested arrays elsewhere)."""
        moment = now()
        path = f"{agent_path(agent_id)}.messages"
        update = {
            "$set": {
                f"{path}.$[target].message": body["message"],
                f"{path}.$[target].redact_message": body["redact_message"],
                f"{path}.$[target].updated_at": moment,
                UPDATED_AT_FIELD: moment,
            }
        }
        self._sessions.write(
            session_id,
            update,
            added_bytes=len(body.raw),
            expect=Expect.agent(agent_id, message_id=message_id),
            array_filters=[{"target.message_id": message_id}],
        )

    def read_message(self, session_id: str, agent_id: str, message_id: int) -> Document | None:
        """Filter the array on the server, so only that message travels."""
        matching = {
            "$filter": {
                "input": {"$ifNull": [f"${agent_path(agent_id)}.messages", []]},
                "cond": {"$eq": ["$$this.message_id", message_id]},
            }
        }
        documents = self._sessions.aggregate(session_id, [{"$project": {"_id": 0, "found": matching}}], checked=True)
        if not documents:
            try:
                self._sessions.probe(session_id)  # raises if stored in the other layout
            except SessionNotFoundError:
                return None
        found: list[Document] = [message for document in documents for message in document["found"]]
        return found[0] if found else None

    def read_messages(self, session_id: str, agent_id: str, offset: int, limit: int | None) -> list[Document]:
        """Slice the array on the server with a ``$slice`` projection."""
        path = agent_path(agent_id)
        count = END_OF_ARRAY if limit is None else max(limit, 1)
        projection = {f"{path}.messages": {"$slice": [offset, count]}, f"{path}.agent_id": 1}
        document = self._sessions.find(session_id, projection, checked=True)
        if document is None:
            self._sessions.explain_absence(session_id)
        entry = (document.get("agents") or {}).get(agent_id)
        if entry is None:
            raise SessionNotFoundError(f"agent {excerpt(agent_id)} not found in session {excerpt(session_id)}")
        messages: list[Document] = entry.get("messages") or []
        return messages[:limit]

    def read_for_resume(self, session_id: str) -> Document | None:
        """One aggregation: the session document, each agent's array sliced from its offset."""
        documents = self._sessions.aggregate(session_id, _RESUME_STAGES)
        return documents[0] if documents else None

    def metrics_rows(self, session_id: str) -> list[Document]:
        """Unwind each agent's array and sum per agent, in one aggregation."""
        stages: list[Document] = [
            {"$project": {"agent": {"$objectToArray": {"$ifNull": ["$agents", {}]}}}},
            {"$unwind": {"path": "$agent", "preserveNullAndEmptyArrays": True}},
            {"$project": {"agent_id": "$agent.k", "message": "$agent.v.messages"}},
            {"$unwind": {"path": "$message", "preserveNullAndEmptyArrays": True}},
            *metrics.totals_per_agent_stages(),
        ]
        rows = self._sessions.aggregate(session_id, stages, checked=True)
        if not rows:  # a session with no agents still yields one row (agent_id missing)
            self._sessions.explain_absence(session_id)
        return [row for row in rows if row["_id"] is not None]

    def delete_session(self, session_id: str) -> None:
        """Delete the one document that holds everything."""
        self._sessions.delete(session_id)


def _resume_stages() -> list[Document]:
    """Each agent's messages sliced from where its conversation manager left off."""
    offset = {"$max": [0, {"$ifNull": ["$$agent.v.conversation_manager_state.removed_message_count", 0]}]}
    sliced_agent = {
        "$mergeObjects": [
            "$$agent.v",
            {"messages": {"$slice": [{"$ifNull": ["$$agent.v.messages", []]}, offset, END_OF_ARRAY]}},
        ]
    }
    agents = {"$objectToArray": {"$ifNull": ["$agents", {}]}}
    return [
        {
            "$set": {
                "agents": {
                    "$arrayToObject": {
                        "$map": {"input": agents, "as": "agent", "in": {"k": "$$agent.k", "v": sliced_agent}}
                    }
                }
            }
        }
    ]


_RESUME_STAGES = _resume_stages()
