"""The command line refuses wrong targets untouched and fails in one line with a fitting hint."""

import io
import sys
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from pymongo import MongoClient
from pymongo.database import Database

import mongodb_session_manager.__main__ as cli
from mongodb_session_manager import MongoDBSessionRepository, __version__, _lifecycle_cli
from mongodb_session_manager.__main__ import main
from mongodb_session_manager._connection_key import scrubbed
from mongodb_session_manager._progress import ProgressBar
from mongodb_session_manager.cleanup import find_left_behind, remove_left_behind
from mongodb_session_manager.errors import InvalidIdentifierError
from mongodb_session_manager.migration import ForeignDocumentsError, migrate_to_split

from helpers import converse, run_command_line, session_with_agent, text_message

Db = Database[dict[str, Any]]
Client = MongoClient[dict[str, Any]]
MIGRATE = ["migrate", "--from", "embedded", "--to", "split"]


def snapshot(database: Db) -> dict[str, Any]:
    """Every collection of the database: its documents and its indexes (creating one is a change too)."""
    return {
        name: (list(database[name].find().sort("_id", 1)), database[name].index_information())
        for name in sorted(database.list_collection_names())
    }


@pytest.fixture
def app_data(mongo_client: Client, mongo_db: Db, database_name: str) -> dict[str, Any]:
    """What an application keeps beside its sessions: embedded and split sessions, users with a session_id."""
    converse(mongo_client, database_name, "embedded-1", 2)
    converse(mongo_client, database_name, "embedded-2", 1)
    split = MongoDBSessionRepository(client=mongo_client, database_name=database_name, layout="split")
    session_with_agent(split, "split-1", "a1")
    split.create_message("split-1", "a1", text_message(0, "hello"))
    mongo_db["users"].insert_many(
        [
            {"_id": f"user-{n}", "name": f"user {n}", "session_id": "embedded-1", "created_at": datetime.now(UTC)}
            for n in range(3)
        ]
    )
    return snapshot(mongo_db)


# -- invalid names: refused before connecting, nothing touched ---------------------------------------

BAD_NAMES = [
    ("--collection", ""),
    ("--collection", "a.b"),
    ("--collection", "$x"),
    ("--collection", "system.views"),
    ("--collection", "nul\x00"),
    ("--messages-collection", "a.b"),
    ("--messages-collection", "system.js"),
    ("--database", ""),
    ("--database", "a.b"),
    ("--database", "$x"),
    ("--database", "a b"),
    ("--database", "a/b"),
    ("--database", "d" * 64),
]


@pytest.mark.parametrize("command", [MIGRATE, ["cleanup"]], ids=["migrate", "cleanup"])
@pytest.mark.parametrize(("option", "name"), BAD_NAMES, ids=repr)
def test_an_invalid_name_is_refused_in_one_line_touching_nothing(
    command: list[str],
    option: str,
    name: str,
    mongodb_uri: str,
    mongo_db: Db,
    database_name: str,
    app_data: dict[str, Any],
    capsys: pytest.CaptureFixture[str],
) -> None:
    location = {"--database": database_name, option: name}
    argv = [*command, "--uri", mongodb_uri, *[part for pair in location.items() for part in pair]]

    assert main(argv) == 2

    err = capsys.readouterr().err
    assert err.startswith(f"error: invalid {option} ")
    assert err.count("\n") == 1
    assert snapshot(mongo_db) == app_data


@pytest.mark.parametrize("command", [MIGRATE, ["cleanup"]], ids=["migrate", "cleanup"])
def test_a_messages_collection_equal_to_the_session_collection_is_refused(
    command: list[str],
    mongodb_uri: str,
    mongo_db: Db,
    database_name: str,
    app_data: dict[str, Any],
    capsys: pytest.CaptureFixture[str],
) -> None:
    argv = [*command, "--uri", mongodb_uri, "--database", database_name, "--messages-collection", "sessions"]

    assert main(argv) == 2

    assert "--messages-collection 'sessions' is the session collection" in capsys.readouterr().err
    assert snapshot(mongo_db) == app_data


@pytest.mark.parametrize(
    ("collection", "messages_collection", "field"),
    [
        ("a.b", None, "collection_name"),
        ("$x", None, "collection_name"),
        ("system.views", None, "collection_name"),
        ("", None, "collection_name"),
        ("sessions", "sessions", "messages_collection_name"),
        ("sessions", "system.js", "messages_collection_name"),
    ],
)
def test_the_library_functions_refuse_invalid_names_naming_the_parameter(
    collection: str, messages_collection: str | None, field: str, mongo_db: Db, app_data: dict[str, Any]
) -> None:
    calls = [
        lambda: migrate_to_split(mongo_db, collection, messages_collection),
        lambda: find_left_behind(mongo_db, collection, messages_collection),
        lambda: remove_left_behind(
            mongo_db, find_left_behind(mongo_db), collection, messages_collection, even_if_nothing_is_owned=True
        ),
    ]
    for call in calls:
        with pytest.raises(InvalidIdentifierError) as raised:
            call()
        assert raised.value.field == field
    assert snapshot(mongo_db) == app_data


# -- a collection of something else: refused, nothing touched -------------------------------------


@pytest.mark.parametrize(
    ("collection", "messages_collection", "refused"),
    [
        ("users", None, "users holds documents that are not session documents"),
        ("sessions_messages", "sessions_messages_copy", "sessions_messages holds documents that are not session"),
        ("sessions", "users", "users holds documents that are not split-layout messages"),
    ],
)
def test_migrate_refuses_a_collection_of_something_else_touching_nothing(
    collection: str,
    messages_collection: str | None,
    refused: str,
    mongodb_uri: str,
    mongo_db: Db,
    database_name: str,
    app_data: dict[str, Any],
    capsys: pytest.CaptureFixture[str],
) -> None:
    argv = [*MIGRATE, "--uri", mongodb_uri, "--database", database_name, "--collection", collection]
    if messages_collection is not None:
        argv += ["--messages-collection", messages_collection]

    assert main(argv) == 2

    output = capsys.readouterr()
    assert refused in output.err
    assert "nothing was changed; check --database, --collection and --messages-collection" in output.err
    assert output.out == ""  # not even a count of "sessions" to move
    assert snapshot(mongo_db) == app_data


def test_sessions_written_into_the_messages_collection_are_refused(
    mongo_client: Client, mongo_db: Db, database_name: str, app_data: dict[str, Any]
) -> None:
    """--messages-collection naming another session collection: its documents are sessions, not messages."""
    converse(mongo_client, database_name, "other-app", 1)  # into "sessions"
    mongo_db["chats"].insert_one(mongo_db["sessions"].find_one({"_id": "embedded-2"}))  # type: ignore[arg-type]
    before = snapshot(mongo_db)

    with pytest.raises(ForeignDocumentsError, match="sessions holds documents that are not split-layout messages"):
        migrate_to_split(mongo_db, "chats", "sessions")

    assert snapshot(mongo_db) == before


def test_one_foreign_document_after_many_sessions_refuses_the_whole_run(
    mongo_client: Client, mongo_db: Db, database_name: str
) -> None:
    """The check comes before the first write: sessions earlier in _id order are not migrated either."""
    for n in range(5):
        converse(mongo_client, database_name, f"s{n}", 1)
    mongo_db["sessions"].insert_one({"_id": "zz-not-a-session", "session_id": "zz-not-a-session", "agents": {}})
    before = snapshot(mongo_db)

    with pytest.raises(ForeignDocumentsError, match="_id 'zz-not-a-session'"):
        migrate_to_split(mongo_db, batch_size=1)

    assert snapshot(mongo_db) == before


def test_a_foreign_document_inserted_during_the_run_is_left_untouched(
    mongo_client: Client, mongo_db: Db, database_name: str
) -> None:
    converse(mongo_client, database_name, "a-session", 1)
    foreign = {"_id": "b-user", "name": "inserted after the check"}

    def insert_once(_session_id: str) -> None:
        if mongo_db["sessions"].find_one({"_id": "b-user"}) is None:
            mongo_db["sessions"].insert_one(dict(foreign))

    report = migrate_to_split(mongo_db, on_session_done=insert_once)

    assert report.migrated == 1
    assert "is not a session document of this library" in report.failed["b-user"]
    assert mongo_db["sessions"].find_one({"_id": "b-user"}) == foreign
    assert mongo_db["sessions_messages"].count_documents({"session_id": "b-user"}) == 0


def test_cleanup_refuses_a_messages_collection_of_something_else_deleting_nothing(
    mongodb_uri: str, mongo_db: Db, database_name: str, app_data: dict[str, Any], capsys: pytest.CaptureFixture[str]
) -> None:
    """users carry a session_id whose generation no session has: without the check they would look left behind."""
    command = ["cleanup", "--uri", mongodb_uri, "--database", database_name, "--force"]

    assert main([*command, "--messages-collection", "users"]) == 2
    assert "users holds documents that are not split-layout messages" in capsys.readouterr().err
    mongo_db["chats"].insert_one({"_id": "x", "session_id": "x", "agents": {}, "created_at": datetime.now(UTC)})
    before = snapshot(mongo_db)
    assert main([*command, "--collection", "chats", "--messages-collection", "sessions"]) == 2
    assert "sessions holds documents that are not split-layout messages" in capsys.readouterr().err

    assert snapshot(mongo_db) == before
    assert {key: value for key, value in before.items() if key != "chats"} == app_data


# -- collections that do not exist ----------------------------------------------------------------


@pytest.mark.parametrize("command", [MIGRATE, ["cleanup"]], ids=["migrate", "cleanup"])
def test_a_database_or_collection_that_does_not_exist_is_named(
    command: list[str],
    mongodb_uri: str,
    mongo_client: Client,
    mongo_db: Db,
    database_name: str,
    app_data: dict[str, Any],
    capsys: pytest.CaptureFixture[str],
) -> None:
    typo = f"{database_name}_typo"

    assert main([*command, "--uri", mongodb_uri, "--database", typo]) == 2
    assert capsys.readouterr().err == f"error: {typo}.sessions does not exist; check --database and --collection\n"
    assert main([*command, "--uri", mongodb_uri, "--database", database_name, "--collection", "sesions"]) == 2
    assert f"{database_name}.sesions does not exist" in capsys.readouterr().err

    assert typo not in mongo_client.list_database_names()
    assert snapshot(mongo_db) == app_data


def test_migrating_an_empty_session_collection_creates_nothing(
    mongodb_uri: str, mongo_db: Db, database_name: str, capsys: pytest.CaptureFixture[str]
) -> None:
    mongo_db.create_collection("sessions")

    assert main([*MIGRATE, "--uri", mongodb_uri, "--database", database_name]) == 0
    assert migrate_to_split(mongo_db).migrated == 0

    assert "0 session(s)" in capsys.readouterr().out
    assert mongo_db.list_collection_names() == ["sessions"]  # no messages collection, no index


# -- usage: --version, --help, the one supported direction ----------------------------------------


def test_version(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exited:
        main(["--version"])

    assert exited.value.code == 0
    assert capsys.readouterr().out == f"mongodb-session-manager {__version__}\n"


@pytest.mark.parametrize(
    ("command", "described"),
    [([], "Maintenance commands"), (["migrate"], "Idempotent and resumable"), (["cleanup"], "left behind")],
)
def test_help_describes_each_command_with_examples(
    command: list[str], described: str, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as exited:
        main([*command, "--help"])

    assert exited.value.code == 0
    out = capsys.readouterr().out
    assert described in out
    assert "\nexamples:\n  " in out
    assert f"  python -m mongodb_session_manager {command[0] if command else 'migrate'} " in out


def test_usage_names_every_command(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        main(["--help"])

    usage = " ".join(capsys.readouterr().out.split("\n\n")[0].split())
    assert "{migrate,cleanup,erase,export,import}" in usage


@pytest.mark.parametrize(("source", "target"), [("split", "embedded"), ("split", "split"), ("embedded", "embedded")])
def test_only_embedded_to_split_is_a_valid_migration(
    source: str, target: str, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as exited:
        main(["migrate", "--from", source, "--to", target, "--database", "any", "--uri", "mongodb://127.0.0.1:1"])

    assert exited.value.code == 2
    err = capsys.readouterr().err
    assert f"error: --from {source} --to {target}: only --from embedded --to split is supported" in err
    assert "Traceback" not in err


# -- connecting: a few seconds at most, one line, the right hint, no password ------------------------


@pytest.fixture
def created_clients(monkeypatch: pytest.MonkeyPatch) -> list[Any]:
    """The clients the command line opens (real ones), to read the options they were given."""
    clients: list[Any] = []
    original = cli.create_client

    def recording(uri: str, **kwargs: Any) -> Any:
        client = original(uri, **kwargs)
        clients.append(client)
        return client

    monkeypatch.setattr(cli, "create_client", recording)
    return clients


def test_server_selection_is_capped_at_five_seconds_unless_the_uri_says(
    mongodb_uri: str, database_name: str, app_data: dict[str, Any], created_clients: list[Any]
) -> None:
    assert main([*MIGRATE, "--uri", mongodb_uri, "--database", database_name, "--dry-run"]) == 0
    separator = "&" if "?" in mongodb_uri else "?"
    own = f"{mongodb_uri}{separator}serverSelectionTimeoutMS=1234"
    assert main(["cleanup", "--uri", own, "--database", database_name, "--dry-run"]) == 0

    assert [client.options.server_selection_timeout for client in created_clients] == [5.0, 1.234]


def test_an_unreachable_server_says_to_run_again(capsys: pytest.CaptureFixture[str]) -> None:
    uri = "mongodb://127.0.0.1:1/?serverSelectionTimeoutMS=200"

    assert main([*MIGRATE, "--uri", uri, "--database", "any"]) == 1
    err = capsys.readouterr().err
    assert err.startswith("error: 127.0.0.1:1: ")
    assert err.endswith(
        "check that the server is reachable, then run the command again (sessions migrated so far stay migrated)\n"
    )
    assert err.count("\n") == 1
    assert "Topology Description" not in err


@pytest.mark.parametrize(
    ("uri", "said"),
    [
        ("http://localhost:27017", "error: the URI must start with mongodb:// or mongodb+srv://; check --uri"),
        ("localhost:27017", "error: the URI must start with mongodb:// or mongodb+srv://; check --uri"),
        ("mongodb://app:pa55word@host:notaport", "; check the URI"),
        ("mongodb+srv://a,b.example.net/", "error: mongodb+srv:// URIs must include one, and only one, hostname;"),
        ("mongodb://host/?tls=maybe", "error: The value of tls must be 'true' or 'false'; check the URI"),
    ],
)
def test_a_malformed_uri_is_a_usage_error_without_run_again(
    uri: str, said: str, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["cleanup", "--uri", uri, "--database", "any"]) == 2
    err = capsys.readouterr().err
    assert said in err
    assert "run the command again" not in err
    assert "pa55word" not in err
    assert err.count("\n") == 1


@pytest.mark.parametrize(
    "command",
    [
        ["migrate", "--from", "embedded", "--to", "split"],
        ["cleanup"],
        ["erase", "--user-id", "ana"],
        ["export", "--user-id", "ana"],
        ["import"],
    ],
    ids=lambda command: command[0],
)
@pytest.mark.parametrize(
    ("tls", "said"),
    [
        ("tlsCAFile=/nonexistent/ca.pem", "The tlscafile file is not readable"),
        ("tlsCAFile={junk}", "no certificate"),  # readable, but no certificate in it
        (
            "tls=true&tlsCertificateKeyFile=/nonexistent/key.pem&tlsCertificateKeyFilePassword=k3ypass",
            "The tlscertificatekeyfile file is not readable",
        ),
    ],
    ids=["missing", "not-a-certificate", "missing-key"],
)
def test_a_tls_file_the_uri_names_that_cannot_be_used_is_a_usage_error_in_one_line(
    command: list[str],
    tls: str,
    said: str,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    junk = tmp_path / "junk.pem"
    junk.write_text("not a certificate\n")
    monkeypatch.setattr(sys, "stdin", io.StringIO(""))
    uri = f"mongodb://app:pa55word@127.0.0.1:1/?{tls.format(junk=junk)}"

    assert main([*command, "--uri", uri, "--database", "any"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ")
    assert said in err
    assert "URI" in err
    assert err.count("\n") == 1
    assert "pa55word" not in err
    assert "k3ypass" not in err


def test_without_a_uri_it_says_how_to_give_one(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.delenv("MONGODB_URI", raising=False)

    assert main(["cleanup", "--database", "any"]) == 2
    assert capsys.readouterr().err == "error: no server given; pass --uri or set MONGODB_URI\n"


@pytest.fixture(scope="module")
def server_requiring_auth() -> Iterator[str]:
    """A second SecantusDB that requires SCRAM authentication (it has no users: every login fails)."""
    from secantus import SecantusDBServer  # type: ignore[import-untyped]

    server = SecantusDBServer(host="127.0.0.1", port=0, storage_path=":memory:", require_auth=True)
    server.start()
    try:
        yield server.uri.rstrip("/").removeprefix("mongodb://")
    finally:
        server.stop()


@pytest.mark.parametrize(
    "command",
    [MIGRATE, ["erase", "--user-id", "alice"], ["export", "--user-id", "alice"], ["import"]],
    ids=["migrate", "erase", "export", "import"],
)
def test_a_wrong_password_says_to_check_it_and_never_prints_it(
    command: list[str], server_requiring_auth: str, capsys: pytest.CaptureFixture[str]
) -> None:
    uri = f"mongodb://app:n0t%2Fthe-Passw0rd@{server_requiring_auth}/"

    assert main([*command, "--uri", uri, "--database", "app"]) == 1

    err = capsys.readouterr().err
    assert err == "error: authentication failed; check the user and password in the URI (and authSource)\n"


def test_no_privilege_says_what_the_user_needs(server_requiring_auth: str, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["cleanup", "--uri", f"mongodb://{server_requiring_auth}/", "--database", "app"]) == 1

    err = capsys.readouterr().err
    assert "needs readWrite on app" in err
    assert "run the command again" not in err


def test_a_password_is_masked_wherever_it_appears() -> None:
    uri = "mongodb+srv://app:p%40ss-w0rd@cluster.example.net/db?retryWrites=true"

    masked = scrubbed("failed for app:p%40ss-w0rd@cluster (password p@ss-w0rd)", uri)

    assert masked == "failed for ***@cluster (password ***)"
    assert scrubbed("no secret here", "mongodb://host/") == "no secret here"
    # the erase, export and import commands mask it the same way
    assert _lifecycle_cli._without(uri, "bad password p@ss-w0rd") == "bad password ***"


# -- the real process: one line, no traceback -------------------------------------------------------


def test_the_process_fails_in_one_line_without_a_traceback(
    mongodb_uri: str, mongo_db: Db, database_name: str, app_data: dict[str, Any]
) -> None:
    wrong_collection = run_command_line(
        *MIGRATE, "--uri", mongodb_uri, "--database", database_name, "--collection", "users"
    )
    unreachable = run_command_line(
        "cleanup", "--uri", "mongodb://127.0.0.1:1/?serverSelectionTimeoutMS=200", "--database", "x"
    )
    bad_name = run_command_line(*MIGRATE, "--uri", mongodb_uri, "--database", database_name, "--collection", "a.b")

    for result, status in ((wrong_collection, 2), (unreachable, 1), (bad_name, 2)):
        assert result.returncode == status, result.stderr
        assert result.stderr.startswith("error: ")
        assert result.stderr.count("\n") == 1, result.stderr
        assert "Traceback" not in result.stderr
    assert snapshot(mongo_db) == app_data


# -- the progress bar -----------------------------------------------------------------------------


class Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_the_progress_bar_never_overflows_when_work_is_added_meanwhile() -> None:
    stream = Terminal()
    bar = ProgressBar(2, "migrating", "sessions", stream=stream, width=10)
    for _ in range(3):
        bar.advance()
    bar.close()

    last = stream.getvalue().split("\r")[-1]
    assert last.startswith("migrating [##########] 3/2 sessions ")


@pytest.mark.parametrize("command", ["erase", "export", "import"])
@pytest.mark.parametrize(
    ("option", "value", "expected"),
    [
        ("--database", "a b/c", "error: invalid --database 'a b/c': must not contain"),
        ("--collection", "$x", "error: invalid --collection '$x': must not contain '$'"),
        ("--messages-collection", "a.b", "error: invalid --messages-collection 'a.b': must not contain '.'"),
        ("--messages-collection", "sessions", "error: --messages-collection 'sessions' is the session collection"),
    ],
)
def test_an_invalid_name_is_refused_before_connecting(
    command: str,
    option: str,
    value: str,
    expected: str,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr("sys.stdin", io.StringIO(""))
    arguments = {"--database": "chat", option: value}
    who = ["--session-id", "s1"] if command == "export" else ["--user-id", "alice"] if command == "erase" else []
    named = [item for pair in arguments.items() for item in pair]

    assert main([command, "--uri", "mongodb://127.0.0.1:1/?serverSelectionTimeoutMS=1", *named, *who]) == 2

    error = capsys.readouterr().err
    assert error.startswith(expected)
    assert "--uri" not in error
    assert len(error.splitlines()) == 1
