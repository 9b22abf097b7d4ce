"""LockManager: the Python surface of lockcore, for workers and for the service."""

from __future__ import annotations

import math
import re
import time
import uuid
from collections.abc import Callable, Iterable, Iterator, Mapping
from functools import lru_cache
from itertools import takewhile
from typing import Any

from .connect import Connection, connect
from .exceptions import (
    InvalidLockRequest,
    LockConflict,
    LockNotFound,
    LockNotOwned,
    WaitCancelled,
)
from .hold import Held, Hold
from .keys import ScopeKeys, check_prefix, directory_key, encode, slot_of_id
from .models import AcquireResult, Lock, LockPage, LockType
from .scripts import Scripts, check

DEFAULT_PREFIX = "lockcore"


def _ms(seconds: float) -> int:
    """The one place seconds become the milliseconds Redis works in."""
    return max(1, math.ceil(seconds * 1000))


def _instant_ms(instant: float | None) -> int | None:
    if instant is None:
        return None
    if not isinstance(instant, (int, float)) or isinstance(instant, bool) or not (
            0 < instant < math.inf):
        raise InvalidLockRequest(f"expires_at must be seconds since the epoch, got {instant!r}")
    return math.ceil(instant * 1000)


_REQUEST_ID = re.compile(r"[A-Za-z0-9_.-]{1,128}")


def check_request_id(request_id: Any) -> str:
    if not isinstance(request_id, str) or not _REQUEST_ID.fullmatch(request_id):
        raise InvalidLockRequest(
            f"request_id must be 1-128 of A-Z a-z 0-9 - _ ., got {request_id!r}")
    return request_id


def _utf8(names: Mapping[str, str], metadata: Mapping[str, Any] | None) -> None:
    """Refuse text without a UTF-8 form (a lone surrogate): Redis stores bytes, and the
    scripts' JSON encoder would fail on it as if Redis were down."""
    texts: list[tuple[str, str]] = list(names.items())
    for key, value in (metadata or {}).items():
        texts += [("metadata key", str(key)), (f"metadata[{key!r}]", str(value or ""))]
    for label, text in texts:
        try:
            text.encode()
        except UnicodeEncodeError:
            raise InvalidLockRequest(f"{label} must be valid Unicode text (no lone "
                                     f"surrogates), got {text!r}") from None


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


class Waiter:
    """One caller waiting in line for a lock: its ticket, its signal key, its deadline.
    Deadlines are the caller's own patience, so its monotonic clock; lock expiry stays
    the server's."""

    def __init__(self, manager: LockManager, request: dict[str, Any], wait: float) -> None:
        if not isinstance(wait, (int, float)) or isinstance(wait, bool) or not wait > 0:
            raise InvalidLockRequest(f"wait must be a positive number of seconds, got {wait!r}")
        self.manager = manager
        self.request = request
        self.ticket = uuid.uuid4().hex
        self.deadline = time.monotonic() + wait
        self.signal = request["keys"].waiter_signal(self.ticket)

    def remaining(self) -> float:
        return self.deadline - time.monotonic()

    def pause(self) -> float:
        """How long to block on the signal: until woken, the deadline, or the next sign of
        life (a waiter that stops trying is taken for gone)."""
        return max(0.001, min(self.remaining(), self.manager.heartbeat))

    def args(self) -> dict[str, Any]:
        # The queue lives as long as a waiter in it shows signs of life, no longer.
        alive = _ms(self.manager.heartbeat * 3)
        return {"ticket": self.ticket, "alive_ms": alive, "queue_ms": alive}

    def leave_args(self) -> dict[str, Any]:
        r = self.request
        return {"keys": r["keys"], "scope": r["scope"], "type": r["type"],
                "resource": r["resource"], "ticket": self.ticket}

    def leave_quietly(self) -> None:
        """Leave the line (timed out, cancelled, failed); a lost Redis only delays the
        cleanup, which the keys' own expiry then does."""
        try:
            self.manager._scripts.leave(**self.leave_args())
        except Exception:  # noqa: BLE001
            pass


class LockManager:
    """Acquire, release, refresh, get and list locks; every change is one Lua script.

    ``client`` is a redis-py client: ``Redis``, ``RedisCluster``, or one from a Sentinel.
    ``types`` configures each lock type; acquiring an unconfigured type is an error.
    ``event_maxlen`` caps each scope's event stream (approximately); ``retention`` is how
    long, in seconds, a scope's keys and events outlive its last lock. A waiting acquire
    shows it is alive every ``heartbeat`` seconds; one silent for three is passed over.
    An acquire's ``request_id`` is remembered for ``request_ttl`` seconds.
    """

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
    ) -> None:
        self.client = client
        values = types.values() if isinstance(types, Mapping) else types
        self.types: dict[str, LockType] = {t.name: t for t in values}
        self.prefix = check_prefix(prefix)
        self.heartbeat = heartbeat
        self.request_ms = _ms(request_ttl)
        self._scripts = Scripts(client, event_maxlen=event_maxlen, retention_ms=_ms(retention))
        self._keys = lru_cache(maxsize=4096)(self._scope_keys)
        self.connection: Connection | None = None

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

    def close(self) -> None:
        """Close the connection ``from_url`` opened (and stop its embedded server)."""
        if self.connection is not None:
            self.connection.close()
            self.connection = None

    def _scope_keys(self, scope: str) -> ScopeKeys:
        try:
            return ScopeKeys.for_scope(self.prefix, scope)
        except ValueError as exc:
            raise InvalidLockRequest(f"bad scope: {exc}") from exc

    def keys(self, scope: str) -> ScopeKeys:
        """The Redis keys of a scope (see the README's key layout)."""
        return self._keys(scope)

    def expired_noticed(self, count: int) -> None:
        """Called with the number of expired locks a call removed; a hook for metrics."""

    def load_scripts(self) -> list[str]:
        """Load every script now (they also load themselves on first use)."""
        return self._scripts.load_all()

    def lock_type(self, name: str) -> LockType:
        try:
            return self.types[name]
        except KeyError:
            known = ", ".join(sorted(self.types)) or "none"
            raise InvalidLockRequest(f"unknown lock type {name!r} (known: {known})") from None

    def _ttl_ms(self, lock_type: LockType, ttl: float | None) -> int:
        """Milliseconds for a requested ttl; 0 stands for no expiry."""
        if ttl is None:
            ttl = lock_type.default_ttl if lock_type.default_ttl is not None else math.inf
        if not isinstance(ttl, (int, float)) or isinstance(ttl, bool) or not ttl > 0:
            raise InvalidLockRequest(f"ttl must be a positive number of seconds, got {ttl!r}")
        if ttl == math.inf:
            if not lock_type.allow_no_expiry:
                raise InvalidLockRequest(f"locks of type {lock_type.name!r} must expire")
            return 0
        if lock_type.max_ttl is not None:
            ttl = min(ttl, lock_type.max_ttl)
        return _ms(ttl)

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
    ) -> AcquireResult:
        """Take a lock, or raise LockConflict naming the holder.

        The owner's own live lock on the resource is refreshed and returned as it is (same
        id and token, ``created=False``). For a ``one_per_owner`` type the owner's previous
        lock of that type in the scope is released and returned as ``replaced``.
        ``ttl`` in seconds; None takes the type's default; ``FOREVER`` for no expiry.
        ``expires_at`` (seconds since the epoch, server clock) instead of ``ttl``: the lease
        is what is left until then; InvalidLockRequest if that is not in the future.
        ``wait`` (seconds): on a conflict, wait in line until the lock is free (woken by the
        release, first come first served) or the time is up (then LockConflict).
        ``cancel``: checked between waits (at least every ``heartbeat`` seconds); when it
        returns true the caller leaves the line and WaitCancelled is raised.
        ``request_id`` (1-128 of ``A-Z a-z 0-9 - _ .``) makes the call safe to repeat: the
        first call that gets the lock remembers it (``request_ttl``), and a repeated call
        with the same id returns that lock as it is now instead of acting again, or raises
        LockNotFound if it is gone. Use it when a call may have run without its reply
        arriving (a timeout): the retry cannot make a second lock.
        """
        request = self._acquire_request(scope, type, resource, owner, ttl, metadata,
                                        expires_at)
        if request_id is not None:
            request.update(request_id=check_request_id(request_id), request_ms=self.request_ms)
        if not wait:
            return self._acquire_result(self._scripts.acquire(**request), scope)
        waiter = Waiter(self, request, wait)
        try:
            while True:
                try:
                    return self._acquire_result(
                        self._scripts.acquire(**request, **waiter.args()), scope)
                except LockConflict:
                    if waiter.remaining() <= 0:
                        raise
                    if cancel is not None and cancel():
                        raise WaitCancelled("the wait was cancelled", scope=scope) from None
                self.client.blpop([waiter.signal], timeout=waiter.pause())
        except BaseException:
            waiter.leave_quietly()
            raise

    def _acquire_request(
        self, scope: str, type: str, resource: str, owner: str, ttl: float | None,
        metadata: Mapping[str, str] | None, expires_at: float | None,
    ) -> dict[str, Any]:
        """The validated arguments of the acquire script."""
        lock_type = self.lock_type(type)
        keys = self.keys(scope)
        for label, name in (("resource", resource), ("owner", owner)):
            if not isinstance(name, str) or not name:
                raise InvalidLockRequest(f"{label} must be a non-empty string, got {name!r}")
        _utf8({"scope": scope, "resource": resource, "owner": owner}, metadata)
        return {
            "keys": keys, "scope": scope, "type": type, "resource": resource, "owner": owner,
            "mode": lock_type.mode.value, "one_per_owner": lock_type.one_per_owner,
            "ttl_ms": self._ttl_ms(lock_type, ttl if expires_at is None else None),
            "max_ttl_ms": 0 if lock_type.max_ttl is None else _ms(lock_type.max_ttl),
            "metadata": {str(k): str(v) for k, v in (metadata or {}).items()},
            "expires_at_ms": _instant_ms(expires_at),
        }

    def _acquire_result(self, raw: Any, scope: str) -> AcquireResult:
        reply = check(raw, "acquire", scope, None, self.expired_noticed)
        lock_raw, replaced_raw, created = reply.items
        replaced = (
            Lock.from_record(replaced_raw, scope, reply.now_ms) if _text(replaced_raw) else None
        )
        return AcquireResult(
            lock=Lock.from_record(lock_raw, scope, reply.now_ms),
            replaced=replaced,
            created=bool(int(created)),
        )

    def requested(self, scope: str, request_id: str) -> str | None:
        """The id of the lock an acquire with this ``request_id`` got, while remembered
        (whether or not that lock is still live), or None: did that call act?"""
        raw = self.client.get(f"{self.keys(scope).base}i:{check_request_id(request_id)}")
        return None if raw is None else _text(raw).rsplit(":", 1)[0]

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
    ) -> Hold:
        """``with mgr.hold(...) as held:`` — acquire (waiting up to ``wait``), renew every
        ``ttl``/3 in the background until the block exits, then release. If the lock is
        lost meanwhile, ``held.lost`` is set at once, ``on_lost(held)`` is called, and
        leaving the block raises LockLost."""
        return Hold(self, scope, type, resource, owner, ttl, wait, metadata, on_lost)

    def validate(self, scope: str, type: str, resource: str, fencing_token: int) -> bool:
        """The fencing check, for a guarded resource before a write: is this token the
        live lock's on the resource? False for a stale token (expired, released, taken)."""
        keys = self.keys(scope)
        try:
            check(self._scripts.validate(keys, scope, type, resource, int(fencing_token)),
                  "validate", scope)
        except (LockNotFound, LockNotOwned):
            return False
        return True

    def scope_of(self, lock_id: str) -> str:
        """The scope a lock id belongs to (one read of the slot's id directory)."""
        slot = slot_of_id(lock_id)
        if slot is None:
            raise LockNotFound(f"{lock_id!r} is not a lock id", lock_id=str(lock_id))
        scope = self.client.hget(directory_key(self.prefix, slot), lock_id)
        if scope is None:
            raise LockNotFound(f"no live lock {lock_id}", lock_id=lock_id)
        return _text(scope)

    def _locate(self, lock: str | Lock, scope: str | None = None) -> tuple[str, str]:
        if isinstance(lock, Lock):
            return lock.id, lock.scope
        return lock, scope if scope is not None else self.scope_of(lock)

    def release(self, lock: str | Lock, owner: str, *, force: bool = False,
                scope: str | None = None) -> Lock:
        """Release a lock (by id, or the Lock itself, or by id with its ``scope``: one
        round trip fewer).

        Only its owner may, unless ``force`` (administrators). Raises LockNotFound for an
        unknown or expired lock, LockNotOwned for another owner's. Returns the lock.
        """
        lock_id, scope = self._locate(lock, scope)
        reply = check(
            self._scripts.release(self.keys(scope), scope, lock_id, owner, force),
            "release", scope, lock_id, self.expired_noticed,
        )
        return Lock.from_record(reply.items[0], scope, reply.now_ms)

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
    ) -> Lock:
        """Extend a lock's lease to ``ttl`` seconds from now (None: its own lease length),
        or to ``expires_at`` (seconds since the epoch), capped at its type's maximum TTL.
        ``metadata``: keys to set (None values remove a key), or the whole new map with
        ``replace_metadata``; with metadata and neither ``ttl`` nor ``expires_at``, the
        expiry stays as it is. Same errors as release."""
        lock_id, scope = self._locate(lock)
        args = self._refresh_args(ttl, expires_at, metadata)
        reply = check(
            self._scripts.refresh(self.keys(scope), scope, lock_id, owner, args["ttl_ms"],
                                  force, args["expires_at_ms"], args["metadata"],
                                  replace_metadata),
            "refresh", scope, lock_id, self.expired_noticed,
        )
        return Lock.from_record(reply.items[0], scope, reply.now_ms)

    @staticmethod
    def _refresh_args(ttl: float | None, expires_at: float | None,
                      metadata: Mapping[str, str | None] | None) -> dict[str, Any]:
        ttl_ms: int | str | None = None
        if metadata is not None and ttl is None and expires_at is None:
            ttl_ms = "keep"
        if ttl is not None:
            if not isinstance(ttl, (int, float)) or isinstance(ttl, bool) or not 0 < ttl < math.inf:
                raise InvalidLockRequest(f"ttl must be a positive number of seconds, got {ttl!r}")
            ttl_ms = _ms(ttl)
        meta = None if metadata is None else {
            str(k): None if v is None else str(v) for k, v in metadata.items()}
        _utf8({}, meta)
        return {"ttl_ms": ttl_ms, "expires_at_ms": _instant_ms(expires_at), "metadata": meta}

    def get(self, lock_id: str) -> Lock:
        """The live lock with this id, or LockNotFound."""
        scope = self.scope_of(lock_id)
        reply = check(self._scripts.get(self.keys(scope), scope, lock_id), "get", scope, lock_id,
                      self.expired_noticed)
        return Lock.from_record(reply.items[0], scope, reply.now_ms)

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
        """One page of the scope's live locks, filtered; ordered by type, resource, id
        (by owner, type, id when ``owner`` is given). ``resource`` without ``type`` walks
        the scope's index with a filter, a bounded number of entries per call."""
        return self._list_result(self._scripts.list(**self._list_request(
            scope, owner=owner, type=type, resource=resource, cursor=cursor, limit=limit)),
            scope)

    def _list_request(self, scope: str, *, owner: str | None = None, type: str | None = None,
                      resource: str | None = None, cursor: str | None = None,
                      limit: int = 100) -> dict[str, Any]:
        if not isinstance(limit, int) or isinstance(limit, bool) or not 1 <= limit <= 10_000:
            raise InvalidLockRequest(f"limit must be an integer in 1..10000, got {limit!r}")
        try:
            index = "own" if owner is not None else "res"
            parts = [owner, type] if owner is not None else [type, resource]
            # The index prefix: the leading names that are given.
            given = takewhile(lambda p: p is not None, parts)
            prefix = "".join(encode(p) + ":" for p in given)  # type: ignore[arg-type]
        except ValueError as exc:
            raise InvalidLockRequest(str(exc)) from exc
        return {"keys": self.keys(scope), "scope": scope, "index": index, "prefix": prefix,
                "cursor": cursor or "", "count": limit, "owner": owner or "",
                "type": type or "", "resource": resource or ""}

    def _list_result(self, raw: Any, scope: str) -> LockPage:
        reply = check(raw, "list", scope, None, self.expired_noticed)
        next_cursor, *raws = reply.items
        return LockPage(
            locks=tuple(Lock.from_record(raw, scope, reply.now_ms) for raw in raws),
            cursor=_text(next_cursor) or None,
        )

    def count(self, scope: str) -> int:
        """How many live locks the scope holds (O(log n))."""
        reply = check(self._scripts.count(self.keys(scope), scope), "count", scope)
        return int(reply.items[0])

    def iter_locks(self, scope: str, **filters: Any) -> Iterator[Lock]:
        """Every live lock of the scope matching the filters, page by page."""
        cursor = None
        while True:
            page = self.list(scope, cursor=cursor, **filters)
            yield from page.locks
            if page.cursor is None:
                return
            cursor = page.cursor
