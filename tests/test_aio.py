"""The asyncio API passes the same tests as the threaded one, and survives cancellation
at every await; on fakeredis, a real redis-server and a real Cluster."""

from __future__ import annotations

import asyncio
import os
import signal
import time
from collections.abc import Awaitable, Callable
from typing import Any

import pytest

from lockcore import AsyncLockManager, EmbeddedRedis, LockConflict, LockLost, LockNotFound
from lockcore.aio import drain

from .conftest import FUNCTIONS, TYPES
from .test_waiting import HELPER, script_calls

SCOPE = "jobs"


def run(make_async_client: Any, body: Callable[..., Awaitable[Any]]) -> Any:
    async def main() -> Any:
        clients: list[Any] = []

        def manager(heartbeat: float = 1.0) -> AsyncLockManager:
            client = make_async_client()
            clients.append(client)
            return AsyncLockManager(client, TYPES, prefix="t", heartbeat=heartbeat)

        try:
            return await body(manager)
        finally:
            await drain()
            for client in clients:
                await client.aclose()

    return asyncio.run(main())


async def helper_keys(mgr: AsyncLockManager) -> list[str]:
    from redis.asyncio.cluster import RedisCluster

    if isinstance(mgr.client, RedisCluster):
        keys = await mgr.client.keys(target_nodes=RedisCluster.PRIMARIES)
    else:
        keys = await mgr.client.keys("*")
    names = [k.decode() if isinstance(k, bytes) else k for k in keys]
    return [k for k in names if HELPER.search(k)]


async def queue_length(mgr: AsyncLockManager) -> int:
    return int(await mgr.client.llen(f"{mgr.keys(SCOPE).base}q:job:r"))


async def until(condition: Callable[[], Awaitable[bool]], timeout: float = 5.0) -> None:
    deadline = time.monotonic() + timeout
    while not await condition():
        assert time.monotonic() < deadline, "condition not met in time"
        await asyncio.sleep(0.005)


def test_acquire_conflict_release(make_async_client: Any) -> None:
    async def body(manager: Any) -> None:
        mgr = manager()
        lock = (await mgr.acquire(SCOPE, "job", "r", "a")).lock
        with pytest.raises(LockConflict):
            await mgr.acquire(SCOPE, "job", "r", "b")
        assert (await mgr.get(lock.id)).owner == "a"
        assert [lk.id for lk in (await mgr.list(SCOPE)).locks] == [lock.id]
        await mgr.release(lock.id, "a")
        with pytest.raises(LockNotFound):
            await mgr.get(lock.id)

    run(make_async_client, body)


def test_a_waiter_wakes_at_the_release_without_polling(make_async_client: Any) -> None:
    async def body(manager: Any) -> None:
        # (no sign-of-life try in the test's time, however slow the machine)
        holder, waiter = manager(), manager(heartbeat=30.0)
        lock = (await holder.acquire(SCOPE, "job", "r", "holder")).lock
        await waiter.list(SCOPE)  # its first call finds out whether the server has FCALL
        sent: list[str] = []
        original = waiter.client.execute_command

        async def counting(*args: Any, **kwargs: Any) -> Any:
            sent.append(str(args[0]))
            return await original(*args, **kwargs)

        waiter.client.execute_command = counting
        task = asyncio.ensure_future(waiter.acquire(SCOPE, "job", "r", "waiter", wait=30))
        # in line, on its signal, and past the hand-off time (so the release grants)
        await until(lambda: _in_line_past_handoff(holder, sent))
        await holder.release(lock, "holder")
        result = await task
        assert result.lock.owner == "waiter"
        # one try (which puts it in line), one blocking wait that the release ended with
        # the lock: no polling, and no second try (a wait ended any other way sends one)
        assert script_calls(sent) == ["script", "BLPOP"]
        assert await helper_keys(holder) == []

    run(make_async_client, body)


async def _in_line_past_handoff(mgr: AsyncLockManager, sent: list[str]) -> bool:
    """The first waiter sent its BLPOP and has waited over the hand-off time (5 ms), by
    the server's clock."""
    if "BLPOP" not in sent:
        return False
    base = mgr.keys(SCOPE).base
    ticket = await mgr.client.lindex(f"{base}q:job:r", 0)
    since = ticket and await mgr.client.get(f"{base}a:{_text(ticket)}")
    if not since:
        return False
    seconds, micros = await mgr.client.time()
    return int(seconds) * 1000 + int(micros) // 1000 - int(_text(since).split()[0]) > 5


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


async def _is(value: Awaitable[int], expected: int) -> bool:
    return await value == expected


def test_five_waiters_in_arrival_order(make_async_client: Any) -> None:
    async def body(manager: Any) -> None:
        holder = manager()
        lock = (await holder.acquire(SCOPE, "job", "r", "holder")).lock
        order: list[int] = []

        async def wait(n: int, mgr: AsyncLockManager) -> None:
            held = (await mgr.acquire(SCOPE, "job", "r", f"w{n}", wait=10)).lock
            order.append(n)
            await asyncio.sleep(0.02)
            await mgr.release(held, f"w{n}")

        tasks = []
        for n in range(5):
            tasks.append(asyncio.ensure_future(wait(n, manager())))
            await until(lambda n=n: _is(queue_length(holder), n + 1))
        await holder.release(lock, "holder")
        await asyncio.gather(*tasks)
        assert order == [0, 1, 2, 3, 4]
        assert await helper_keys(holder) == []

    run(make_async_client, body)


def test_a_cancelled_wait_leaves_nothing_behind(make_async_client: Any) -> None:
    async def body(manager: Any) -> None:
        mgr = manager()
        await mgr.acquire(SCOPE, "job", "r", "holder")
        task = asyncio.ensure_future(mgr.acquire(SCOPE, "job", "r", "waiter", wait=30))
        await until(lambda: _is(queue_length(mgr), 1))
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        await until(lambda: _none(helper_keys(mgr)), timeout=2)

    run(make_async_client, body)


def test_a_cancel_the_client_swallows_still_ends_the_wait(make_async_client: Any) -> None:
    """Some redis-py versions lose a cancel that lands in a blocking read: the read goes
    on, and the task's cancel request may even be cleared (``uncancel``). Here the
    client's BLPOP does exactly that, every time; 200 cancels, each landing while the
    waiter is in it, each end the wait with CancelledError and leave nothing behind."""

    async def body(manager: Any) -> None:
        holder, waiter = manager(), manager(heartbeat=0.05)
        await holder.acquire(SCOPE, "job", "r", "holder")
        reading = asyncio.Event()
        waiter.client.blpop = _swallowing(waiter.client.blpop, reading)
        for _ in range(200):
            reading.clear()
            # (a wait that outlives the cancel would end on its own: LockConflict)
            task = asyncio.ensure_future(waiter.acquire(SCOPE, "job", "r", "waiter", wait=3))
            await reading.wait()
            task.cancel()
            done, _ = await asyncio.wait([task], timeout=10)
            assert task in done and task.cancelled()
        await drain()
        assert await helper_keys(holder) == []
        assert [lk.owner for lk in (await holder.list(SCOPE)).locks] == ["holder"]

    run(make_async_client, body)


def _swallowing(
    call: Callable[..., Awaitable[Any]], entered: asyncio.Event, pause: float = 0.0
) -> Callable[..., Awaitable[Any]]:
    """``call`` as a client that loses cancels would make it: a cancel landing in it is
    swallowed (and the task's cancel request cleared, Python 3.11+), the call goes on."""

    async def swallowing(*args: Any, **kwargs: Any) -> Any:
        async def slow() -> Any:
            await asyncio.sleep(pause)
            return await call(*args, **kwargs)

        inner = asyncio.ensure_future(slow())
        entered.set()
        while True:
            try:
                return await asyncio.shield(inner)
            except asyncio.CancelledError:
                me = asyncio.current_task()
                if hasattr(me, "uncancel"):
                    me.uncancel()

    return swallowing


@pytest.mark.parametrize("read", ["get", "list", "count", "validate", "requested"])
def test_a_read_the_client_would_finish_is_cancelled_at_once(
    make_async_client: Any, read: str
) -> None:
    async def body(manager: Any) -> None:
        mgr = manager()
        lock = (await mgr.acquire(SCOPE, "job", "r", "a")).lock
        entered = asyncio.Event()
        mgr._scripts.run = _swallowing(mgr._scripts.run, entered, pause=0.2)
        mgr.client.get = _swallowing(mgr.client.get, entered, pause=0.2)
        calls = {
            "get": lambda: mgr.get(lock.id),
            "list": lambda: mgr.list(SCOPE),
            "count": lambda: mgr.count(SCOPE, multi=True),
            "validate": lambda: mgr.validate(SCOPE, "job", "r", lock.fencing_token),
            "requested": lambda: mgr.requested(SCOPE, "req-1"),
        }
        task = asyncio.ensure_future(calls[read]())
        await entered.wait()
        task.cancel()
        done, _ = await asyncio.wait([task], timeout=10)
        assert task in done and task.cancelled()

    run(make_async_client, body)


async def _none(keys: Awaitable[list[str]]) -> bool:
    return await keys == []


def test_a_timed_out_wait_leaves_nothing_behind(make_async_client: Any) -> None:
    async def body(manager: Any) -> None:
        mgr = manager()
        await mgr.acquire(SCOPE, "job", "r", "holder")
        with pytest.raises(LockConflict):
            await mgr.acquire(SCOPE, "job", "r", "waiter", wait=0.2)
        assert await helper_keys(mgr) == []

    run(make_async_client, body)


@pytest.mark.parametrize(
    "when", ["before it starts", "while its script runs", "once its script has run"]
)
def test_cancelling_an_acquire_in_flight_leaves_no_lock(make_async_client: Any, when: str) -> None:
    """A cancel at each point of an acquire (found by events, not by timing): the caller
    gets CancelledError, and a lock the script made is released, not left to nobody."""

    async def body(manager: Any) -> None:
        mgr = manager()
        real = mgr._scripts.run
        sent, ran = asyncio.Event(), asyncio.Event()

        async def run(call: Any) -> Any:
            sent.set()
            reply = await real(call)
            ran.set()
            return reply

        mgr._scripts.run = run
        task = asyncio.ensure_future(mgr.acquire(SCOPE, "job", "r", "worker"))
        if when == "while its script runs":
            await sent.wait()
        elif when == "once its script has run":
            await ran.wait()  # made the lock; the caller has not read the reply yet
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        await drain()
        assert sent.is_set() == (when != "before it starts")
        assert await _empty(mgr)
        assert (await mgr.acquire(SCOPE, "job", "r", "other")).created

    run(make_async_client, body)


async def _empty(mgr: AsyncLockManager) -> bool:
    return (await mgr.list(SCOPE)).locks == ()


def test_cancelling_a_release_in_flight_still_releases(make_async_client: Any) -> None:
    async def body(manager: Any) -> None:
        mgr = manager()
        lock = (await mgr.acquire(SCOPE, "job", "r", "worker")).lock
        task = asyncio.ensure_future(mgr.release(lock, "worker"))
        await asyncio.sleep(0)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        await drain()
        assert await _empty(mgr)

    run(make_async_client, body)


def test_renewal_keeps_a_short_lock_alive(make_async_client: Any) -> None:
    async def body(manager: Any) -> None:
        mgr = manager()
        # Three leases long; a lease of 1 s leaves the renewals room on a loaded machine
        # (0.2 s lost the lock there when the event loop stalled past it).
        async with mgr.hold(SCOPE, "job", "r", "worker", ttl=1.0) as held:
            first = held.lock
            for _ in range(15):
                await asyncio.sleep(0.2)
                with pytest.raises(LockConflict):
                    await mgr.acquire(SCOPE, "job", "r", "intruder")
            assert not held.lost.is_set() and held.lock.id == first.id
        with pytest.raises(LockNotFound):
            await mgr.get(first.id)

    run(make_async_client, body)


def test_leaving_as_a_renewal_lands_stops_the_renewals(make_async_client: Any) -> None:
    """The block is left just as a renewal's reply arrives: the stop's cancel reaches the
    renewal task while the refresh is already done. Python 3.11's ``asyncio.wait_for``
    then returns the refresh's result and drops the cancel; the renewer must still stop
    (it went on renewing, and leaving the block waited for it forever: seen once in CI)."""

    async def body(manager: Any) -> None:
        mgr = manager()
        original = mgr.refresh
        left: list[asyncio.Task[Any]] = []
        hold = mgr.hold(SCOPE, "job", "r", "worker", ttl=0.6)

        async def refresh_then_leave(*args: Any, **kwargs: Any) -> Any:
            result = await original(*args, **kwargs)
            if not left:  # the stop runs before the renewer hears that the refresh is done
                left.append(asyncio.ensure_future(hold.__aexit__(None, None, None)))
            return result

        mgr.refresh = refresh_then_leave
        held = await hold.__aenter__()

        async def leaving() -> bool:
            return bool(left)

        await until(leaving)
        await asyncio.wait_for(left[0], 10)  # before the fix: never done
        assert held.released is True
        with pytest.raises(LockNotFound):
            await mgr.get(held.lock.id)

    run(make_async_client, body)


def test_a_hold_cancelled_on_its_way_out_is_cancelled_and_lets_the_lock_go(
    make_async_client: Any,
) -> None:
    """A cancel that lands while the block waits for its renewer to stop is the caller's:
    it propagates (it was once taken for the renewer's own and dropped), and the lock is
    released all the same."""

    async def body(manager: Any) -> None:
        mgr = manager()
        for hold in (
            mgr.hold(SCOPE, "job", "r", "worker", ttl=30),
            mgr.hold_all(SCOPE, "job", ["r1", "r2"], "worker", ttl=30),
        ):
            await hold.__aenter__()
            leaving = asyncio.ensure_future(hold.__aexit__(None, None, None))
            await asyncio.sleep(0)  # it runs up to its wait for the renewer
            leaving.cancel()
            with pytest.raises(asyncio.CancelledError):
                await leaving
            await drain()
            assert (await mgr.list(SCOPE)).locks == ()

    run(make_async_client, body)


def test_an_on_lost_that_raises_is_logged_and_the_block_still_reports_the_loss(
    make_async_client: Any, caplog: pytest.LogCaptureFixture
) -> None:
    """The renewer finds the lock gone and calls ``on_lost``, which raises: the renewer
    ends with that error, leaving the block logs it and raises LockLost all the same."""

    def on_lost(held: Any) -> None:
        raise RuntimeError("the callback broke")

    async def body(manager: Any) -> None:
        mgr, admin = manager(), manager()
        with pytest.raises(LockLost):
            async with mgr.hold(SCOPE, "job", "r", "worker", ttl=0.6, on_lost=on_lost) as held:
                await admin.release(held.lock, "admin", force=True)
                await asyncio.wait_for(held.lost.wait(), 10)

    with caplog.at_level("ERROR", logger="lockcore.aio"):
        run(make_async_client, body)
    [failed] = [r for r in caplog.records if "renewal task failed" in r.getMessage()]
    assert failed.exc_info and "the callback broke" in str(failed.exc_info[1])


def test_a_paused_holder_loses_the_lock(
    make_async_client: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    async def body(manager: Any) -> None:
        mgr = manager()
        original = mgr.refresh

        async def paused(*args: Any, **kwargs: Any) -> Any:
            await asyncio.sleep(0.6)
            return await original(*args, **kwargs)

        monkeypatch.setattr(mgr, "refresh", paused)
        lost: list[str] = []
        with pytest.raises(LockLost):
            async with mgr.hold(
                SCOPE, "job", "r", "worker", ttl=0.2, on_lost=lambda held: lost.append(held.reason)
            ) as held:
                await asyncio.wait_for(held.lost.wait(), 2)
                taken = (await mgr.acquire(SCOPE, "job", "r", "successor")).lock
                assert taken.fencing_token > held.fencing_token
        assert lost == ["the lease ran out"]
        assert (await mgr.get(taken.id)).owner == "successor"

    run(make_async_client, body)


def test_a_stale_token_is_refused(make_async_client: Any) -> None:
    async def body(manager: Any) -> None:
        mgr = manager()
        old = (await mgr.acquire(SCOPE, "job", "r", "a", ttl=0.05)).lock
        assert await mgr.validate(SCOPE, "job", "r", old.fencing_token)
        await asyncio.sleep(0.1)
        new = (await mgr.acquire(SCOPE, "job", "r", "b")).lock
        assert not await mgr.validate(SCOPE, "job", "r", old.fencing_token)
        assert await mgr.validate(SCOPE, "job", "r", new.fencing_token)

    run(make_async_client, body)


def test_every_public_method_works_on_the_async_manager(make_async_client: Any) -> None:
    """The sync and async managers are siblings: what the sync one offers, the async one
    offers awaitably (iter_locks, load_scripts, requested, count, scope_of, refresh ...)."""

    async def body(manager: Any) -> None:
        mgr = manager()
        loaded = await mgr.load_scripts()
        assert "acquire" in loaded and "release" in loaded
        # Loading finds out whether the server has FUNCTION (Redis 7, fakeredis).
        assert mgr._scripts.functions is (make_async_client.backend in FUNCTIONS)
        first = await mgr.acquire(SCOPE, "job", "r1", "a", request_id="req-1")
        await mgr.acquire(SCOPE, "job", "r2", "a")
        assert await mgr.requested(SCOPE, "req-1") == first.lock.id
        assert await mgr.requested(SCOPE, "req-2") is None
        assert await mgr.scope_of(first.lock.id) == SCOPE
        ids = [lock.id async for lock in mgr.iter_locks(SCOPE, limit=1)]
        assert sorted(ids) == sorted([first.lock.id, (await mgr.list(SCOPE)).locks[1].id])
        assert await mgr.count(SCOPE) == 2
        refreshed = await mgr.refresh(first.lock.id, "a", 60, metadata={"k": "v"})
        assert dict(refreshed.metadata) == {"k": "v"}
        assert await mgr.validate(SCOPE, "job", "r1", first.lock.fencing_token)
        released = await mgr.release(first.lock.id, "a")
        assert released.id == first.lock.id
        with pytest.raises(LockNotFound):
            await mgr.get(first.lock.id)

    run(make_async_client, body)


def test_the_async_manager_from_a_url_has_an_async_client(real_server: Any) -> None:
    async def main() -> None:
        mgr = await AsyncLockManager.from_url(real_server.url, TYPES, prefix="u")
        try:
            lock = (await mgr.acquire(SCOPE, "job", "r", "a")).lock
            assert (await mgr.get(lock.id)).owner == "a"
            await mgr.release(lock, "a")
        finally:
            await mgr.close()

    asyncio.run(main())


def test_the_function_library_on_redis_7(make_async_client: Any) -> None:
    """The async manager calls the scripts as a FUNCTION library where asked (Redis 7,
    fakeredis), loading it when the server lost it; EVALSHA elsewhere."""

    async def body(manager: Any) -> None:
        mgr = manager()
        first = (await mgr.acquire(SCOPE, "job", "r1", "a")).lock
        functions = make_async_client.backend in FUNCTIONS
        assert mgr._scripts.functions is (True if functions else False)
        if functions:
            await mgr.client.function_flush()
        second = (await mgr.acquire(SCOPE, "job", "r2", "a")).lock
        assert second.fencing_token > first.fencing_token
        await mgr.release(first, "a")
        await mgr.release(second, "a")

    run(make_async_client, body)


def test_a_cancel_that_lands_with_a_grant_releases_it(make_async_client: Any) -> None:
    """A cancel that arrives while BLPOP returns the lock a release granted (some
    redis-py versions swallow it there): the wait raises CancelledError and the grant is
    released, not left held by nobody."""

    async def main() -> None:
        clients = [make_async_client(), make_async_client()]
        holder = AsyncLockManager(clients[0], TYPES, prefix="t", handoff=0.0)
        waiter = AsyncLockManager(clients[1], TYPES, prefix="t", handoff=0.0)
        try:
            lock = (await holder.acquire(SCOPE, "job", "r", "holder")).lock
            real = waiter.client.blpop
            got: list[Any] = []

            async def blpop_then_cancelled(*args: Any, **kwargs: Any) -> Any:
                signal = await real(*args, **kwargs)
                if signal is not None:
                    got.append(signal)
                    task.cancel()  # lands now; this call still returns the grant
                return signal

            waiter.client.blpop = blpop_then_cancelled  # type: ignore[method-assign]
            task = asyncio.ensure_future(waiter.acquire(SCOPE, "job", "r", "waiter", wait=5))
            await until(lambda: _is(queue_length(holder), 1))
            await holder.release(lock, "holder")
            with pytest.raises(asyncio.CancelledError):
                await task
            assert got and (
                got[0][1] if isinstance(got[0][1], str) else got[0][1].decode()
            ).startswith("g ")  # it was a grant
            await drain()
            assert (await holder.list(SCOPE)).locks == ()  # and it was released
            assert await helper_keys(holder) == []
        finally:
            await drain()
            for client in clients:
                await client.aclose()

    asyncio.run(main())


def test_an_async_hold_is_warned_and_left_while_redis_hangs(server: EmbeddedRedis) -> None:
    """Redis paused under an ``async with`` hold, the client waiting for it as long as it
    takes: the holder hears "at risk" before "lost", and leaving the block (once lost,
    and once only at risk) does not wait for Redis."""
    import redis.asyncio

    assert server.process is not None
    pid = server.process.pid

    async def main() -> None:
        client = redis.asyncio.Redis(unix_socket_path=str(server.socket_path), socket_timeout=None)
        mgr = AsyncLockManager(client, TYPES, prefix="t")
        heard: list[str] = []
        try:
            lost = mgr.hold(
                SCOPE,
                "job",
                "r1",
                "worker",
                ttl=1.5,
                on_at_risk=lambda held: heard.append("at risk"),
                on_lost=lambda held: heard.append("lost"),
            )
            held = await lost.__aenter__()
            risky = mgr.hold(SCOPE, "job", "r2", "worker", ttl=6)
            other = await risky.__aenter__()
            os.kill(pid, signal.SIGSTOP)
            try:
                await asyncio.wait_for(held.lost.wait(), 30)
                assert heard == ["at risk", "lost"] and held.at_risk.is_set()
                with pytest.raises(LockLost):
                    await asyncio.wait_for(lost.__aexit__(None, None, None), 30)
                await asyncio.wait_for(risky.__aexit__(None, None, None), 30)
                assert other.released is False and not other.lost.is_set()
            finally:
                os.kill(pid, signal.SIGCONT)
        finally:
            await drain()
            await client.aclose()

    asyncio.run(main())
