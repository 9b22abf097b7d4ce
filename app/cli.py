"""The ``lockcore`` command: run the service, manage users and the catalog.

    lockcore serve [--host H] [--port P] [--workers N] [--redis-url URL] [--data-dir D]
    lockcore users add ID --name NAME [--email E] [--role R]...
    lockcore catalog load FILE

Without a Redis URL (``--redis-url`` or ``LOCKCORE_REDIS_URL``) every command uses the
embedded redis-server in the data directory, starting it if it is not running.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
from typing import Any

from lockcore import EmbeddedRedis, connect

DEMO_BANNER = """
lockcore is serving on http://{host}:{port}  ({workers} workers, Redis: {redis})
  OpenAPI: http://{host}:{port}/openapi.json   Swagger UI: http://{host}:{port}/docs
The demo catalog was loaded; its users' API keys (demo only):
{keys}
"""


def _redis_url(args: argparse.Namespace) -> str:
    return str(args.redis_url or os.environ.get("LOCKCORE_REDIS_URL", ""))


def _data_dir(args: argparse.Namespace) -> str:
    return str(args.data_dir or os.environ.get("LOCKCORE_DATA_DIR", "lockcore-data"))


def _prefix() -> str:
    return os.environ.get("LOCKCORE_KEY_PREFIX", "lockcore")


def _stores(client: Any) -> tuple[Any, Any]:
    from .catalog import Catalog
    from .identity import Users

    return Users(client, _prefix()), Catalog(client, _prefix())


def load_demo_if_empty(client: Any) -> list[tuple[str, str, str]] | None:
    """Load the demo catalog into an empty store; returns (user, name, key) or None."""
    from .catalog import DEMO_CATALOG, parse_document

    users, catalog = _stores(client)
    if not catalog.is_empty():
        return None
    doc = parse_document(DEMO_CATALOG.read_text())
    catalog.replace(doc, users)
    return [(u["id"], u["name"], u["api_key"]) for u in doc["users"] if u.get("api_key")]


def serve(args: argparse.Namespace) -> int:
    # Metrics of all workers are summed through files in this directory; it must be set
    # before prometheus_client is first imported.
    metrics_dir = tempfile.mkdtemp(prefix="lockcore-metrics-")
    os.environ["PROMETHEUS_MULTIPROC_DIR"] = metrics_dir
    from gunicorn.app.base import BaseApplication

    url = _redis_url(args)
    embedded = None
    if not url:
        embedded = EmbeddedRedis(_data_dir(args)).start()
        url = embedded.url
    os.environ["LOCKCORE_REDIS_URL"] = url
    try:
        connection = connect(url)
        demo = None if args.no_demo else load_demo_if_empty(connection.client)
        connection.close()

        class Server(BaseApplication):  # type: ignore[misc]
            def load_config(self) -> None:
                self.cfg.set("bind", f"{args.host}:{args.port}")
                self.cfg.set("workers", args.workers)
                self.cfg.set("accesslog", None)
                self.cfg.set("graceful_timeout", 5)
                self.cfg.set("child_exit", _child_exit)

            def load(self) -> Any:
                from . import create_app

                return create_app()

        if demo:
            keys = "\n".join(f"  {uid:8} {name:22} {key}" for uid, name, key in demo)
            print(DEMO_BANNER.format(host=args.host, port=args.port, workers=args.workers,
                                     redis=url, keys=keys), flush=True)
        else:
            print(f"lockcore is serving on http://{args.host}:{args.port} "
                  f"({args.workers} workers, Redis: {url})", flush=True)
        Server().run()
    finally:
        if embedded is not None:
            embedded.stop()
    return 0


def _child_exit(server: Any, worker: Any) -> None:
    from prometheus_client import multiprocess

    multiprocess.mark_process_dead(worker.pid)


def _with_client(args: argparse.Namespace) -> tuple[Any, Any]:
    url = _redis_url(args)
    if url:
        return connect(url), None
    server = EmbeddedRedis(_data_dir(args))
    started = server.process is None and not server.is_running()
    server.start()
    return connect(server.url), server if started else None


def users_add(args: argparse.Namespace) -> int:
    from .identity import User

    connection, embedded = _with_client(args)
    try:
        users, _ = _stores(connection.client)
        users.put(User(args.id, args.name, args.email, frozenset(args.role)))
        print(users.add_key(args.id))
    finally:
        connection.close()
        if embedded is not None:
            embedded.stop()
    return 0


def catalog_load(args: argparse.Namespace) -> int:
    from .catalog import CatalogError, load_file

    try:
        doc = load_file(args.file)
    except (CatalogError, OSError) as exc:
        print(f"lockcore: {args.file}: {exc}", file=sys.stderr)
        return 2
    connection, embedded = _with_client(args)
    try:
        users, catalog = _stores(connection.client)
        counts = catalog.replace(doc, users)
        print(", ".join(f"{n} {kind}" for kind, n in counts.items()))
    finally:
        connection.close()
        if embedded is not None:
            embedded.stop()
    return 0


def parser() -> argparse.ArgumentParser:
    top = argparse.ArgumentParser(prog="lockcore", description=__doc__,
                                  formatter_class=argparse.RawDescriptionHelpFormatter)
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--redis-url", help="Redis URL (default: $LOCKCORE_REDIS_URL, "
                        "else the embedded server)")
    common.add_argument("--data-dir", help="embedded server's data directory "
                        "(default: $LOCKCORE_DATA_DIR or ./lockcore-data)")
    sub = top.add_subparsers(dest="command", required=True)

    p = sub.add_parser("serve", parents=[common], help="run the HTTP service (gunicorn)")
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, default=8000)
    p.add_argument("--workers", type=int, default=2)
    p.add_argument("--no-demo", action="store_true", help="don't load the demo catalog")
    p.set_defaults(func=serve)

    users = sub.add_parser("users", help="manage users").add_subparsers(dest="action",
                                                                        required=True)
    p = users.add_parser("add", parents=[common], help="add a user and print a new API key")
    p.add_argument("id")
    p.add_argument("--name", required=True)
    p.add_argument("--email", default="")
    p.add_argument("--role", action="append", default=[], help="global role, e.g. sysadmin")
    p.set_defaults(func=users_add)

    catalog = sub.add_parser("catalog", help="manage the resource catalog").add_subparsers(
        dest="action", required=True)
    p = catalog.add_parser("load", parents=[common], help="replace the catalog from a file")
    p.add_argument("file")
    p.set_defaults(func=catalog_load)
    return top


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    return int(args.func(args))


if __name__ == "__main__":
    sys.exit(main())
