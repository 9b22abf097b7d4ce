"""The ``lockcore`` command: run the service, manage users and the catalog.

    lockcore serve [--host H] [--port P] [--workers N] [--threads T] [--redis-url URL]
                   [--data-dir D] [--demo | --no-demo]
    lockcore users add ID --name NAME [--email E] [--role R]...
    lockcore users list [--json]
    lockcore users issue-key ID
    lockcore users revoke-key ID (KEY_ID | --key KEY | --all)
    lockcore catalog load FILE
    lockcore scopes [--json]           (also: lockcore locks scopes)
    lockcore locks list SCOPE [--owner O] [--type T] [--resource R] [--json]
    lockcore locks show ID [--json]
    lockcore locks release ID [--owner O]
    lockcore locks watch [SCOPE] [--count N] [--json]
    lockcore run --lock NAME [--type job|rlock|rw|permit] [--shared] [--scope S] [--wait S]
                 [--ttl S] [--owner O] -- CMD [ARGS...]
    lockcore elect NAME [--scope S] [--wait S] [--ttl S] [--owner O] -- CMD [ARGS...]

Without a Redis URL (``--redis-url`` or ``LOCKCORE_REDIS_URL``) every command uses the
embedded redis-server in the data directory, starting it if it is not running.

The demo catalog (fixed, well-known keys) is loaded only into an empty store (no users, no
catalog), and only when asked for (``--demo``) or in the one local case the README's first
command needs: embedded Redis bound to loopback. Failures are one line on stderr, exit 1
(2 for a catalog file that is not valid).
"""

from __future__ import annotations

import argparse
import sys

import redis

from lockcore import __version__

from .common import CliError, command_settings
from .locks import locks_list, locks_release, locks_scopes, locks_show, locks_watch
from .run import add_parsers as add_run_parsers
from .run import split_command
from .serve import demo_allowed, is_loopback, load_demo_if_empty, redacted, serve
from .users import catalog_load, users_add, users_issue_key, users_list, users_revoke_key

__all__ = ["demo_allowed", "is_loopback", "load_demo_if_empty", "main", "parser", "redacted"]


def parser() -> argparse.ArgumentParser:
    top = argparse.ArgumentParser(
        prog="lockcore", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    top.add_argument(
        "--version",
        action="version",
        version=f"%(prog)s {__version__}",
        help="print the version and exit",
    )
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument(
        "--redis-url", help="Redis URL (default: $LOCKCORE_REDIS_URL, else the embedded server)"
    )
    common.add_argument(
        "--data-dir",
        help="embedded server's data directory (default: $LOCKCORE_DATA_DIR or ./lockcore-data)",
    )
    sub = top.add_subparsers(dest="command", required=True, help="what to do")

    p = sub.add_parser("serve", parents=[common], help="run the HTTP service (gunicorn)")
    p.add_argument(
        "--host",
        default="127.0.0.1",
        help="address to bind (default 127.0.0.1; 0.0.0.0 for every interface)",
    )
    p.add_argument("--port", type=int, default=8000, help="port to bind (default 8000)")
    p.add_argument("--workers", type=int, default=2, help="gunicorn workers (default 2)")
    p.add_argument(
        "--threads",
        type=int,
        default=128,
        help="threads per worker (default 128); /v1 long polls may take all "
        "but 32 of them (LOCKCORE_V1_MAX_WAITERS)",
    )
    p.add_argument(
        "--demo",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="load the demo catalog, with its well-known keys, into an empty "
        "store (default: only with embedded Redis bound to loopback)",
    )
    p.set_defaults(func=serve)

    users = sub.add_parser("users", help="manage users and their API keys").add_subparsers(
        dest="action", required=True, help="what to do with users"
    )
    p = users.add_parser("add", parents=[common], help="add a user and print their first API key")
    p.add_argument("id", help="the new user's id (an existing id is refused)")
    p.add_argument("--name", required=True, help="full name, as the APIs show it")
    p.add_argument("--email", default="", help="e-mail address")
    p.add_argument(
        "--role",
        action="append",
        default=[],
        help="global role, e.g. sysadmin (repeat for several)",
    )
    p.set_defaults(func=users_add)
    p = users.add_parser(
        "list", parents=[common], help="every user: id, name, roles and key ids (never keys)"
    )
    p.add_argument("--json", action="store_true", help="print JSON instead of a table")
    p.set_defaults(func=users_list)
    p = users.add_parser(
        "issue-key", parents=[common], help="issue another API key to a user and print it"
    )
    p.add_argument("id", help="the user's id")
    p.set_defaults(func=users_issue_key)
    p = users.add_parser(
        "revoke-key", parents=[common], help="revoke API keys; they stop working at once"
    )
    p.add_argument("id", help="the user's id")
    which = p.add_mutually_exclusive_group(required=True)
    which.add_argument("key_id", nargs="?", help="the key's id, as `users list` shows it")
    which.add_argument("--key", help="the key itself (- reads it from stdin)")
    which.add_argument("--all", action="store_true", help="every key of the user")
    p.set_defaults(func=users_revoke_key)

    catalog = sub.add_parser("catalog", help="manage the resource catalog").add_subparsers(
        dest="action", required=True, help="what to do with the catalog"
    )
    p = catalog.add_parser("load", parents=[common], help="replace the catalog from a file")
    p.add_argument("file", help="a catalog document, YAML or JSON")
    p.set_defaults(func=catalog_load)

    locks = sub.add_parser("locks", help="look at and release locks").add_subparsers(
        dest="action", required=True, help="what to do with locks"
    )
    p = locks.add_parser("list", parents=[common], help="a scope's live locks")
    p.add_argument("scope", help="e.g. versal:course:course-1, edx:workspace:ws-1, v1:batch")
    p.add_argument("--owner", help="only this owner's locks")
    p.add_argument("--type", help="only locks of this type (gadget, workspace, ...)")
    p.add_argument("--resource", help="only locks on this resource")
    p.add_argument("--json", action="store_true", help="print JSON instead of a table")
    p.set_defaults(func=locks_list)
    # ``lockcore scopes`` and ``lockcore locks scopes``: the same command
    for parent in (sub, locks):
        p = parent.add_parser("scopes", parents=[common], help="the scopes with live locks")
        p.add_argument("--json", action="store_true", help="print JSON instead of a table")
        p.set_defaults(func=locks_scopes)
    p = locks.add_parser("show", parents=[common], help="one lock")
    p.add_argument("id", help="the lock's id")
    p.add_argument("--json", action="store_true", help="print JSON instead of a table")
    p.set_defaults(func=locks_show)
    p = locks.add_parser(
        "release", parents=[common], help="release a lock (forced, unless --owner)"
    )
    p.add_argument("id", help="the lock's id")
    p.add_argument("--owner", help="release as this owner only (no force)")
    p.set_defaults(func=locks_release)
    p = locks.add_parser("watch", parents=[common], help="follow lock events live")
    p.add_argument("scope", nargs="?", help="one scope's stream (else every scope)")
    p.add_argument("--count", type=int, help="stop after this many events")
    p.add_argument("--json", action="store_true", help="print each event as JSON")
    p.set_defaults(func=locks_watch)

    add_run_parsers(sub, common)
    return top


def main(argv: list[str] | None = None) -> int:
    own, command = split_command(sys.argv[1:] if argv is None else argv)
    args = parser().parse_args(own)
    if command:
        if not hasattr(args, "argv"):
            return _fail(f"{args.command} takes no command after --")
        args.argv = command
    try:
        return int(args.func(args))
    except CliError as exc:
        return _fail(str(exc))
    except redis.RedisError as exc:
        url = command_settings(args)["REDIS_URL"]  # read without error before any Redis call
        where = f"Redis at {redacted(url)}" if url else "the embedded Redis"
        return _fail(f"{where}: {exc}")
    except (ValueError, OSError, RuntimeError) as exc:
        # A bad URL or setting, a missing binary, a server that would not start.
        return _fail(str(exc) or exc.__class__.__name__)


def _fail(message: str) -> int:
    print("lockcore: " + " ".join(message.split()), file=sys.stderr)
    return 1
