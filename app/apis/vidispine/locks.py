"""Reading and writing deletion locks through lockcore.

An entity's *effective* lock is the unexpired lock with the latest expiry among its own
and those it inherits: an item inherits from every collection and library that contains
it. Expired locks are gone from every answer.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from flask import Response

from lockcore import InvalidLockRequest, Lock, LockNotFound

from ... import idempotency
from ...errors import ApiError
from ...identity import User
from ...services import services
from .documents import Body, document
from .entities import ID_PREFIX, SCOPE, Entity, entity, lock_type
from .envelope import invalid, not_found, render

# -- reading ------------------------------------------------------------------------------


def own_locks(etype: str, entity_id: str) -> list[Lock]:
    return list(
        services().locks.iter_locks(SCOPE, type=lock_type(etype), resource=entity_id, limit=1000)
    )


def entity_locks(e: Entity) -> list[tuple[Lock, bool, bool]]:
    """An entity's locks, its own first, then inherited ones, each marked effective or not."""
    locks = [(lock, False) for lock in own_locks(e.type, e.id)]
    for ctype, cid in e.containers:
        locks += [(lock, True) for lock in own_locks(ctype, cid)]
    winner = max(locks, key=lambda pair: pair[0].expires_at or 0.0, default=None)
    return [
        (lock, inherited, winner is not None and lock.id == winner[0].id)
        for lock, inherited in locks
    ]


def described(lock: Lock) -> dict[str, Any]:
    """A lock's document, marked effective if it is its own entity's effective lock."""
    e = entity(lock.type.removeprefix("deletion-"), lock.resource)
    effective = any(eff and lk.id == lock.id for lk, _, eff in entity_locks(e))
    return document(lock, effective=effective)


def find_lock(lock_id: str, e: Entity | None = None) -> Lock:
    """A live deletion lock by its VX- id (on ``e`` itself, if given)."""
    raw = lock_id.removeprefix(ID_PREFIX)
    lock = services().lock_under(raw, SCOPE, exact=True) if raw != lock_id else None
    if lock is None or not lock.type.startswith("deletion-"):
        raise not_found("DeletionLock", lock_id)
    if e is not None and (lock.type != lock_type(e.type) or lock.resource != e.id):
        raise not_found("DeletionLock", lock_id)
    return lock


def all_locks(types: tuple[str, ...]) -> Iterator[tuple[Lock, bool, bool]]:
    """Every live lock of these entity types, entity by entity, marking the latest-expiring
    of each entity's own locks as effective; one page at a time, never all at once."""
    for etype in types:
        group: list[Lock] = []
        for lock in services().locks.iter_locks(SCOPE, type=lock_type(etype), limit=500):
            if group and group[0].resource != lock.resource:
                yield from _marked(group)
                group = []
            group.append(lock)
        yield from _marked(group)


def _marked(group: list[Lock]) -> Iterator[tuple[Lock, bool, bool]]:
    if not group:
        return
    best = max(group, key=lambda lock: lock.expires_at or 0.0)
    for lock in group:
        yield lock, False, lock.id == best.id


# -- writing ------------------------------------------------------------------------------


def create(user: User, e: Entity, body: Body) -> Response:
    return idempotency.once(lambda: _create(user, e, body))  # type: ignore[no-any-return]


def _create(user: User, e: Entity, body: Body) -> Response:
    assert body.expiry is not None
    try:
        result = services().locks.acquire(
            SCOPE,
            lock_type(e.type),
            e.id,
            user.id,
            expires_at=body.expiry,
            metadata=body.metadata or {},
            request_id=idempotency.request_id(),
        )
    except LockNotFound:  # a repeated Idempotency-Key whose lock is gone
        raise ApiError(
            409, "The lock this Idempotency-Key created was deleted or has expired"
        ) from None
    except InvalidLockRequest:
        raise invalid("expiryTime", "expiryTime is in the past") from None
    return render("DeletionLockDocument", described(result.lock))


def update(user: User, lock: Lock, body: Body) -> Response:
    if body.expiry is None and body.metadata is None:
        raise invalid("body", "nothing to update: give expiryTime and/or metadata")
    try:
        updated = services().locks.refresh(
            lock,
            user.id,
            force=True,
            expires_at=body.expiry,
            metadata=body.metadata,
            replace_metadata=body.metadata is not None,
        )
    except InvalidLockRequest:
        raise invalid("expiryTime", "expiryTime is in the past") from None
    except LockNotFound:
        raise not_found("DeletionLock", ID_PREFIX + lock.id) from None
    return render("DeletionLockDocument", described(updated))


def release(user: User, lock: Lock) -> Response:
    try:
        services().locks.release(lock, user.id, force=True)
    except LockNotFound:
        raise not_found("DeletionLock", ID_PREFIX + lock.id) from None
    return Response(status=200)


def change_metadata(user: User, lock: Lock, changes: dict[str, str | None], replace: bool) -> Lock:
    try:
        return services().locks.refresh(
            lock, user.id, force=True, metadata=changes, replace_metadata=replace
        )
    except LockNotFound:
        raise not_found("DeletionLock", ID_PREFIX + lock.id) from None
