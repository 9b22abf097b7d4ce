"""Typed errors of lockcore. Every error is a LockError and carries the lock's identity."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .models import Lock


class LockError(Exception):
    """Base of every lockcore error."""

    def __init__(
        self,
        message: str,
        *,
        lock_id: str | None = None,
        scope: str | None = None,
        holder: Lock | None = None,
        now_ms: int | None = None,
    ) -> None:
        super().__init__(message)
        self.now_ms = now_ms  #: the server's time of the reply, when there was one
        self.message = message
        self.lock_id = lock_id if lock_id is not None else (holder.id if holder else None)
        self.scope = scope if scope is not None else (holder.scope if holder else None)
        self.holder = holder


class LockConflict(LockError):
    """The resource is held by another owner; ``holder`` is their lock."""

    holder: Lock


class LockNotOwned(LockError):
    """The lock exists but belongs to another owner; ``holder`` is the lock."""

    holder: Lock


class LockNotFound(LockError):
    """No live lock has this id (never existed, released, or expired)."""


class WaitCancelled(LockError):
    """A waiting acquire was called off (its ``cancel`` check said so) before its turn."""


class InvalidLockRequest(LockError, ValueError):
    """The arguments can't make a lock: unknown type, bad name, or a ttl the type forbids."""


class LockNotDurable(LockError):
    """A durable change was confirmed by fewer replicas than asked within the time allowed
    (``WAIT``): ``acked`` of ``wanted``. After an acquire the lock it made was released
    again (an owner's own lock, refreshed, stays as it was); after a refresh or a release
    the change stands on the primary, unconfirmed. ``holder``: the lock as the primary
    had it."""

    def __init__(self, message: str, *, acked: int, wanted: int, **kwargs: Any) -> None:
        super().__init__(message, **kwargs)
        self.acked = acked
        self.wanted = wanted


class UnexpectedReply(LockError):
    """A script answered something outside its documented replies."""
