"""Holding with background renewal, loss detection, and fencing checks; on fakeredis, a
real redis-server and a real Cluster."""

from __future__ import annotations

import threading
import time
from typing import Any

import pytest

from lockcore import LockConflict, LockLost, LockManager, LockNotFound

from .conftest import TYPES

SCOPE = "jobs"


@pytest.fixture
def mgr(redis_client: Any) -> LockManager:
    return LockManager(redis_client, TYPES, prefix="t")


def test_renewal_keeps_a_short_lock_alive(mgr: LockManager) -> None:
    # A lease of 1 s renewed every 1/3 s, watched for 3 leases (tolerates a loaded box).
    with mgr.hold(SCOPE, "job", "r", "worker", ttl=1.0) as held:
        first = held.lock
        deadline = time.monotonic() + 3.0
        while time.monotonic() < deadline:
            time.sleep(0.1)
            with pytest.raises(LockConflict):
                mgr.acquire(SCOPE, "job", "r", "intruder")
        assert not held.lost.is_set()
        assert held.lock.id == first.id and held.fencing_token == first.fencing_token
        assert held.lock.expires_at > first.expires_at + 1.5
    with pytest.raises(LockNotFound):
        mgr.get(first.id)


def test_renewal_stops_exactly_when_the_block_exits(mgr: LockManager,
                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[float] = []
    original = mgr.refresh

    def counting(*args: Any, **kwargs: Any) -> Any:
        calls.append(time.monotonic())
        return original(*args, **kwargs)

    monkeypatch.setattr(mgr, "refresh", counting)
    # A lease of 0.6 s (renewed every 0.2 s): room for a loaded machine's stalls.
    with mgr.hold(SCOPE, "job", "r", "worker", ttl=0.6) as held:
        wait_for(lambda: len(calls) >= 3, 10.0)
    exited = time.monotonic()
    time.sleep(0.5)  # longer than a renewal period: none may come after the exit
    assert len(calls) >= 3
    assert all(at < exited for at in calls)
    with pytest.raises(LockNotFound):
        mgr.get(held.lock.id)


def test_a_paused_holder_loses_the_lock_and_leaving_raises_lock_lost(
    mgr: LockManager, monkeypatch: pytest.MonkeyPatch
) -> None:
    original = mgr.refresh
    lost_at: list[float] = []

    def paused(*args: Any, **kwargs: Any) -> Any:
        time.sleep(2.0)  # a stop-the-world pause, far longer than the lease
        return original(*args, **kwargs)

    monkeypatch.setattr(mgr, "refresh", paused)
    started = time.monotonic()
    with pytest.raises(LockLost) as info:
        with mgr.hold(SCOPE, "job", "r", "worker", ttl=0.2,
                      on_lost=lambda held: lost_at.append(time.monotonic())) as held:
            wait_for(held.lost.is_set, 2.0)
            taken = mgr.acquire(SCOPE, "job", "r", "successor").lock
            assert taken.fencing_token > held.fencing_token
            time.sleep(2.2)  # the paused renewal wakes, and finds the lock taken
    # Reported when the lease ran out (0.2 s), not when the paused renewal came back (2 s);
    # the bound leaves a loaded machine room.
    assert lost_at and lost_at[0] - started < 1.5
    assert info.value.holder is not None and info.value.holder.owner == "worker"
    assert mgr.get(taken.id).owner == "successor"  # the successor's lock was left alone


def test_a_lock_taken_over_is_reported_lost(mgr: LockManager) -> None:
    reasons: list[str] = []
    with pytest.raises(LockLost):
        with mgr.hold(SCOPE, "job", "r", "worker", ttl=0.3,
                      on_lost=lambda held: reasons.append(held.reason)) as held:
            mgr.release(held.lock, "admin", force=True)
            wait_for(held.lost.is_set, 2.0)
    assert reasons and "gone" in reasons[0]


def test_any_thread_may_release_with_the_token_in_hand(mgr: LockManager) -> None:
    lock = mgr.acquire(SCOPE, "job", "r", "worker").lock
    thread = threading.Thread(target=mgr.release, args=(lock, "worker"))
    thread.start()
    thread.join()
    with pytest.raises(LockNotFound):
        mgr.get(lock.id)


def test_hold_waits_in_line(mgr: LockManager) -> None:
    lock = mgr.acquire(SCOPE, "job", "r", "first").lock
    threading.Timer(0.1, mgr.release, args=(lock, "first")).start()
    with mgr.hold(SCOPE, "job", "r", "second", ttl=1, wait=5) as held:
        assert held.lock.owner == "second"


def test_a_stale_fencing_token_is_refused(mgr: LockManager) -> None:
    old = mgr.acquire(SCOPE, "job", "r", "a", ttl=1).lock
    assert mgr.validate(SCOPE, "job", "r", old.fencing_token)
    assert old.expires_at is not None
    seconds, micros = mgr.client.time()  # wait for the server's clock, not ours
    while seconds + micros / 1e6 <= old.expires_at:
        time.sleep(0.02)
        seconds, micros = mgr.client.time()
    assert not mgr.validate(SCOPE, "job", "r", old.fencing_token)  # expired
    new = mgr.acquire(SCOPE, "job", "r", "b").lock
    assert not mgr.validate(SCOPE, "job", "r", old.fencing_token)  # taken over
    assert mgr.validate(SCOPE, "job", "r", new.fencing_token)
    mgr.release(new, "b")
    assert not mgr.validate(SCOPE, "job", "r", new.fencing_token)  # released


def wait_for(condition: Any, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline
        time.sleep(0.005)


def test_redis_unreachable_past_the_lease_is_a_loss(mgr: LockManager,
                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    import redis

    def unreachable(*args: Any, **kwargs: Any) -> Any:
        raise redis.ConnectionError("Redis went away")

    reasons: list[str] = []
    with pytest.raises(LockLost):
        with mgr.hold(SCOPE, "job", "r", "worker", ttl=0.2,
                      on_lost=lambda held: reasons.append(held.reason)) as held:
            monkeypatch.setattr(mgr, "refresh", unreachable)
            wait_for(held.lost.is_set, 2.0)
            monkeypatch.undo()
    assert reasons == ["the lease ran out"]
