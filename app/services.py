"""What every request needs, built once per app: the lock manager (instrumented), the
users and the catalog, all on one Redis connection. Lives in ``app.extensions``."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from flask import current_app

from lockcore import (
    AcquireResult,
    Connection,
    Lock,
    LockConflict,
    LockManager,
    LockNotFound,
    LockNotOwned,
    LockPage,
    LockType,
    WaitCancelled,
    connect,
)
from lockcore.scripts import Call

from .catalog import Catalog
from .identity import Users
from .observability import (
    REDIS_LATENCY,
    UNKNOWN,
    Children,
    annotate,
    count_lock_op,
    observe_wait,
    request_api,
)
from .units import ApiUnit, Units, default_units

#: operation -> its child of REDIS_LATENCY
_latency = Children(REDIS_LATENCY)


class InstrumentedLockManager(LockManager):
    """A LockManager that reports to /metrics and to the request's log line: each Redis
    round trip's latency (``_run``: never the time parked waiting in line), each lock
    operation's result by API and type, the time waits spent in line; and the scope and
    lock id of the request's lock calls (``observability.annotate``). ``apis``: lock type
    -> the API (blueprint name) it belongs to."""

    def __init__(self, *args: Any, apis: Mapping[str, str] | None = None, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.apis: dict[str, str] = dict(apis or {})

    # -- Redis round trips -------------------------------------------------------------

    def _run(self, call: Call) -> Any:
        # No context manager: a generator-based one, built per call, costs more than this.
        started = time.perf_counter()
        try:
            return super()._run(call)
        finally:
            _latency(call.script).observe(time.perf_counter() - started)

    def _run_many(self, calls: Sequence[Call]) -> list[Any]:
        started = time.perf_counter()
        try:
            return super()._run_many(calls)
        finally:
            if calls:
                _latency(calls[0].script).observe(time.perf_counter() - started)

    # -- results -----------------------------------------------------------------------

    def api_of(self, type: str | None) -> str:
        """The API a lock type belongs to; for no type (a lock gone, by id), the API
        serving the request, if any."""
        if type is not None:
            api = self.apis.get(type)
            if api is not None:
                return api
        return (request_api() if type is None else None) or UNKNOWN

    def _count(self, type: str | None, result: str, count: int = 1) -> None:
        api = self.api_of(type)
        count_lock_op(api, type if type is not None and api != UNKNOWN else UNKNOWN, result, count)

    def wait_ended(self, scope: str, type: str, seconds: float, outcome: str) -> None:
        api = self.api_of(type)
        observe_wait(api, type if api != UNKNOWN else UNKNOWN, outcome, seconds)

    def acquire(
        self, scope: str, type: str, resource: str, owner: str, **kwargs: Any
    ) -> AcquireResult:
        annotate(scope=scope)
        try:
            result = super().acquire(scope, type, resource, owner, **kwargs)
        except LockConflict:
            self._count(type, "timeout" if kwargs.get("wait") else "conflict")
            raise
        except WaitCancelled:
            self._count(type, "timeout")
            raise
        except LockNotFound:  # a repeated request id whose lock is gone
            self._count(type, "not_found")
            raise
        annotate(lock_id=result.lock.id)
        self._count(type, "acquired" if result.created else "refreshed")
        if result.replaced is not None:
            self._count(type, "replaced")
        return result

    def acquire_all(
        self, scope: str, type: str, resources: Sequence[str], owner: str, **kwargs: Any
    ) -> list[AcquireResult]:
        annotate(scope=scope)
        try:
            results = super().acquire_all(scope, type, resources, owner, **kwargs)
        except LockConflict:
            self._count(type, "conflict")
            raise
        created = sum(1 for r in results if r.created)
        if created:
            self._count(type, "acquired", created)
        if len(results) > created:
            self._count(type, "refreshed", len(results) - created)
        return results

    def release_all(self, locks: Sequence[Lock], owner: str, *, force: bool = False) -> int:
        if locks:
            annotate(scope=locks[0].scope)
        try:
            released = super().release_all(locks, owner, force=force)
        except LockNotOwned as exc:
            self._count(exc.holder.type if exc.holder else None, "not_owned")
            raise
        if released:
            self._count(locks[0].type, "released", released)
        return released

    def _changed(self, lock: str | Lock, result: str, change: Callable[[], Lock]) -> Lock:
        """A release or refresh: counted by the lock's type (by id: as the reply tells)."""
        if isinstance(lock, Lock):
            annotate(scope=lock.scope, lock_id=lock.id)
        else:
            annotate(lock_id=lock)
        try:
            changed = change()
        except LockNotFound:
            self._count(lock.type if isinstance(lock, Lock) else None, "not_found")
            raise
        except LockNotOwned as exc:
            holder = exc.holder
            self._count(holder.type if holder else None, "not_owned")
            raise
        annotate(scope=changed.scope)
        self._count(changed.type, result)
        return changed

    def release(self, lock: str | Lock, owner: str, **kwargs: Any) -> Lock:
        return self._changed(
            lock, "released", lambda: LockManager.release(self, lock, owner, **kwargs)
        )

    def refresh(self, lock: str | Lock, owner: str, *args: Any, **kwargs: Any) -> Lock:
        return self._changed(
            lock, "refreshed", lambda: LockManager.refresh(self, lock, owner, *args, **kwargs)
        )

    def expired_noticed(self, count: int) -> None:
        """Not counted here: the scrape's stats pass counts every expired lock once, by
        type, whoever removed it (``observability.LockStats``)."""

    # -- reads: the request's scope and lock id, for its log line --------------------------

    def get(self, lock_id: str) -> Lock:
        annotate(lock_id=lock_id)
        lock = super().get(lock_id)
        annotate(scope=lock.scope)
        return lock

    def list(self, scope: str, **kwargs: Any) -> LockPage:
        annotate(scope=scope)
        return super().list(scope, **kwargs)


def type_apis(units: Units, config: Mapping[str, Any]) -> dict[str, str]:
    """Lock type -> the API (blueprint name, as in the HTTP metrics) that declares it."""
    out: dict[str, str] = {}
    for unit in units.all:
        for lock_type in unit.lock_types(config):
            out.setdefault(lock_type.name, unit.blueprint.name)
    return out


def lock_types(config: Mapping[str, Any], units: Iterable[ApiUnit] | None = None) -> list[LockType]:
    """The lock types of ``units`` (default: every API). Every change is an event unless
    LOCKCORE_EVENTS is off (the CLI's ``locks watch`` and Redis-native consumers follow
    them)."""
    return Units(tuple(default_units() if units is None else units)).lock_types(config)


@dataclass
class Services:
    locks: InstrumentedLockManager
    users: Users
    catalog: Catalog
    client: Any
    connection: Connection | None = None

    def current_lock(self, scope: str, lock_type: str, resource: str | None = None) -> Lock | None:
        """The one lock of ``lock_type`` in ``scope`` (on ``resource``), if any: for
        exclusive types held at most once per scope or resource."""
        page = self.locks.list(scope, type=lock_type, resource=resource, limit=1)
        return page.locks[0] if page.locks else None

    def lock_under(self, lock_id: str, scope: str, *, exact: bool = False) -> Lock | None:
        """The lock ``lock_id`` if it lives in a scope under ``scope`` (``exact``: in that
        scope), else None: an API sees only its own scopes' locks."""
        try:
            lock = self.locks.get(lock_id)
        except LockNotFound:
            return None
        mine = lock.scope == scope if exact else lock.scope.startswith(scope)
        return lock if mine else None

    def ready(self) -> dict[str, Any]:
        """Redis answers and every script is loaded (loading any that are missing)."""
        self.client.ping()
        return {"redis": "ok", "scripts": self.locks.load_scripts()}


def build(config: dict[str, Any], units: Iterable[ApiUnit] | None = None) -> Services:
    """The lock manager with the lock types of ``units`` (default: every API), the users
    and the catalog with their parts, on one Redis connection."""
    apis = Units(tuple(default_units() if units is None else units))
    connection = None
    client = config.get("REDIS_CLIENT")
    if client is None:
        connection = connect(
            config["REDIS_URL"] or None,
            data_dir=config["DATA_DIR"],
            socket_timeout=config["REDIS_TIMEOUT"],
            socket_connect_timeout=config["REDIS_TIMEOUT"],
        )  # and no retries (connect's default): a write is never sent twice
        client = connection.client
    prefix = config["KEY_PREFIX"]
    manager = InstrumentedLockManager(
        client,
        apis.lock_types(config),
        prefix=prefix,
        event_maxlen=config["EVENT_MAXLEN"],
        retention=config["RETENTION"],
        # A waiter's BLPOP must end before the socket timeout counts it as a failure.
        heartbeat=min(1.0, config["REDIS_TIMEOUT"] / 2),
        request_ttl=config["IDEMPOTENCY_TTL"],
        functions=bool(config.get("FUNCTIONS", True)),
        durable_replicas=config.get("DURABLE_REPLICAS", 1),
        durable_timeout=config.get("DURABLE_TIMEOUT", 1.0),
        apis=type_apis(apis, config),
    )
    catalog = Catalog(client, prefix, parts=apis.catalog_parts())
    return Services(manager, Users(client, prefix), catalog, client, connection)


def services() -> Services:
    return current_app.extensions["lockcore"]  # type: ignore[no-any-return]
