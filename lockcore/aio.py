"""lockcore on ``redis.asyncio``: the same API, awaitable, safe under task cancellation.

    mgr = AsyncLockManager(redis.asyncio.Redis(...), types)
    result = await mgr.acquire("billing", "job", "invoice-7", "worker-1", wait=10)
    async with mgr.hold("billing", "job", "invoice-7", "worker-1", ttl=30) as held:
        ...

Cancellation: a script call that was sent always completes (it is shielded); if the task
was cancelled meanwhile, a lock it created is released, a release still happens, and a
waiter leaves its line. No key is left that nobody owns. ``await drain()`` waits for such
clean-ups (before closing the client at shutdown).
"""

from __future__ import annotations

import asyncio
import builtins
import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable, Mapping, Sequence
from types import TracebackType
from typing import Any, TypeVar

from .connect import connect_async
from .exceptions import LockConflict, LockError, LockNotFound, LockNotOwned
from .hold import Lease, LockLost, check_at_risk, lost_error
from .manager import Common, Waiter
from .models import AcquireResult, Lock, LockPage, LockType, ScopeStats
from .scripts import Call, _ms
from .waking import AsyncWaker

T = TypeVar("T")
logger = logging.getLogger(__name__)
_BACKGROUND: set[asyncio.Task[Any]] = set()


def _in_background(coro: Awaitable[Any]) -> None:
    _track(asyncio.ensure_future(coro))


def _track(task: asyncio.Future[Any]) -> None:
    _BACKGROUND.add(task)  # type: ignore[arg-type]
    task.add_done_callback(_BACKGROUND.discard)


async def drain() -> None:
    """Wait until the clean-ups of cancelled calls are done (a script still in flight, the
    release of a lock it created). Await it before closing the client at shutdown."""
    while _BACKGROUND:
        await asyncio.gather(*list(_BACKGROUND), return_exceptions=True)


def _raise_if_cancelled(cause: BaseException | None = None) -> None:
    """Raise CancelledError if this task was cancelled, even when the cancellation was
    swallowed on its way (some redis-py versions lose a cancel that lands in a blocking
    read: the call returns, or fails, instead of raising it). Python 3.11+ can tell."""
    task = asyncio.current_task()
    cancelling = getattr(task, "cancelling", None)
    if cancelling is not None and cancelling():
        raise asyncio.CancelledError from cause


async def _shielded(
    call: Awaitable[T], on_cancel: Callable[[T], Awaitable[Any]] | None = None
) -> T:
    """Run a call to completion even if the awaiting task is cancelled; then, if it was,
    hand the call's result to ``on_cancel`` (to undo it) in the background."""
    task = asyncio.ensure_future(call)
    try:
        return await asyncio.shield(task)
    except asyncio.CancelledError:
        _track(task)
        if on_cancel is not None:

            def undo(done: asyncio.Future[T]) -> None:
                if not done.cancelled() and done.exception() is None:
                    _in_background(on_cancel(done.result()))

            task.add_done_callback(undo)
        raise


async def _interruptible(call: Awaitable[T]) -> T:
    """Await a blocking call so that a cancel of the awaiting task always wins, at once,
    whatever the client library does with a cancel that lands in its read (redis-py 8.1
    can swallow it there, go on reading, and even clear the task's cancel request). The
    call runs as a task of its own, which the cancel stops waiting for, then cancels; a
    result it still brings (a grant) is dropped: the waiter's leave releases it."""
    task = asyncio.ensure_future(call)
    try:
        return await asyncio.shield(task)
    except asyncio.CancelledError:
        task.cancel()
        _track(task)
        raise


class AsyncLockManager(Common):
    """The asyncio sibling of LockManager, for ``redis.asyncio`` clients (``Redis``,
    ``RedisCluster``): the same methods, awaitable, over the same core."""

    @classmethod
    async def from_url(
        cls,
        url: str | None,
        types: Iterable[LockType] | Mapping[str, LockType],
        *,
        data_dir: str | None = None,
        **options: Any,
    ) -> AsyncLockManager:
        """A manager on the Redis at ``url`` with an asyncio client (see
        ``lockcore.connect``); ``await close()`` releases what it opened."""
        connection = await asyncio.to_thread(connect_async, url, data_dir=data_dir)
        manager = cls(connection.client, types, **options)
        manager.connection = connection
        return manager

    async def close(self) -> None:
        if self._waker is not None:
            await self._waker.close()
        if self.connection is not None:
            connection, self.connection = self.connection, None
            await connection.client.aclose()
            await asyncio.to_thread(connection.close_servers)

    async def load_scripts(self) -> list[str]:
        for text in self._scripts.sources():
            await self.client.script_load(text)
        await self._scripts.load_library_async()
        return list(self._scripts._scripts)

    async def _run(self, call: Call) -> Any:
        return await self._scripts.run(call)

    async def acquire(
        self,
        scope: str,
        type: str,
        resource: str,
        owner: str,
        *,
        ttl: float | None = None,
        metadata: Mapping[str, str] | None = None,
        expires_at: float | None = None,
        wait: float | None = None,
        request_id: str | None = None,
        durable: bool | None = None,
        shared: bool = False,
    ) -> AcquireResult:
        """As ``LockManager.acquire``; a cancelled task is its ``cancel``."""
        if self._durable(durable, type):
            self._scripts.check_durable_async()  # before any lock is made
        result = await self._take(
            scope,
            type,
            resource,
            owner,
            ttl=ttl,
            metadata=metadata,
            expires_at=expires_at,
            wait=wait,
            request_id=request_id,
            shared=shared,
        )
        if self._durable(durable, result.lock.type):
            try:
                acked = await _interruptible(
                    self._scripts.confirm_async(
                        self.keys(scope).locks, self.durable_replicas, _ms(self.durable_timeout)
                    )
                )
            except BaseException:  # cancelled (or failed) before it was confirmed
                if result.created:
                    _in_background(self._release_quietly(result.lock, owner))
                raise
            error = self._not_durable(acked, "the acquire", result.lock)
            if error is not None:
                if result.created:
                    await _shielded(self._release_quietly(result.lock, owner))
                raise error
        return result

    async def acquire_all(
        self,
        scope: str,
        type: str,
        resources: Sequence[str],
        owner: str,
        *,
        ttl: float | None = None,
        metadata: Mapping[str, str] | None = None,
    ) -> list[AcquireResult]:
        """As ``LockManager.acquire_all``."""
        call = self.core.acquire_all(scope, type, resources, owner, ttl=ttl, metadata=metadata)
        return self.core.acquired_all(await self._run(call), call, self.expired_noticed)

    def hold_all(
        self,
        scope: str,
        type: str,
        resources: Sequence[str],
        owner: str,
        *,
        ttl: float = 30.0,
        metadata: Mapping[str, str] | None = None,
        on_lost: Callable[[AsyncHeld], Any] | None = None,
    ) -> AsyncHoldAll:
        """As ``LockManager.hold_all``: ``async with amgr.hold_all(...) as held``."""
        return AsyncHoldAll(self, (scope, type, list(resources), owner), ttl, metadata, on_lost)

    async def release_all(self, locks: Sequence[Lock], owner: str, *, force: bool = False) -> int:
        """As ``LockManager.release_all``."""
        if not locks:
            return 0
        call = self.core.release_all(locks[0].scope, locks, owner, force)
        return self.core.released_all(await self._run(call), call)

    async def _release_quietly(self, lock: Lock, owner: str) -> None:
        try:
            await self.release(lock, owner, durable=False)
        except LockError:  # gone already: nothing to undo
            pass

    async def _take(
        self,
        scope: str,
        type: str,
        resource: str,
        owner: str,
        *,
        ttl: float | None,
        metadata: Mapping[str, str] | None,
        expires_at: float | None,
        wait: float | None,
        request_id: str | None,
        shared: bool = False,
    ) -> AcquireResult:
        call = self.core.acquire(
            scope,
            type,
            resource,
            owner,
            ttl=ttl,
            metadata=metadata,
            expires_at=expires_at,
            request_id=request_id,
            shared=shared,
        )

        async def undo(raw: Any) -> None:
            try:
                result = self.core.acquired(raw, call)
            except LockError:
                return
            if result.created:
                await self.release(result.lock, owner)

        if not wait:
            raw = await _shielded(self._run(call), undo)
            return self.core.acquired(raw, call, self.expired_noticed)
        # The first try already carries the ticket: a conflict puts the caller in line in
        # the same call (a free lock is taken as by a plain acquire).
        waiter = Waiter(self, call, wait, self.waker())
        waker = waiter.waker
        woken = None
        try:
            if waker is not None:
                woken = await waker.enlist(waiter.ticket)
                _raise_if_cancelled()
            while True:
                attempt = waiter.call()
                if waker is None:
                    raw = await _shielded(self._run(attempt), undo)
                else:
                    async with waker.calls:
                        raw = await _shielded(self._run(attempt), undo)
                try:
                    result = self.core.acquired(raw, attempt, self.expired_noticed)
                    waiter.ended("acquired")
                    return result
                except LockConflict as conflict:
                    waiter.conflicted(conflict)
                    if waiter.remaining() <= 0:
                        waiter.ended("timeout")
                        raise
                if waker is None or woken is None:
                    signal = await _interruptible(
                        self.client.blpop([waiter.signal], timeout=waiter.pause())
                    )
                    got = None if signal is None else signal[1]
                else:
                    # Woken by the waker (its ticket was announced), or a heartbeat: either
                    # way take the signal (a grant is the lock), then try again.
                    try:
                        await asyncio.wait_for(woken.wait(), waiter.pause())
                    except asyncio.TimeoutError:
                        pass
                    _raise_if_cancelled()  # (3.11's wait_for drops a cancel that meets a wake)
                    woken.clear()
                    async with waker.calls:
                        got = await _interruptible(self.client.lpop(waiter.signal))
                if got is not None:
                    granted = self.core.granted(got, call)
                    if granted is not None:
                        waiter.ended("acquired")
                        return granted
        except BaseException as exc:
            if isinstance(exc, asyncio.CancelledError):
                waiter.ended("cancelled")
            await _shielded(self._leave_quietly(waiter))
            if not isinstance(exc, asyncio.CancelledError):
                _raise_if_cancelled(exc)
            raise
        finally:
            waiter.done()

    def waker(self) -> AsyncWaker | None:
        """The waker of this manager's waiters beyond ``direct_waiters`` (see
        ``LockManager.waker``)."""
        if self._waker is None and hasattr(self.client, "pubsub"):
            self._waker = AsyncWaker(self.client, self.prefix, self.direct_waiters)
        return self._waker  # type: ignore[no-any-return]

    async def _leave_quietly(self, waiter: Waiter) -> None:
        try:
            await self._run(waiter.leave_call)
        except Exception:  # noqa: BLE001 - the keys' own expiry cleans up
            pass

    async def requested(self, scope: str, request_id: str) -> str | None:
        raw = await _interruptible(self.client.get(self.core.requested_key(scope, request_id)))
        return None if raw is None else self.core.requested_id(scope, raw)

    async def scope_of(self, lock_id: str) -> str:
        return (await self.get(lock_id)).scope

    async def release(
        self,
        lock: str | Lock,
        owner: str,
        *,
        force: bool = False,
        scope: str | None = None,
        scope_prefix: str | None = None,
        durable: bool | None = None,
    ) -> Lock:
        call = self.core.release(lock, owner, force, scope, scope_prefix)
        raw = await _shielded(self._run(call))
        released = self.core.one(raw, call, self.expired_noticed)
        await self._confirm(durable, "the release", released)
        return released

    async def _confirm(self, durable: bool | None, what: str, lock: Lock) -> None:
        """For a durable change: wait for the replicas, or raise LockNotDurable."""
        if self._durable(durable, lock.type):
            acked = await _interruptible(
                self._scripts.confirm_async(
                    self.keys(lock.scope).locks, self.durable_replicas, _ms(self.durable_timeout)
                )
            )
            error = self._not_durable(acked, what, lock)
            if error is not None:
                raise error

    async def refresh(
        self,
        lock: str | Lock,
        owner: str,
        ttl: float | None = None,
        *,
        force: bool = False,
        expires_at: float | None = None,
        metadata: Mapping[str, str | None] | None = None,
        replace_metadata: bool = False,
        durable: bool | None = None,
    ) -> Lock:
        call = self.core.refresh(lock, owner, ttl, force, expires_at, metadata, replace_metadata)
        raw = await _shielded(self._run(call))
        refreshed = self.core.one(raw, call, self.expired_noticed)
        await self._confirm(durable, "the refresh", refreshed)
        return refreshed

    async def get(self, lock_id: str) -> Lock:
        call = self.core.get(lock_id)
        return self.core.one(await _interruptible(self._run(call)), call)

    async def list(
        self,
        scope: str,
        *,
        owner: str | None = None,
        type: str | None = None,
        resource: str | None = None,
        cursor: str | None = None,
        limit: int = 100,
    ) -> LockPage:
        call = self.core.list(
            scope, owner=owner, type=type, resource=resource, cursor=cursor, limit=limit
        )
        return self.core.page(await _interruptible(self._run(call)), call)

    async def scope_stats(self, scope: str, *, take_expired: bool = False) -> ScopeStats:
        """As ``LockManager.scope_stats``."""
        call = self.core.stats(scope, take_expired)
        raw = await _shielded(self._run(call))
        return self.core.scope_stats(raw, call, self.expired_noticed)

    async def scopes_stats(
        self, scopes: Iterable[str], *, batch: int = 100, take_expired: bool = False
    ) -> dict[str, ScopeStats]:
        """As ``LockManager.scopes_stats``: ``batch`` calls at a time, concurrently."""
        out: dict[str, ScopeStats] = {}
        names = list(dict.fromkeys(scopes))
        for start in range(0, len(names), batch):
            chunk = names[start : start + batch]
            found = await asyncio.gather(
                *(self.scope_stats(s, take_expired=take_expired) for s in chunk)
            )
            out.update(zip(chunk, found, strict=True))
        return out

    async def list_many(
        self, queries: Sequence[tuple[str, Mapping[str, Any]]], *, limit: int = 100
    ) -> builtins.list[LockPage]:
        """As ``LockManager.list_many``: the calls sent concurrently."""
        return list(
            await asyncio.gather(
                *(self.list(scope, limit=limit, **filters) for scope, filters in queries)
            )
        )

    async def count_many(self, scopes: Sequence[str]) -> builtins.list[int]:
        """As ``LockManager.count_many``: the calls sent concurrently."""
        return list(await asyncio.gather(*(self.count(scope, multi=True) for scope in scopes)))

    async def iter_locks(self, scope: str, **filters: Any) -> AsyncIterator[Lock]:
        cursor = None
        while True:
            page = await self.list(scope, cursor=cursor, **filters)
            for lock in page.locks:
                yield lock
            if page.cursor is None:
                return
            cursor = page.cursor

    async def count(self, scope: str, *, multi: bool = False, **filters: Any) -> int:
        if multi and not filters:
            call = self.core.count(scope)
            return int(self.core.check(await _interruptible(self._run(call)), call).items[0])
        return sum([1 async for _ in self.iter_locks(scope, limit=1000, **filters)])

    async def validate(self, scope: str, type: str, resource: str, fencing_token: int) -> bool:
        call = self.core.validate(scope, type, resource, fencing_token)
        try:
            self.core.check(await _interruptible(self._run(call)), call)
        except (LockNotFound, LockNotOwned):
            return False
        return True

    def hold(
        self,
        scope: str,
        type: str,
        resource: str,
        owner: str,
        *,
        ttl: float = 30.0,
        wait: float | None = None,
        metadata: Mapping[str, str] | None = None,
        on_lost: Callable[[AsyncHeld], Any] | None = None,
        at_risk: float = 0.5,
        on_at_risk: Callable[[AsyncHeld], Any] | None = None,
        shared: bool = False,
    ) -> AsyncHold:
        """As ``LockManager.hold``: ``async with amgr.hold(...) as held``."""
        return AsyncHold(
            self,
            (scope, type, resource, owner),
            ttl,
            wait,
            metadata,
            on_lost,
            check_at_risk(at_risk),
            on_at_risk,
            shared,
        )


class AsyncHeld(Lease):
    """A lock held by an ``async with`` block, renewed by a background task."""

    _log = logger

    def __init__(
        self,
        manager: AsyncLockManager,
        lock: Lock,
        ttl: float,
        on_lost: Callable[[AsyncHeld], Any] | None,
        at_risk: float = 0.5,
        on_at_risk: Callable[[AsyncHeld], Any] | None = None,
    ) -> None:
        self.manager = manager
        self.lock = lock
        self.ttl = ttl
        self.on_lost = on_lost
        self.at_risk_after = check_at_risk(at_risk)
        self.on_at_risk = on_at_risk
        self.lost: asyncio.Event = asyncio.Event()
        self.at_risk = asyncio.Event()
        self.reason = ""
        self._lease_end = time.monotonic() + ttl
        self._timer: asyncio.TimerHandle | None = None
        self._risk_timer: asyncio.TimerHandle | None = None
        self._task: asyncio.Task[None] | None = None
        self._stopped = False

    def _lost(self) -> bool:
        return self.lost.is_set()

    def _ended(self) -> bool:
        return self._stopped

    def _risk_flag(self) -> asyncio.Event:
        return self.at_risk

    def _arm(self) -> None:
        self._cancel_timers()
        loop = asyncio.get_running_loop()
        delay = max(0.0, self._lease_end - time.monotonic())
        self._timer = loop.call_later(delay, self._lose, "the lease ran out")
        self._risk_timer = loop.call_later(self._risk_delay(), self._endanger)

    def _lose(self, reason: str) -> None:
        if self._stopped or self.lost.is_set():
            return
        self.reason = reason
        self._report_lost()
        self.lost.set()
        if self.on_lost is not None:
            self.on_lost(self)

    async def _renew(self) -> None:
        # every ttl/3 from the last try's start, so a try that timed out is retried at once
        next_try = time.monotonic() + self.ttl / 3
        while True:
            await asyncio.sleep(max(0.0, next_try - time.monotonic()))
            sent = time.monotonic()
            next_try = sent + self.ttl / 3
            try:
                self.lock = await asyncio.wait_for(
                    self.manager.refresh(self.lock, self.lock.owner, self.ttl), self.call_timeout
                )
            except (LockNotFound, LockNotOwned) as exc:
                self._lose(f"the lock is gone: {exc}")
                return
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # noqa: BLE001 - unreachable: retry while the lease lasts
                self._renewal_failed(exc)
                if self.lost.is_set():  # the lease ran out meanwhile: nothing left to renew
                    return
                continue
            if not self._renewed(sent):
                return

    def start(self) -> AsyncHeld:
        self._arm()
        self._task = asyncio.ensure_future(self._renew())
        return self

    async def stop(self) -> None:
        """Stop renewing and wait for the renewer to end. A cancel of the caller is not
        taken for the renewer's own: it propagates (the renewer is cancelled anyway)."""
        self._stopped = True
        self._cancel_timers()
        task = self._task
        if task is None:
            return
        task.cancel()
        await asyncio.wait([task])
        if not task.cancelled() and task.exception() is not None:
            # not a Redis failure (those are retried): e.g. on_lost raised
            self._log.error(
                "lock %s on %r: the renewal task failed",
                self.lock.id,
                self.lock.resource,
                exc_info=task.exception(),
            )


class AsyncHold:
    def __init__(
        self,
        manager: AsyncLockManager,
        args: tuple[str, str, str, str],
        ttl: float,
        wait: float | None,
        metadata: Mapping[str, str] | None,
        on_lost: Callable[[AsyncHeld], Any] | None,
        at_risk: float = 0.5,
        on_at_risk: Callable[[AsyncHeld], Any] | None = None,
        shared: bool = False,
    ) -> None:
        self.manager = manager
        self.args = args
        self.shared = shared
        self.ttl = ttl
        self.wait = wait
        self.metadata = metadata
        self.on_lost = on_lost
        self.at_risk = at_risk
        self.on_at_risk = on_at_risk
        self.held: AsyncHeld | None = None

    async def __aenter__(self) -> AsyncHeld:
        result = await self.manager.acquire(
            *self.args, ttl=self.ttl, wait=self.wait, metadata=self.metadata, shared=self.shared
        )
        self.held = AsyncHeld(
            self.manager, result.lock, self.ttl, self.on_lost, self.at_risk, self.on_at_risk
        ).start()
        return self.held

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        held = self.held
        assert held is not None
        was_lost = held.lost.is_set()
        try:
            await held.stop()
        except asyncio.CancelledError:  # cancelled on the way out: the lock is let go still
            if not was_lost:
                _in_background(self.manager._release_quietly(held.lock, held.lock.owner))
            raise
        if not was_lost:
            try:
                await asyncio.wait_for(
                    self.manager.release(held.lock, held.lock.owner), held.call_timeout
                )
                held.released = True
                return
            except (LockNotFound, LockNotOwned) as gone:
                held._gone_at_release(gone)
            except asyncio.TimeoutError:  # Redis hangs: the lease ends it (at most ttl)
                held._release_unanswered()
                return
        raise LockLost(
            f"lock {held.lock.id} on {held.lock.resource!r} was lost: {held.reason}",
            holder=held.lock,
        ) from exc


class AsyncHoldAll:
    """The async context manager ``AsyncLockManager.hold_all`` returns (as ``HoldAll``)."""

    def __init__(
        self,
        manager: AsyncLockManager,
        args: tuple[str, str, list[str], str],
        ttl: float,
        metadata: Mapping[str, str] | None,
        on_lost: Callable[[AsyncHeld], Any] | None,
    ) -> None:
        self.manager = manager
        self.args = args
        self.ttl = ttl
        self.metadata = metadata
        self.on_lost = on_lost
        self.held: list[AsyncHeld] = []

    async def __aenter__(self) -> list[AsyncHeld]:
        results = await self.manager.acquire_all(*self.args, ttl=self.ttl, metadata=self.metadata)
        self.held = [
            AsyncHeld(self.manager, r.lock, self.ttl, self.on_lost).start() for r in results
        ]
        return self.held

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        try:
            for held in self.held:
                await held.stop()
        except asyncio.CancelledError:  # cancelled on the way out: the locks are let go still
            kept = [held for held in self.held if not held.lost.is_set()]
            if kept:
                locks = [h.lock for h in kept]
                _in_background(self.manager.release_all(locks, kept[0].lock.owner))
            raise
        kept = [held for held in self.held if not held.lost.is_set()]
        if kept:
            owner = kept[0].lock.owner
            try:
                await asyncio.wait_for(
                    self.manager.release_all([h.lock for h in kept], owner),
                    kept[0].call_timeout,
                )
                for held in kept:
                    held.released = True
            except asyncio.TimeoutError:  # Redis hangs: the leases end them (at most ttl)
                for held in kept:
                    held._release_unanswered()
        error = lost_error(self.held)
        if error is not None:
            raise error from exc
