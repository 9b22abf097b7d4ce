"""What every ``lockcore`` command shares: its settings, its Redis, its failures."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Iterator
from contextlib import closing, contextmanager
from pathlib import Path
from typing import Any

from lockcore import EmbeddedRedis, connect

from .. import config

FIRST_USER_HINT = (
    "No users yet: create the first sysadmin with "
    "`lockcore users add ID --name NAME --role sysadmin` (it prints their key)."
)


class CliError(Exception):
    """A failure to report as one line on stderr (exit 1)."""


def command_settings(args: argparse.Namespace) -> dict[str, Any]:
    """The service's settings (defaults, then ``LOCKCORE_*``), with the command's
    ``--redis-url`` and ``--data-dir``, when given, over them."""
    flags = {"REDIS_URL": args.redis_url, "DATA_DIR": args.data_dir}
    return config.load({name: value for name, value in flags.items() if value})


def stores(client: Any, prefix: str) -> tuple[Any, Any]:
    from ..catalog import Catalog
    from ..identity import Users

    return Users(client, prefix), Catalog(client, prefix)


@contextmanager
def redis_for(args: argparse.Namespace) -> Iterator[tuple[Any, dict[str, Any]]]:
    """(client, settings) for a command: the Redis at the URL, else the embedded server,
    started if it is not running. On leaving, however left, the connection is closed and
    a server started here is stopped (one that was already running is left running)."""
    settings = command_settings(args)
    url, server = settings["REDIS_URL"], None
    if not url and not Path(settings["DATA_DIR"]).is_dir():
        print(
            f"lockcore: no data directory {settings['DATA_DIR']!r} here: starting an empty "
            "embedded Redis in it (give --data-dir or --redis-url for an existing one)",
            file=sys.stderr,
        )
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


def text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


def table(rows: list[list[str]]) -> str:
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    return "\n".join(
        "  ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=True)).rstrip()
        for row in rows
    )
