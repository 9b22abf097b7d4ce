"""Connecting to Redis from one URL: standalone, Sentinel, Cluster, or embedded.

| URL | connects to |
|---|---|
| none / empty | the embedded redis-server in ``data_dir`` (started if not running) |
| ``redis://[:pw@]host:port/db``, ``rediss://...``, ``unix:///a.sock`` | a standalone server |
| ``redis+cluster://host:port[,host:port...]`` | a Redis Cluster (nodes to start from) |
| ``redis+sentinel://host:port[,host:port...]/service[/db]`` | ``service``'s master |
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any
from urllib.parse import unquote, urlsplit

import redis
from redis.backoff import NoBackoff
from redis.cluster import ClusterNode, RedisCluster
from redis.retry import Retry
from redis.sentinel import Sentinel

from .embedded import EmbeddedRedis

DEFAULT_DATA_DIR = "lockcore-data"


@dataclass
class Connection:
    """A client, and the embedded server behind it when there is one."""

    client: Any
    embedded: EmbeddedRedis | None = None
    url: str = ""
    sentinel: Sentinel | None = None

    def close(self) -> None:
        self.client.close()
        self.close_servers()

    def close_servers(self) -> None:
        """Close what stands behind the client: Sentinel connections, embedded server."""
        for watcher in self.sentinel.sentinels if self.sentinel else ():
            watcher.close()
        if self.embedded is not None:
            self.embedded.stop()


def _hosts(netloc: str, default_port: int) -> list[tuple[str, int]]:
    hosts = []
    for part in netloc.rsplit("@", 1)[-1].split(","):
        host, _, port = part.strip().rpartition(":")
        if not host:
            host, port = port, ""
        hosts.append((host or "127.0.0.1", int(port) if port else default_port))
    return hosts


def _password(netloc: str) -> str | None:
    if "@" not in netloc:
        return None
    auth = netloc.rsplit("@", 1)[0]
    return unquote(auth.split(":", 1)[-1]) or None


def no_retry() -> Retry:
    """A redis-py retry policy that never retries (redis-py 6+ retries by default)."""
    return Retry(NoBackoff(), 0)


def connect(
    url: str | None = None, *, data_dir: str | os.PathLike[str] | None = None, **client_options: Any
) -> Connection:
    """Open a client for ``url`` (see the module's table); ``data_dir`` for embedded.

    Unless ``client_options`` say otherwise, the client never re-sends a command: a script
    whose reply was late may already have run, and running it again would act twice (two
    locks for one create, a toggle undone). A failed call raises at once, within the
    socket timeout; whether to try again is the caller's choice (see idempotency keys).
    """
    client_options.setdefault("retry", no_retry())
    if not url:
        server = EmbeddedRedis(data_dir or DEFAULT_DATA_DIR)
        started = server.start()
        return Connection(server.client(**client_options), started, server.url)
    parts = urlsplit(url)
    if parts.scheme == "redis+cluster":
        nodes = [ClusterNode(h, p) for h, p in _hosts(parts.netloc, 6379)]  # type: ignore[no-untyped-call]
        client = RedisCluster(
            startup_nodes=nodes, password=_password(parts.netloc), **client_options
        )
        return Connection(client, None, url)
    if parts.scheme == "redis+sentinel":
        path = [p for p in parts.path.split("/") if p]
        if not path:
            raise ValueError("a sentinel URL names the service: redis+sentinel://h:p/service")
        db = int(path[1]) if len(path) > 1 else 0
        sentinel = Sentinel(  # type: ignore[no-untyped-call]
            _hosts(parts.netloc, 26379), socket_timeout=client_options.get("socket_timeout") or 5
        )
        client = sentinel.master_for(  # type: ignore[no-untyped-call]
            path[0], db=db, password=_password(parts.netloc), **client_options
        )
        return Connection(client, None, url, sentinel)
    if parts.scheme in ("redis", "rediss", "unix"):
        return Connection(redis.Redis.from_url(url, **client_options), None, url)
    raise ValueError(f"unsupported Redis URL scheme {parts.scheme!r} in {url!r}")


def connect_async(
    url: str | None = None, *, data_dir: str | os.PathLike[str] | None = None, **client_options: Any
) -> Connection:
    """As ``connect``, with a ``redis.asyncio`` client (close it with ``await
    client.aclose()``, then ``close_servers()``)."""
    import redis.asyncio as aioredis
    from redis.asyncio.cluster import ClusterNode as AsyncNode
    from redis.asyncio.cluster import RedisCluster as AsyncCluster
    from redis.asyncio.retry import Retry as AsyncRetry

    client_options.setdefault("retry", AsyncRetry(NoBackoff(), 0))
    if not url:
        server = EmbeddedRedis(data_dir or DEFAULT_DATA_DIR)
        started = server.start()
        return Connection(
            aioredis.Redis.from_url(server.url, **client_options), started, server.url
        )
    parts = urlsplit(url)
    if parts.scheme == "redis+cluster":
        nodes = [AsyncNode(h, p) for h, p in _hosts(parts.netloc, 6379)]
        return Connection(
            AsyncCluster(startup_nodes=nodes, password=_password(parts.netloc), **client_options),
            None,
            url,
        )
    if parts.scheme == "redis+sentinel":
        from redis.asyncio.sentinel import Sentinel as AsyncSentinel

        path = [p for p in parts.path.split("/") if p]
        if not path:
            raise ValueError("a sentinel URL names the service: redis+sentinel://h:p/service")
        sentinel = AsyncSentinel(
            _hosts(parts.netloc, 26379),  # type: ignore[no-untyped-call]
            socket_timeout=client_options.get("socket_timeout") or 5,
        )
        client = sentinel.master_for(
            path[0],
            db=int(path[1]) if len(path) > 1 else 0,
            password=_password(parts.netloc),
            **client_options,
        )
        return Connection(client, None, url)
    if parts.scheme in ("redis", "rediss", "unix"):
        return Connection(aioredis.Redis.from_url(url, **client_options), None, url)
    raise ValueError(f"unsupported Redis URL scheme {parts.scheme!r} in {url!r}")
