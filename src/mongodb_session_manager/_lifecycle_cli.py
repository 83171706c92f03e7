"""Command line for users' sessions: ``erase``, ``export`` and ``import`` (``python -m mongodb_session_manager``).

:func:`add_commands` adds the three sub-commands to the main parser and :func:`run` runs the one
chosen. Failures are one line on stderr with a hint: exit status 2 for arguments or data that are
refused, 1 for everything else (the server, a verification that failed).
"""

import argparse
import json
import os
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from pymongo import MongoClient
from pymongo.errors import ConfigurationError, PyMongoError
from pymongo.uri_parser import parse_uri

from ._cli_options import PROG, URI_SCHEMES, add_location_arguments, client_options, one_line, server_failure
from ._client import create_client
from ._connection_key import scrubbed
from ._erasure import erase_sessions, stored_for
from ._progress import ProgressBar
from ._schema import Document, default_messages_collection_name, owner_fields
from ._session_documents import live
from ._target_collections import require_messages, require_sessions
from .errors import (
    ForeignDocumentsError,
    InvalidArgumentError,
    InvalidIdentifierError,
    SessionExistsError,
    SessionNotFoundError,
    excerpt,
)
from .mongodb_session_repository import MongoDBSessionRepository
from .validation import validate_collection_name, validate_database_name, validate_owner, validate_session_id

COMMANDS = ("erase", "export", "import")
_KEPT = {
    "erase": "what was erased stays erased",
    "export": "the sessions written so far are complete lines",
    "import": "the sessions imported so far stay imported",
}
"""What stays done when a command fails half-way."""

_ERASE_EXAMPLES = f"""\
examples:
  {PROG} erase --uri mongodb://localhost:27017 --database my_app --user-id alice --dry-run
  {PROG} erase --database my_app --user-id alice          # URI from $MONGODB_URI
  {PROG} erase --database my_app --user-id alice --application-name support
"""
_EXPORT_EXAMPLES = f"""\
examples:
  {PROG} export --database my_app --session-id chat-42 > chat-42.jsonl
  {PROG} export --database my_app --user-id alice > alice.jsonl
"""
_IMPORT_EXAMPLES = f"""\
examples:
  {PROG} import --database my_app < alice.jsonl
  {PROG} import --database my_app --layout split --skip-existing < alice.jsonl
"""


class _Refused(Exception):
    """A failure the user fixes by changing the command line or its input (exit status 2)."""


def add_commands(commands: "argparse._SubParsersAction[argparse.ArgumentParser]") -> None:
    """Add ``erase``, ``export`` and ``import`` to the sub-commands of the main parser."""
    erase = commands.add_parser(
        "erase",
        help="erase every session of one user, with all its messages",
        description="Erase every session of a user (GDPR article 17) with all its messages, in both\n"
        "message layouts, expired sessions included. Idempotent and resumable: run it again after\n"
        "an interruption. It ends by counting what is left of the user, which must be 0 (exit\n"
        "status 1 otherwise).",
        epilog=_ERASE_EXAMPLES,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    erase.add_argument("--user-id", required=True, help="the user whose sessions to erase")
    erase.add_argument("--application-name", help="only the user's sessions of this application")
    erase.add_argument("--dry-run", action="store_true", help="only count what would be erased")
    add_location_arguments(erase)

    export = commands.add_parser(
        "export",
        help="write sessions as JSON Lines on stdout",
        description="Write sessions as JSON Lines on stdout, one session per line (GDPR article 20), in\n"
        "the format of MongoDBSessionRepository.export_session (see the README). The count goes\n"
        "to stderr. Expired sessions are not exported.",
        epilog=_EXPORT_EXAMPLES,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    which = export.add_mutually_exclusive_group(required=True)
    which.add_argument("--session-id", help="export this session")
    which.add_argument("--user-id", help="export every session of this user")
    export.add_argument("--application-name", help="only sessions of this application")
    add_location_arguments(export)

    restore = commands.add_parser(
        "import",
        help="store sessions read as JSON Lines from stdin",
        description="Store the sessions read from stdin, one per line as written by export, in the\n"
        "given layout. Each line is checked whole before it is written; the first bad line stops\n"
        "the command (the sessions stored before it stay stored).",
        epilog=_IMPORT_EXAMPLES,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    restore.add_argument(
        "--layout", choices=["embedded", "split"], default="embedded", help="where to store messages (%(default)s)"
    )
    restore.add_argument("--skip-existing", action="store_true", help="skip sessions whose id exists already")
    add_location_arguments(restore)


def run(args: argparse.Namespace) -> int:
    """Run the command ``args`` names; the exit status."""
    handlers = {"erase": _erase, "export": _export, "import": _import}
    try:
        _check_names(args)
        with _connected(args.uri) as client:
            return handlers[args.command](client, args)
    except (_Refused, InvalidArgumentError, ForeignDocumentsError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    except PyMongoError as error:
        message, status = server_failure(error, args.database, _KEPT[args.command])
        print(f"error: {_without(args.uri, message)}", file=sys.stderr)
        return status


def _check_names(args: argparse.Namespace) -> None:
    """Refuse database and collection names MongoDB (or this library) would not take, before connecting."""
    validate_database_name(args.database, "--database")
    validate_collection_name(args.collection, "--collection")
    if args.messages_collection is not None:
        validate_collection_name(args.messages_collection, "--messages-collection")
        if args.messages_collection == args.collection:
            raise _Refused(
                f"--messages-collection {excerpt(args.messages_collection)} is the session collection; give the "
                "collection that holds the messages (default: <collection>_messages)"
            )


@contextmanager
def _connected(uri: str | None) -> Iterator[MongoClient[Document]]:
    """A client to ``uri``, giving up on an unreachable server after 5 s (unless the URI says otherwise).

    A missing or malformed URI is refused.
    """
    if not uri:
        raise _Refused("pass --uri or set MONGODB_URI, for example --uri mongodb://localhost:27017")
    if not uri.startswith(URI_SCHEMES):
        raise _Refused("--uri must start with mongodb:// or mongodb+srv://")
    if uri.startswith("mongodb://"):  # a mongodb+srv:// URI is checked by its DNS lookup, in MongoClient
        try:
            parse_uri(uri)
        except (ConfigurationError, ValueError, OSError) as error:  # OSError: a TLS file it names is not readable
            raise _Refused(f"--uri is not a valid MongoDB URI: {_without(uri, one_line(error))}") from None
    try:
        client = create_client(uri, **client_options(uri))
    except (ValueError, OSError) as error:  # an option pymongo refuses, a TLS file it cannot read or use
        raise _Refused(f"{_without(uri, one_line(error))}; check the URI") from None
    with client:
        yield client


def _without(uri: str | None, message: str) -> str:
    """``message`` never quoting the URI or its credentials."""
    return scrubbed(message.replace(uri, "<--uri>"), uri) if uri else message


def _owner(user_id: Any, application_name: Any) -> Document:
    if user_id is None:
        raise InvalidIdentifierError("--user-id", user_id, "is required")
    return owner_fields(validate_owner(user_id, "--user-id"), validate_owner(application_name, "--application-name"))


def _erase(client: MongoClient[Document], args: argparse.Namespace) -> int:
    owner = _owner(args.user_id, args.application_name)
    database = client[args.database]
    sessions = database[args.collection]
    messages = database[args.messages_collection or default_messages_collection_name(args.collection)]
    whose = f"user {excerpt(args.user_id)}" + (
        f" in application {excerpt(args.application_name)}" if args.application_name else ""
    )
    try:
        require_sessions(sessions)
        require_messages(messages)
    except ForeignDocumentsError as error:
        raise _Refused(f"{error}; check --collection and --messages-collection") from None
    found = stored_for(sessions, messages, owner)
    where = f"{args.database}.{args.collection}"
    print(f"{found.sessions} session(s) and {found.messages} message(s) of {whose} in {where}")
    if args.dry_run:
        return 0
    progress = ProgressBar(found.sessions, "erasing", "sessions")
    try:
        erased = erase_sessions(sessions, messages, owner, on_batch=progress.advance)
    finally:
        progress.close()
    left = stored_for(sessions, messages, owner)
    print(f"erased {erased} session(s)")
    print(f"verification: {left.sessions} session(s) and {left.messages} message(s) of {whose} remain")
    if left.sessions or left.messages:
        print(
            f"error: {whose} still has {left.sessions} session(s) and {left.messages} message(s), written while "
            "erasing; stop the application's writes for this user and run the command again",
            file=sys.stderr,
        )
        return 1
    return 0


def _export(client: MongoClient[Document], args: argparse.Namespace) -> int:
    application = validate_owner(args.application_name, "--application-name")
    if args.session_id is not None:
        session_ids = [validate_session_id(args.session_id)]
        user_id = None
    else:
        owner = _owner(args.user_id, application)
        user_id = args.user_id
        query = {**owner, **live()}
        session_ids = [document["_id"] for document in client[args.database][args.collection].find(query, {"_id": 1})]
    repository = _repository(client, args, user_id=user_id, application_name=application)
    exported = 0
    try:
        for session_id in session_ids:
            try:
                data = repository.export_session(session_id)
            except SessionNotFoundError:
                if args.session_id is None:
                    continue  # deleted or expired since it was listed
                print(
                    f"error: session {excerpt(session_id)} not found in {args.database}.{args.collection} (or "
                    "expired, or of another application); check --session-id, --database and --collection",
                    file=sys.stderr,
                )
                return 1
            sys.stdout.write(json.dumps(data, ensure_ascii=False, allow_nan=False) + "\n")
            exported += 1
        sys.stdout.flush()
    except BrokenPipeError:  # the reader went away (``| head``): stop quietly, as Unix tools do
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 1
    print(f"exported {exported} session(s)", file=sys.stderr)
    return 0


def _import(client: MongoClient[Document], args: argparse.Namespace) -> int:
    repository = _repository(client, args, layout=args.layout)
    imported = skipped = 0
    for number, line in enumerate(sys.stdin, start=1):
        if not line.strip():
            continue
        so_far = f"{imported} session(s) imported before it"
        try:
            data = json.loads(line)
        except RecursionError:
            raise _Refused(f"line {number} is nested too deeply to be a session; {so_far}") from None
        except ValueError as error:
            raise _Refused(f"line {number} is not JSON ({error}); {so_far}") from None
        try:
            repository.import_session(data)
        except InvalidArgumentError as error:
            raise _Refused(f"line {number}: {error}; {so_far}") from None
        except SessionExistsError as error:
            if not args.skip_existing:
                print(
                    f"error: line {number}: {error}; {so_far}; pass --skip-existing to go past sessions imported "
                    "already",
                    file=sys.stderr,
                )
                return 1
            skipped += 1
            continue
        imported += 1
    print(f"imported {imported} session(s)" + (f", skipped {skipped} that existed already" if skipped else ""))
    return 0


def _repository(client: MongoClient[Document], args: argparse.Namespace, **options: Any) -> MongoDBSessionRepository:
    return MongoDBSessionRepository(
        client=client,
        database_name=args.database,
        collection_name=args.collection,
        messages_collection_name=args.messages_collection,
        **options,
    )
