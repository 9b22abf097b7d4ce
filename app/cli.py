"""The ``lockcore`` command: run the service, manage users and the catalog.

    lockcore serve [--host H] [--port P] [--workers N] [--threads T] [--redis-url URL]
                   [--data-dir D] [--demo | --no-demo]
    lockcore users add ID --name NAME [--email E] [--role R]...
    lockcore users list [--json]
    lockcore users issue-key ID
    lockcore users revoke-key ID (KEY_ID | --key KEY | --all)
    lockcore catalog load FILE
    lockcore locks list SCOPE [--owner O] [--type T] [--resource R] [--json]
    lockcore locks show ID [--json]
    lockcore locks release ID [--owner O]
    lockcore locks watch [SCOPE] [--count N] [--json]

Without a Redis URL (``--redis-url`` or ``LOCKCORE_REDIS_URL``) every command uses the
embedded redis-server in the data directory, starting it if it is not running.

The demo catalog (fixed, well-known keys) is loaded only into an empty store (no users, no
catalog), and only when asked for (``--demo``) or in the one local case the README's first
command needs: embedded Redis bound to loopback. Failures are one line on stderr, exit 1
(2 for a catalog file that is not valid).
"""

from __future__ import annotations

import argparse
import ipaddress
import json
import os
import shutil
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import closing, contextmanager
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import redis

from lockcore import EmbeddedRedis, __version__, connect
from lockcore.embedded import Supervisor
from lockcore.keys import event_from_entry
from lockcore.manager import DEFAULT_PREFIX

from . import config

DEMO_BANNER = """
lockcore is serving on http://{host}:{port}  ({workers} workers, Redis: {redis})
  OpenAPI: http://{host}:{port}/openapi.json   Swagger UI: http://{host}:{port}/docs
The demo catalog was loaded; its users' API keys (demo only):
{keys}
"""
FIRST_USER_HINT = (
    "No users yet: create the first sysadmin with "
    "`lockcore users add ID --name NAME --role sysadmin` (it prints their key)."
)


class CliError(Exception):
    """A failure to report as one line on stderr (exit 1)."""


def redacted(url: str) -> str:
    """``url`` with its password, if any, replaced by ``***`` (for banners and errors)."""
    parts = urlsplit(url)
    if "@" not in parts.netloc:
        return url
    auth, _, hosts = parts.netloc.rpartition("@")
    user = auth.split(":", 1)[0]
    return urlunsplit(parts._replace(netloc=f"{user}:***@{hosts}"))


def is_loopback(host: str) -> bool:
    host = host.strip("[]")
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def demo_allowed(requested: bool | None, *, embedded: bool, host: str) -> bool:
    """Whether ``serve`` may load the demo catalog (into an empty store): ``--demo`` /
    ``--no-demo`` decide; without either, only embedded Redis bound to loopback, where
    nobody else can reach the demo's well-known keys."""
    if requested is not None:
        return requested
    return embedded and is_loopback(host)


def command_settings(args: argparse.Namespace) -> dict[str, Any]:
    """The service's settings (defaults, then ``LOCKCORE_*``), with the command's
    ``--redis-url`` and ``--data-dir``, when given, over them."""
    flags = {"REDIS_URL": args.redis_url, "DATA_DIR": args.data_dir}
    return config.load({name: value for name, value in flags.items() if value})


def _stores(client: Any, prefix: str) -> tuple[Any, Any]:
    from .catalog import Catalog
    from .identity import Users

    return Users(client, prefix), Catalog(client, prefix)


def load_demo_if_empty(
    client: Any, prefix: str = DEFAULT_PREFIX
) -> list[tuple[str, str, str]] | None:
    """Load the demo catalog into a truly empty store (no users, no catalog); returns
    (user, name, key) or None."""
    from .catalog import DEMO_CATALOG, parse_document

    users, catalog = _stores(client, prefix)
    if users.exist() or not catalog.is_empty():
        return None
    doc = parse_document(DEMO_CATALOG.read_text())
    catalog.replace(doc, users)
    return [(u["id"], u["name"], u["api_key"]) for u in doc["users"] if u.get("api_key")]


def serve(args: argparse.Namespace) -> int:
    # A bad LOCKCORE_* value stops here, before anything starts.
    settings = command_settings(args)
    # Metrics of all workers are summed through files in this directory; it must be set
    # before prometheus_client is first imported.
    metrics_dir = tempfile.mkdtemp(prefix="lockcore-metrics-")
    os.environ["PROMETHEUS_MULTIPROC_DIR"] = metrics_dir
    url, prefix = settings["REDIS_URL"], settings["KEY_PREFIX"]
    embedded = supervisor = None
    try:
        from .observability import setup_logging

        setup_logging(settings["LOG_LEVEL"])  # the supervisor's restarts, as JSON lines
        if not url:
            # Not _redis(): this server outlives the command's connection, supervised,
            # until gunicorn exits.
            embedded = EmbeddedRedis(settings["DATA_DIR"], appendfsync=settings["APPENDFSYNC"])
            url = embedded.start().url
            supervisor = Supervisor(embedded).start()
        os.environ["LOCKCORE_REDIS_URL"] = url
        with closing(connect(url, socket_connect_timeout=settings["REDIS_TIMEOUT"])) as connection:
            demo = None
            if demo_allowed(args.demo, embedded=embedded is not None, host=args.host):
                demo = load_demo_if_empty(connection.client, prefix)
                if demo is None and args.demo:
                    print("The store is not empty: the demo catalog was not loaded.", flush=True)
            try:
                no_users = not _stores(connection.client, prefix)[0].exist()
            except redis.RedisError:  # only for a hint; the service copes with an outage
                no_users = False

        if demo:
            keys = "\n".join(f"  {uid:8} {name:22} {key}" for uid, name, key in demo)
            print(
                DEMO_BANNER.format(
                    host=args.host,
                    port=args.port,
                    workers=args.workers,
                    redis=redacted(url),
                    keys=keys,
                ),
                flush=True,
            )
        else:
            print(
                f"lockcore is serving on http://{args.host}:{args.port} "
                f"({args.workers} workers, Redis: {redacted(url)})",
                flush=True,
            )
            if no_users:
                print(FIRST_USER_HINT, flush=True)
        from .server import run

        run(args.host, args.port, args.workers, args.threads)
    finally:
        if supervisor is not None:
            supervisor.stop()
        if embedded is not None:
            embedded.stop()
        shutil.rmtree(metrics_dir, ignore_errors=True)
    return 0


@contextmanager
def _redis(args: argparse.Namespace) -> Iterator[tuple[Any, dict[str, Any]]]:
    """(client, settings) for a command: the Redis at the URL, else the embedded server,
    started if it is not running. On leaving, however left, the connection is closed and
    a server started here is stopped (one that was already running is left running)."""
    settings = command_settings(args)
    url, server = settings["REDIS_URL"], None
    if not url:
        server = EmbeddedRedis(settings["DATA_DIR"], appendfsync=settings["APPENDFSYNC"]).start()
    try:
        if server is None:
            connection = connect(url, socket_connect_timeout=settings["REDIS_TIMEOUT"])
        else:
            connection = connect(server.url)
        with closing(connection):
            yield connection.client, settings
    finally:
        if server is not None:
            server.stop()  # only if this object started it


def _with_users(args: argparse.Namespace, action: Any) -> int:
    from .identity import UserError

    with _redis(args) as (client, settings):
        try:
            return int(action(_stores(client, settings["KEY_PREFIX"])[0]))
        except UserError as exc:
            raise CliError(str(exc)) from exc


def users_add(args: argparse.Namespace) -> int:
    from .identity import User

    def run(users: Any) -> int:
        print(users.create(User(args.id, args.name, args.email, frozenset(args.role))).key)
        return 0

    return _with_users(args, run)


def users_list(args: argparse.Namespace) -> int:
    def run(users: Any) -> int:
        records = users.records()
        rows = [
            {
                "id": r.user.id,
                "name": r.user.name,
                "email": r.user.email,
                "roles": sorted(r.user.roles),
                "key_ids": list(r.key_ids),
            }
            for r in records
        ]
        if args.json:
            print(json.dumps(rows, indent=2))
        elif rows:
            print(
                _table(
                    [
                        ["ID", "NAME", "EMAIL", "ROLES", "KEY IDS"],
                        *(
                            [
                                r["id"],
                                r["name"],
                                r["email"],
                                ",".join(r["roles"]),
                                ",".join(r["key_ids"]),
                            ]
                            for r in rows
                        ),
                    ]
                )
            )
        else:
            print(FIRST_USER_HINT)
        return 0

    return _with_users(args, run)


def users_issue_key(args: argparse.Namespace) -> int:
    def run(users: Any) -> int:
        print(users.issue_key(args.id).key)
        return 0

    return _with_users(args, run)


def users_revoke_key(args: argparse.Namespace) -> int:
    key = args.key
    if key == "-":
        key = sys.stdin.readline().strip()

    def run(users: Any) -> int:
        revoked = users.revoke(args.id, key_id=args.key_id, key=key, every=args.all)
        print(
            f"revoked {len(revoked)} key(s) of {args.id}"
            + (f": {', '.join(revoked)}" if revoked else "")
        )
        return 0

    return _with_users(args, run)


def catalog_load(args: argparse.Namespace) -> int:
    from .catalog import CatalogError, load_file

    try:
        doc = load_file(args.file)
    except (CatalogError, OSError) as exc:
        print(f"lockcore: {args.file}: {exc}", file=sys.stderr)
        return 2
    with _redis(args) as (client, settings):
        users, catalog = _stores(client, settings["KEY_PREFIX"])
        counts = catalog.replace(doc, users)
        print(", ".join(f"{n} {kind}" for kind, n in counts.items()))
    return 0


# -- locks: operators' view ---------------------------------------------------------------


def _lock_json(lock: Any) -> dict[str, Any]:
    """/v1's shape of a lock, with the scope's internal name (``v1:batch``, not ``batch``):
    operators name scopes that way, and see every API's."""
    from .apis.native import to_json

    return {**to_json(lock), "scope": lock.scope}


def _table(rows: list[list[str]]) -> str:
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    return "\n".join(
        "  ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=True)).rstrip()
        for row in rows
    )


def _lock_row(lock: Any) -> list[str]:
    left = "never" if lock.remaining is None else f"{lock.remaining:.1f}s"
    meta = ", ".join(f"{k}={v}" for k, v in sorted(lock.metadata.items()))
    return [lock.id, lock.type, lock.resource, lock.owner, str(lock.fencing_token), left, meta]


HEADER = ["ID", "TYPE", "RESOURCE", "OWNER", "TOKEN", "EXPIRES IN", "METADATA"]


def _with_manager(args: argparse.Namespace, action: Any) -> int:
    from lockcore import LockManager

    from .services import lock_types

    with _redis(args) as (client, settings):
        mgr = LockManager(client, lock_types(settings), prefix=settings["KEY_PREFIX"])
        return int(action(mgr, client))


def locks_list(args: argparse.Namespace) -> int:
    def run(mgr: Any, _client: Any) -> int:
        locks = list(
            mgr.iter_locks(
                args.scope, owner=args.owner, type=args.type, resource=args.resource, limit=500
            )
        )
        if args.json:
            print(json.dumps([_lock_json(lock) for lock in locks], indent=2))
        elif locks:
            print(_table([HEADER, *(_lock_row(lock) for lock in locks)]))
        else:
            print(f"no live locks in {args.scope!r}")
        return 0

    return _with_manager(args, run)


def locks_show(args: argparse.Namespace) -> int:
    from lockcore import LockNotFound

    def run(mgr: Any, _client: Any) -> int:
        try:
            lock = mgr.get(args.id)
        except LockNotFound:
            print(f"lockcore: no live lock {args.id}", file=sys.stderr)
            return 1
        if args.json:
            print(json.dumps(_lock_json(lock), indent=2))
        else:
            print(_table([["SCOPE", *HEADER], [lock.scope, *_lock_row(lock)]]))
        return 0

    return _with_manager(args, run)


def locks_release(args: argparse.Namespace) -> int:
    from lockcore import LockNotFound, LockNotOwned

    def run(mgr: Any, _client: Any) -> int:
        try:
            lock = mgr.release(args.id, args.owner or "operator", force=args.owner is None)
        except (LockNotFound, LockNotOwned) as exc:
            print(f"lockcore: {exc}", file=sys.stderr)
            return 1
        print(
            f"released {lock.id} ({lock.type} {lock.resource!r} of {lock.owner} in {lock.scope!r})"
        )
        return 0

    return _with_manager(args, run)


def _event_line(event: dict[str, str]) -> str:
    at = time.strftime("%H:%M:%S", time.gmtime(int(event.get("at", "0")) / 1000))
    return (
        f"{at}  {event.get('event', '?'):9}  {event.get('scope', '')}  "
        f"{event.get('type', '')}  {event.get('resource', '')}  {event.get('owner', '')}  "
        f"id={event.get('id', '')} token={event.get('token', '')}"
    )


def locks_watch(args: argparse.Namespace) -> int:
    """Follow events: one scope's stream (XREAD, durable), or every scope's channel."""

    def show(event: dict[str, str]) -> None:
        print(json.dumps(event) if args.json else _event_line(event), flush=True)

    def run(mgr: Any, client: Any) -> int:
        seen = 0
        if args.scope:
            stream = mgr.keys(args.scope).events
            # From the newest entry now, not "$" at every read: an event added between two
            # reads would be missed.
            newest = client.xrevrange(stream, count=1)
            last = newest[0][0] if newest else "0-0"
            while args.count is None or seen < args.count:
                for _, entries in client.xread({stream: last}, block=1000) or []:
                    for entry_id, fields in entries:
                        last = entry_id
                        show(_event(stream, entry_id, fields))
                        seen += 1
            return 0
        # Every scope: each entry's id is PUBLISHed on a channel named like its stream.
        pubsub = client.pubsub()
        pubsub.psubscribe(f"{mgr.prefix}:*:E")
        try:
            while args.count is None or seen < args.count:
                message = pubsub.get_message(timeout=1.0)
                if message and message["type"] == "pmessage":
                    channel, entry = _s(message["channel"]), _s(message["data"])
                    for entry_id, fields in client.xrange(channel, entry, entry):
                        show(_event(channel, entry_id, fields))
                        seen += 1
        finally:
            pubsub.close()
        return 0

    try:
        return _with_manager(args, run)
    except KeyboardInterrupt:
        return 0


def _event(stream: str, entry_id: Any, fields: dict[Any, Any]) -> dict[str, str]:
    return event_from_entry(stream, _s(entry_id), {_s(k): _s(v) for k, v in fields.items()})


def _s(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


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
    return top


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
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


if __name__ == "__main__":
    sys.exit(main())
