"""What every request needs, built once per app: the lock manager (instrumented), the
users and the catalog, all on one Redis connection. Lives in ``app.extensions``."""

from __future__ import annotations

import time
from collections.abc import Callable
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
    Mode,
    connect,
)

from .catalog import Catalog
from .identity import Users
from .observability import REDIS_LATENCY, count_lock_op

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


def lock_types(config: dict[str, Any]) -> list[LockType]:
    """The lock types of the four APIs. Every change is an event unless LOCKCORE_EVENTS
    is off (the CLI's ``locks watch`` and Redis-native consumers follow them)."""
    events = bool(config.get("EVENTS", True))

    def durable(api: str) -> bool:
        return bool(config.get(f"{api}_DURABLE", False))

    return [
        LockType(
            "gadget",
            one_per_owner=True,
            default_ttl=config["VERSAL_TTL"],
            max_ttl=config["VERSAL_MAX_TTL"],
            events=events,
            durable=durable("VERSAL"),
        ),
        LockType(
            "workspace",
            default_ttl=config["EDX_TTL"] or None,
            allow_no_expiry=not config["EDX_TTL"],
            events=events,
            durable=durable("EDX"),
        ),
        LockType(
            "file",
            default_ttl=config["DOCSPACE_TTL"] or None,
            allow_no_expiry=not config["DOCSPACE_TTL"],
            events=events,
            durable=durable("DOCSPACE"),
        ),
        # Vidispine deletion locks: many per entity, one lock type per entity type, so a
        # listing by entity type is a range of one index; indexed by owner for the
        # username filter.
        *(
            LockType(
                f"deletion-{etype}",
                mode=Mode.MULTI,
                default_ttl=86400.0,
                index_owner=True,
                events=events,
                durable=durable("VIDISPINE"),
            )
            for etype in ("item", "collection", "library", "file")
        ),
        # /v1, for workers in any language: exclusive leases, listed by owner too.
        LockType(
            "job",
            default_ttl=config["V1_TTL"],
            max_ttl=config["V1_MAX_TTL"],
            index_owner=True,
            events=events,
            durable=durable("V1"),
        ),
    ]


@dataclass
class Services:
    locks: InstrumentedLockManager
    users: Users
    catalog: Catalog
    client: Any
    connection: Connection | None = None

    def ready(self) -> dict[str, Any]:
        """Redis answers and every script is loaded (loading any that are missing)."""
        self.client.ping()
        return {"redis": "ok", "scripts": self.locks.load_scripts()}


def build(config: dict[str, Any]) -> Services:
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
        lock_types(config),
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
    return Services(manager, Users(client, prefix), Catalog(client, prefix), client, connection)


def services() -> Services:
    return current_app.extensions["lockcore"]  # type: ignore[no-any-return]
