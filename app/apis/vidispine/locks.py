"""Reading and writing deletion locks through lockcore.

An entity's *effective* lock is the unexpired lock with the latest expiry among its own
and those it inherits: an item inherits from every collection and library that contains
it. Expired locks are gone from every answer.

Deletion locks live in several scopes (``shards``: ``vidispine`` and 64 shard scopes), and
a script reads one scope atomically, never two. So these reads are each made of several
atomic reads, one per scope, sent in one pipelined round trip (on a Cluster, one per node,
in parallel), and are *not* one atomic snapshot:

- an entity's locks with those it inherits (its listing, its effective lock, the deletion
  check, ``isEffective`` in any lock's document): its own scopes and each container's;
- the global and per-type listings (every scope, merged) and their totals (a count per
  scope); the username filter (the owners' index ranges, then the entities found).

Each scope is read at some instant within the request. So a lock that is live from before
the request until after it is always seen, and whatever is seen was live when its scope
was read: a listing or check is exact for locks that do not change during it, and only a
lock created, changed, released or expired while the request runs may be seen or missed —
as it may with one snapshot, depending on which came first. The one answer such reads
could get wrong where a snapshot would not is a deletion check that meets a hand-over (a
new lock made in one scope, then an old one released in another, both between the check's
reads of those scopes): every lock would be missed though the entity was never unlocked.
The check therefore answers "deletable" only after a second read finds no lock either: the
new lock of a hand-over is then seen, unless it too is released within the round trip. A
"locked" answer is always a lock that was live when read. And a check is advisory in any
case: a lock made just after it is not seen, snapshot or not; the deleter acts on what
held when it asked.
"""

from __future__ import annotations

import heapq
from collections.abc import Collection, Iterator, Sequence
from typing import Any

from flask import Response

from lockcore import InvalidLockRequest, Lock, LockNotFound, LockPage
from lockcore.keys import encode

from ... import idempotency
from ...errors import ApiError
from ...identity import User
from ...services import services
from .documents import Body, document
from .entities import ID_PREFIX, Entity, entity, lock_type
from .envelope import invalid, not_found, render
from .shards import LEGACY, all_scopes, home, homes, is_deletion_scope

# -- reading ------------------------------------------------------------------------------
#
# Deletion locks live in the scope ``vidispine`` and in the shard scopes (see ``shards``);
# every read looks at all the scopes a lock it wants may be in, each scope's first page
# fetched in one pipelined round trip (on a Cluster, one per node), and merges them in the
# order one scope's index gives: by entity type, then entity id (encoded), then token.

#: Locks per page read from one scope.
PAGE = 500


def _order(lock: Lock) -> str:
    """A lock's place in its type's index of multi locks (``<resource>:<token>``, encoded,
    compared as text: ZRANGEBYLEX's order)."""
    return f"{encode(lock.resource)}:{lock.fencing_token}"


def _streams(queries: Sequence[tuple[str, dict[str, Any]]], limit: int) -> list[Iterator[Lock]]:
    """Every live lock each query (scope, filters of ``LockManager.list``) finds: the first
    pages of all in one pipelined round trip, then each scope's further pages as read."""
    pages = services().locks.list_many(queries, limit=limit)
    return [
        _rest(scope, query, page, limit)
        for (scope, query), page in zip(queries, pages, strict=True)
    ]


def _rest(scope: str, query: dict[str, Any], page: LockPage, limit: int) -> Iterator[Lock]:
    while True:
        yield from page.locks
        if page.cursor is None:
            return
        page = services().locks.list(scope, cursor=page.cursor, limit=limit, **query)


def _entities_locks(wanted: Sequence[tuple[str, str]]) -> list[list[Lock]]:
    """The own locks of each entity (type, id), in index order: one round trip for all."""
    queries = [
        (scope, {"type": lock_type(etype), "resource": eid})
        for etype, eid in wanted
        for scope in homes(etype, eid)
    ]
    streams = iter(_streams(queries, 1000))
    out = []
    for _ in wanted:
        found = [lock for _scope in range(2) for lock in next(streams)]
        out.append(sorted(found, key=_order))
    return out


def own_locks(etype: str, entity_id: str) -> list[Lock]:
    return _entities_locks([(etype, entity_id)])[0]


def entity_locks(e: Entity) -> list[tuple[Lock, bool, bool]]:
    """An entity's locks, its own first, then inherited ones, each marked effective or not.
    Read in one round trip (its shard, its collections' and libraries' shards), but not one
    atomic snapshot: see the module's text."""
    own, *inherited = _entities_locks([(e.type, e.id), *e.containers])
    locks = [(lock, False) for lock in own]
    for found in inherited:
        locks += [(lock, True) for lock in found]
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
    """A live deletion lock by its VX- id (on ``e`` itself, if given): the id names its
    hash slot, so this reads one scope, whichever it is."""
    raw = lock_id.removeprefix(ID_PREFIX)
    lock = services().lock_under(raw, LEGACY) if raw != lock_id else None
    if lock is None or not is_deletion_scope(lock.scope) or not lock.type.startswith("deletion-"):
        raise not_found("DeletionLock", lock_id)
    if e is not None and (lock.type != lock_type(e.type) or lock.resource != e.id):
        raise not_found("DeletionLock", lock_id)
    return lock


def count_all() -> int:
    """How many live deletion locks there are (every deletion type is multi): one O(log n)
    count per scope, in one round trip (per node)."""
    return sum(services().locks.count_many(all_scopes()))


def all_locks(
    types: tuple[str, ...], owners: Collection[str] | None = None
) -> Iterator[tuple[Lock, bool, bool]]:
    """Every live lock of these entity types, entity by entity, marking the latest-expiring
    of each entity's own locks as effective; one page at a time, never all at once.
    ``owners``: only (at least) the entities on which one of them holds a lock, found by
    the index by owner, with each such entity's every own lock (for the marks)."""
    for etype in types:
        if owners is None:
            merged = _merged(etype)
        else:
            merged = _of_owners(etype, owners)
        group: list[Lock] = []
        for lock in merged:
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


def _merged(etype: str) -> Iterator[Lock]:
    """Every live lock of the type, from every scope, in one index's order."""
    queries = [(scope, {"type": lock_type(etype)}) for scope in all_scopes()]
    return heapq.merge(*_streams(queries, PAGE), key=_order)


def _of_owners(etype: str, owners: Collection[str]) -> Iterator[Lock]:
    """Every own lock of each entity of the type on which one of ``owners`` holds a lock,
    in index order. Costs the owners' locks (their range of each scope's index by owner),
    then one read per such entity, not a read of every lock."""
    queries = [
        (scope, {"owner": owner, "type": lock_type(etype)})
        for scope in all_scopes()
        for owner in sorted(owners)
    ]
    held = {lock.resource for stream in _streams(queries, PAGE) for lock in stream}
    resources = sorted(held, key=lambda resource: encode(resource) + ":")  # as _order
    for start in range(0, len(resources), PAGE):
        batch = resources[start : start + PAGE]
        for found in _entities_locks([(etype, resource) for resource in batch]):
            yield from found


# -- writing ------------------------------------------------------------------------------


def create(user: User, e: Entity, body: Body) -> Response:
    return idempotency.once(lambda: _create(user, e, body))  # type: ignore[no-any-return]


def _create(user: User, e: Entity, body: Body) -> Response:
    assert body.expiry is not None
    try:
        result = services().locks.acquire(
            home(e.type, e.id),
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
