"""LockManager: the Python surface of lockcore, for workers and for the service."""

from __future__ import annotations

import builtins
import functools
import random
import time
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from typing import Any

from .connect import Connection, connect
from .exceptions import (
    LockConflict,
    LockError,
    LockNotDurable,
    LockNotFound,
    LockNotOwned,
    WaitCancelled,
)
from .hold import Held, Hold, HoldAll
from .keys import ScopeKeys
from .models import AcquireResult, Lock, LockPage, LockType, ScopeStats
from .scripts import Call, Core, Scripts, _ms, _positive, check_request_id
from .waking import DIRECT_WAITERS, Waker

DEFAULT_PREFIX = "lockcore"

__all__ = ["DEFAULT_PREFIX", "LockManager", "Waiter", "check_request_id"]


#: The shortest BLPOP timeout a waiter sends (s): well above Redis 6.2's 1 ms, below which
#: a timeout is read as 0 (no timeout).
MIN_PAUSE = 0.01


class Waiter:
    """One caller waiting in line for a lock: its ticket, its signal key, its deadline.
    Deadlines are the caller's own patience, so its monotonic clock; lock expiry stays
    the server's."""

    def __init__(self, manager: Common, call: Call, wait: float, waker: Any = None) -> None:
        _positive(wait, "wait")
        self.manager = manager
        #: None: it blocks on its own signal (BLPOP); else the waker that wakes it
        self.waker = None if waker is None or waker.claim_direct() else waker
        self.direct = waker is not None and self.waker is None
        self._from = waker
        # 96 random bits: the random module reseeds itself in a forked child
        if self.waker is None:
            self.ticket = f"{random.getrandbits(96):024x}"
        else:  # a ticket the scripts announce on the waker's channel
            self.ticket = self.waker.ticket()
        self.deadline = time.monotonic() + wait
        self.since_ms: int | None = None
        #: the monotonic time it joined the line (its first conflict), if it did
        self.queued_at: float | None = None
        self.first = call

    # Made only by a waiter that blocks, or leaves (most waits find the lock free).
    @functools.cached_property
    def signal(self) -> str:
        return self.manager.keys(self.first.scope or "").waiter_signal(self.ticket)

    @functools.cached_property
    def leave_call(self) -> Call:
        return self.manager.core.leave(self.first, self.ticket)

    def call(self) -> Call:
        # The line lives as long as a waiter in it shows signs of life, no longer.
        return self.manager.core.waiting(
            self.first, self.ticket, self.since_ms, _ms(self.manager.heartbeat * 3)
        )

    def conflicted(self, error: LockConflict) -> None:
        if self.queued_at is None:
            self.queued_at = time.monotonic()
        if self.since_ms is None and error.now_ms is not None:
            self.since_ms = error.now_ms

    def ended(self, outcome: str) -> None:
        """The wait is over (``acquired``, ``timeout``, ``cancelled``): the manager's
        ``wait_ended`` hook hears how long it was in line, if it was."""
        if self.queued_at is not None:
            asked = self.first.asked
            self.manager.wait_ended(
                self.first.scope or "",
                asked[0] if asked else "",
                time.monotonic() - self.queued_at,
                outcome,
            )

    def done(self) -> None:
        """Give back the waker's direct slot, or leave its list."""
        if self.direct:
            self.direct = False
            self._from.release_direct()
        elif self.waker is not None:
            self.waker.discharge(self.ticket)

    def remaining(self) -> float:
        return self.deadline - time.monotonic()

    def pause(self) -> float:
        """How long to block on the signal: until woken, the deadline, or the next sign of
        life (a waiter that stops trying is taken for gone). Never under ``MIN_PAUSE``:
        Redis 6.2 reads a BLPOP timeout as whole ms, rounding down, and 0 blocks forever
        (``0.001`` reads as 0.999… ms: it never returned)."""
        return max(MIN_PAUSE, min(self.remaining(), self.manager.heartbeat))


class Common:
    """What the sync and the asyncio manager share: configuration and the pure core
    (``self.core``: script calls and replies). No I/O here."""

    def __init__(
        self,
        client: Any,
        types: Iterable[LockType] | Mapping[str, LockType],
        *,
        prefix: str = DEFAULT_PREFIX,
        event_maxlen: int = 1000,
        retention: float = 7 * 86400.0,
        heartbeat: float = 1.0,
        request_ttl: float = 86400.0,
        handoff: float = 0.005,
        functions: bool = True,
        durable_replicas: int = 1,
        durable_timeout: float = 1.0,
        direct_waiters: int = DIRECT_WAITERS,
    ) -> None:
        if not (isinstance(durable_replicas, int) and durable_replicas >= 1):
            raise ValueError(f"durable_replicas must be 1 or more, got {durable_replicas!r}")
        _positive(durable_timeout, "durable_timeout")
        self.durable_replicas = durable_replicas
        self.durable_timeout = durable_timeout
        self.client = client
        self.core = Core(
            types,
            prefix=prefix,
            event_maxlen=event_maxlen,
            retention=retention,
            heartbeat=heartbeat,
            request_ttl=request_ttl,
            handoff=handoff,
        )
        self.types = self.core.types
        self.prefix = self.core.prefix
        self.heartbeat = heartbeat
        self._scripts = Scripts(client, functions)
        self.connection: Connection | None = None
        #: how many of this manager's waiters at a time block on their own signal; the
        #: others share one subscriber connection (lockcore.waking)
        self.direct_waiters = direct_waiters
        self._waker: Any = None

    def keys(self, scope: str) -> ScopeKeys:
        """The Redis keys of a scope (see docs/redis-layout.md)."""
        return self.core.keys(scope)

    def lock_type(self, name: str) -> LockType:
        return self.core.lock_type(name)

    def expired_noticed(self, count: int) -> None:
        """Called with the number of expired locks a call removed; a hook for metrics
        (``scope_stats`` tells them by type)."""

    def wait_ended(self, scope: str, type: str, seconds: float, outcome: str) -> None:
        """Called when an acquire that waited in line (it met a conflict with ``wait``)
        stops waiting: ``seconds`` in line (from its first conflict, this process's
        clock), ``outcome`` ``acquired``, ``timeout`` or ``cancelled``; a hook for
        metrics. Not called for a wait that a failure (Redis unreachable) ended."""

    def _durable(self, asked: bool | None, type: Any) -> bool:
        """Whether a change of a lock of this type waits for replicas: as asked, else as
        the type says."""
        if asked is not None:
            return asked
        lock_type = self.types.get(type) if isinstance(type, str) else None
        return lock_type is not None and lock_type.durable

    def _not_durable(self, acked: int, what: str, lock: Lock) -> LockNotDurable | None:
        if acked >= self.durable_replicas:
            return None
        return LockNotDurable(
            f"{what} of lock {lock.id} reached {acked} of {self.durable_replicas} "
            f"replica(s) within {self.durable_timeout:g} s",
            acked=acked,
            wanted=self.durable_replicas,
            holder=lock,
        )


class LockManager(Common):
    """Acquire, release, refresh, get and list locks; every change is one Lua script.

    ``client`` is a redis-py client: ``Redis``, ``RedisCluster``, or one from a Sentinel.
    ``types`` configures each lock type; acquiring an unconfigured type is an error.
    ``event_maxlen`` caps each scope's event stream (approximately); ``retention`` is how
    long, in seconds, a scope's keys and events outlive its last lock. A waiting acquire
    shows it is alive every ``heartbeat`` seconds; one silent for three is passed over.
    A freed resource is kept for the first waiter once it has waited ``handoff`` seconds;
    before that, whoever asks first gets it. An acquire's ``request_id`` is remembered
    for ``request_ttl`` seconds. ``functions`` (the default): where the server has
    FUNCTION (Redis 7+), call the scripts as one library by FCALL, whose helpers Redis
    makes once instead of at every EVALSHA; a server without it (Redis 6.2), or whose ACL
    refuses FUNCTION LOAD, gets EVALSHA. ``functions=False``: EVALSHA always.
    """

    @classmethod
    def from_url(
        cls,
        url: str | None,
        types: Iterable[LockType] | Mapping[str, LockType],
        *,
        data_dir: str | None = None,
        **options: Any,
    ) -> LockManager:
        """A manager on the Redis at ``url`` (see ``lockcore.connect``); with no URL, on
        the embedded redis-server in ``data_dir``. ``close()`` releases what it opened."""
        connection = connect(url, data_dir=data_dir)
        manager = cls(connection.client, types, **options)
        manager.connection = connection
        return manager

    def waker(self) -> Waker | None:
        """The waker of this manager's waiters beyond ``direct_waiters`` (made at the
        first wait), or None where the client has no pub/sub (all waiters block)."""
        if self._waker is None and hasattr(self.client, "pubsub"):
            self._waker = Waker(self.client, self.prefix, self.direct_waiters)
        return self._waker  # type: ignore[no-any-return]

    def close(self) -> None:
        """Close the connection ``from_url`` opened (and stop its embedded server)."""
        if self._waker is not None:
            self._waker.close()
        if self.connection is not None:
            self.connection.close()
            self.connection = None

    def load_scripts(self) -> list[str]:
        """Load every script now (they also load themselves on first use), and the
        FUNCTION library where FCALL is wanted (this finds out whether the server has it);
        on a Cluster, on every primary."""
        for text in self._scripts.sources():
            self.client.script_load(text)
        self._scripts.load_library()
        return list(self._scripts._scripts)

    def _run(self, call: Call) -> Any:
        return self._scripts.run(call)

    def _run_many(self, calls: Sequence[Call]) -> list[Any]:
        return self._scripts.run_many(calls)

    def acquire(
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
        cancel: Callable[[], bool] | None = None,
        durable: bool | None = None,
        shared: bool = False,
    ) -> AcquireResult:
        """Take a lock, or raise LockConflict naming the holder.

        The owner's own live lock on the resource is refreshed and returned as it is (same
        id and token, ``created=False``; its metadata replaced if ``metadata`` is given).
        For a ``one_per_owner`` type the owner's previous lock of that type in the scope
        is released and returned as ``replaced``.
        ``ttl`` in seconds; None takes the type's default; ``FOREVER`` for no expiry.
        ``expires_at`` (seconds since the epoch, server clock) instead of ``ttl``: the lease
        is what is left until then; InvalidLockRequest if that is not in the future.
        ``wait`` (seconds): on a conflict, wait in line until the lock is free (woken by the
        release; see ``handoff`` for the order) or the time is up (then LockConflict).
        ``cancel``: checked between waits (at least every ``heartbeat`` seconds); when it
        returns true the caller leaves the line and WaitCancelled is raised.
        ``request_id`` (1-128 of ``A-Z a-z 0-9 - _ .``) makes the call safe to repeat: the
        first call that gets the lock remembers it (``request_ttl``), and a repeated call
        with the same id returns that lock as it is now instead of acting again, or raises
        LockNotFound if it is gone. Use it when a call may have run without its reply
        arriving (a timeout): the retry cannot make a second lock.
        ``durable`` (None: as the type says): return only once ``durable_replicas``
        replicas have the lock (``WAIT``, up to ``durable_timeout``; one more round trip).
        Short of that, a lock this call made is released again and LockNotDurable raised.
        Replication stays asynchronous: this narrows the window in which a failover loses
        an acknowledged lock, it is not consensus (see the README, Failure modes).
        ``shared`` (read-write types): a read lock, which others' read locks may hold at
        the same time; else a write lock, alone on the resource.
        """
        result = self._take(
            scope,
            type,
            resource,
            owner,
            ttl=ttl,
            metadata=metadata,
            expires_at=expires_at,
            wait=wait,
            request_id=request_id,
            cancel=cancel,
            shared=shared,
        )
        if self._durable(durable, result.lock.type):
            acked = self._scripts.confirm(
                self.keys(scope).locks, self.durable_replicas, _ms(self.durable_timeout)
            )
            error = self._not_durable(acked, "the acquire", result.lock)
            if error is not None:
                if result.created:
                    try:
                        self.release(result.lock, owner, durable=False)
                    except LockError:  # gone already: nothing to undo
                        pass
                raise error
        return result

    def _take(
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
        cancel: Callable[[], bool] | None,
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
        if not wait:
            return self.core.acquired(self._run(call), call, self.expired_noticed)
        # The first try already carries the ticket: a conflict puts the caller in line in
        # the same call (a free lock is taken as by a plain acquire).
        waiter = Waiter(self, call, wait, self.waker())
        waker = waiter.waker
        woken = None if waker is None else waker.enlist(waiter.ticket)
        try:
            while True:
                try:
                    attempt = waiter.call()
                    if waker is None:
                        raw = self._run(attempt)
                    else:
                        with waker.calls:
                            raw = self._run(attempt)
                    result = self.core.acquired(raw, attempt, self.expired_noticed)
                    waiter.ended("acquired")
                    return result
                except LockConflict as conflict:
                    waiter.conflicted(conflict)
                    if waiter.remaining() <= 0:
                        waiter.ended("timeout")
                        raise
                    if cancel is not None and cancel():
                        waiter.ended("cancelled")
                        raise WaitCancelled("the wait was cancelled", scope=scope) from None
                if waker is None or woken is None:
                    signal = self._scripts.wait_signal(waiter.signal, waiter.pause())
                    got = None if signal is None else signal[1]
                else:
                    # Woken by the waker (its ticket was announced), or a heartbeat: either
                    # way take the signal (a grant is the lock), then try again.
                    woken.wait(waiter.pause())
                    woken.clear()
                    with waker.calls:
                        got = self.client.lpop(waiter.signal)
                if got is not None:
                    granted = self.core.granted(got, call)
                    if granted is not None:
                        waiter.ended("acquired")
                        return granted
        except BaseException:
            try:
                self._run(waiter.leave_call)
            except Exception:  # noqa: BLE001 - a lost Redis only delays the clean-up,
                pass  # which the keys' own expiry then does
            raise
        finally:
            waiter.done()

    def acquire_all(
        self,
        scope: str,
        type: str,
        resources: Sequence[str],
        owner: str,
        *,
        ttl: float | None = None,
        metadata: Mapping[str, str] | None = None,
    ) -> list[AcquireResult]:
        """A multi-lock: locks of one exclusive type on every resource of ``resources``
        (one scope), all or none, in one atomic script. The owner's own locks among them
        are refreshed and returned as they are (``created=False``); if another owner
        holds any, nothing is taken and LockConflict names that holder. Release them
        together with ``release_all``. One scope only: a script sees one hash slot."""
        call = self.core.acquire_all(scope, type, resources, owner, ttl=ttl, metadata=metadata)
        return self.core.acquired_all(self._run(call), call, self.expired_noticed)

    def hold_all(
        self,
        scope: str,
        type: str,
        resources: Sequence[str],
        owner: str,
        *,
        ttl: float = 30.0,
        metadata: Mapping[str, str] | None = None,
        on_lost: Callable[[Held], Any] | None = None,
    ) -> HoldAll:
        """``with mgr.hold_all(...) as held:`` — a multi-lock (``acquire_all``), each of
        its locks renewed in the background as ``hold()`` renews one, all released
        together when the block exits (LockLost if one was lost meanwhile). No waiting:
        LockConflict at once if another owner holds one of them."""
        return HoldAll(self, scope, type, resources, owner, ttl, metadata, on_lost)

    def release_all(self, locks: Sequence[Lock], owner: str, *, force: bool = False) -> int:
        """Release a multi-lock's locks (all of one scope) together: none if any live one
        is another owner's (LockNotOwned, unless ``force``); those already gone are passed
        over. Returns how many were released (or gave back a reentrant hold)."""
        if not locks:
            return 0
        call = self.core.release_all(locks[0].scope, locks, owner, force)
        return self.core.released_all(self._run(call), call)

    def requested(self, scope: str, request_id: str) -> str | None:
        """The id of the lock an acquire with this ``request_id`` got, while remembered
        (whether or not that lock is still live), or None: did that call act?"""
        raw = self.client.get(self.core.requested_key(scope, request_id))
        return None if raw is None else self.core.requested_id(scope, raw)

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
        on_lost: Callable[[Held], Any] | None = None,
        at_risk: float = 0.5,
        on_at_risk: Callable[[Held], Any] | None = None,
        shared: bool = False,
    ) -> Hold:
        """``with mgr.hold(...) as held:`` — acquire (waiting up to ``wait``), renew every
        ``ttl``/3 in the background until the block exits, then release. If the lock is
        lost meanwhile, ``held.lost`` is set at once, ``on_lost(held)`` is called, and
        leaving the block raises LockLost. Before that, when ``at_risk`` of the lease (a
        part, 0-1) went by without a good renewal, ``held.at_risk`` is set and
        ``on_at_risk(held)`` called (cleared by the next good renewal). Each call the hold
        makes is waited for at most ``ttl``/3: leaving the block never waits longer for
        Redis (a release not answered in time leaves the lock to its lease,
        ``held.released`` False)."""
        return Hold(
            self,
            scope,
            type,
            resource,
            owner,
            ttl,
            wait,
            metadata,
            on_lost,
            at_risk,
            on_at_risk,
            shared,
        )

    def validate(self, scope: str, type: str, resource: str, fencing_token: int) -> bool:
        """The fencing check, for a guarded resource before a write: is this token a
        live lock's on the resource? False for a stale token (expired, released, taken)."""
        call = self.core.validate(scope, type, resource, fencing_token)
        try:
            self.core.check(self._run(call), call)
        except (LockNotFound, LockNotOwned):
            return False
        return True

    def scope_of(self, lock_id: str) -> str:
        """The scope of a live lock, by id."""
        return self.get(lock_id).scope

    def release(
        self,
        lock: str | Lock,
        owner: str,
        *,
        force: bool = False,
        scope: str | None = None,
        scope_prefix: str | None = None,
        durable: bool | None = None,
    ) -> Lock:
        """Release a lock (by id, or the Lock itself); one round trip either way.

        Only its owner may, unless ``force`` (administrators). Raises LockNotFound for an
        unknown or expired lock, LockNotOwned for another owner's. Returns the lock.
        ``scope``: the lock must be in that scope; ``scope_prefix``: in a scope whose name
        starts with it (an API that owns a family of scopes), else LockNotFound.
        ``durable`` (None: as the lock's type says): see ``acquire``.
        """
        call = self.core.release(lock, owner, force, scope, scope_prefix)
        released = self.core.one(self._run(call), call, self.expired_noticed)
        self._confirm(durable, "the release", released)
        return released

    def _confirm(self, durable: bool | None, what: str, lock: Lock) -> None:
        """For a durable change: wait for the replicas, or raise LockNotDurable."""
        if self._durable(durable, lock.type):
            acked = self._scripts.confirm(
                self.keys(lock.scope).locks, self.durable_replicas, _ms(self.durable_timeout)
            )
            error = self._not_durable(acked, what, lock)
            if error is not None:
                raise error

    def refresh(
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
        """Extend a lock's lease to ``ttl`` seconds from now (None: its own lease length),
        or to ``expires_at`` (seconds since the epoch), capped at its type's maximum TTL.
        ``metadata``: keys to set (None values remove a key), or the whole new map with
        ``replace_metadata``; with metadata and neither ``ttl`` nor ``expires_at``, the
        expiry stays as it is. Same errors as release; ``durable``: see ``acquire``."""
        call = self.core.refresh(lock, owner, ttl, force, expires_at, metadata, replace_metadata)
        refreshed = self.core.one(self._run(call), call, self.expired_noticed)
        self._confirm(durable, "the refresh", refreshed)
        return refreshed

    def get(self, lock_id: str) -> Lock:
        """The live lock with this id, or LockNotFound."""
        call = self.core.get(lock_id)
        return self.core.one(self._run(call), call)

    def list(
        self,
        scope: str,
        *,
        owner: str | None = None,
        type: str | None = None,
        resource: str | None = None,
        cursor: str | None = None,
        limit: int = 100,
    ) -> LockPage:
        """One page of the scope's live locks, filtered. Ordered by the index it reads:
        ``type`` and ``resource`` of an exclusive type: the holder; a multi type: by
        resource, then token; ``owner`` of a type indexed by owner: by owner, type, token;
        else by token within each batch of the scope's hash (a small scope is one batch).
        Unindexed filters read a bounded number of entries per call."""
        call = self.core.list(
            scope, owner=owner, type=type, resource=resource, cursor=cursor, limit=limit
        )
        return self.core.page(self._run(call), call)

    def scope_stats(self, scope: str, *, take_expired: bool = False) -> ScopeStats:
        """The scope's live locks and waiters by type, and how many expired locks of each
        type were removed from it (removing those it finds, as any call that meets them
        does) since a call with ``take_expired`` last took those counts: a deployment's
        metrics take them, so that each expiry is counted once; consoles only look. It
        reads the whole scope (O(locks) of Redis time)."""
        call = self.core.stats(scope, take_expired)
        return self.core.scope_stats(self._run(call), call, self.expired_noticed)

    def scopes_stats(
        self, scopes: Iterable[str], *, batch: int = 100, take_expired: bool = False
    ) -> dict[str, ScopeStats]:
        """``scope_stats`` of several scopes, ``batch`` calls per pipelined round trip (on a
        Cluster, one per node). A scope whose call failed raises its error."""
        out: dict[str, ScopeStats] = {}
        names = list(dict.fromkeys(scopes))
        for start in range(0, len(names), batch):
            calls = [self.core.stats(s, take_expired) for s in names[start : start + batch]]
            for call, raw in zip(calls, self._many(calls), strict=True):
                out[call.scope or ""] = self.core.scope_stats(raw, call, self.expired_noticed)
        return out

    def list_many(
        self, queries: Sequence[tuple[str, Mapping[str, Any]]], *, limit: int = 100
    ) -> builtins.list[LockPage]:
        """The first page of each query, ``(scope, filters of list)``, in order: all in one
        pipelined round trip (on a Cluster, one per node). Each scope is read atomically,
        not all of them at once. A query whose call failed raises its error."""
        calls = [self.core.list(scope, limit=limit, **filters) for scope, filters in queries]
        replies = self._many(calls)
        return [self.core.page(raw, call) for call, raw in zip(calls, replies, strict=True)]

    def count_many(self, scopes: Sequence[str]) -> builtins.list[int]:
        """``count(scope, multi=True)`` of each scope, in order, in one pipelined round trip
        (on a Cluster, one per node)."""
        calls = [self.core.count(scope) for scope in scopes]
        replies = self._many(calls)
        return [
            int(self.core.check(raw, call).items[0])
            for call, raw in zip(calls, replies, strict=True)
        ]

    def _many(self, calls: Sequence[Call]) -> builtins.list[Any]:
        replies = self._run_many(calls) if calls else []
        for raw in replies:
            if isinstance(raw, Exception):
                raise raw
        return replies

    def iter_locks(self, scope: str, **filters: Any) -> Iterator[Lock]:
        """Every live lock of the scope matching the filters, page by page."""
        cursor = None
        while True:
            page = self.list(scope, cursor=cursor, **filters)
            yield from page.locks
            if page.cursor is None:
                return
            cursor = page.cursor

    def count(self, scope: str, *, multi: bool = False, **filters: Any) -> int:
        """How many live locks of the scope match the filters (reads them all); with
        ``multi`` and no filter, how many of multi types it holds (O(log n))."""
        if multi and not filters:
            call = self.core.count(scope)
            return int(self.core.check(self._run(call), call).items[0])
        return sum(1 for _ in self.iter_locks(scope, limit=1000, **filters))
