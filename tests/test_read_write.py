"""Read-write locks (``LockType(mode=MULTI, read_write=True)``): many readers or one
writer per resource, each with its own lease and token; a waiting writer is not starved
by a stream of readers. On every backend, sync and asyncio, and under many threads."""

from __future__ import annotations

import asyncio
import threading
import time
from typing import Any

import pytest

from lockcore import (
    AsyncLockManager,
    InvalidLockRequest,
    LockConflict,
    LockManager,
    LockType,
    Mode,
)

from .test_core import until_server_past

RW = LockType("doc", mode=Mode.MULTI, read_write=True, default_ttl=30.0, events=True)
TYPES = [RW, LockType("plain", default_ttl=30.0)]


@pytest.fixture
def rw(make_client: Any) -> LockManager:
    return LockManager(make_client(), TYPES, prefix="t", heartbeat=0.5)


def test_read_write_needs_a_multi_type_and_shared_needs_read_write(rw: LockManager) -> None:
    with pytest.raises(ValueError, match="read_write"):
        LockType("x", read_write=True)
    with pytest.raises(InvalidLockRequest, match="no shared locks"):
        rw.acquire("s", "plain", "r", "alice", shared=True)


def test_readers_share_and_a_writer_is_alone(rw: LockManager) -> None:
    readers = [rw.acquire("s", "doc", "d1", f"r{i}", shared=True).lock for i in range(3)]
    assert len({lock.fencing_token for lock in readers}) == 3  # each its own token
    with pytest.raises(LockConflict) as refused:
        rw.acquire("s", "doc", "d1", "w")
    assert refused.value.holder is not None and refused.value.holder.owner.startswith("r")
    rw.acquire("s", "doc", "d2", "w")  # another resource
    for lock in readers:
        rw.release(lock, lock.owner)
    writer = rw.acquire("s", "doc", "d1", "w").lock
    with pytest.raises(LockConflict) as blocked:
        rw.acquire("s", "doc", "d1", "r9", shared=True)
    assert blocked.value.holder is not None and blocked.value.holder.id == writer.id
    with pytest.raises(LockConflict):
        rw.acquire("s", "doc", "d1", "w2")
    rw.release(writer, "w")
    assert rw.acquire("s", "doc", "d1", "r9", shared=True).lock.owner == "r9"


def test_an_expired_writer_lets_readers_in(rw: LockManager) -> None:
    writer = rw.acquire("s", "doc", "d1", "w", ttl=0.3).lock
    until_server_past(rw.client, writer.expires_at)
    assert rw.acquire("s", "doc", "d1", "r", shared=True).lock.owner == "r"


def test_a_waiting_writer_stops_new_readers(rw: LockManager) -> None:
    first = rw.acquire("s", "doc", "d1", "r0", shared=True).lock
    got: list[Any] = []
    writer = threading.Thread(
        target=lambda: got.append(rw.acquire("s", "doc", "d1", "w", wait=30).lock)
    )
    writer.start()
    # the writer is in line (it marks the resource): a new reader is refused meanwhile
    deadline = time.monotonic() + 30
    while True:
        try:
            late = rw.acquire("s", "doc", "d1", "late", shared=True).lock
        except LockConflict:
            break
        rw.release(late, "late")  # the writer had not joined the line yet
        assert time.monotonic() < deadline
        time.sleep(0.01)
    assert writer.is_alive() and not got
    rw.release(first, "r0")  # the last reader leaves: the writer gets it
    writer.join(30)
    assert got and got[0].owner == "w"


def test_readers_and_writers_never_overlap_under_contention(make_client: Any) -> None:
    readers = writers = 0
    problems: list[str] = []
    guard = threading.Lock()
    done: list[str] = []

    def worker(name: str, shared: bool) -> None:
        nonlocal readers, writers
        mgr = LockManager(make_client(), TYPES, prefix="t", heartbeat=0.5)
        for _ in range(15):
            lock = mgr.acquire("s", "doc", "d1", name, wait=60, shared=shared).lock
            with guard:
                if shared:
                    readers += 1
                else:
                    writers += 1
                if writers > 1 or (writers and readers):
                    problems.append(f"{readers} readers with {writers} writers")
            time.sleep(0.001)
            with guard:
                if shared:
                    readers -= 1
                else:
                    writers -= 1
            mgr.release(lock, name)
        done.append(name)

    threads = [
        threading.Thread(target=worker, args=(f"w{i}" if i < 2 else f"r{i}", i >= 2))
        for i in range(8)
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(180)
    assert not problems and len(done) == 8  # and the writers were not starved


def test_asyncio_read_write(make_async_client: Any) -> None:
    async def scenario() -> None:
        amgr = AsyncLockManager(make_async_client(), TYPES, prefix="t", heartbeat=0.5)
        a = (await amgr.acquire("s", "doc", "d1", "a", shared=True)).lock
        b = (await amgr.acquire("s", "doc", "d1", "b", shared=True)).lock
        with pytest.raises(LockConflict):
            await amgr.acquire("s", "doc", "d1", "w")
        async with amgr.hold("s", "doc", "d2", "c", shared=True, ttl=5) as held:
            assert held.lock.resource == "d2"
        await amgr.release(a, "a")
        await amgr.release(b, "b")
        assert (await amgr.acquire("s", "doc", "d1", "w")).lock.owner == "w"
        await amgr.client.aclose()

    asyncio.run(scenario())
