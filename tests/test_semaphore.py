"""Semaphores: a multi lock type with ``max_holders = N`` holds at most N live locks per
resource; the N+1th acquire conflicts or waits in line; a released or expired permit frees
its slot. On every backend, sync and asyncio, and under many threads."""

from __future__ import annotations

import asyncio
import threading
import time
from typing import Any

import pytest

from lockcore import AsyncLockManager, LockConflict, LockManager, LockType, Mode

from .test_core import until_server_past

PERMITS = LockType("permit", mode=Mode.MULTI, max_holders=3, default_ttl=30.0, events=True)
TYPES = [PERMITS, LockType("pool", mode=Mode.MULTI, default_ttl=30.0)]


@pytest.fixture
def smgr(make_client: Any) -> LockManager:
    return LockManager(make_client(), TYPES, prefix="t", heartbeat=0.5)


def test_max_holders_is_for_multi_types_and_positive() -> None:
    with pytest.raises(ValueError, match="MULTI"):
        LockType("x", max_holders=2)
    for bad in (0, -1, 1.5, True):
        with pytest.raises(ValueError, match="positive integer"):
            LockType("x", mode=Mode.MULTI, max_holders=bad)  # type: ignore[arg-type]


def test_the_permit_past_the_last_conflicts_until_one_is_released(smgr: LockManager) -> None:
    held = [smgr.acquire("s", "permit", "gpu", f"w{i}").lock for i in range(3)]
    assert len({lock.fencing_token for lock in held}) == 3
    with pytest.raises(LockConflict) as refused:
        smgr.acquire("s", "permit", "gpu", "w3")
    assert refused.value.holder is not None and refused.value.holder.owner in ("w0", "w1", "w2")
    # another resource, and an uncapped multi type, are not limited
    smgr.acquire("s", "permit", "cpu", "w3")
    for i in range(5):
        smgr.acquire("s", "pool", "gpu", f"p{i}")
    smgr.release(held[1], "w1")
    fourth = smgr.acquire("s", "permit", "gpu", "w3").lock
    assert fourth.fencing_token > max(lock.fencing_token for lock in held)
    with pytest.raises(LockConflict):
        smgr.acquire("s", "permit", "gpu", "w4")
    assert smgr.count("s", multi=True, type="permit", resource="gpu") == 3


def test_an_expired_permit_frees_its_slot_by_the_server_clock(smgr: LockManager) -> None:
    short = smgr.acquire("s", "permit", "gpu", "w0").lock
    for i in (1, 2):
        smgr.acquire("s", "permit", "gpu", f"w{i}")
    with pytest.raises(LockConflict):
        smgr.acquire("s", "permit", "gpu", "w3")
    # cut short only now: a lease of 0.3 s from the start could end before the conflict
    short = smgr.refresh(short, "w0", ttl=0.05)
    until_server_past(smgr.client, short.expires_at)
    assert smgr.acquire("s", "permit", "gpu", "w3").lock.owner == "w3"


def test_a_waiter_gets_the_first_permit_released(smgr: LockManager) -> None:
    held = [smgr.acquire("s", "permit", "gpu", f"w{i}").lock for i in range(3)]
    got: list[Any] = []
    waiter = threading.Thread(
        target=lambda: got.append(smgr.acquire("s", "permit", "gpu", "late", wait=30).lock)
    )
    waiter.start()
    waiter.join(0.2)
    assert waiter.is_alive() and not got  # in line: every permit is taken
    smgr.release(held[0], "w0")
    waiter.join(30)
    assert got and got[0].owner == "late"


def test_never_more_holders_than_permits_under_contention(make_client: Any) -> None:
    """8 threads on their own clients take a permit of 3 twenty times each, waiting in
    line: never more than 3 at once, and everyone gets theirs."""
    inside = 0
    most = 0
    guard = threading.Lock()
    done: list[int] = []

    def worker(name: str) -> None:
        nonlocal inside, most
        mgr = LockManager(make_client(), TYPES, prefix="t", heartbeat=0.5)
        for _ in range(20):
            lock = mgr.acquire("s", "permit", "gpu", name, wait=60).lock
            with guard:
                inside += 1
                most = max(most, inside)
            time.sleep(0.001)
            with guard:
                inside -= 1
            mgr.release(lock, name)
        done.append(1)

    threads = [threading.Thread(target=worker, args=(f"w{i}",)) for i in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(120)
    assert len(done) == 8
    assert 1 <= most <= 3


def test_asyncio_permits(make_async_client: Any) -> None:
    async def scenario() -> None:
        amgr = AsyncLockManager(make_async_client(), TYPES, prefix="t", heartbeat=0.5)
        held = [(await amgr.acquire("s", "permit", "gpu", f"w{i}")).lock for i in range(3)]
        with pytest.raises(LockConflict):
            await amgr.acquire("s", "permit", "gpu", "w3")
        waiting = asyncio.ensure_future(amgr.acquire("s", "permit", "gpu", "late", wait=30))
        await asyncio.sleep(0.1)
        assert not waiting.done()
        await amgr.release(held[2], "w2")
        assert (await asyncio.wait_for(waiting, 30)).lock.owner == "late"
        await amgr.client.aclose()

    asyncio.run(scenario())
