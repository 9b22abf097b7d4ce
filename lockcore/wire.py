"""A lean path for the script calls of a sync ``redis.Redis`` on a plain connection pool.

redis-py spends more of a lock's time than Redis does: per command it takes a connection
from its pool and probes it (three system calls), records pool metrics on the way out and
back, runs its retry and observability wrappers and packs the command generically. A lock
manager sends one script call per operation, so that is most of its client cost. ``Wire``
takes a connection from the client's own pool the short way (the pool's list, under the
pool's lock: ``max_connections``, ``client.close()`` and fork resets apply exactly as to
redis-py's commands), probes it with one ``poll`` (a connection the server closed, after a
restart or its idle timeout, is reconnected before the call, as the pool would), sends the
command it packed itself, reads the reply with the connection's own parser and puts the
connection back. It never re-sends a command: an error is the caller's, as with
``connect()``'s clients (a script whose reply was lost may have run); a connection that
failed mid-call is disconnected, so a late reply is never read as the next one.

It serves only what it can serve exactly as redis-py would: a ``redis.Redis`` whose
``execute_command`` is redis-py's own (a client wrapped for tracing or counting keeps
every command on that path), on a plain ``ConnectionPool`` of TCP, TLS or unix-socket
connections, without client-side caching. Cluster and Sentinel clients, blocking pools,
asyncio clients and fakeredis go through redis-py as before.
"""

from __future__ import annotations

import os
import select
from typing import Any

import redis
from redis.exceptions import ResponseError

_EXECUTE = redis.Redis.execute_command
_CONNECTIONS = (redis.Connection, redis.UnixDomainSocketConnection, redis.SSLConnection)
#: the pool's parts the short way uses (redis-py 5 to 8 have them)
_POOL_PARTS = ("_lock", "_available_connections", "_in_use_connections")


def pack(args: tuple[Any, ...] | list[Any]) -> bytes:
    """One command in the Redis protocol (RESP): str as UTF-8, int in decimal, bytes as is."""
    out = [b"*%d\r\n" % len(args)]
    for arg in args:
        if isinstance(arg, str):
            data = arg.encode()
        elif isinstance(arg, bytes):
            data = arg
        elif isinstance(arg, int) and not isinstance(arg, bool):
            data = b"%d" % arg
        else:
            raise TypeError(f"cannot send {arg!r} to Redis")
        out.append(b"$%d\r\n%s\r\n" % (len(data), data))
    return b"".join(out)


class Wire:
    """Script calls on ``client``'s pool, the short way (see the module)."""

    def __init__(self, client: redis.Redis) -> None:
        self.client = client
        self.pool: Any = client.connection_pool
        self._pid = os.getpid()
        self._recheck = hasattr(self.pool.connection_class, "should_reconnect")

    @classmethod
    def serves(cls, client: Any) -> bool:
        pool = getattr(client, "connection_pool", None)
        return (
            isinstance(client, redis.Redis)
            and type(pool) is redis.ConnectionPool
            and type(client).execute_command is _EXECUTE
            and "execute_command" not in vars(client)
            and pool.connection_class in _CONNECTIONS
            and getattr(pool, "cache", None) is None
            and all(hasattr(pool, name) for name in _POOL_PARTS)
        )

    def usable(self) -> bool:
        """False once the client's ``execute_command`` was wrapped (instrumentation)."""
        return "execute_command" not in vars(self.client)

    def execute(self, *args: Any) -> Any:
        """Send one command, return its reply (or raise its error)."""
        conn, short = self._take()
        try:
            conn.send_packed_command([pack(args)])
            reply = conn.read_response()
        except ResponseError:
            self._give(conn, short)  # an error reply: the connection is fine
            raise
        except BaseException:
            conn.disconnect()  # half a reply may be left: never reuse it as it is
            self._give(conn, short)
            raise
        self._give(conn, short)
        return reply

    def _take(self) -> tuple[Any, bool]:
        """A connection, and whether it came the short way (else from the pool's own
        ``get_connection``: a new one, or the first after a fork)."""
        pool = self.pool
        if self._pid == os.getpid():
            with pool._lock:
                try:
                    conn = pool._available_connections.pop()
                except IndexError:
                    conn = None
                else:
                    pool._in_use_connections.add(conn)
            if conn is not None:
                try:
                    sock = conn._sock
                    if sock is None:
                        conn.connect()
                    elif _readable(sock):
                        # Something arrived unasked: the server closed the connection (a
                        # restart, its idle timeout) or a stray reply. Start afresh.
                        conn.disconnect()
                        conn.connect()
                except BaseException:
                    self._give(conn, True)
                    raise
                return conn, True
        conn = pool.get_connection()
        self._pid = os.getpid()
        return conn, False

    def _give(self, conn: Any, short: bool) -> None:
        pool = self.pool
        if not short:
            pool.release(conn)
            return
        if self._recheck and conn.should_reconnect():
            conn.disconnect()
        with pool._lock:
            if conn in pool._in_use_connections:  # else the pool was reset meanwhile
                pool._in_use_connections.remove(conn)
                pool._available_connections.append(conn)


if hasattr(select, "poll"):

    def _readable(sock: Any) -> bool:
        poller = select.poll()
        poller.register(sock.fileno(), select.POLLIN)
        return bool(poller.poll(0))
else:  # pragma: no cover - Windows

    def _readable(sock: Any) -> bool:
        return bool(select.select([sock], [], [], 0)[0])


__all__ = ["Wire", "pack"]
