"""The error hierarchy callers rely on."""

import pytest
from strands.types.exceptions import SessionException

from mongodb_session_manager import errors


@pytest.mark.parametrize(
    ("error", "also"),
    [
        (errors.SessionNotFoundError, None),
        (errors.SessionConflictError, None),
        (errors.StaleAgentError, None),
        (errors.SessionTooLargeError, None),
        (errors.InvalidIdentifierError, ValueError),
        (errors.FactoryNotInitializedError, RuntimeError),
        (errors.FactoryAlreadyInitializedError, RuntimeError),
    ],
)
def test_every_error_is_a_library_and_a_strands_session_error(error: type[Exception], also: type | None) -> None:
    assert issubclass(error, errors.MongoDBSessionError)
    assert issubclass(errors.MongoDBSessionError, SessionException)
    if also is not None:
        assert issubclass(error, also)


def test_too_large_error_names_the_session_and_its_size() -> None:
    error = errors.SessionTooLargeError("chat-7", 16_000_000, 900_000, 16 * 1024 * 1024)
    assert "'chat-7'" in str(error)
    assert "16,000,000" in str(error)
    assert "900,000" in str(error)


def test_invalid_identifier_error_names_the_field() -> None:
    error = errors.InvalidIdentifierError("agent_id", "a.b", "must not contain '.'")
    assert error.field == "agent_id"
    assert error.value == "a.b"
    assert str(error).startswith("invalid agent_id 'a.b'")


def test_invalid_identifier_error_quotes_only_the_start_of_a_long_value() -> None:
    error = errors.InvalidIdentifierError("session_id", "x" * 300, "must be at most 256 characters")
    assert error.value == "x" * 300
    assert str(error) == f"invalid session_id '{'x' * 63}... (300 characters): must be at most 256 characters"


@pytest.mark.parametrize("key", ["\ud800", "a\x00b", "line\nbreak"])
def test_an_error_naming_a_path_through_an_unprintable_key_can_be_printed_as_utf8(key: str) -> None:
    error = errors.UnstorableValueError(f"metadata.a.{key}", key, "is a key BSON cannot hold")
    message = str(error)
    message.encode("utf-8")  # a lone surrogate would raise here, and in every log handler writing it
    assert message.isprintable()
    assert message.startswith(f"invalid metadata.a.{ascii(key)[1:-1]} ")
    assert error.field == f"metadata.a.{key}"
