"""Waiting for a lock: woken by the release (no polling), first come first served, and
nothing left behind by waiters that time out, fail or vanish. On fakeredis, a real
redis-server and a real Cluster."""

from __future__ import annotations

import dataclasses
import re
import subprocess
import sys
import threading
import time
from typing import Any

import pytest

from lockcore import LockConflict, LockManager, LockNotFound, LockType, WaitCancelled
from lockcore.manager import Waiter

from .conftest import TYPES, all_keys

SCOPE = "jobs"
HELPER = re.compile(r":\{[^}]*\}:[qras]:")


def helper_keys(client: Any) -> list[str]:
    return [k for k in all_keys(client) if HELPER.search(k)]


def manager(client: Any, heartbeat: float = 1.0) -> LockManager:
    return LockManager(client, TYPES, prefix="t", heartbeat=heartbeat)


class Counting:
    """Counts the commands a client sends."""

    def __init__(self, client: Any) -> None:
        self.sent: list[str] = []
        original = client.execute_command

        def execute(*args: Any, **kwargs: Any) -> Any:
            self.sent.append(str(args[0]))
            return original(*args, **kwargs)

        client.execute_command = execute


def script_calls(sent: list[str]) -> list[str]:
    """The commands sent, a script call (EVALSHA, or FCALL on Redis 7) as "script", the
    loading of scripts left out."""
    return [
        "script" if c in ("EVALSHA", "FCALL") else c
        for c in sent
        if c not in ("SCRIPT LOAD", "FUNCTION LOAD")
    ]


def queue_length(client: Any, mgr: LockManager, resource: str = "r") -> int:
    return int(client.llen(f"{mgr.keys(SCOPE).base}q:job:{resource}"))


def wait_until(condition: Any, timeout: float = 5.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "condition not met in time"
        time.sleep(0.005)


def test_a_waiter_wakes_at_the_release_without_polling(make_client: Any) -> None:
    holder = manager(make_client())
    waiter_client = make_client()
    # (no sign-of-life try in the test's time, however slow the machine)
    waiter = manager(waiter_client, heartbeat=30.0)
    lock = holder.acquire(SCOPE, "job", "r", "holder").lock
    waiter.list(SCOPE)  # its first call finds out whether the server has FCALL
    counting = Counting(waiter_client)
    got: dict[str, Any] = {}

    def wait() -> None:
        got["result"] = waiter.acquire(SCOPE, "job", "r", "waiter", wait=30)

    thread = threading.Thread(target=wait)
    thread.start()
    # in line, on its signal, and past the hand-off time (so the release grants)
    wait_until(lambda: "BLPOP" in counting.sent and waited_ms(holder.client, holder) > 5)
    holder.release(lock, "holder")
    thread.join(30)
    assert got["result"].lock.owner == "waiter"
    # one try (which puts it in line), one blocking wait that the release ended with the
    # lock: no polling, and no second try (a wait ended any other way sends one)
    assert script_calls(counting.sent) == ["script", "BLPOP"]
    assert helper_keys(holder.client) == []


def test_waiters_are_served_in_arrival_order(make_client: Any) -> None:
    holder = manager(make_client())
    lock = holder.acquire(SCOPE, "job", "r", "holder").lock
    order: list[int] = []
    errors: list[BaseException] = []

    def wait(n: int, mgr: LockManager) -> None:
        try:
            held = mgr.acquire(SCOPE, "job", "r", f"w{n}", wait=10).lock
            order.append(n)
            time.sleep(0.02)
            mgr.release(held, f"w{n}")
        except BaseException as exc:  # noqa: BLE001
            errors.append(exc)

    threads = []
    for n in range(5):
        thread = threading.Thread(target=wait, args=(n, manager(make_client())))
        thread.start()
        threads.append(thread)
        wait_until(lambda n=n: queue_length(holder.client, holder) == n + 1)
    holder.release(lock, "holder")
    for thread in threads:
        thread.join(10)
    assert errors == []
    assert order == [0, 1, 2, 3, 4]
    assert helper_keys(holder.client) == []


def server_ms(client: Any) -> int:
    seconds, micros = client.time()
    return int(seconds) * 1000 + int(micros) // 1000


def waited_ms(client: Any, mgr: LockManager, field: str = "job:r") -> int:
    """How long the first waiter in line has waited, by the server's clock (0: none)."""
    ticket = client.lindex(f"{mgr.keys(SCOPE).base}q:{field}", 0)
    if ticket is None:
        return 0
    since = client.get(f"{mgr.keys(SCOPE).base}a:{ticket.decode()}")
    return server_ms(client) - int(since.split()[0]) if since else 0


def test_a_newcomer_does_not_jump_a_waiter_past_the_handoff_time(make_client: Any) -> None:
    holder = LockManager(make_client(), TYPES, prefix="t", handoff=0.05)
    lock = holder.acquire(SCOPE, "job", "r", "holder").lock
    waiter = manager(make_client())
    got: list[str] = []
    thread = threading.Thread(
        target=lambda: got.append(waiter.acquire(SCOPE, "job", "r", "waiter", wait=5).lock.owner)
    )
    thread.start()
    wait_until(lambda: waited_ms(holder.client, holder) >= 50)
    holder.release(lock, "holder")  # kept for the waiter: it has waited past 50 ms
    try:
        newcomer = holder.acquire(SCOPE, "job", "r", "newcomer")
    except LockConflict:
        newcomer = None
    thread.join(5)
    assert got == ["waiter"]
    assert newcomer is None


def test_before_the_handoff_time_a_newcomer_may_take_a_freed_lock(redis_client: Any) -> None:
    holder = LockManager(redis_client, TYPES, prefix="t", handoff=3600)
    lock = holder.acquire(SCOPE, "job", "r", "holder").lock
    # A waiter in line (one try, then it sleeps on its signal).
    waiting, _ = in_line(holder, "w-ticket")
    holder.release(lock, "holder")
    # The waiter was woken; the lock is not kept for it (it has not waited an hour) ...
    assert redis_client.llen(holder.keys(SCOPE).waiter_signal("w-ticket")) == 1
    newcomer = holder.acquire(SCOPE, "job", "r", "newcomer").lock
    assert newcomer.owner == "newcomer"
    # ... and trying again it finds it taken, keeps its place, and is woken next time.
    with pytest.raises(LockConflict):
        holder.core.acquired(holder._run(waiting), waiting)
    assert queue_length(redis_client, holder) == 1
    redis_client.delete(holder.keys(SCOPE).waiter_signal("w-ticket"))
    holder.release(newcomer, "newcomer")
    assert redis_client.llen(holder.keys(SCOPE).waiter_signal("w-ticket")) == 1
    assert holder.core.acquired(holder._run(waiting), waiting).lock.owner == "waiter"
    assert helper_keys(redis_client) == []


def in_line(
    mgr: LockManager, ticket: str, owner: str = "waiter", type_: str = "job", resource: str = "r"
) -> Any:
    """A waiter put in line by hand (one try that conflicts): its next call, and its
    leave call. It never blocks on its signal unless the test does."""
    call = mgr.core.acquire(
        SCOPE, type_, resource, owner, ttl=None, metadata=None, expires_at=None, request_id=None
    )
    first = mgr.core.waiting(call, ticket, None, 30_000)
    with pytest.raises(LockConflict) as conflict:
        mgr.core.acquired(mgr._run(first), first)
    return (
        mgr.core.waiting(call, ticket, conflict.value.now_ms, 30_000),
        mgr.core.leave(call, ticket),
    )


def stream(client: Any, mgr: LockManager) -> list[dict[str, str]]:
    """The scope's events, decoded."""

    def text(value: Any) -> str:
        return value.decode() if isinstance(value, bytes) else value

    return [
        {text(k): text(v) for k, v in fields.items()}
        for _, fields in client.xrange(mgr.keys(SCOPE).events)
    ]


def record_of(client: Any, mgr: LockManager, token: int) -> str:
    raw = client.hget(mgr.keys(SCOPE).locks, str(token))
    return raw.decode() if isinstance(raw, bytes) else raw


def test_a_granted_lock_is_the_one_the_waiter_asked_for(make_client: Any) -> None:
    """The waiter builds its granted lock from its own request (the signal carries only
    the token and the time): ttl, metadata and names as stored."""
    holder = LockManager(make_client(), TYPES, prefix="t", handoff=0)
    waiter = LockManager(make_client(), TYPES, prefix="t", handoff=0)
    lock = holder.acquire(SCOPE, "job", "r/ü", "holder").lock
    got: list[Any] = []
    thread = threading.Thread(
        target=lambda: got.append(
            waiter.acquire(
                SCOPE,
                "job",
                "r/ü",
                "the waiter",
                ttl=7.5,
                metadata={"a b": "c&d=e", "k": ""},
                wait=10,
            )
        )
    )
    thread.start()
    wait_until(lambda: queue_length(holder.client, holder, "r%2F%C3%BC") == 1)
    holder.release(lock, "holder")
    thread.join(10)
    assert got and got[0].created
    granted = got[0].lock
    assert record_of(holder.client, holder, granted.fencing_token).split()[0] == "xg"
    assert granted.metadata == {"a b": "c&d=e", "k": ""}
    assert granted.expires_at == pytest.approx(granted.acquired_at + 7.5)
    assert dataclasses.replace(holder.get(granted.id), as_of=granted.as_of) == granted


def test_the_release_grants_the_lock_to_a_waiter_past_the_handoff_time(redis_client: Any) -> None:
    holder = LockManager(redis_client, TYPES, prefix="t", handoff=0.001)
    lock = holder.acquire(SCOPE, "job", "r", "holder").lock
    _, _ = in_line(holder, "w1", "first")
    _, _ = in_line(holder, "w2", "second")
    wait_until(lambda: waited_ms(redis_client, holder) >= 2)
    holder.release(lock, "holder")
    # made by the release: the signal carries it, the scope says whom it was granted to
    signal = redis_client.lpop(holder.keys(SCOPE).waiter_signal("w1"))
    granted = holder.core.granted(
        signal,
        holder.core.acquire(
            SCOPE, "job", "r", "first", ttl=None, metadata=None, expires_at=None, request_id=None
        ),
    )
    assert granted is not None and granted.created
    got = granted.lock
    assert got.owner == "first" and got.fencing_token > lock.fencing_token
    assert dataclasses.replace(holder.get(got.id), as_of=got.as_of) == got
    assert record_of(redis_client, holder, got.fencing_token).split()[0] == "xwg"
    assert redis_client.hget(holder.keys(SCOPE).locks, f"!g{got.fencing_token}") is not None
    assert queue_length(redis_client, holder) == 1  # the second still waits
    # its release grants it on, and leaves nothing of the grant behind
    wait_until(lambda: waited_ms(redis_client, holder) >= 2)
    holder.release(got, "first")
    assert redis_client.hget(holder.keys(SCOPE).locks, f"!g{got.fencing_token}") is None
    second = holder.list(SCOPE).locks[0]
    assert second.owner == "second"
    assert record_of(redis_client, holder, second.fencing_token).split()[0] == "xg"
    redis_client.delete(holder.keys(SCOPE).waiter_signal("w2"))  # as if taken
    holder.release(second, "second")
    assert helper_keys(redis_client) == []
    assert redis_client.hlen(holder.keys(SCOPE).locks) == len(
        [
            f
            for f in redis_client.hkeys(holder.keys(SCOPE).locks)
            if (f.decode() if isinstance(f, bytes) else f).startswith("!")
        ]
    )


@pytest.mark.parametrize("taken", [False, True], ids=["in-its-signal", "popped"])
def test_a_grant_its_waiter_gives_up_is_released(redis_client: Any, taken: bool) -> None:
    holder = LockManager(redis_client, TYPES, prefix="t", handoff=0.001)
    lock = holder.acquire(SCOPE, "job", "r", "holder").lock
    _, leave = in_line(holder, "w1")
    _, _ = in_line(holder, "w2", "next")
    wait_until(lambda: waited_ms(redis_client, holder) >= 2)
    holder.release(lock, "holder")
    granted = holder.list(SCOPE).locks[0]
    assert granted.owner == "waiter"
    if taken:  # its BLPOP took the grant, but the waiter failed before it returned it
        assert redis_client.lpop(holder.keys(SCOPE).waiter_signal("w1")) is not None
    wait_until(lambda: waited_ms(redis_client, holder) >= 2)
    left = holder.core.check(holder._run(leave), leave).items
    assert [int(x) for x in left] == [granted.fencing_token]  # the grant it released
    # released, and granted on to the next in line
    locks = holder.list(SCOPE).locks
    assert [x.owner for x in locks] == ["next"]
    with pytest.raises(LockNotFound):
        holder.get(granted.id)


def test_a_grant_never_taken_lapses_and_the_next_waiter_gets_the_lock(redis_client: Any) -> None:
    holder = LockManager(redis_client, TYPES, prefix="t", handoff=0.001)
    lock = holder.acquire(SCOPE, "job", "r", "holder").lock
    _, _ = in_line(holder, "ghost-ticket", "ghost")  # it dies in line, its key still alive
    wait_until(lambda: waited_ms(redis_client, holder) >= 2)
    holder.release(lock, "holder")
    assert holder.list(SCOPE).locks[0].owner == "ghost"
    # nobody takes the grant from the signal: a second after it, it counts as expired
    nxt = LockManager(redis_client, TYPES, prefix="t", handoff=0.001, heartbeat=0.1)
    got = nxt.acquire(SCOPE, "job", "r", "next", wait=5)
    assert got.lock.owner == "next" and got.created
    assert [x.owner for x in holder.list(SCOPE).locks] == ["next"]
    nxt.release(got.lock, "next")
    assert helper_keys(redis_client) == []


def test_a_grant_is_announced_after_the_release_that_made_it(redis_client: Any) -> None:
    types = [LockType("job", default_ttl=10.0, events=True)]
    holder = LockManager(redis_client, types, prefix="t", handoff=0.001)
    lock = holder.acquire(SCOPE, "job", "r", "holder").lock
    in_line(holder, "w1", "waiter")
    wait_until(lambda: waited_ms(redis_client, holder) >= 2)
    holder.release(lock, "holder")
    granted = holder.list(SCOPE).locks[0]
    assert granted.owner == "waiter"
    entries = stream(redis_client, holder)
    # a consumer that follows the stream sees the holder go, then the waiter come
    assert [(e["event"], e["owner"], e["id"]) for e in entries] == [
        ("acquired", "holder", lock.id),
        ("released", "holder", lock.id),
        ("acquired", "waiter", granted.id),
    ]
    # the same where the holder expires: the waiter's next try finds it gone and is
    # granted the lock in that call
    holder.release(granted, "waiter")
    brief = holder.acquire(SCOPE, "job", "r2", "holder", ttl=0.05).lock
    attempt, _ = in_line(holder, "w2", resource="r2")
    wait_until(lambda: server_ms(redis_client) > brief.expires_at * 1000 + 5)
    after = holder.core.acquired(holder._run(attempt), attempt).lock
    assert after.owner == "waiter"
    entries = stream(redis_client, holder)
    assert [(e["event"], e["owner"], e["id"]) for e in entries[-3:]] == [
        ("acquired", "holder", brief.id),
        ("expired", "holder", brief.id),
        ("acquired", "waiter", after.id),
    ]


def test_a_replaced_lock_hands_its_resource_on_without_sharing_a_token(redis_client: Any) -> None:
    holder = LockManager(redis_client, TYPES, prefix="t", handoff=0.001)
    first = holder.acquire(SCOPE, "gadget", "g1", "owner").lock
    attempt, _ = in_line(holder, "w1", type_="gadget", resource="g1")
    wait_until(lambda: waited_ms(redis_client, holder, "gadget:g1") >= 2)
    # the owner's next gadget replaces the first, whose waiter is next for g1
    second = holder.acquire(SCOPE, "gadget", "g2", "owner")
    assert second.replaced is not None and second.replaced.id == first.id
    got = holder.core.acquired(holder._run(attempt), attempt).lock
    assert got.owner == "waiter" and got.resource == "g1"
    assert got.fencing_token != second.lock.fencing_token
    assert {x.id for x in holder.list(SCOPE).locks} == {second.lock.id, got.id}
    assert holder.get(second.lock.id).resource == "g2"


def test_the_shortest_pause_still_ends_on_redis_6(real_server: Any) -> None:
    # Redis 6.2 reads a BLPOP timeout in whole ms, rounding down, and 0 is no timeout:
    # "0.001" (0.999... ms) blocked for good. A waiter's last pause, its deadline all but
    # passed, must still come back (the socket timeout bounds the test).
    client = real_server.client(socket_timeout=3)
    mgr = manager(client)
    call = mgr.core.acquire(
        SCOPE, "job", "r", "w", ttl=None, metadata=None, expires_at=None, request_id=None
    )
    waiter = Waiter(mgr, call, 0.000_001)
    assert waiter.remaining() < 0.001
    assert client.blpop([waiter.signal], timeout=waiter.pause()) is None
    client.close()


def test_a_timed_out_wait_leaves_nothing_behind(redis_client: Any) -> None:
    mgr = manager(redis_client)
    mgr.acquire(SCOPE, "job", "r", "holder")
    started = time.monotonic()
    with pytest.raises(LockConflict) as info:
        mgr.acquire(SCOPE, "job", "r", "waiter", wait=0.2)
    assert 0.2 <= time.monotonic() - started < 1.0
    assert info.value.holder.owner == "holder"
    assert helper_keys(redis_client) == []


def test_a_failed_wait_leaves_nothing_behind(
    redis_client: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    mgr = manager(redis_client)
    mgr.acquire(SCOPE, "job", "r", "holder")

    def interrupted(*args: Any, **kwargs: Any) -> Any:
        raise KeyboardInterrupt

    monkeypatch.setattr(mgr._scripts, "wait_signal", interrupted)
    with pytest.raises(KeyboardInterrupt):
        mgr.acquire(SCOPE, "job", "r", "waiter", wait=5)
    assert helper_keys(redis_client) == []


#: a direct waiter's ticket, and a shared one's (``m<waker id><hex>``: its signals are
#: also PUBLISHed on the waker's channel, which nobody hears once the process is gone)
GHOSTS = ["ghost-ticket", "m" + "0" * 12 + "f" * 24]


@pytest.mark.parametrize("ticket", GHOSTS, ids=["direct", "shared"])
def test_a_vanished_waiter_does_not_stall_the_others(make_client: Any, ticket: str) -> None:
    holder = manager(make_client(), heartbeat=0.1)
    lock = holder.acquire(SCOPE, "job", "r", "holder").lock
    # A waiter that joins the line, then dies: it never tries again.
    call = holder.core.acquire(
        SCOPE, "job", "r", "ghost", ttl=None, metadata=None, expires_at=None, request_id=None
    )
    # (alive long enough for the survivor to join behind it however slow the machine; its
    # life is cut short below, once both are in line: a 300 ms life could lapse first)
    ghost = holder.core.waiting(call, ticket, None, 30_000)
    with pytest.raises(LockConflict):
        holder.core.acquired(holder._run(ghost), ghost)
    survivor = manager(make_client(), heartbeat=0.1)
    got: list[float] = []
    thread = threading.Thread(
        target=lambda: (
            survivor.acquire(SCOPE, "job", "r", "survivor", wait=10),
            got.append(time.monotonic()),
        )
    )
    thread.start()
    wait_until(lambda: queue_length(holder.client, holder) == 2)
    alive = f"{holder.keys(SCOPE).base}a:{ticket}"
    assert holder.client.pexpire(alive, 1)  # the ghost's life lapses: it never tried again
    wait_until(lambda: not holder.client.exists(alive))
    released = time.monotonic()
    holder.release(lock, "holder")
    thread.join(10)
    assert got and got[0] - released < 2.0  # the ghost's turn lapsed; the survivor's came
    wait_until(lambda: helper_keys(holder.client) == [], timeout=3)


def test_a_killed_waiter_process_leaves_no_key_behind(real_server: Any) -> None:
    client = real_server.client()
    client.flushall()
    holder = manager(client, heartbeat=0.1)
    lock = holder.acquire(SCOPE, "job", "r", "holder").lock
    code = (
        "from lockcore import LockManager\n"
        "from tests.conftest import TYPES\n"
        "import redis\n"
        f"c = redis.Redis(unix_socket_path={str(real_server.socket_path)!r})\n"
        "LockManager(c, TYPES, prefix='t', heartbeat=5).acquire("
        f"{SCOPE!r}, 'job', 'r', 'doomed', wait=60)\n"
    )
    proc = subprocess.Popen([sys.executable, "-c", code])
    try:
        wait_until(lambda: queue_length(client, holder) == 1, timeout=10)
    finally:
        proc.kill()
        proc.wait()
    assert helper_keys(client) != []
    # Released while the dead waiter still counts as alive (15 s): granted to it ...
    wait_until(lambda: waited_ms(client, holder) >= 5)
    holder.release(lock, "holder")
    assert [x.owner for x in holder.list(SCOPE).locks] == ["doomed"]
    # ... which never takes it: a second later the next caller finds it lapsed
    got = holder.acquire(SCOPE, "job", "r", "next", wait=5).lock
    assert got.owner == "next"
    assert helper_keys(client) == []
    holder.release(got, "next")
    # and a dead waiter passed over (not alive any more) leaves its keys to expire
    lock = holder.acquire(SCOPE, "job", "r", "holder").lock
    proc = subprocess.Popen([sys.executable, "-c", code.replace("heartbeat=5", "heartbeat=0.1")])
    try:
        wait_until(lambda: queue_length(client, holder) == 1, timeout=10)
    finally:
        proc.kill()
        proc.wait()
    wait_until(lambda: not [k for k in helper_keys(client) if ":a:" in k], timeout=3)
    holder.release(lock, "holder")
    wait_until(lambda: helper_keys(client) == [], timeout=3)
    assert holder.acquire(SCOPE, "job", "r", "next", wait=2).lock.owner == "next"
    client.close()


def test_a_cancelled_wait_leaves_the_line_at_once(make_client: Any) -> None:
    holder = manager(make_client())
    holder.acquire(SCOPE, "job", "r", "holder")
    client = make_client()
    mgr = manager(client, heartbeat=0.05)
    calls = []

    def cancel() -> bool:
        calls.append(queue_length(client, mgr))
        return len(calls) >= 2

    with pytest.raises(WaitCancelled):
        mgr.acquire(SCOPE, "job", "r", "waiter", wait=30, cancel=cancel)
    assert calls == [1, 1]  # asked between waits, while in line
    assert helper_keys(client) == []
    assert holder.get(holder.list(SCOPE).locks[0].id).owner == "holder"
