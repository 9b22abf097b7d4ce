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
import time
from collections.abc import Awaitable, Callable, Mapping
from types import TracebackType
from typing import Any, TypeVar

from .exceptions import LockConflict, LockNotFound, LockNotOwned
from .hold import Lease, LockLost
from .keys import directory_key, slot_of_id
from .manager import LockManager, Waiter, _text, check_request_id
from .models import AcquireResult, Lock, LockPage
from .scripts import check

T = TypeVar("T")
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


async def _shielded(call: Awaitable[T], on_cancel: Callable[[T], Awaitable[Any]] | None = None
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


class AsyncLockManager(LockManager):
    """LockManager for ``redis.asyncio`` clients (``Redis``, ``RedisCluster``)."""

    async def acquire(  # type: ignore[override]
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
    ) -> AcquireResult:
        """As ``LockManager.acquire``; a cancelled task is its ``cancel``."""
        request = self._acquire_request(scope, type, resource, owner, ttl, metadata,
                                        expires_at)
        if request_id is not None:
            request.update(request_id=check_request_id(request_id), request_ms=self.request_ms)

        async def undo(raw: Any) -> None:
            try:
                result = self._acquire_result(raw, scope)
            except LockConflict:
                return
            if result.created:
                await self.release(result.lock, owner)

        if not wait:
            raw = await _shielded(self._scripts.acquire(**request), undo)
            return self._acquire_result(raw, scope)
        waiter = Waiter(self, request, wait)
        try:
            while True:
                raw = await _shielded(self._scripts.acquire(**request, **waiter.args()), undo)
                try:
                    return self._acquire_result(raw, scope)
                except LockConflict:
                    if waiter.remaining() <= 0:
                        raise
                await self.client.blpop([waiter.signal], timeout=waiter.pause())
                _raise_if_cancelled()
        except BaseException as exc:
            await _shielded(self._leave_quietly(waiter))
            if not isinstance(exc, asyncio.CancelledError):
                _raise_if_cancelled(exc)
            raise

    async def _leave_quietly(self, waiter: Waiter) -> None:
        try:
            await self._scripts.leave(**waiter.leave_args())
        except Exception:  # noqa: BLE001 - the keys' own expiry cleans up
            pass

    async def scope_of(self, lock_id: str) -> str:  # type: ignore[override]
        slot = slot_of_id(lock_id)
        if slot is None:
            raise LockNotFound(f"{lock_id!r} is not a lock id", lock_id=str(lock_id))
        scope = await self.client.hget(directory_key(self.prefix, slot), lock_id)
        if scope is None:
            raise LockNotFound(f"no live lock {lock_id}", lock_id=lock_id)
        return _text(scope)

    async def _locate_async(self, lock: str | Lock) -> tuple[str, str]:
        if isinstance(lock, Lock):
            return lock.id, lock.scope
        return lock, await self.scope_of(lock)

    async def release(self, lock: str | Lock, owner: str, *,  # type: ignore[override]
                      force: bool = False) -> Lock:
        lock_id, scope = await self._locate_async(lock)
        raw = await _shielded(self._scripts.release(self.keys(scope), scope, lock_id, owner,
                                                    force))
        reply = check(raw, "release", scope, lock_id, self.expired_noticed)
        return Lock.from_record(reply.items[0], scope, reply.now_ms)

    async def refresh(self, lock: str | Lock, owner: str,  # type: ignore[override]
                      ttl: float | None = None, *, force: bool = False,
                      expires_at: float | None = None,
                      metadata: Mapping[str, str | None] | None = None,
                      replace_metadata: bool = False) -> Lock:
        lock_id, scope = await self._locate_async(lock)
        args = self._refresh_args(ttl, expires_at, metadata)
        raw = await _shielded(self._scripts.refresh(
            self.keys(scope), scope, lock_id, owner, args["ttl_ms"], force,
            args["expires_at_ms"], args["metadata"], replace_metadata))
        reply = check(raw, "refresh", scope, lock_id, self.expired_noticed)
        return Lock.from_record(reply.items[0], scope, reply.now_ms)

    async def get(self, lock_id: str) -> Lock:  # type: ignore[override]
        scope = await self.scope_of(lock_id)
        raw = await self._scripts.get(self.keys(scope), scope, lock_id)
        reply = check(raw, "get", scope, lock_id, self.expired_noticed)
        return Lock.from_record(reply.items[0], scope, reply.now_ms)

    async def list(self, scope: str, **filters: Any) -> LockPage:  # type: ignore[override]
        return self._list_result(await self._scripts.list(**self._list_request(scope,
                                                                               **filters)),
                                 scope)

    async def count(self, scope: str) -> int:  # type: ignore[override]
        reply = check(await self._scripts.count(self.keys(scope), scope), "count", scope)
        return int(reply.items[0])

    async def validate(self, scope: str, type: str, resource: str,  # type: ignore[override]
                       fencing_token: int) -> bool:
        keys = self.keys(scope)
        try:
            check(await self._scripts.validate(keys, scope, type, resource,
                                               int(fencing_token)), "validate", scope)
        except (LockNotFound, LockNotOwned):
            return False
        return True

    def hold(self, scope: str, type: str, resource: str,  # type: ignore[override]
             owner: str, *, ttl: float = 30.0, wait: float | None = None,
             metadata: Mapping[str, str] | None = None,
             on_lost: Callable[[AsyncHeld], Any] | None = None) -> AsyncHold:
        return AsyncHold(self, (scope, type, resource, owner), ttl, wait, metadata, on_lost)


class AsyncHeld(Lease):
    """A lock held by an ``async with`` block, renewed by a background task."""

    def __init__(self, manager: AsyncLockManager, lock: Lock, ttl: float,
                 on_lost: Callable[[AsyncHeld], Any] | None) -> None:
        self.manager = manager
        self.lock = lock
        self.ttl = ttl
        self.on_lost = on_lost
        self.lost = asyncio.Event()
        self.reason = ""
        self._lease_end = time.monotonic() + ttl
        self._timer: asyncio.TimerHandle | None = None
        self._task: asyncio.Task[None] | None = None
        self._stopped = False

    def _lost(self) -> bool:
        return self.lost.is_set()

    def _arm(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
        delay = max(0.0, self._lease_end - time.monotonic())
        self._timer = asyncio.get_running_loop().call_later(delay, self._lose,
                                                            "the lease ran out")

    def _lose(self, reason: str) -> None:
        if self._stopped or self.lost.is_set():
            return
        self.reason = reason
        self.lost.set()
        if self.on_lost is not None:
            self.on_lost(self)

    async def _renew(self) -> None:
        while True:
            await asyncio.sleep(self.ttl / 3)
            sent = time.monotonic()
            try:
                self.lock = await self.manager.refresh(self.lock, self.lock.owner, self.ttl)
            except (LockNotFound, LockNotOwned) as exc:
                self._lose(f"the lock is gone: {exc}")
                return
            except asyncio.CancelledError:
                raise
            except Exception:  # noqa: BLE001 - unreachable: retry while the lease lasts
                continue
            if not self._renewed(sent):
                return

    def start(self) -> AsyncHeld:
        self._arm()
        self._task = asyncio.ensure_future(self._renew())
        return self

    async def stop(self) -> None:
        self._stopped = True
        if self._timer is not None:
            self._timer.cancel()
        if self._task is not None:
            self._task.cancel()
            try:
                await self._task
            except (asyncio.CancelledError, Exception):  # noqa: BLE001
                pass


class AsyncHold:
    def __init__(self, manager: AsyncLockManager, args: tuple[str, str, str, str],
                 ttl: float, wait: float | None, metadata: Mapping[str, str] | None,
                 on_lost: Callable[[AsyncHeld], Any] | None) -> None:
        self.manager = manager
        self.args = args
        self.ttl = ttl
        self.wait = wait
        self.metadata = metadata
        self.on_lost = on_lost
        self.held: AsyncHeld | None = None

    async def __aenter__(self) -> AsyncHeld:
        result = await self.manager.acquire(*self.args, ttl=self.ttl, wait=self.wait,
                                            metadata=self.metadata)
        self.held = AsyncHeld(self.manager, result.lock, self.ttl, self.on_lost).start()
        return self.held

    async def __aexit__(self, exc_type: type[BaseException] | None,
                        exc: BaseException | None, tb: TracebackType | None) -> None:
        held = self.held
        assert held is not None
        was_lost = held.lost.is_set()
        await held.stop()
        if not was_lost:
            try:
                await self.manager.release(held.lock, held.lock.owner)
                return
            except (LockNotFound, LockNotOwned) as gone:
                held.reason = held.reason or f"the lock was gone at release: {gone}"
        raise LockLost(f"lock {held.lock.id} on {held.lock.resource!r} was lost: "
                       f"{held.reason}", holder=held.lock) from exc
