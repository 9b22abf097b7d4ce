"""Holding with background renewal, loss detection, and fencing checks; on fakeredis, a
real redis-server and a real Cluster."""

from __future__ import annotations

import os
import signal
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import pytest

from lockcore import EmbeddedRedis, LockConflict, LockLost, LockManager, LockNotFound

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


def test_renewal_stops_exactly_when_the_block_exits(
    mgr: LockManager, monkeypatch: pytest.MonkeyPatch
) -> None:
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
        with mgr.hold(
            SCOPE,
            "job",
            "r",
            "worker",
            ttl=0.2,
            on_lost=lambda held: lost_at.append(time.monotonic()),
        ) as held:
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
        with mgr.hold(
            SCOPE, "job", "r", "worker", ttl=0.3, on_lost=lambda held: reasons.append(held.reason)
        ) as held:
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


def test_redis_unreachable_past_the_lease_is_a_loss(
    mgr: LockManager, monkeypatch: pytest.MonkeyPatch
) -> None:
    import redis

    def unreachable(*args: Any, **kwargs: Any) -> Any:
        raise redis.ConnectionError("Redis went away")

    reasons: list[str] = []
    with pytest.raises(LockLost):
        with mgr.hold(
            SCOPE, "job", "r", "worker", ttl=0.2, on_lost=lambda held: reasons.append(held.reason)
        ) as held:
            monkeypatch.setattr(mgr, "refresh", unreachable)
            wait_for(held.lost.is_set, 2.0)
            monkeypatch.undo()
    assert reasons == ["the lease ran out"]


# --- a Redis that hangs (a server of the test's own, paused with SIGSTOP) -----------------


@contextmanager
def paused(server: EmbeddedRedis) -> Iterator[None]:
    assert server.process is not None
    os.kill(server.process.pid, signal.SIGSTOP)
    try:
        yield
    finally:
        os.kill(server.process.pid, signal.SIGCONT)


def finishes(step: Callable[[], Any], patience: float = 30.0) -> list[Any]:
    """Runs ``step`` in a thread: what it returned or raised, once it is done. A step
    still running after ``patience`` (only a hang takes that long) fails the test."""
    outcome: list[Any] = []

    def run() -> None:
        try:
            outcome.append(step())
        except BaseException as exc:  # noqa: BLE001 - handed to the test
            outcome.append(exc)

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    thread.join(patience)
    assert not thread.is_alive(), "it waited on the paused Redis"
    return outcome


def forever_client(server: EmbeddedRedis) -> Any:
    """A client that waits for Redis as long as it takes (no socket timeout): only the
    hold's own bounds can keep it from hanging."""
    return server.client(socket_timeout=None)


def test_a_hanging_redis_warns_the_holder_before_the_lease_ends(server: EmbeddedRedis) -> None:
    mgr = LockManager(forever_client(server), TYPES, prefix="t")
    heard: list[str] = []
    hold = mgr.hold(
        SCOPE,
        "job",
        "r",
        "worker",
        ttl=1.5,
        on_at_risk=lambda held: heard.append("at risk"),
        on_lost=lambda held: heard.append("lost"),
    )
    held = hold.__enter__()
    with paused(server):
        assert held.lost.wait(30)
        assert heard == ["at risk", "lost"] and held.at_risk.is_set()
        # leaving the block does not wait for the paused Redis (a renewal hangs there)
        [left] = finishes(lambda: hold.__exit__(None, None, None))
        assert isinstance(left, LockLost)


def test_leaving_the_block_while_redis_hangs_leaves_the_lock_to_its_lease(
    server: EmbeddedRedis,
) -> None:
    mgr = LockManager(forever_client(server), TYPES, prefix="t")
    hold = mgr.hold(SCOPE, "job", "r", "worker", ttl=6)
    held = hold.__enter__()
    with paused(server):
        [left] = finishes(lambda: hold.__exit__(None, None, None))
        assert left is None and held.released is False  # not lost: not answered
    # once Redis is back the lock is gone: the release that waited there, or its lease
    observer = server.client()
    deadline = time.monotonic() + 30
    while LockManager(observer, TYPES, prefix="t").list(SCOPE).locks:
        assert time.monotonic() < deadline
        time.sleep(0.05)


def test_a_good_renewal_clears_the_warning(server: EmbeddedRedis) -> None:
    mgr = LockManager(forever_client(server), TYPES, prefix="t")
    with mgr.hold(SCOPE, "job", "r", "worker", ttl=6) as held:
        with paused(server):
            assert held.at_risk.wait(30)
        wait_for(lambda: not held.at_risk.is_set(), 30)
        assert not held.lost.is_set()
    assert held.released is True


def test_at_risk_is_a_part_of_the_lease(mgr: LockManager) -> None:
    for bad in (0, 1, 1.5, -0.1, float("nan")):
        with pytest.raises(ValueError, match="at_risk"):
            mgr.hold(SCOPE, "job", "r", "worker", at_risk=bad)


def test_a_renewal_landing_as_the_block_is_left_leaves_no_timer_behind(
    mgr: LockManager, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The renewal is answered only once the block has begun to stop: it must not arm the
    # at-risk and lost timers again (they would report a lock released long ago).
    original = mgr.refresh
    in_flight = threading.Event()
    holds: list[Any] = []

    def late(*args: Any, **kwargs: Any) -> Any:
        in_flight.set()
        wait_for(holds[0]._stop.is_set, 10.0)
        return original(*args, **kwargs)

    monkeypatch.setattr(mgr, "refresh", late)
    with mgr.hold(SCOPE, "job", "r", "worker", ttl=3.0) as held:
        holds.append(held)
        assert in_flight.wait(10)
    assert held.released is True
    assert not [t for t in (held._timer, held._risk_timer) if t is not None and t.is_alive()]


def test_a_lock_found_gone_at_release_says_so_in_lock_lost(mgr: LockManager) -> None:
    with pytest.raises(LockLost, match="gone at release") as info:
        with mgr.hold(SCOPE, "job", "r", "worker", ttl=30) as held:
            mgr.release(held.lock, "admin", force=True)  # long before the first renewal
    assert held.reason.startswith("the lock was gone at release")
    assert info.value.holder is not None and info.value.holder.id == held.lock.id
