"""All-or-nothing multi-locks: ``acquire_all`` takes locks on several resources of one
scope in one script, or none of them; ``release_all`` releases them together. On every
backend, sync and asyncio, and under many threads on overlapping sets."""

from __future__ import annotations

import asyncio
import itertools
import threading
import time
from typing import Any

import pytest

from lockcore import (
    AsyncLockManager,
    InvalidLockRequest,
    LockConflict,
    LockManager,
    LockNotOwned,
    LockType,
    Mode,
)

from .test_core import until_server_past

TYPES = [
    LockType("file", default_ttl=30.0, events=True, index_owner=True),
    LockType("gadget", one_per_owner=True, default_ttl=30.0),
    LockType("pool", mode=Mode.MULTI, default_ttl=30.0),
]


@pytest.fixture
def mm(make_client: Any) -> LockManager:
    return LockManager(make_client(), TYPES, prefix="t")


def held(mgr: LockManager) -> list[tuple[str, str]]:
    return sorted((lock.resource, lock.owner) for lock in mgr.list("s").locks)


def test_all_free_are_all_taken_and_released_together(mm: LockManager) -> None:
    results = mm.acquire_all("s", "file", ["a", "b", "c"], "alice", metadata={"job": "7"})
    assert [r.lock.resource for r in results] == ["a", "b", "c"] and all(r.created for r in results)
    tokens = [r.lock.fencing_token for r in results]
    assert tokens == sorted(set(tokens))
    assert held(mm) == [("a", "alice"), ("b", "alice"), ("c", "alice")]
    assert mm.get(results[1].lock.id).metadata == {"job": "7"}
    assert mm.list("s", owner="alice").locks  # indexed by owner, like any lock of the type
    assert mm.release_all([r.lock for r in results], "alice") == 3
    assert held(mm) == []


def test_one_held_by_another_means_none_is_taken(mm: LockManager) -> None:
    theirs = mm.acquire("s", "file", "c", "bob").lock
    with pytest.raises(LockConflict) as refused:
        mm.acquire_all("s", "file", ["a", "b", "c", "d"], "alice")
    assert refused.value.holder is not None and refused.value.holder.id == theirs.id
    assert held(mm) == [("c", "bob")]  # a, b, d were not taken


def test_the_owners_own_lock_is_refreshed_among_them(mm: LockManager) -> None:
    mine = mm.acquire("s", "file", "b", "alice").lock
    results = mm.acquire_all("s", "file", ["a", "b"], "alice")
    assert [r.created for r in results] == [True, False]
    assert results[1].lock.id == mine.id


def test_an_expired_lock_among_them_is_taken(mm: LockManager) -> None:
    gone = mm.acquire("s", "file", "b", "bob", ttl=0.3).lock
    until_server_past(mm.client, gone.expires_at)
    results = mm.acquire_all("s", "file", ["a", "b"], "alice")
    assert [r.lock.owner for r in results] == ["alice", "alice"]
    assert results[1].lock.fencing_token > gone.fencing_token


def test_release_all_releases_none_if_one_is_anothers(mm: LockManager) -> None:
    mine = [r.lock for r in mm.acquire_all("s", "file", ["a", "b"], "alice")]
    theirs = mm.acquire("s", "file", "c", "bob").lock
    with pytest.raises(LockNotOwned):
        mm.release_all([*mine, theirs], "alice")
    assert len(held(mm)) == 3
    assert mm.release_all([*mine, theirs], "admin", force=True) == 3
    assert held(mm) == []


def test_what_a_multi_lock_refuses(mm: LockManager) -> None:
    for bad_type in ("gadget", "pool"):
        with pytest.raises(InvalidLockRequest, match="exclusive"):
            mm.acquire_all("s", bad_type, ["a", "b"], "alice")
    with pytest.raises(InvalidLockRequest, match="once"):
        mm.acquire_all("s", "file", ["a", "a"], "alice")
    with pytest.raises(InvalidLockRequest, match="one or more"):
        mm.acquire_all("s", "file", [], "alice")
    assert held(mm) == []


def test_overlapping_multi_locks_never_share_a_resource(make_client: Any) -> None:
    """6 threads take pairs of 4 resources (overlapping) 15 times each, all or nothing:
    no resource ever has two holders, and nobody holds half a pair."""
    holders = {name: 0 for name in "abcd"}
    problems: list[str] = []
    guard = threading.Lock()
    pairs = list(itertools.combinations("abcd", 2))

    def worker(n: int) -> None:
        mgr = LockManager(make_client(), TYPES, prefix="t")
        name = f"w{n}"
        for i in range(15):
            pair = list(pairs[(n + i) % len(pairs)])
            while True:
                try:
                    locks = [r.lock for r in mgr.acquire_all("s", "file", pair, name)]
                    break
                except LockConflict:
                    time.sleep(0.001)  # busy: try again (a workload, not a wait)
            with guard:
                for res in pair:
                    holders[res] += 1
                    if holders[res] != 1:
                        problems.append(f"{res} held {holders[res]} times")
            time.sleep(0.001)
            with guard:
                for res in pair:
                    holders[res] -= 1
            if mgr.release_all(locks, name) != 2:
                problems.append("a pair released by halves")

    threads = [threading.Thread(target=worker, args=(n,)) for n in range(6)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(120)
    assert not problems and not any(thread.is_alive() for thread in threads)


def test_asyncio_multi_lock(make_async_client: Any) -> None:
    async def scenario() -> None:
        amgr = AsyncLockManager(make_async_client(), TYPES, prefix="t")
        results = await amgr.acquire_all("s", "file", ["a", "b"], "alice")
        with pytest.raises(LockConflict):
            await amgr.acquire_all("s", "file", ["b", "c"], "bob")
        assert await amgr.release_all([r.lock for r in results], "alice") == 2
        assert len(await amgr.acquire_all("s", "file", ["b", "c"], "bob")) == 2
        async with amgr.hold_all("s", "file", ["x", "y"], "carol", ttl=5) as holds:
            assert [h.lock.owner for h in holds] == ["carol", "carol"]
        assert [lk.resource for lk in (await amgr.list("s", owner="carol")).locks] == []
        await amgr.client.aclose()

    asyncio.run(scenario())


def test_hold_all_renews_every_lock_and_releases_them_together(mm: LockManager) -> None:
    with mm.hold_all("s", "file", ["a", "b"], "alice", ttl=0.6) as holds:
        assert [h.lock.resource for h in holds] == ["a", "b"]
        first_expiry = max(h.lock.expires_at or 0 for h in holds)
        until_server_past(mm.client, first_expiry)  # past the first lease: renewed since
        assert held(mm) == [("a", "alice"), ("b", "alice")]
        with pytest.raises(LockConflict):
            with mm.hold_all("s", "file", ["b", "c"], "bob", ttl=5):
                pass
    assert held(mm) == []
