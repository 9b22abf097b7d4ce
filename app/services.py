"""What every request needs, built once per app: the lock manager (instrumented), the
users and the catalog, all on one Redis connection. Lives in ``app.extensions``."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any, TypeVar

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
    connect,
)

from .catalog import Catalog
from .identity import Users
from .observability import REDIS_LATENCY, count_lock_op
from .units import ApiUnit, Units, default_units

T = TypeVar("T")


#: operation -> its child of REDIS_LATENCY (``labels()`` takes a lock and builds a key
#: each time).
_LATENCY: dict[str, Any] = {}


def _latency(operation: str) -> Any:
    child = _LATENCY.get(operation)
    if child is None:
        child = _LATENCY[operation] = REDIS_LATENCY.labels(operation)
    return child


def _measured(operation: str, call: Callable[[], T]) -> T:
    # No context manager: a generator-based one, built per call, costs more than this.
    started = time.perf_counter()
    try:
        return call()
    except LockConflict:
        count_lock_op("conflict")
        raise
    except LockNotFound:
        count_lock_op("not_found")
        raise
    except LockNotOwned:
        count_lock_op("not_owned")
        raise
    finally:
        _latency(operation).observe(time.perf_counter() - started)


class InstrumentedLockManager(LockManager):
    """A LockManager that reports latency and results to /metrics."""

    def acquire(self, *args: Any, **kwargs: Any) -> AcquireResult:
        result = _measured(
            "acquire", lambda: super(InstrumentedLockManager, self).acquire(*args, **kwargs)
        )
        count_lock_op("acquired" if result.created else "refreshed")
        if result.replaced is not None:
            count_lock_op("replaced")
        return result

    def release(self, *args: Any, **kwargs: Any) -> Lock:
        lock = _measured(
            "release", lambda: super(InstrumentedLockManager, self).release(*args, **kwargs)
        )
        count_lock_op("released")
        return lock

    def refresh(self, *args: Any, **kwargs: Any) -> Lock:
        lock = _measured(
            "refresh", lambda: super(InstrumentedLockManager, self).refresh(*args, **kwargs)
        )
        count_lock_op("refreshed")
        return lock

    def expired_noticed(self, count: int) -> None:
        count_lock_op("expired", count)

    def get(self, lock_id: str) -> Lock:
        return _measured("get", lambda: super(InstrumentedLockManager, self).get(lock_id))

    def list(self, scope: str, **kwargs: Any) -> LockPage:
        return _measured("list", lambda: super(InstrumentedLockManager, self).list(scope, **kwargs))


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
    )
    catalog = Catalog(client, prefix, parts=apis.catalog_parts())
    return Services(manager, Users(client, prefix), catalog, client, connection)


def services() -> Services:
    return current_app.extensions["lockcore"]  # type: ignore[no-any-return]
