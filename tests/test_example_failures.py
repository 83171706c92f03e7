"""What a user gets wrong makes an example fail in one line on stderr, with a hint, and exit status 1."""

import argparse
import importlib.util
import logging
import socket
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import botocore.exceptions  # type: ignore[import-untyped]
import pytest
from pymongo import MongoClient
from pymongo.database import Database
from strands import Agent
from strands.types.content import Messages
from strands.types.exceptions import EventLoopException
from strands.types.session import Session, SessionType

from mongodb_session_manager import MongoDBSessionManager, MongoDBSessionRepository
from mongodb_session_manager.errors import LayoutMismatchError, SessionNotFoundError

import failures
import model_provider
from scripted_model import ScriptedModel

EXAMPLES = (
    "quickstart",
    "example_calculator_tool",
    "example_stream_async",
    "example_performance",
    "example_fastapi",
    "example_fastapi_streaming",
)
NO_AWS_CREDENTIALS = {
    "AWS_ACCESS_KEY_ID": None,
    "AWS_SECRET_ACCESS_KEY": None,
    "AWS_SESSION_TOKEN": None,
    "AWS_PROFILE": None,
    "AWS_DEFAULT_PROFILE": None,
    "AWS_ROLE_ARN": None,
    "AWS_WEB_IDENTITY_TOKEN_FILE": None,
    "AWS_CONTAINER_CREDENTIALS_RELATIVE_URI": None,
    "AWS_CONTAINER_CREDENTIALS_FULL_URI": None,
    "AWS_CONFIG_FILE": "/dev/null",
    "AWS_SHARED_CREDENTIALS_FILE": "/dev/null",
    "AWS_EC2_METADATA_DISABLED": "true",
}
FAIL_FAST_S = 30
"""A guard, not a timing assertion (the exact message shows no connection was tried); it used to take over 33 s."""


@pytest.fixture
def closed_port() -> int:
    """A loopback port nothing listens on."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
    return port


@pytest.fixture
def data_folder_in_use(tmp_path: Path) -> Iterator[Path]:
    """A data folder held by an embedded server running in this process, as a first example would."""
    from secantus import SecantusDBServer  # type: ignore[import-untyped]

    server = SecantusDBServer(host="127.0.0.1", port=0, storage_path=str(tmp_path))
    server.start()
    client: MongoClient[dict[str, Any]] = MongoClient(server.uri, serverSelectionTimeoutMS=5000)
    try:
        client["examples"]["sessions"].insert_one({"_id": "kept"})
        yield tmp_path
        assert client["examples"]["sessions"].find_one({"_id": "kept"}) == {"_id": "kept"}  # still served
    finally:
        client.close()
        server.stop()


def test_a_second_example_on_a_data_folder_in_use_names_the_folder_and_the_fix(
    run_failing_example: Callable[..., str], data_folder_in_use: Path
) -> None:
    line = run_failing_example("quickstart", "--data-dir", str(data_folder_in_use), uri=None)

    assert f"the data folder {data_folder_in_use} is in use by another process" in line
    assert "stop that one, or pass --in-memory or --data-dir DIR" in line


def test_a_uri_that_is_not_one_fails_at_once_without_showing_a_password(
    run_failing_example: Callable[..., str],
) -> None:
    line = run_failing_example("quickstart", uri="alice:s3cret@db.example.com", timeout=FAIL_FAST_S)

    assert line == (
        "error: '***@db.example.com' (--uri or $MONGODB_URI) is not a MongoDB URI: give one starting with "
        "mongodb:// or mongodb+srv://, or unset it to use the embedded server"
    )


def test_not_a_uri_is_refused_by_its_scheme(run_failing_example: Callable[..., str]) -> None:
    line = run_failing_example("example_fastapi", "--uri", "not-a-uri", timeout=FAIL_FAST_S)

    assert line.startswith("error: 'not-a-uri' (--uri or $MONGODB_URI) is not a MongoDB URI")


@pytest.mark.parametrize("example", EXAMPLES)
def test_an_unreachable_server_is_named_with_its_password_masked(
    run_failing_example: Callable[..., str], closed_port: int, example: str
) -> None:
    uri = f"mongodb://alice:s3cret@127.0.0.1:{closed_port}/?serverSelectionTimeoutMS=300"

    line = run_failing_example(example, uri=uri)

    masked = f"mongodb://alice:***@127.0.0.1:{closed_port}/?serverSelectionTimeoutMS=300"
    assert line.startswith(f"error: cannot reach MongoDB at {masked} (127.0.0.1:{closed_port}: ")
    assert line.endswith("is it running? Check --uri / $MONGODB_URI, or unset it to use the embedded server")
    assert "s3cret" not in line


def test_wrong_credentials_are_named_without_the_password(
    run_failing_example: Callable[..., str], mongodb_uri: str
) -> None:
    if "@" in mongodb_uri:
        pytest.skip("the test server's URI carries credentials of its own")
    uri = mongodb_uri.replace("mongodb://", "mongodb://nobody:wr0ng@", 1)

    line = run_failing_example("quickstart", uri=uri)

    masked = mongodb_uri.replace("mongodb://", "mongodb://nobody:***@", 1)
    assert line == (
        f"error: MongoDB at {masked} refused the user name or password: check the credentials in --uri / $MONGODB_URI"
    )


def test_an_invalid_uri_option_is_one_line(run_failing_example: Callable[..., str]) -> None:
    line = run_failing_example("quickstart", uri="mongodb://localhost:port27017/")

    assert line.startswith("error: invalid MongoDB URI mongodb://localhost:port27017/: Port contains non-digit")
    assert line.endswith("; check --uri / $MONGODB_URI")


@pytest.mark.parametrize(
    ("session_id", "reason"), [("", "must not be empty"), ("x" * 300, "must be at most 256 characters")]
)
def test_an_invalid_session_id_is_refused_before_anything_is_stored(
    run_failing_example: Callable[..., str],
    database_name: str,
    mongo_db: Database[dict[str, Any]],
    session_id: str,
    reason: str,
) -> None:
    line = run_failing_example("quickstart", "--database", database_name, "--session-id", session_id)

    assert line.startswith("error: invalid session_id ")
    assert line.endswith(f": {reason}; pass another --session-id (or $SESSION_ID)")
    assert len(line) < 200
    assert mongo_db.list_collection_names() == []


def test_a_session_in_the_other_layout_is_left_untouched(
    run_failing_example: Callable[..., str], database_name: str, mongo_client: MongoClient[dict[str, Any]]
) -> None:
    repository = MongoDBSessionRepository(client=mongo_client, database_name=database_name)
    repository.create_session(Session(session_id="quickstart", session_type=SessionType.AGENT))
    before = mongo_client[database_name]["sessions"].find_one({"_id": "quickstart"})

    line = run_failing_example("quickstart", "--database", database_name, "--layout", "split")

    assert line == (
        "error: session 'quickstart' is stored in the 'embedded' layout, not 'split': open it with layout "
        "'embedded' or pass another --session-id, or migrate it (python -m mongodb_session_manager migrate --help)"
    )
    assert mongo_client[database_name]["sessions"].find_one({"_id": "quickstart"}) == before
    assert mongo_client[database_name]["sessions_messages"].count_documents({}) == 0


def test_bedrock_without_aws_credentials(run_failing_example: Callable[..., str], database_name: str) -> None:
    line = run_failing_example(
        "quickstart", "--database", database_name, "--provider", "Bedrock", env=NO_AWS_CREDENTIALS
    )

    assert line == (
        "error: Amazon Bedrock needs AWS credentials and none were found: configure them (aws configure, "
        "$AWS_PROFILE, or $AWS_ACCESS_KEY_ID and $AWS_SECRET_ACCESS_KEY), or pass --provider scripted"
    )


def test_model_provider_names_are_case_insensitive_and_openai_needs_its_key(
    run_failing_example: Callable[..., str],
) -> None:
    line = run_failing_example("quickstart", "--in-memory", uri=None, env={"MODEL_PROVIDER": "OpenAI"})

    if importlib.util.find_spec("openai") is None:
        assert line.startswith("error: the 'openai' provider needs its package (openai): run with `uv run --extra")
    else:
        assert line == ("error: the openai provider needs an API key: set OPENAI_API_KEY, or pass --provider scripted")


def parsed_provider(*argv: str) -> str:
    parser = argparse.ArgumentParser()
    model_provider.add_model_arguments(parser)
    provider: str = parser.parse_args(argv).provider
    return provider


def test_provider_names_in_any_case(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    monkeypatch.delenv("OLLAMA_HOST", raising=False)
    monkeypatch.setenv("MODEL_PROVIDER", "OpenAI")
    assert parsed_provider() == "openai"
    assert parsed_provider("--provider", "Bedrock") == "bedrock"
    assert parsed_provider("--provider", "SCRIPTED") == "scripted"

    monkeypatch.setenv("MODEL_PROVIDER", "watson")
    with pytest.raises(failures.ExampleError, match=r"MODEL_PROVIDER='watson' is not a provider: choose one of"):
        parsed_provider()


def test_an_error_strands_wraps_is_reported_once_in_one_line(
    mongo_client: MongoClient[dict[str, Any]],
    database_name: str,
    capsys: pytest.CaptureFixture[str],
    caplog: pytest.LogCaptureFixture,
) -> None:
    sessions = mongo_client[database_name]["sessions"]

    def delete_the_session(messages: Messages) -> str:
        sessions.delete_one({"_id": "deleted-under-it"})  # after the user message, before the answer is stored
        return "never stored"

    manager = MongoDBSessionManager("deleted-under-it", client=mongo_client, database_name=database_name)
    agent = Agent(model=ScriptedModel(fallback=delete_the_session), session_manager=manager, callback_handler=None)
    caplog.set_level(logging.ERROR)

    with pytest.raises(SystemExit) as exited, failures.in_one_line():
        agent("hello")

    assert exited.value.code == 1
    wrapped = exited.value.__context__  # the assistant message's append failed inside the event loop
    assert isinstance(wrapped, EventLoopException)
    assert isinstance(wrapped.original_exception, SessionNotFoundError)
    err = capsys.readouterr().err
    assert err.count("\n") == 1
    assert err.startswith("error: ")
    assert "deleted-under-it" in err
    assert "event loop cycle failed" not in caplog.text


@pytest.mark.parametrize(
    ("error", "line"),
    [
        (
            EventLoopException(LayoutMismatchError("s1", "split", "embedded")),
            "session 's1' is stored in the 'split' layout, not 'embedded': open it with layout 'split' "
            "or pass another --session-id",
        ),
        (
            botocore.exceptions.NoRegionError(),
            "Amazon Bedrock needs an AWS region: set $AWS_REGION, or pass --provider scripted",
        ),
        (failures.ExampleError("said\n  in   one line"), "said in one line"),
    ],
    ids=["wrapped layout mismatch", "no AWS region", "example error"],
)
def test_expected_failures_become_one_line(error: Exception, line: str) -> None:
    assert failures.one_line(error) == line


def test_a_bug_keeps_its_traceback(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(KeyError), failures.in_one_line():
        raise KeyError("a bug")
    assert capsys.readouterr().err == ""
    assert failures.one_line(EventLoopException(RuntimeError("a bug"))) is None
