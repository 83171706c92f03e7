"""Command line: ``python -m mongodb_session_manager migrate|cleanup|erase|export|import`` (see ``--help``)."""

import argparse
import logging
import os
import sys

from pymongo.errors import PyMongoError

from . import _lifecycle_cli
from ._client import create_client
from ._progress import ProgressBar
from ._schema import default_messages_collection_name
from .cleanup import CleanupRefusedError, find_left_behind, remove_left_behind
from .migration import count_embedded_sessions, migrate_to_split


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m mongodb_session_manager")
    commands = parser.add_subparsers(dest="command", required=True)
    migrate = commands.add_parser(
        "migrate",
        help="move sessions from one message layout to another",
        description="Move every session from the embedded layout (messages inside the session document) to the "
        "split layout (one document per message). Idempotent and resumable: run it again after an interruption. "
        "Nothing is removed from a session document before its messages are verified in the messages collection.",
    )
    migrate.add_argument("--from", dest="source", required=True, choices=["embedded"], help="current layout")
    migrate.add_argument("--to", dest="target", required=True, choices=["split"], help="new layout")
    _add_location_arguments(migrate)
    migrate.add_argument("--dry-run", action="store_true", help="only count the sessions to migrate")
    migrate.add_argument("--verbose", action="store_true", help="log every session")
    cleanup = commands.add_parser(
        "cleanup",
        help="delete split-layout messages that no session owns any more",
        description="Delete the messages a split-layout delete left behind when it was interrupted (or that a "
        "writer still holding a deleted session appended). They are never shown, but they are stored. Safe to run "
        "while applications write, given the application's --collection and --messages-collection: messages of "
        "existing sessions, and the migration's copies, are kept.",
    )
    _add_location_arguments(cleanup)
    cleanup.add_argument("--dry-run", action="store_true", help="only count what would be deleted")
    cleanup.add_argument(
        "--force",
        action="store_true",
        help="delete even when no session owns any stored message (refused otherwise: usually a wrong --collection)",
    )
    _lifecycle_cli.add_commands(commands)
    return parser


def _add_location_arguments(command: argparse.ArgumentParser) -> None:
    command.add_argument("--uri", default=os.environ.get("MONGODB_URI"), help="MongoDB URI (default: $MONGODB_URI)")
    command.add_argument("--database", required=True, help="database holding the sessions")
    command.add_argument("--collection", default="sessions", help="session collection (default: %(default)s)")
    command.add_argument("--messages-collection", help="messages collection (default: <collection>_messages)")


def main(argv: list[str] | None = None) -> int:
    """Run the command line; the exit status is 0 when the command did all it was asked to."""
    args = _parser().parse_args(argv)
    if args.command in _lifecycle_cli.COMMANDS:
        return _lifecycle_cli.run(args)
    if not args.uri:
        print("error: pass --uri or set MONGODB_URI", file=sys.stderr)
        return 2
    if args.command == "cleanup":
        return _cleanup(args)
    return _migrate(args)


def _migrate(args: argparse.Namespace) -> int:
    logging.basicConfig(level=logging.INFO if args.verbose else logging.WARNING, format="%(levelname)s %(message)s")
    where = f"{args.database}.{args.collection}"
    try:
        with create_client(args.uri) as client:
            database = client[args.database]
            pending = count_embedded_sessions(database[args.collection])
            print(f"{pending} session(s) in {where} to move from the embedded to the split layout")
            if args.dry_run or pending == 0:
                return 0
            progress = ProgressBar(pending, "migrating", "sessions")
            try:
                report = migrate_to_split(
                    database,
                    args.collection,
                    args.messages_collection,
                    on_session_done=lambda _session_id: progress.advance(),
                )
            finally:
                progress.close()
    except (PyMongoError, ValueError) as error:
        print(f"error: {error}; sessions migrated so far stay migrated, run the command again", file=sys.stderr)
        return 1
    print(f"migrated {report.migrated} session(s), {report.messages_copied} message(s)")
    for session_id, reason in report.failed.items():
        print(f"not migrated: {session_id!r}: {reason}", file=sys.stderr)
    if report.still_embedded:
        print(
            f"{report.still_embedded} session(s) in {where} are still embedded (listed above, or created while "
            "this ran); run the migration again once every writer uses layout='split'",
            file=sys.stderr,
        )
    return 1 if report.failed or report.still_embedded else 0


def _cleanup(args: argparse.Namespace) -> int:
    messages_collection = args.messages_collection or default_messages_collection_name(args.collection)
    where = f"{args.database}.{messages_collection}"
    try:
        with create_client(args.uri) as client:
            database = client[args.database]
            if messages_collection not in database.list_collection_names():
                print(f"{where} does not exist: nothing to delete")
                return 0
            left_behind = find_left_behind(database, args.collection, messages_collection)
            print(
                f"{left_behind.message_count} message(s) of {len(left_behind.counts)} deleted session(s) left behind "
                f"in {where}; {left_behind.owned_groups} session(s) in {args.database}.{args.collection} own the rest"
            )
            if args.dry_run or not left_behind.counts:
                return 0
            progress = ProgressBar(left_behind.message_count, "deleting", "messages")
            try:
                deleted = remove_left_behind(
                    database,
                    left_behind,
                    args.collection,
                    messages_collection,
                    even_if_nothing_is_owned=args.force,
                    on_owner_done=progress.advance,
                )
            finally:
                progress.close()
    except CleanupRefusedError as error:
        print(f"error: {error}; pass --force to delete them anyway", file=sys.stderr)
        return 2
    except (PyMongoError, ValueError) as error:
        print(f"error: {error}; run the command again", file=sys.stderr)
        return 1
    print(f"deleted {deleted} message(s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
