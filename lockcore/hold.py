"""Holding a lock for the length of a block, with the lease renewed in the background.

    with mgr.hold("billing", "job", "invoice-7", "worker-1", ttl=30, wait=10) as held:
        ...                       # renewed every ttl/3 until the block exits
        if held.lost.is_set():    # set at once if the lease is lost
            ...
    # leaving the block releases the lock, or raises LockLost if it was lost

Loss is noticed three ways: a renewal answered that the lock is gone or someone else's;
renewals failed (Redis unreachable) until the lease, counted from before the last good
renewal was sent, ran out; or a renewal was late past the lease (a paused process).

Trouble is told before the lease ends: when ``at_risk`` of the lease (half, by default)
has gone by since the last good renewal was sent without a new one (renewals failing or
hanging), ``held.at_risk`` is set and ``on_at_risk(held)`` called; a good renewal clears
it. Every call the hold makes (each renewal, the release at the end) is waited for at most
a third of the lease (``call_timeout``): a Redis that hangs neither stalls the renewals
nor keeps the block from being left. A release that did not answer in time leaves the
lock to its lease (``held.released`` is False).

What the application is not told by a return value is logged, on the ``lockcore.hold``
logger (``lockcore.aio`` for the asyncio hold): each failed renewal try and the lease
being at risk at WARNING, its recovery at INFO, the loss at ERROR (once), a release not
answered at WARNING. Renewals that work log nothing. The library adds no handlers.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from math import isfinite
from types import TracebackType
from typing import TYPE_CHECKING, Any, Protocol, TypeVar

from .exceptions import LockError, LockNotFound, LockNotOwned
from .models import Lock

if TYPE_CHECKING:
    from .manager import LockManager

logger = logging.getLogger(__name__)
T = TypeVar("T")


class LockLost(LockError):
    """The lock was lost while held: expired, taken over, or unreachable past its lease."""


class Flag(Protocol):
    """What the sync and asyncio holds' events share."""

    def is_set(self) -> bool: ...


def check_at_risk(at_risk: float) -> float:
    if not (isinstance(at_risk, (int, float)) and isfinite(at_risk) and 0 < at_risk < 1):
        raise ValueError(f"at_risk is a part of the lease, over 0 and under 1, got {at_risk!r}")
    return float(at_risk)


class Lease:
    """The bookkeeping of a held lock's lease, whatever renews it (a thread or a task):
    when it was last renewed, whether it is at risk or lost and why. The lease end is
    counted by the client from before each renewal was sent, so it is never later than
    the server's."""

    lock: Lock
    ttl: float
    reason: str
    #: set once the lock is lost (a threading or asyncio Event)
    lost: Flag
    #: the part of the lease after which a lease not renewed since is at risk
    at_risk_after: float
    on_at_risk: Callable[[Any], Any] | None
    #: whether the release at the end of the block was answered (None: not yet tried)
    released: bool | None = None
    _lease_end: float
    _timer: Any
    _risk_timer: Any
    #: where the hold logs: the module of the sibling that renews it
    _log: logging.Logger = logger

    @property
    def fencing_token(self) -> int:
        return self.lock.fencing_token

    @property
    def call_timeout(self) -> float:
        """How long the hold waits for any one of its calls to Redis."""
        return self.ttl / 3

    def _risk_delay(self) -> float:
        """Seconds until the lease is at risk, if no renewal lands first."""
        return max(0.0, self._lease_end - (1 - self.at_risk_after) * self.ttl - time.monotonic())

    def _lost(self) -> bool:
        raise NotImplementedError

    def _lose(self, reason: str) -> None:
        raise NotImplementedError

    def _ended(self) -> bool:
        """Whether the holder stopped renewing (the block is being left)."""
        raise NotImplementedError

    def _arm(self) -> None:
        raise NotImplementedError

    def _risk_flag(self) -> Any:
        raise NotImplementedError

    def _cancel_timers(self) -> None:
        """Cancel the pending at-risk and lost timers (threading.Timer or TimerHandle)."""
        for timer in (self._timer, self._risk_timer):
            if timer is not None:
                timer.cancel()

    def _since_renewed(self) -> float:
        """Seconds since the last good renewal (or the acquire) was sent."""
        return time.monotonic() - (self._lease_end - self.ttl)

    def _endanger(self) -> None:
        """The lease went ``at_risk_after`` of its length without a good renewal."""
        if self._ended() or self._lost() or self._risk_flag().is_set():
            return
        # logged before the flag is set: whoever waits on it finds the record there
        self._log.warning(
            "lock %s on %r is at risk: no renewal has landed for %.3g s of its %.3g s lease",
            self.lock.id,
            self.lock.resource,
            self._since_renewed(),
            self.ttl,
        )
        self._risk_flag().set()
        if self.on_at_risk is not None:
            self.on_at_risk(self)

    def _renewed(self, sent: float) -> bool:
        """After a renewal sent at ``sent`` succeeded: carry on (True), or not (False,
        the lock counts as lost: already, or because we were paused past the lease)."""
        if self._lost() or self._ended():  # (a stop's cancel can be lost in 3.11's wait_for)
            return False
        if sent > self._lease_end:
            self._lose("a renewal came after the lease had run out")
            return False
        self._lease_end = sent + self.ttl
        if self._risk_flag().is_set():
            self._log.info(
                "lock %s on %r renewed: no longer at risk", self.lock.id, self.lock.resource
            )
            self._risk_flag().clear()
        self._arm()
        return True

    def _renewal_failed(self, exc: Exception) -> None:
        """A renewal try failed (Redis unreachable, hanging, or answering nonsense): the
        renewer tries again while the lease lasts."""
        self._log.warning(
            "lock %s on %r: renewal failed, retrying while the lease lasts (%.3g s left): %s: %s",
            self.lock.id,
            self.lock.resource,
            max(0.0, self._lease_end - time.monotonic()),
            type(exc).__name__,
            exc,
        )

    def _report_lost(self) -> None:
        """Log the loss: once, before the lost flag is set (whoever waits on the flag
        finds the record there)."""
        self._log.error("lock %s on %r was lost: %s", self.lock.id, self.lock.resource, self.reason)

    def _gone_at_release(self, gone: LockError) -> None:
        """The release found the lock gone (the renewer, stopped, had not noticed)."""
        if self.reason:  # lost and logged already
            return
        self.reason = f"the lock was gone at release: {gone}"
        self._report_lost()

    def _release_unanswered(self) -> None:
        """The release was not answered within ``call_timeout``: the lease ends the lock."""
        self.released = False
        self._log.warning(
            "lock %s on %r: the release was not answered within %.3g s; "
            "the lock is left to its lease (at most %.3g s)",
            self.lock.id,
            self.lock.resource,
            self.call_timeout,
            self.ttl,
        )


class Held(Lease):
    """A lock held by a ``with`` block; ``lock`` is the latest renewal's view of it."""

    def __init__(
        self,
        manager: LockManager,
        lock: Lock,
        ttl: float,
        on_lost: Callable[[Held], Any] | None,
        at_risk: float = 0.5,
        on_at_risk: Callable[[Held], Any] | None = None,
    ) -> None:
        self.manager = manager
        self.lock = lock
        self.ttl = ttl
        self.on_lost = on_lost
        self.at_risk_after = check_at_risk(at_risk)
        self.on_at_risk = on_at_risk
        self.lost: threading.Event = threading.Event()
        self.at_risk = threading.Event()
        self.reason = ""
        self._stop = threading.Event()
        # between the renewer and the block's thread: the lost timer and the renewer may
        # both find the lock lost (one reports it); a renewal landing as the block is left
        # must not arm timers after stop() cancelled them
        self._guard = threading.Lock()
        self._lease_end = time.monotonic() + ttl  # conservative: counted by the client
        self._timer: threading.Timer | None = None
        self._risk_timer: threading.Timer | None = None
        self._thread = threading.Thread(
            target=self._renew, name=f"lockcore-renew-{lock.id}", daemon=True
        )

    def _lost(self) -> bool:
        return self.lost.is_set()

    def _ended(self) -> bool:
        return self._stop.is_set()

    def _risk_flag(self) -> threading.Event:
        return self.at_risk

    def _arm(self) -> None:
        """Mark the lock at risk, then lost, as the lease runs out, unless a renewal lands
        first."""
        with self._guard:
            if self._stop.is_set():
                return
            self._cancel_timers()
            delay = max(0.0, self._lease_end - time.monotonic())
            self._timer = threading.Timer(delay, self._lose, args=("the lease ran out",))
            self._risk_timer = threading.Timer(self._risk_delay(), self._endanger)
            for timer in (self._timer, self._risk_timer):
                timer.daemon = True
                timer.start()

    def _bounded(self, call: Callable[[], T]) -> T:
        """``call()`` in a thread of its own, waited for at most ``call_timeout``: its
        result, or TimeoutError (the call goes on there; what it brings is dropped)."""
        outcome: list[Any] = []
        done = threading.Event()

        def run() -> None:
            try:
                outcome.append((True, call()))
            except BaseException as exc:  # noqa: BLE001 - handed to the waiting thread
                outcome.append((False, exc))
            done.set()

        threading.Thread(target=run, name=f"lockcore-call-{self.lock.id}", daemon=True).start()
        if not done.wait(self.call_timeout):
            raise TimeoutError(f"Redis did not answer within {self.call_timeout:g} s")
        ok, value = outcome[0]
        if not ok:
            raise value
        return value  # type: ignore[no-any-return]

    def _lose(self, reason: str) -> None:
        with self._guard:
            if self._stop.is_set() or self.lost.is_set():
                return
            self.reason = reason
            self._report_lost()
            self.lost.set()
        if self.on_lost is not None:
            self.on_lost(self)

    def _renew(self) -> None:
        # every ttl/3 from the last try's start, so a try that timed out is retried at once
        interval = self.ttl / 3
        next_try = time.monotonic() + interval
        while not self._stop.wait(max(0.0, next_try - time.monotonic())):
            sent = time.monotonic()
            next_try = sent + interval
            try:
                self.lock = self._bounded(
                    lambda: self.manager.refresh(self.lock, self.lock.owner, self.ttl)
                )
            except (LockNotFound, LockNotOwned) as exc:
                self._lose(f"the lock is gone: {exc}")
                return
            except Exception as exc:  # noqa: BLE001 - Redis unreachable: retry, lease permitting
                self._renewal_failed(exc)
                if self.lost.is_set():  # the lease ran out meanwhile: nothing left to renew
                    return
                continue
            if not self._renewed(sent):
                return

    def start(self) -> Held:
        self._arm()
        self._thread.start()
        return self

    def stop(self) -> None:
        """Stop renewing (before the release: a renewal never outlives the block)."""
        self._stop.set()
        with self._guard:
            self._cancel_timers()
        if threading.current_thread() is not self._thread:
            self._thread.join()


class Hold:
    """The context manager ``LockManager.hold`` returns."""

    def __init__(
        self,
        manager: LockManager,
        scope: str,
        type: str,
        resource: str,
        owner: str,
        ttl: float,
        wait: float | None,
        metadata: Mapping[str, str] | None,
        on_lost: Callable[[Held], Any] | None,
        at_risk: float = 0.5,
        on_at_risk: Callable[[Held], Any] | None = None,
        shared: bool = False,
    ) -> None:
        self.manager = manager
        self.args = (scope, type, resource, owner)
        self.shared = shared
        self.ttl = ttl
        self.wait = wait
        self.metadata = metadata
        self.on_lost = on_lost
        self.at_risk = check_at_risk(at_risk)
        self.on_at_risk = on_at_risk
        self.held: Held | None = None

    def __enter__(self) -> Held:
        lock = self.manager.acquire(
            *self.args, ttl=self.ttl, wait=self.wait, metadata=self.metadata, shared=self.shared
        ).lock
        self.held = Held(
            self.manager, lock, self.ttl, self.on_lost, self.at_risk, self.on_at_risk
        ).start()
        return self.held

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        held = self.held
        assert held is not None
        held.stop()
        if not held.lost.is_set():
            try:
                held._bounded(lambda: self.manager.release(held.lock, held.lock.owner))
                held.released = True
                return
            except (LockNotFound, LockNotOwned) as gone:
                held._gone_at_release(gone)
            except TimeoutError:  # Redis hangs: the lease ends it (at most ttl)
                held._release_unanswered()
                return
        raise LockLost(
            f"lock {held.lock.id} on {held.lock.resource!r} was lost: {held.reason}",
            holder=held.lock,
        ) from exc


def lost_error(held: Sequence[Lease]) -> LockLost | None:
    """The LockLost to raise on leaving a block whose locks were ``held``, if one was lost."""
    lost = [one for one in held if one.lost.is_set()]
    if not lost:
        return None
    return LockLost(
        f"lock {lost[0].lock.id} on {lost[0].lock.resource!r} was lost: {lost[0].reason}",
        holder=lost[0].lock,
    )


class HoldAll:
    """The context manager ``LockManager.hold_all`` returns: a multi-lock's locks, each
    renewed as ``hold()`` renews one, released together when the block exits."""

    def __init__(
        self,
        manager: LockManager,
        scope: str,
        type: str,
        resources: Sequence[str],
        owner: str,
        ttl: float,
        metadata: Mapping[str, str] | None,
        on_lost: Callable[[Held], Any] | None,
    ) -> None:
        self.manager = manager
        self.args = (scope, type, list(resources), owner)
        self.ttl = ttl
        self.metadata = metadata
        self.on_lost = on_lost
        self.held: list[Held] = []

    def __enter__(self) -> list[Held]:
        results = self.manager.acquire_all(*self.args, ttl=self.ttl, metadata=self.metadata)
        self.held = [Held(self.manager, r.lock, self.ttl, self.on_lost).start() for r in results]
        return self.held

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        for held in self.held:
            held.stop()
        kept = [held for held in self.held if not held.lost.is_set()]
        if kept:
            first = kept[0]
            try:
                first._bounded(
                    lambda: self.manager.release_all([h.lock for h in kept], first.lock.owner)
                )
                for held in kept:
                    held.released = True
            except TimeoutError:  # Redis hangs: the leases end them (at most ttl)
                for held in kept:
                    held._release_unanswered()
        error = lost_error(self.held)
        if error is not None:
            raise error from exc
