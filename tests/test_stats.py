"""A scope's stats (``scope_stats``, lua/stats.lua): live locks and waiters by type, and
every expired lock counted once by type, whoever removed it, by the caller that takes the
counts. On fakeredis, a real
redis-server 6.2 (EVALSHA), Redis 7 (FCALL) and a 3-master Cluster."""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import replace
from typing import Any

import pytest

from lockcore import (
    AsyncLockManager,
    Lock,
    LockConflict,
    LockManager,
    ScopeStats,
    WaitCancelled,
)
from lockcore.aio import drain
from lockcore.keys import event_from_entry
from lockcore.scripts import SCRIPT_NAMES, library

from .conftest import FUNCTIONS, TYPES

SCOPE = "course:42"


def until(condition: Callable[[], Any], timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "condition not met in time"
        time.sleep(0.005)


def server_s(client: Any) -> float:
    seconds, micros = client.time()
    return float(seconds) + micros / 1e6


def until_expired(client: Any, *locks: Lock) -> None:
    """Until the server's clock is past every lock's expiry."""
    last = max(lock.expires_at or 0.0 for lock in locks)
    until(lambda: server_s(client) > last)


def fields(client: Any, mgr: LockManager, scope: str = SCOPE) -> set[str]:
    return {k.decode() if isinstance(k, bytes) else k for k in client.hkeys(mgr.keys(scope).locks)}


class Noticing(LockManager):
    """Keeps what the hooks hear."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.noticed: list[int] = []
        self.waits: list[tuple[str, str, float, str]] = []

    def expired_noticed(self, count: int) -> None:
        self.noticed.append(count)

    def wait_ended(self, scope: str, type: str, seconds: float, outcome: str) -> None:
        self.waits.append((scope, type, seconds, outcome))


@pytest.fixture
def nmgr(redis_client: Any, backend: str) -> Noticing:
    return Noticing(
        redis_client,
        TYPES,
        prefix="t",
        heartbeat=0.5,
        functions=backend in FUNCTIONS,
    )


def test_stats_is_a_script_of_the_library_and_of_the_dump() -> None:
    assert "stats" in SCRIPT_NAMES
    name, code = library()
    assert f"'{name}_stats'" in code


def test_an_empty_or_unknown_scope_has_no_stats(mgr: LockManager) -> None:
    stats = mgr.scope_stats("nobody-here")
    assert isinstance(stats, ScopeStats)
    assert (stats.held, stats.expired, stats.waiters) == ({}, {}, {})
    assert stats.as_of > 0


def test_live_locks_are_counted_by_type(mgr: LockManager) -> None:
    mgr.acquire(SCOPE, "job", "j1", "alice")
    mgr.acquire(SCOPE, "job", "j2", "bob")
    mgr.acquire(SCOPE, "gadget", "g1", "alice")
    mgr.acquire(SCOPE, "deletion", "d", "alice")
    mgr.acquire(SCOPE, "deletion", "d", "bob")
    mgr.acquire(SCOPE, "file", "f", "carol")  # no expiry
    mgr.acquire("elsewhere", "job", "j1", "alice")
    stats = mgr.scope_stats(SCOPE)
    assert stats.held == {"job": 2, "gadget": 1, "deletion": 2, "file": 1}
    assert stats.expired == {} and stats.waiters == {}
    released = mgr.acquire(SCOPE, "job", "j3", "dave").lock
    mgr.release(released, "dave")
    assert mgr.scope_stats(SCOPE).held["job"] == 2
    assert mgr.scope_stats("elsewhere").held == {"job": 1}


def test_names_come_back_decoded(mgr: LockManager) -> None:
    scope = "course:ünï code/42"
    mgr.acquire(scope, "job", "a resource: with spaces", "alice")
    assert mgr.scope_stats(scope).held == {"job": 1}


def test_the_stats_remove_expired_locks_and_count_each_once(
    nmgr: Noticing, redis_client: Any
) -> None:
    short = [nmgr.acquire(SCOPE, "job", f"j{n}", "alice", ttl=0.05).lock for n in range(2)]
    short.append(nmgr.acquire(SCOPE, "deletion", "d", "alice", ttl=0.05).lock)
    nmgr.acquire(SCOPE, "job", "kept", "bob")
    until_expired(redis_client, *short)
    first = nmgr.scope_stats(SCOPE, take_expired=True)
    assert first.held == {"job": 1}
    assert first.expired == {"job": 2, "deletion": 1}
    assert nmgr.noticed == [3]  # the hook hears what the call itself removed
    again = nmgr.scope_stats(SCOPE, take_expired=True)
    assert again.expired == {} and again.held == {"job": 1}
    # removed as any call removes them: no record, no resource field, no index entry
    left = fields(redis_client, nmgr)
    assert not {str(lock.fencing_token) for lock in short} & left
    assert "job:j0" not in left and "job:j1" not in left
    assert not any(f.startswith("!e") for f in left)
    assert redis_client.zcard(nmgr.keys(SCOPE).multi_index) == 0


def test_expired_locks_a_lock_call_removed_are_counted_by_the_next_stats(
    nmgr: Noticing, redis_client: Any
) -> None:
    old = nmgr.acquire(SCOPE, "job", "j1", "alice", ttl=0.05).lock
    gadget = nmgr.acquire(SCOPE, "gadget", "g1", "alice", ttl=0.05).lock
    until_expired(redis_client, old, gadget)
    nmgr.acquire(SCOPE, "job", "j1", "bob")  # meets the expired holder and removes it
    nmgr.acquire(SCOPE, "gadget", "g1", "carol")
    assert nmgr.noticed == [1, 1]
    # looking leaves the counts for the one that takes them (a console beside metrics)
    for _ in range(2):
        stats = nmgr.scope_stats(SCOPE)
        assert stats.expired == {"job": 1, "gadget": 1}
        assert stats.held == {"job": 1, "gadget": 1}
    assert nmgr.scope_stats(SCOPE, take_expired=True).expired == {"job": 1, "gadget": 1}
    assert nmgr.scope_stats(SCOPE).expired == {}
    assert nmgr.scope_stats(SCOPE, take_expired=True).expired == {}


def test_a_release_or_refresh_that_finds_its_lock_expired_counts_it(
    mgr: LockManager, redis_client: Any
) -> None:
    from lockcore import LockNotFound

    one = mgr.acquire(SCOPE, "job", "j1", "alice", ttl=0.05).lock
    two = mgr.acquire(SCOPE, "deletion", "d", "alice", ttl=0.05).lock
    until_expired(redis_client, one, two)
    with pytest.raises(LockNotFound):
        mgr.release(one.id, "alice")
    with pytest.raises(LockNotFound):
        mgr.refresh(two, "alice")
    assert mgr.scope_stats(SCOPE).expired == {"job": 1, "deletion": 1}


def test_swept_locks_are_counted_by_type(nmgr: Noticing, redis_client: Any) -> None:
    gone = [nmgr.acquire(SCOPE, "gadget", f"g{n}", f"u{n}", ttl=0.05).lock for n in range(3)]
    until_expired(redis_client, *gone)
    # other resources only: the sweep that runs along new locks removes them
    for n in range(200):
        lock = nmgr.acquire(SCOPE, "job", f"other{n}", "bob").lock
        nmgr.release(lock, "bob")
        if sum(nmgr.noticed) >= len(gone):
            break
    assert sum(nmgr.noticed) == len(gone)
    assert nmgr.scope_stats(SCOPE).expired == {"gadget": 3}


def test_an_expired_lock_of_a_type_with_events_is_announced(
    redis_client: Any, backend: str
) -> None:
    types = [replace(t, events=True) for t in TYPES]
    emgr = LockManager(redis_client, types, prefix="t", functions=backend in FUNCTIONS)
    lock = emgr.acquire(SCOPE, "job", "j1", "alice", ttl=0.05).lock
    until_expired(redis_client, lock)
    assert emgr.scope_stats(SCOPE).expired == {"job": 1}
    stream = emgr.keys(SCOPE).events

    def text(v: Any) -> str:
        return v.decode() if isinstance(v, bytes) else str(v)

    events = [
        event_from_entry(stream, text(i), {text(k): text(v) for k, v in f.items()})
        for i, f in redis_client.xrange(stream)
    ]
    assert [(e["event"], e["id"]) for e in events] == [("acquired", lock.id), ("expired", lock.id)]


@pytest.fixture
def waiting(make_client: Any) -> Iterator[Callable[..., dict[str, Any]]]:
    """Starts acquires that wait in line, each in a thread (joined at the end)."""
    threads: list[threading.Thread] = []

    def start(mgr: LockManager, resource: str, owner: str, **kwargs: Any) -> dict[str, Any]:
        got: dict[str, Any] = {}

        def wait() -> None:
            try:
                got["result"] = mgr.acquire(SCOPE, "job", resource, owner, **kwargs)
            except Exception as exc:  # noqa: BLE001 - the test looks at it
                got["error"] = exc

        thread = threading.Thread(target=wait, daemon=True)
        threads.append(thread)
        thread.start()
        return got

    yield start
    for thread in threads:
        thread.join(20)


def test_waiters_are_counted_per_resource(
    nmgr: Noticing, make_client: Any, waiting: Any, backend: str
) -> None:
    lock = nmgr.acquire(SCOPE, "job", "r", "holder").lock
    other = Noticing(make_client(), TYPES, prefix="t", functions=backend in FUNCTIONS)
    got = waiting(other, "r", "w1", wait=20)
    until(lambda: nmgr.scope_stats(SCOPE).waiters == {("job", "r"): 1})
    stats = nmgr.scope_stats(SCOPE)
    assert stats.held == {"job": 1}
    nmgr.release(lock, "holder")
    until(lambda: "result" in got)
    assert got["result"].lock.owner == "w1"
    until(lambda: nmgr.scope_stats(SCOPE).waiters == {})
    # its wait was heard: once, as acquired, for its scope and type
    [(scope, type_, seconds, outcome)] = other.waits
    assert (scope, type_, outcome) == (SCOPE, "job", "acquired") and seconds >= 0


def test_an_expired_holder_removed_by_the_stats_hands_over_to_its_waiter(
    nmgr: Noticing, make_client: Any, waiting: Any, redis_client: Any, backend: str
) -> None:
    # A lease the waiter cannot outlast before it is in line (0.3 s did, on a loaded
    # machine: it took the free lock instead of waiting), cut short once it waits.
    lock = nmgr.acquire(SCOPE, "job", "r", "holder", ttl=20).lock
    other = LockManager(make_client(), TYPES, prefix="t", heartbeat=30.0)
    got = waiting(other, "r", "w1", wait=20)
    until(lambda: nmgr.scope_stats(SCOPE).waiters == {("job", "r"): 1})
    lock = nmgr.refresh(lock, "holder", ttl=0.05)
    until_expired(redis_client, lock)
    stats = nmgr.scope_stats(SCOPE)
    assert stats.expired == {"job": 1}
    until(lambda: "result" in got)  # woken by the removal, not by its heartbeat
    assert got["result"].lock.owner == "w1"
    assert nmgr.scope_stats(SCOPE).held == {"job": 1}


def test_a_wait_that_times_out_is_heard_as_a_timeout(nmgr: Noticing) -> None:
    nmgr.acquire(SCOPE, "job", "r", "holder")
    with pytest.raises(LockConflict):
        nmgr.acquire(SCOPE, "job", "r", "w1", wait=0.05)
    [(_, type_, seconds, outcome)] = nmgr.waits
    assert (type_, outcome) == ("job", "timeout") and seconds > 0


def test_a_cancelled_wait_is_heard_as_cancelled(nmgr: Noticing) -> None:
    nmgr.acquire(SCOPE, "job", "r", "holder")
    with pytest.raises(WaitCancelled):
        nmgr.acquire(SCOPE, "job", "r", "w1", wait=10, cancel=lambda: True)
    assert [w[3] for w in nmgr.waits] == ["cancelled"]


def test_an_acquire_that_never_waited_is_not_heard(nmgr: Noticing) -> None:
    nmgr.acquire(SCOPE, "job", "r", "first", wait=5)
    with pytest.raises(LockConflict):
        nmgr.acquire(SCOPE, "job", "r", "second")
    assert nmgr.waits == []


def test_many_scopes_in_batches(mgr: LockManager, redis_client: Any) -> None:
    scopes = [f"s{n}" for n in range(25)]
    short = []
    for n, scope in enumerate(scopes):
        mgr.acquire(scope, "job", "j", "alice")
        if n % 5 == 0:
            short.append(mgr.acquire(scope, "deletion", "d", "alice", ttl=0.05).lock)
    until_expired(redis_client, *short)
    stats = mgr.scopes_stats([*scopes, "s0", "empty"], batch=7, take_expired=True)
    assert list(stats) == [*scopes, "empty"]
    assert all(stats[s].held == {"job": 1} for s in scopes)
    assert sum(stats[s].expired.get("deletion", 0) for s in scopes) == len(short)
    assert stats["empty"].held == {}
    again = mgr.scopes_stats(scopes, batch=7)
    assert all(again[s].expired == {} for s in scopes)


def test_the_batches_load_what_a_server_lost(mgr: LockManager, redis_client: Any) -> None:
    from redis.cluster import RedisCluster

    mgr.acquire("a", "job", "j", "alice")
    mgr.acquire("b", "job", "j", "alice")
    nodes = (
        [redis_client.get_redis_connection(n) for n in redis_client.get_primaries()]
        if isinstance(redis_client, RedisCluster)
        else [redis_client]
    )
    for node in nodes:  # servers restarted without their scripts
        node.script_flush()
        try:
            node.function_flush()
        except Exception:  # noqa: BLE001 - Redis 6.2 has no FUNCTION
            pass
    assert {s: v.held for s, v in mgr.scopes_stats(["a", "b"]).items()} == {
        "a": {"job": 1},
        "b": {"job": 1},
    }


def test_the_asyncio_sibling_has_the_same_stats(make_async_client: Any, redis_client: Any) -> None:
    async def main() -> tuple[Any, Any, Any]:
        client = make_async_client()
        amgr = AsyncLockManager(client, TYPES, prefix="t")
        try:
            await amgr.acquire(SCOPE, "job", "j1", "alice")
            short = (await amgr.acquire(SCOPE, "gadget", "g", "alice", ttl=0.05)).lock
            await asyncio.to_thread(until_expired, redis_client, short)
            one = await amgr.scope_stats(SCOPE, take_expired=True)
            both = await amgr.scopes_stats([SCOPE, "other"], take_expired=True)
            return one, both, short
        finally:
            await drain()
            await client.aclose()

    one, both, _ = asyncio.run(main())
    assert one.held == {"job": 1} and one.expired == {"gadget": 1}
    assert both[SCOPE].held == {"job": 1} and both[SCOPE].expired == {}
    assert both["other"].held == {}


def test_the_asyncio_wait_is_heard(make_async_client: Any) -> None:
    heard: list[tuple[str, str]] = []

    class Hearing(AsyncLockManager):
        def wait_ended(self, scope: str, type: str, seconds: float, outcome: str) -> None:
            heard.append((type, outcome))

    async def main() -> None:
        client = make_async_client()
        amgr = Hearing(client, TYPES, prefix="t", heartbeat=0.5)
        try:
            await amgr.acquire(SCOPE, "job", "r", "holder")
            with pytest.raises(LockConflict):
                await amgr.acquire(SCOPE, "job", "r", "w1", wait=0.05)
            task = asyncio.ensure_future(amgr.acquire(SCOPE, "job", "r", "w2", wait=20))

            async def queued() -> bool:
                return bool((await amgr.scope_stats(SCOPE)).waiters)

            deadline = time.monotonic() + 10
            while not await queued():
                assert time.monotonic() < deadline
                await asyncio.sleep(0.005)
            task.cancel()
            with pytest.raises(asyncio.CancelledError):
                await task
        finally:
            await drain()
            await client.aclose()

    asyncio.run(main())
    assert heard == [("job", "timeout"), ("job", "cancelled")]
