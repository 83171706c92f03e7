"""The README's first command works as written and shows what it claims."""

from collections.abc import Callable
from pathlib import Path
from typing import Any

from pymongo import MongoClient
from pymongo.database import Database


def messages_of(document: dict[str, Any]) -> list[dict[str, Any]]:
    return [stored["message"] for stored in document["agents"]["default"]["messages"]]


def test_quickstart_runs_offline_and_restores_the_conversation(
    run_example: Callable[..., str], database_name: str, mongo_db: Database[dict[str, Any]]
) -> None:
    out = run_example("quickstart", "--database", database_name)

    assert "Model: ScriptedModel" in out
    assert "Run 1: a new conversation." in out
    restored = out.split("restore everything from MongoDB:")[1]
    assert "<calls add({'a': 19, 'b': 23})>" in restored
    assert "<tool result: 42.0>" in restored
    assert "You have sent me 2 messages so far (5 messages in all" in restored
    assert "agent state: {'runs': 1}" in restored
    assert "'model_calls': 3" in out
    assert "'event_loop_metrics'" in out

    document = mongo_db["sessions"].find_one({"_id": "quickstart"})
    assert document is not None
    messages = messages_of(document)
    assert [m["role"] for m in messages] == ["user", "assistant", "user", "assistant", "user", "assistant"]
    assert messages[1]["content"][0]["toolUse"]["input"] == {"a": 19, "b": 23}
    assert messages[2]["content"][0]["toolResult"]["content"] == [{"text": "42.0"}]
    assert document["agents"]["default"]["state"] == {"runs": 1}
    stored = document["agents"]["default"]["messages"]
    assert [("event_loop_metrics" in s) for s in stored] == [m["role"] == "assistant" for m in messages]


def test_a_second_run_on_disk_continues_the_first_conversation(run_example: Callable[..., str], tmp_path: Path) -> None:
    first = run_example("quickstart", "--data-dir", str(tmp_path), uri=None)
    second = run_example("quickstart", "--data-dir", str(tmp_path), uri=None)

    assert "embedded SecantusDB server at mongodb://127.0.0.1:" in first
    assert f"(data in {tmp_path})" in first
    assert "Run 1: a new conversation." in first
    assert "You have sent me 2 messages so far (5 messages in all" in first
    assert "Run 2: 6 messages restored from MongoDB, continuing the conversation." in second
    assert "You have sent me 4 messages so far (11 messages in all" in second
    restored = second.split("restore everything from MongoDB:")[1]
    assert restored.count("user      | What is 19 + 23?") == 2
    assert "agent state: {'runs': 2}" in restored
    assert "'model_calls': 6" in second

    from secantus import SecantusDBServer  # type: ignore[import-untyped]

    server = SecantusDBServer(host="127.0.0.1", port=0, storage_path=str(tmp_path))
    server.start()
    try:
        with MongoClient(server.uri, serverSelectionTimeoutMS=5000) as client:
            document = client["examples"]["sessions"].find_one({"_id": "quickstart"})
    finally:
        server.stop()
    assert document is not None
    assert document["agents"]["default"]["state"] == {"runs": 2}
    assert [s["message_id"] for s in document["agents"]["default"]["messages"]] == list(range(12))
    answers = [m["content"][0].get("text") for m in messages_of(document) if m["role"] == "assistant"]
    assert answers[2].startswith("You have sent me 2 messages")
    assert answers[5].startswith("You have sent me 4 messages")


def test_quickstart_in_the_split_layout_stores_one_document_per_message(
    run_example: Callable[..., str], database_name: str, mongo_db: Database[dict[str, Any]]
) -> None:
    out = run_example("quickstart", "--database", database_name, "--layout", "split")

    assert f"Session 'quickstart' in database {database_name!r}, split layout" in out
    assert "You have sent me 2 messages so far (5 messages in all" in out
    assert "Its messages are 6 documents of their own, in the 'sessions_messages' collection." in out
    document = mongo_db["sessions"].find_one({"_id": "quickstart"})
    assert document is not None
    assert document["message_layout"] == "split"
    assert "messages" not in document["agents"]["default"]
    stored = mongo_db["sessions_messages"].find({"session_id": "quickstart"}).sort("message_id", 1)
    assert [s["message"]["role"] for s in stored] == ["user", "assistant", "user", "assistant", "user", "assistant"]
