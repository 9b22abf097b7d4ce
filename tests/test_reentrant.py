"""Reentrant locks (``LockType(reentrant=True)``): the owner acquiring its own lock holds
it once more, each of its releases gives one hold back, the last releases it; a forced
release or expiry ends every hold. On every backend, sync and asyncio, nested holds, and
under many threads."""

from __future__ import annotations

import asyncio
import threading
import time
from typing import Any

import pytest

from lockcore import (
    AsyncLockManager,
    LockConflict,
    LockManager,
    LockNotFound,
    LockType,
    Mode,
)

from .test_core import until_server_past

TYPES = [
    LockType("rlock", reentrant=True, default_ttl=30.0, events=True),
    LockType("plain", default_ttl=30.0),
]


@pytest.fixture
def rmgr(make_client: Any) -> LockManager:
    return LockManager(make_client(), TYPES, prefix="t", heartbeat=0.5)


def bookkeeping(mgr: LockManager, scope: str) -> list[str]:
    """The scope hash's hold counters (none may outlive its lock)."""
    fields = mgr.client.hkeys(mgr.keys(scope).locks)
    names = [f.decode() if isinstance(f, bytes) else f for f in fields]
    return [name for name in names if name.startswith("!c")]


def test_reentrant_is_for_exclusive_types() -> None:
    with pytest.raises(ValueError, match="EXCLUSIVE"):
        LockType("x", mode=Mode.MULTI, reentrant=True)


def test_each_release_gives_back_one_hold(rmgr: LockManager) -> None:
    first = rmgr.acquire("s", "rlock", "r", "alice")
    again = rmgr.acquire("s", "rlock", "r", "alice")
    third = rmgr.acquire("s", "rlock", "r", "alice")
    assert first.created and not again.created and not third.created
    assert {first.lock.id, again.lock.id, third.lock.id} == {first.lock.id}  # one lock
    with pytest.raises(LockConflict):
        rmgr.acquire("s", "rlock", "r", "bob")
    rmgr.release(first.lock, "alice")
    rmgr.release(first.lock, "alice")
    assert rmgr.get(first.lock.id).owner == "alice"  # one hold left
    with pytest.raises(LockConflict):
        rmgr.acquire("s", "rlock", "r", "bob")
    rmgr.release(first.lock, "alice")
    with pytest.raises(LockNotFound):
        rmgr.get(first.lock.id)
    assert rmgr.acquire("s", "rlock", "r", "bob").lock.fencing_token > first.lock.fencing_token
    assert bookkeeping(rmgr, "s") == []


def test_a_plain_type_is_released_by_one_release(rmgr: LockManager) -> None:
    lock = rmgr.acquire("s", "plain", "r", "alice").lock
    rmgr.acquire("s", "plain", "r", "alice")
    rmgr.release(lock, "alice")
    with pytest.raises(LockNotFound):
        rmgr.get(lock.id)


def test_a_forced_release_ends_every_hold(rmgr: LockManager) -> None:
    lock = rmgr.acquire("s", "rlock", "r", "alice").lock
    for _ in range(3):
        rmgr.acquire("s", "rlock", "r", "alice")
    rmgr.release(lock, "admin", force=True)
    with pytest.raises(LockNotFound):
        rmgr.release(lock, "alice")
    assert bookkeeping(rmgr, "s") == []


def test_expiry_ends_every_hold(rmgr: LockManager) -> None:
    rmgr.acquire("s", "rlock", "r", "alice", ttl=0.3)
    lock = rmgr.acquire("s", "rlock", "r", "alice", ttl=0.3).lock  # one lease, renewed
    until_server_past(rmgr.client, lock.expires_at)
    taken = rmgr.acquire("s", "rlock", "r", "bob").lock  # removes the expired one
    assert taken.owner == "bob"
    rmgr.release(taken, "bob")  # bob held it once: released
    assert bookkeeping(rmgr, "s") == []


def test_nested_holds_release_with_the_outer_block(rmgr: LockManager) -> None:
    with rmgr.hold("s", "rlock", "r", "alice", ttl=5) as outer:
        with rmgr.hold("s", "rlock", "r", "alice", ttl=5) as inner:
            assert inner.lock.id == outer.lock.id
        assert rmgr.get(outer.lock.id).owner == "alice"  # still held by the outer block
    with pytest.raises(LockNotFound):
        rmgr.get(outer.lock.id)


def test_mutual_exclusion_holds_with_reentry_under_contention(make_client: Any) -> None:
    inside = 0
    problems: list[str] = []
    guard = threading.Lock()

    def worker(name: str) -> None:
        nonlocal inside
        mgr = LockManager(make_client(), TYPES, prefix="t", heartbeat=0.5)
        for _ in range(10):
            lock = mgr.acquire("s", "rlock", "r", name, wait=60).lock
            with guard:
                inside += 1
                if inside != 1:
                    problems.append(f"{inside} holders")
            mgr.acquire("s", "rlock", "r", name)  # re-entered
            mgr.release(lock, name)
            if mgr.get(lock.id).owner != name:  # still ours after one release
                problems.append("lost after one release")
            time.sleep(0.001)
            with guard:
                inside -= 1
            mgr.release(lock, name)

    threads = [threading.Thread(target=worker, args=(f"w{i}",)) for i in range(6)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(120)
    assert not problems and not any(thread.is_alive() for thread in threads)


def test_asyncio_reentry(make_async_client: Any) -> None:
    async def scenario() -> None:
        amgr = AsyncLockManager(make_async_client(), TYPES, prefix="t", heartbeat=0.5)
        lock = (await amgr.acquire("s", "rlock", "r", "alice")).lock
        again = await amgr.acquire("s", "rlock", "r", "alice")
        assert not again.created and again.lock.id == lock.id
        await amgr.release(lock, "alice")
        assert (await amgr.get(lock.id)).owner == "alice"
        await amgr.release(lock, "alice")
        with pytest.raises(LockNotFound):
            await amgr.get(lock.id)
        await amgr.client.aclose()

    asyncio.run(scenario())
