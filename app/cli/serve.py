"""``lockcore serve``: the service under gunicorn, on the given Redis or the embedded
one, with the demo catalog only where nobody else can reach its well-known keys."""

from __future__ import annotations

import argparse
import ipaddress
import os
import shutil
import tempfile
from contextlib import closing
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import redis

from lockcore import DEFAULT_PREFIX, EmbeddedRedis, connect
from lockcore.embedded import Supervisor

from .common import FIRST_USER_HINT, command_settings, stores

DEMO_BANNER = """
lockcore is serving on http://{host}:{port}  ({workers} workers, Redis: {redis})
  OpenAPI: http://{host}:{port}/openapi.json   Swagger UI: http://{host}:{port}/docs
The demo catalog was loaded; its users' API keys (demo only):
{keys}
"""


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


def load_demo_if_empty(
    client: Any, prefix: str = DEFAULT_PREFIX
) -> list[tuple[str, str, str]] | None:
    """Load the demo catalog into a truly empty store (no users, no catalog); returns
    (user, name, key) or None."""
    from ..catalog import DEMO_CATALOG, parse_document

    users, catalog = stores(client, prefix)
    if users.exist() or not catalog.is_empty():
        return None
    doc = parse_document(DEMO_CATALOG.read_text())
    catalog.replace(doc, users)
    return [(u["id"], u["name"], u["api_key"]) for u in doc["users"] if u.get("api_key")]


def serve(args: argparse.Namespace) -> int:
    # Metrics of all workers are summed through files in this directory; it must be set
    # before prometheus_client is first imported (reading the settings imports the APIs,
    # which import it).
    metrics_dir = tempfile.mkdtemp(prefix="lockcore-metrics-")
    os.environ["PROMETHEUS_MULTIPROC_DIR"] = metrics_dir
    try:
        # A bad LOCKCORE_* value stops here, before anything starts.
        settings = command_settings(args)
    except BaseException:
        shutil.rmtree(metrics_dir, ignore_errors=True)
        raise
    url, prefix = settings["REDIS_URL"], settings["KEY_PREFIX"]
    embedded = supervisor = None
    try:
        from ..observability import setup_logging

        # Every log line of this process and its workers is JSON (the supervisor's
        # restarts, Python's warnings; gunicorn's own lines: server.logconfig).
        setup_logging(settings["LOG_LEVEL"], everything=True)
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
                no_users = not stores(connection.client, prefix)[0].exist()
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
        from ..server import run

        run(args.host, args.port, args.workers, args.threads)
    finally:
        if supervisor is not None:
            supervisor.stop()
        if embedded is not None:
            embedded.stop()
        shutil.rmtree(metrics_dir, ignore_errors=True)
    return 0
