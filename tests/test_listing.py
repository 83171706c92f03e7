"""Listing a user's sessions: newest first, keyset pages, one command per page, no message transferred."""

from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from pymongo import MongoClient
from pymongo.database import Database
from strands import Agent

from mongodb_session_manager import MongoDBSessionManager, MongoDBSessionRepository, SessionPage
from mongodb_session_manager.errors import InvalidArgumentError, InvalidCursorError, UnstorableValueError
from mongodb_session_manager.listing import one_filter

from command_counter import CommandCounter
from scripted_model import Reply, ScriptedModel
from stored_sessions import SESSIONS

Db = Database[dict[str, Any]]
Client = MongoClient[dict[str, Any]]
NewManager = Callable[..., MongoDBSessionManager]
START = datetime(2026, 1, 1, tzinfo=UTC)


def converse(new_manager: NewManager, session_id: str, *prompts: str, user_id: str | None = "alice") -> None:
    manager = new_manager(session_id, user_id=user_id)
    agent = Agent(model=ScriptedModel.echo(), session_manager=manager, callback_handler=None)
    for prompt in prompts:
        agent(prompt)


def at(mongo_db: Db, session_id: str, minutes: float) -> None:
    """Pretend the session was last written ``minutes`` after START."""
    mongo_db[SESSIONS].update_one({"_id": session_id}, {"$set": {"updated_at": START + timedelta(minutes=minutes)}})


def every_page(repository: MongoDBSessionRepository, **filters: Any) -> list[list[str]]:
    pages, cursor = [], None
    while True:
        page = repository.list_sessions(cursor=cursor, **filters)
        pages.append([summary.session_id for summary in page.sessions])
        cursor = page.next_cursor
        if cursor is None:
            return pages


def test_newest_first_with_ties_broken_by_id_across_keyset_pages(
    new_manager: NewManager, repository: MongoDBSessionRepository, mongo_db: Db
) -> None:
    for number in range(7):
        converse(new_manager, f"s{number}", "hello")
    for session_id, minutes in {"s0": 5, "s1": 1, "s2": 5, "s3": 3, "s4": 5, "s5": 2, "s6": 4}.items():
        at(mongo_db, session_id, minutes)

    pages = every_page(repository, user_id="alice", limit=2)

    assert pages == [["s4", "s2"], ["s0", "s6"], ["s3", "s5"], ["s1"]]
    # a session written between two page reads moves to the top; the pages already read are not repeated
    first = repository.list_sessions(user_id="alice", limit=3)
    at(mongo_db, "s5", 10)
    second = repository.list_sessions(user_id="alice", limit=3, cursor=first.next_cursor)
    assert [s.session_id for s in first.sessions + second.sessions] == ["s4", "s2", "s0", "s6", "s3", "s1"]


def test_a_page_is_one_command_and_carries_no_message(
    counting_client: tuple[Client, CommandCounter], database_name: str, layout: str
) -> None:
    client, counter = counting_client
    for number in range(3):
        manager = MongoDBSessionManager(
            f"big{number}", client=client, database_name=database_name, layout=layout, user_id="alice"
        )
        agent = Agent(model=ScriptedModel.echo(), session_manager=manager, callback_handler=None)
        for turn in range(5):
            agent(f"turn {turn} " + "x" * 20_000)
    repository = MongoDBSessionRepository(client=client, database_name=database_name, layout=layout)
    counter.reset()

    page = repository.list_sessions(user_id="alice")

    [command] = counter.commands()
    assert command.name == "aggregate"
    assert command.reply_bytes is not None
    assert command.reply_bytes < 3_000  # the messages weigh 600 kB
    assert [summary.message_count for summary in page.sessions] == [10, 10, 10]
    counter.reset()
    assert repository.count_sessions(user_id="alice") == 3
    assert len(counter.commands()) == 1


def test_a_summary_says_who_what_and_when(new_manager: NewManager, repository: MongoDBSessionRepository) -> None:
    converse(new_manager, "s1", "  What   is\nthe weather " + "in Paris today? " * 10, "and tomorrow?")
    repository.update_metadata("s1", {"tier": "gold"})

    [summary] = repository.list_sessions().sessions

    assert summary.session_id == "s1"
    assert summary.user_id == "alice"
    assert summary.application_name is None
    assert summary.title == ("What is the weather " + "in Paris today? " * 10)[:80]
    assert len(summary.title) == 80
    assert summary.message_count == 4
    assert summary.metadata == {"tier": "gold"}
    assert summary.created_at <= summary.updated_at
    assert isinstance(repository.list_sessions(), SessionPage)


def test_a_given_title_replaces_the_first_prompt(new_manager: NewManager, repository: MongoDBSessionRepository) -> None:
    converse(new_manager, "s1", "first question", "second question")
    repository.set_title("s1", "Trip planning")
    assert repository.list_sessions().sessions[0].title == "Trip planning"
    with pytest.raises(InvalidArgumentError, match="title"):
        repository.set_title("s1", " ")
    with pytest.raises(InvalidArgumentError, match="title"):
        repository.set_title("s1", "x" * 201)


def test_a_redacted_first_prompt_is_not_kept_as_the_title(
    new_manager: NewManager, repository: MongoDBSessionRepository, mongo_db: Db
) -> None:
    manager = new_manager("s1")
    model = ScriptedModel.echo([Reply("blocked", redact_user_input="[redacted]")])
    Agent(model=model, session_manager=manager, callback_handler=None)("my card is 4111 1111 1111 1111")

    assert repository.list_sessions().sessions[0].title == "[redacted]"
    assert "4111" not in str(mongo_db[SESSIONS].find_one({"_id": "s1"}))


def test_filters_by_metadata_and_time(
    new_manager: NewManager, repository: MongoDBSessionRepository, mongo_db: Db
) -> None:
    for number, tier in enumerate(["gold", "free", "gold"]):
        converse(new_manager, f"s{number}", "hello")
        repository.update_metadata(f"s{number}", {"tier": tier, "nested": {"a": number}})
        at(mongo_db, f"s{number}", number)

    assert every_page(repository, metadata={"tier": "gold"}) == [["s2", "s0"]]
    assert every_page(repository, metadata={"nested": {"a": 1}}) == [["s1"]]
    # an operator document is a value to compare, not an operator
    assert every_page(repository, metadata={"tier": {"$ne": "x"}}) == [[]]
    after_first = START + timedelta(minutes=0.5)
    assert every_page(repository, updated_after=after_first) == [["s2", "s1"]]
    assert every_page(repository, updated_after=after_first, updated_before=START + timedelta(minutes=1.5)) == [["s1"]]
    assert repository.count_sessions(metadata={"tier": "gold"}, updated_after=after_first) == 1


def test_a_tampered_malformed_or_foreign_cursor_is_refused(
    new_manager: NewManager, repository: MongoDBSessionRepository
) -> None:
    for number in range(3):
        converse(new_manager, f"s{number}", "hello")
    cursor = repository.list_sessions(limit=1).next_cursor
    assert cursor is not None
    tampered = cursor[:-6] + ("A" if cursor[-6] != "A" else "B") + cursor[-5:]
    for bad in [tampered, "not-a-cursor", "", "x" * 5000, 42, {"$gt": ""}]:
        with pytest.raises(InvalidCursorError):
            repository.list_sessions(limit=1, cursor=bad)  # type: ignore[arg-type]
    with pytest.raises(InvalidCursorError, match="other filters"):
        repository.list_sessions(limit=1, cursor=cursor, user_id="alice")
    assert len(repository.list_sessions(limit=1, cursor=cursor).sessions) == 1


@pytest.mark.parametrize(
    ("arguments", "field"),
    [
        ({"limit": 0}, "limit"),
        ({"limit": 1001}, "limit"),
        ({"limit": True}, "limit"),
        ({"user_id": {"$ne": None}}, "user_id"),
        ({"metadata": {"a.b": 1}}, "metadata key"),
        ({"metadata": {"$where": 1}}, "metadata key"),
        ({"metadata": ["tier"]}, "metadata"),
        ({"updated_after": "yesterday"}, "updated_after"),
    ],
)
def test_bad_filters_get_a_typed_error_naming_the_field(
    repository: MongoDBSessionRepository, arguments: dict[str, Any], field: str
) -> None:
    with pytest.raises(InvalidArgumentError) as refused:
        repository.list_sessions(**arguments)
    assert refused.value.field == field


def test_an_unstorable_metadata_filter_value_is_refused(repository: MongoDBSessionRepository) -> None:
    with pytest.raises(UnstorableValueError, match=r"metadata\.tier"):
        repository.list_sessions(metadata={"tier": {1, 2}})


def test_the_filter_is_one_document_with_and_only_where_clauses_clash() -> None:
    """Some servers (SecantusDB) use an index only for a flat filter document, never inside ``$and``."""
    before, after = START, START + timedelta(days=1)
    merged = one_filter([{"user_id": "a"}, {"updated_at": {"$gt": before}}, {"updated_at": {"$lt": after}}])
    assert merged == {"user_id": "a", "updated_at": {"$gt": before, "$lt": after}}
    assert one_filter([{"user_id": "a"}, {"user_id": "a"}]) == {"user_id": "a"}
    assert one_filter([{"user_id": "a"}, {"user_id": "b"}]) == {"user_id": "a", "$and": [{"user_id": "b"}]}
    assert one_filter([{"n": {"$gt": 1}}, {"n": {"$gt": 2}}]) == {"n": {"$gt": 1}, "$and": [{"n": {"$gt": 2}}]}
    # a value that looks like an operator document is compared as a value, and never merged into one
    assert one_filter([{"m": {"$eq": {"$ne": 1}}}, {"m": {"$gt": 0}}]) == {"m": {"$eq": {"$ne": 1}, "$gt": 0}}


def test_a_cursor_serves_the_same_metadata_filter_given_in_another_order(
    new_manager: NewManager, repository: MongoDBSessionRepository
) -> None:
    for number in range(3):
        converse(new_manager, f"s{number}", "hello")
        repository.update_metadata(f"s{number}", {"a": 1, "b": 2})

    first = repository.list_sessions(metadata={"a": 1, "b": 2}, limit=2)
    assert first.next_cursor is not None
    rest = repository.list_sessions(metadata={"b": 2, "a": 1}, limit=2, cursor=first.next_cursor)

    shown = [summary.session_id for summary in [*first.sessions, *rest.sessions]]
    assert sorted(shown) == ["s0", "s1", "s2"]
    with pytest.raises(InvalidCursorError):
        repository.list_sessions(metadata={"a": 1, "b": 3}, cursor=first.next_cursor)
