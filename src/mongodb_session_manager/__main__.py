"""Command line: ``python -m mongodb_session_manager migrate|cleanup|erase|export|import`` (see ``--help``).

Each command prints what it finds and does. A failure is one line on stderr, ``error: <what>;
<hint>``: status 2 when the command was refused before anything was written (usage, an invalid
name, a collection that does not exist or holds other documents), 1 when the server failed or
work is left; the hint says to run the command again only when that can help (a network error or
timeout). The password in the URI is never printed.
"""

import argparse
import logging
import sys
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

from pymongo.database import Database
from pymongo.errors import ConfigurationError, PyMongoError

from . import _lifecycle_cli
from ._cli_options import PROG, URI_SCHEMES, add_location_arguments, client_options, one_line, server_failure
from ._client import create_client
from ._connection_key import scrubbed
from ._progress import ProgressBar
from ._schema import default_messages_collection_name
from ._version import __version__
from .cleanup import CleanupRefusedError, find_left_behind, remove_left_behind
from .errors import ForeignDocumentsError, InvalidIdentifierError, excerpt
from .migration import check_migration_targets, count_embedded_sessions, migrate_to_split
from .validation import validate_collection_name, validate_database_name

MAIN_EXAMPLES = f"""\
examples:
  {PROG} migrate --from embedded --to split --database my_app --dry-run
  {PROG} cleanup --uri mongodb://localhost:27017 --database my_app
  {PROG} erase --uri mongodb://localhost:27017 --database my_app --user-id alice --dry-run
  {PROG} export --database my_app --user-id alice > alice.jsonl
"""
MIGRATE_EXAMPLES = f"""\
examples:
  # count the sessions to move, changing nothing
  {PROG} migrate --from embedded --to split --uri mongodb://localhost:27017 --database my_app --dry-run
  # move them; run it again after an interruption
  {PROG} migrate --from embedded --to split --uri "$MONGODB_URI" --database my_app --collection chats

exit status: 0 all sessions moved; 1 a server error, or sessions left embedded (listed);
2 refused before writing anything (usage, invalid or missing collection, foreign documents).
"""
CLEANUP_EXAMPLES = f"""\
examples:
  # count what no session owns, deleting nothing
  {PROG} cleanup --uri mongodb://localhost:27017 --database my_app --dry-run
  # delete it (the application's collection names)
  {PROG} cleanup --database my_app --collection chats --messages-collection chats_messages

exit status: 0 done (or nothing to delete); 1 a server error; 2 refused before deleting anything
(usage, invalid or missing collection, foreign documents, nothing owned without --force).
"""


class CommandError(Exception):
    """A failure reported as one line, ``error: <message>``, with an exit status."""

    def __init__(self, message: str, status: int) -> None:
        """Keep the line to print and the status to exit with."""
        super().__init__(message)
        self.status = status


@dataclass(frozen=True)
class Target:
    """Where a command works: the server, the database and the two collections (validated)."""

    uri: str
    database: str
    collection: str
    messages_collection: str


def _parser() -> argparse.ArgumentParser:
    formatter = argparse.RawDescriptionHelpFormatter
    parser = argparse.ArgumentParser(
        prog=PROG,
        description="Maintenance commands for the Strands sessions mongodb-session-manager stores in MongoDB.",
        epilog=MAIN_EXAMPLES,
        formatter_class=formatter,
    )
    parser.add_argument("--version", action="version", version=f"mongodb-session-manager {__version__}")
    commands = parser.add_subparsers(
        dest="command", required=True, metavar="{migrate,cleanup," + ",".join(_lifecycle_cli.COMMANDS) + "}"
    )
    migrate = commands.add_parser(
        "migrate",
        help="move sessions from the embedded to the split message layout",
        description="Move every session from the embedded layout (messages inside the session document) to the\n"
        "split layout (one document per message). Idempotent and resumable: run it again after an\n"
        "interruption. Nothing is removed from a session document before its messages are verified in\n"
        "the messages collection, and a session a writer changes meanwhile is copied again (only what\n"
        "changed). It refuses, changing nothing, a collection holding anything but this library's\n"
        "sessions (or messages). Only embedded -> split is supported.",
        epilog=MIGRATE_EXAMPLES,
        formatter_class=formatter,
    )
    migrate.add_argument("--from", dest="source", required=True, choices=["embedded", "split"], help="current layout")
    migrate.add_argument("--to", dest="target", required=True, choices=["embedded", "split"], help="new layout")
    add_location_arguments(migrate)
    migrate.add_argument("--dry-run", action="store_true", help="only count the sessions to migrate")
    migrate.add_argument("--verbose", action="store_true", help="log every session")
    migrate.set_defaults(run=_migrate, command_parser=migrate)
    cleanup = commands.add_parser(
        "cleanup",
        help="delete split-layout messages that no session owns any more",
        description="Delete the messages a split-layout delete left behind when it was interrupted (or that a\n"
        "writer still holding a deleted session appended). They are never shown, but they are stored.\n"
        "Safe to run while applications write, given the application's --collection and\n"
        "--messages-collection: messages of existing sessions, and the migration's copies, are kept.",
        epilog=CLEANUP_EXAMPLES,
        formatter_class=formatter,
    )
    add_location_arguments(cleanup)
    cleanup.add_argument("--dry-run", action="store_true", help="only count what would be deleted")
    cleanup.add_argument(
        "--force",
        action="store_true",
        help="delete even when no session owns any stored message (refused otherwise: usually a wrong --collection)",
    )
    cleanup.set_defaults(run=_cleanup, command_parser=cleanup)
    _lifecycle_cli.add_commands(commands)
    return parser


def main(argv: list[str] | None = None) -> int:
    """Run the command line; the exit status is 0 when the command did all it was asked to."""
    args = _parser().parse_args(argv)
    if args.command in _lifecycle_cli.COMMANDS:
        return _lifecycle_cli.run(args)
    if args.command == "migrate" and (args.source, args.target) != ("embedded", "split"):
        args.command_parser.error(
            f"--from {args.source} --to {args.target}: only --from embedded --to split is supported "
            "(there is no way back to the embedded layout)"
        )
    try:
        status: int = args.run(_target(args), args)
    except CommandError as error:
        print(f"error: {scrubbed(str(error), args.uri) if args.uri else error}", file=sys.stderr)
        return error.status
    return status


def _target(args: argparse.Namespace) -> Target:
    """The validated URI and names; nothing has been sent to a server yet."""
    if not args.uri:
        raise CommandError("no server given; pass --uri or set MONGODB_URI", 2)
    if not args.uri.startswith(URI_SCHEMES):
        raise CommandError("the URI must start with mongodb:// or mongodb+srv://; check --uri or MONGODB_URI", 2)
    try:
        validate_database_name(args.database, "--database")
        validate_collection_name(args.collection, "--collection")
        if args.messages_collection is not None:
            validate_collection_name(args.messages_collection, "--messages-collection")
    except InvalidIdentifierError as error:
        raise CommandError(f"{error}; nothing was changed", 2) from None
    messages_collection = args.messages_collection or default_messages_collection_name(args.collection)
    if messages_collection == args.collection:
        raise CommandError(
            f"--messages-collection {excerpt(messages_collection)} is the session collection; give the collection that "
            "holds the messages (default: <collection>_messages)",
            2,
        )
    return Target(args.uri, args.database, args.collection, messages_collection)


def _migrate(target: Target, args: argparse.Namespace) -> int:
    logging.basicConfig(level=logging.INFO if args.verbose else logging.WARNING, format="%(levelname)s %(message)s")
    where = f"{target.database}.{target.collection}"
    with _database(target, kept="sessions migrated so far stay migrated") as database:
        _require_collection(database, target.collection, where)
        check_migration_targets(database, target.collection, target.messages_collection)
        pending = count_embedded_sessions(database[target.collection])
        print(f"{pending} session(s) in {where} to move from the embedded to the split layout")
        if args.dry_run or pending == 0:
            return 0
        progress = ProgressBar(pending, "migrating", "sessions")
        try:
            report = migrate_to_split(
                database,
                target.collection,
                target.messages_collection,
                on_session_done=lambda _session_id: progress.advance(),
            )
        finally:
            progress.close()
    print(f"migrated {report.migrated} session(s), {report.messages_copied} message(s)")
    for session_id, reason in report.failed.items():
        print(f"not migrated: {excerpt(session_id)}: {reason}", file=sys.stderr)
    if report.failed:
        print(
            f"{len(report.failed)} session(s) in {where} were left embedded and unchanged (listed above)",
            file=sys.stderr,
        )
    created_meanwhile = report.still_embedded - len(report.failed)
    if created_meanwhile > 0:
        print(
            f"{created_meanwhile} session(s) in {where} were created in the embedded layout while this ran; switch "
            "every writer to layout='split', then run the migration again",
            file=sys.stderr,
        )
    return 1 if report.failed or report.still_embedded else 0


def _cleanup(target: Target, args: argparse.Namespace) -> int:
    where = f"{target.database}.{target.messages_collection}"
    with _database(target, kept="messages deleted so far stay deleted") as database:
        _require_collection(database, target.collection, f"{target.database}.{target.collection}")
        if not database.list_collection_names(filter={"name": target.messages_collection}):
            print(f"{where} does not exist: nothing to delete")
            return 0
        left_behind = find_left_behind(database, target.collection, target.messages_collection)
        print(
            f"{left_behind.message_count} message(s) of {len(left_behind.counts)} deleted session(s) left behind "
            f"in {where}; {left_behind.owned_groups} session(s) in {target.database}.{target.collection} own the rest"
        )
        if args.dry_run or not left_behind.counts:
            return 0
        progress = ProgressBar(left_behind.message_count, "deleting", "messages")
        try:
            deleted = remove_left_behind(
                database,
                left_behind,
                target.collection,
                target.messages_collection,
                even_if_nothing_is_owned=args.force,
                on_owner_done=progress.advance,
            )
        finally:
            progress.close()
    print(f"deleted {deleted} message(s)")
    return 0


@contextmanager
def _database(target: Target, kept: str) -> Iterator[Database[dict[str, Any]]]:
    """The target database on a client of our own; errors become one-line ``CommandError``s.

    ``kept`` tells what stays done when a command fails half-way.
    """
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", UserWarning)  # pymongo only warns about an option it will ignore
            client = create_client(target.uri, **client_options(target.uri))
    except (ConfigurationError, ValueError, OSError, UserWarning) as error:  # ValueError: some malformed URIs;
        # OSError: a TLS file the URI names that cannot be read or holds no certificate
        raise CommandError(f"{one_line(error)}; check the URI", 2) from None
    try:
        with client:
            yield client[target.database]
    except (InvalidIdentifierError, ForeignDocumentsError) as error:
        raise CommandError(f"{error}; check --database, --collection and --messages-collection", 2) from None
    except CleanupRefusedError as error:
        raise CommandError(f"{error}; pass --force to delete them anyway", 2) from None
    except PyMongoError as error:
        raise _server_failure(error, target, kept) from None


def _require_collection(database: Database[dict[str, Any]], name: str, where: str) -> None:
    if not database.list_collection_names(filter={"name": name}):
        raise CommandError(f"{where} does not exist; check --database and --collection", 2)


def _server_failure(error: PyMongoError, target: Target, kept: str) -> CommandError:
    """The one line for a pymongo error, with the hint that fits it."""
    return CommandError(*server_failure(error, target.database, kept))


if __name__ == "__main__":
    sys.exit(main())
