"""Holding a lock for the length of a block, with the lease renewed in the background.

    with mgr.hold("billing", "job", "invoice-7", "worker-1", ttl=30, wait=10) as held:
        ...                       # renewed every ttl/3 until the block exits
        if held.lost.is_set():    # set at once if the lease is lost
            ...
    # leaving the block releases the lock, or raises LockLost if it was lost

Loss is noticed three ways: a renewal answered that the lock is gone or someone else's;
renewals failed (Redis unreachable) until the lease, counted from before the last good
renewal was sent, ran out; or a renewal was late past the lease (a paused process).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Mapping
from types import TracebackType
from typing import TYPE_CHECKING, Any

from .exceptions import LockError, LockNotFound, LockNotOwned
from .models import Lock

if TYPE_CHECKING:
    from .manager import LockManager


class LockLost(LockError):
    """The lock was lost while held: expired, taken over, or unreachable past its lease."""


class Lease:
    """The bookkeeping of a held lock's lease, whatever renews it (a thread or a task):
    when it was last renewed, whether it is lost and why. The lease end is counted by the
    client from before each renewal was sent, so it is never later than the server's."""

    lock: Lock
    ttl: float
    reason: str
    _lease_end: float

    @property
    def fencing_token(self) -> int:
        return self.lock.fencing_token

    def _lost(self) -> bool:
        raise NotImplementedError

    def _lose(self, reason: str) -> None:
        raise NotImplementedError

    def _arm(self) -> None:
        raise NotImplementedError

    def _renewed(self, sent: float) -> bool:
        """After a renewal sent at ``sent`` succeeded: carry on (True), or not (False,
        the lock counts as lost: already, or because we were paused past the lease)."""
        if self._lost():
            return False
        if sent > self._lease_end:
            self._lose("a renewal came after the lease had run out")
            return False
        self._lease_end = sent + self.ttl
        self._arm()
        return True


class Held(Lease):
    """A lock held by a ``with`` block; ``lock`` is the latest renewal's view of it."""

    def __init__(
        self,
        manager: LockManager,
        lock: Lock,
        ttl: float,
        on_lost: Callable[[Held], Any] | None,
    ) -> None:
        self.manager = manager
        self.lock = lock
        self.ttl = ttl
        self.on_lost = on_lost
        self.lost = threading.Event()
        self.reason = ""
        self._stop = threading.Event()
        self._lease_end = time.monotonic() + ttl  # conservative: counted by the client
        self._timer: threading.Timer | None = None
        self._thread = threading.Thread(target=self._renew, name=f"lockcore-renew-{lock.id}",
                                        daemon=True)

    def _lost(self) -> bool:
        return self.lost.is_set()

    def _arm(self) -> None:
        """Mark the lock lost when the lease runs out, unless a renewal lands first."""
        if self._timer is not None:
            self._timer.cancel()
        delay = max(0.0, self._lease_end - time.monotonic())
        self._timer = threading.Timer(delay, self._lose, args=("the lease ran out",))
        self._timer.daemon = True
        self._timer.start()

    def _lose(self, reason: str) -> None:
        if self._stop.is_set() or self.lost.is_set():
            return
        self.reason = reason
        self.lost.set()
        if self.on_lost is not None:
            self.on_lost(self)

    def _renew(self) -> None:
        interval = self.ttl / 3
        while not self._stop.wait(interval):
            sent = time.monotonic()
            try:
                self.lock = self.manager.refresh(self.lock, self.lock.owner, self.ttl)
            except (LockNotFound, LockNotOwned) as exc:
                self._lose(f"the lock is gone: {exc}")
                return
            except Exception:  # noqa: BLE001 - Redis unreachable: try again, lease permitting
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
        if self._timer is not None:
            self._timer.cancel()
        if threading.current_thread() is not self._thread:
            self._thread.join()


class Hold:
    """The context manager ``LockManager.hold`` returns."""

    def __init__(self, manager: LockManager, scope: str, type: str, resource: str,
                 owner: str, ttl: float, wait: float | None,
                 metadata: Mapping[str, str] | None,
                 on_lost: Callable[[Held], Any] | None) -> None:
        self.manager = manager
        self.args = (scope, type, resource, owner)
        self.ttl = ttl
        self.wait = wait
        self.metadata = metadata
        self.on_lost = on_lost
        self.held: Held | None = None

    def __enter__(self) -> Held:
        lock = self.manager.acquire(*self.args, ttl=self.ttl, wait=self.wait,
                                    metadata=self.metadata).lock
        self.held = Held(self.manager, lock, self.ttl, self.on_lost).start()
        return self.held

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        held = self.held
        assert held is not None
        held.stop()
        if not held.lost.is_set():
            try:
                self.manager.release(held.lock, held.lock.owner)
                return
            except (LockNotFound, LockNotOwned) as gone:
                held._lose(f"the lock was gone at release: {gone}")
        raise LockLost(f"lock {held.lock.id} on {held.lock.resource!r} was lost: "
                       f"{held.reason}", holder=held.lock) from exc
