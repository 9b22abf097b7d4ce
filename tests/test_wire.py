"""The lean path for script calls (lockcore.wire) on real redis-server processes: it keeps
its connections between calls, replaces one the server closed, never reads a stale reply
after an error, reloads a flushed script, stays inside the pool's limit, survives a fork,
and steps aside for clients it cannot serve exactly as redis-py would."""

from __future__ import annotations

import multiprocessing
import os
import signal
import threading
import time
from typing import Any

import fakeredis
import pytest
import redis
from redis.asyncio import Redis as AsyncRedis

from lockcore import EmbeddedRedis, LockManager, LockNotFound
from lockcore.wire import Wire, pack

from .conftest import TYPES


def manager(client: Any) -> LockManager:
    return LockManager(client, TYPES, prefix="w")


class PoolCalls:
    """Counts the connections a client's pool hands out."""

    def __init__(self, client: redis.Redis) -> None:
        self.count = 0
        pool = client.connection_pool
        original = pool.get_connection

        def get_connection(*args: Any, **kwargs: Any) -> Any:
            self.count += 1
            return original(*args, **kwargs)

        pool.get_connection = get_connection  # type: ignore[method-assign]


def cycle(mgr: LockManager, resource: str = "r") -> None:
    lock = mgr.acquire("s", "job", resource, "me").lock
    mgr.release(lock, "me")


def test_a_warm_manager_takes_no_connection_from_the_pool_per_call(server: EmbeddedRedis) -> None:
    client = server.client()
    mgr = manager(client)
    assert mgr._scripts.wire is not None
    cycle(mgr)
    pool = PoolCalls(client)
    for _ in range(50):
        cycle(mgr)
    assert pool.count == 0
    # the same calls on redis-py's own path take one per command
    other = server.client()
    wrapped = manager(other)
    other.execute_command = other.execute_command  # an instance attribute: "wrapped"
    other_pool = PoolCalls(other)
    for _ in range(50):
        cycle(wrapped)
    assert other_pool.count >= 100
    client.close()
    other.close()


def test_a_waiter_blocks_on_its_signal_the_short_way_too(server: EmbeddedRedis) -> None:
    """A woken waiter's first work is on the hand-off's critical path: its BLPOP takes
    its connection as the script calls do, not through redis-py's per-command path."""
    holder, waiter_client = manager(server.client()), server.client()
    waiter = LockManager(waiter_client, TYPES, prefix="w", handoff=0)

    def wait_once() -> None:
        lock = holder.acquire("s", "job", "r", "holder").lock
        got: list[Any] = []
        thread = threading.Thread(
            target=lambda: got.append(waiter.acquire("s", "job", "r", "waiter", wait=10).lock)
        )
        thread.start()
        line = "w:{s}:q:job:r"
        deadline = time.monotonic() + 10
        while not holder.client.exists(line):  # in line: it blocks on its signal
            assert time.monotonic() < deadline
            time.sleep(0.001)
        holder.release(lock, "holder")
        thread.join(10)
        assert got and got[0].owner == "waiter"
        waiter.release(got[0], "waiter")

    wait_once()  # warm: the waiter's connection is made
    pool = PoolCalls(waiter_client)
    wait_once()
    assert pool.count == 0


def test_a_wrapped_client_sees_every_script_call(server: EmbeddedRedis) -> None:
    client = server.client()
    mgr = manager(client)
    cycle(mgr)  # the lean path, warm
    sent: list[str] = []
    original = client.execute_command

    def traced(*args: Any, **kwargs: Any) -> Any:
        sent.append(str(args[0]))
        return original(*args, **kwargs)

    client.execute_command = traced  # type: ignore[method-assign]
    cycle(mgr)
    assert sent == ["EVALSHA", "EVALSHA"]
    client.close()


def test_a_connection_the_server_closed_is_replaced_before_the_call(server: EmbeddedRedis) -> None:
    client = server.client()
    mgr = manager(client)
    lock = mgr.acquire("s", "job", "r", "me").lock
    admin = server.client()
    killed = admin.client_kill_filter(_type="normal", skipme=True)
    assert killed >= 1
    (kept,) = client.connection_pool._available_connections  # the one the call used
    deadline = time.monotonic() + 10
    while not _closed_by_server(kept._sock):
        assert time.monotonic() < deadline, "the server did not close the connection"
        time.sleep(0.01)
    # the probe sees the close and reconnects: the call itself is not lost
    assert mgr.release(lock, "me").id == lock.id
    client.close()
    admin.close()


def _closed_by_server(sock: Any) -> bool:
    import select

    return bool(select.select([sock], [], [], 0)[0])


def test_after_a_timeout_the_late_reply_is_never_read_as_the_next(server: EmbeddedRedis) -> None:
    client = server.client(socket_timeout=0.5)
    mgr = manager(client)
    lock = mgr.acquire("s", "job", "r", "me").lock
    assert server.process is not None
    os.kill(server.process.pid, signal.SIGSTOP)
    try:
        with pytest.raises(redis.TimeoutError):
            mgr.acquire("s", "job", "other", "me")
    finally:
        os.kill(server.process.pid, signal.SIGCONT)
    # The acquire's reply arrives late, on a connection that was dropped: the release's
    # reply is the release's (an acquire reply read here would not parse as a lock).
    assert mgr.release(lock, "me").id == lock.id
    with pytest.raises(LockNotFound):
        mgr.release(lock, "me")
    client.close()


def test_a_flushed_script_is_loaded_again_and_called_once(server: EmbeddedRedis) -> None:
    client = server.client()
    mgr = manager(client)
    cycle(mgr)
    client.script_flush()
    result = mgr.acquire("s", "job", "r2", "me")
    assert result.created
    assert [lock.resource for lock in mgr.list("s").locks] == ["r2"]
    client.close()


def test_connections_go_back_to_the_pool_and_its_limit_holds(server: EmbeddedRedis) -> None:
    client = redis.Redis(unix_socket_path=str(server.socket_path), max_connections=8)
    mgr = manager(client)
    assert mgr._scripts.wire is not None
    start = threading.Barrier(8)
    errors: list[BaseException] = []

    def work(n: int) -> None:
        try:
            start.wait(timeout=30)
            for _ in range(20):
                cycle(mgr, f"r{n}")
                client.exists("x")  # redis-py's own path, on the same pool
        except BaseException as exc:  # noqa: BLE001 - reported below
            errors.append(exc)

    threads = [threading.Thread(target=work, args=(n,)) for n in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    assert not errors  # 8 threads on a pool of 8: never more than 8 connections
    pool = client.connection_pool
    assert not pool._in_use_connections
    assert 1 <= len(pool._available_connections) <= 8
    client.close()


def _child(mgr: LockManager, out: Any) -> None:
    out.send(mgr.acquire("s", "job", "child", "kid").lock.id)


def test_a_forked_child_makes_its_own_connections(server: EmbeddedRedis) -> None:
    client = server.client()
    mgr = manager(client)
    mine = mgr.acquire("s", "job", "parent", "me").lock
    context = multiprocessing.get_context("fork")
    here, there = context.Pipe()
    child = context.Process(target=_child, args=(mgr, there))
    child.start()
    assert here.poll(30)
    child_id = here.recv()
    child.join(30)
    assert child.exitcode == 0
    # the parent's kept connection still carries the parent's calls, in order
    assert mgr.release(mine, "me").id == mine.id
    assert mgr.get(child_id).owner == "kid"
    client.close()


def test_pack_speaks_as_redis_py_does() -> None:
    args = ("EVALSHA", "abc", 2, "k{x}", "ü", b"\x00\xff", 0, -17)
    assert pack(args) == b"".join(redis.Connection().pack_command(*args))
    for bad in (True, 1.5, None):
        with pytest.raises(TypeError):
            pack(("SET", "k", bad))


def test_clients_it_cannot_serve_exactly_go_through_redis_py(server: EmbeddedRedis) -> None:
    assert Wire.serves(server.client())
    assert not Wire.serves(fakeredis.FakeRedis())
    blocking = redis.Redis(
        connection_pool=redis.BlockingConnectionPool(
            connection_class=redis.UnixDomainSocketConnection, path=str(server.socket_path)
        )
    )
    assert not Wire.serves(blocking)

    class Traced(redis.Redis):
        def execute_command(self, *args: Any, **options: Any) -> Any:
            return super().execute_command(*args, **options)

    assert not Wire.serves(Traced(unix_socket_path=str(server.socket_path)))
    assert not Wire.serves(AsyncRedis(unix_socket_path=str(server.socket_path)))
