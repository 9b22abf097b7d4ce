"""Service configuration: defaults, then ``LOCKCORE_*`` environment variables, then the
override passed to ``create_app`` (tests)."""

from __future__ import annotations

import os
from collections.abc import Iterable, Mapping
from typing import Any

from lockcore import DEFAULT_DATA_DIR, DEFAULT_PREFIX
from lockcore.embedded import appendfsync_policy

from .units import ApiUnit, Setting, Units, default_units, flag

#: name -> (default, parser). Each is read from the environment as LOCKCORE_<name>. Each
#: API's own settings (its TTLs, <NAME>_DURABLE...) are declared by its unit
#: (lockcore_service.units).
SETTINGS: dict[str, Setting] = {
    "REDIS_URL": ("", str),  # empty: the embedded redis-server in DATA_DIR
    "DATA_DIR": (DEFAULT_DATA_DIR, str),
    "APPENDFSYNC": ("everysec", appendfsync_policy),  # embedded Redis: everysec | always
    "KEY_PREFIX": (DEFAULT_PREFIX, str),
    "EVENTS": (True, flag),
    "EVENT_MAXLEN": (1000, int),
    # Redis 7+: the scripts as one FUNCTION library (FCALL), cheaper per call than EVALSHA;
    # EVALSHA where the server has no FUNCTION or refuses FUNCTION LOAD, or when false
    "FUNCTIONS": (True, flag),
    "RETENTION": (7 * 86400.0, float),  # seconds keys and events outlive the last lock
    # Durable locks (each API's <NAME>_DURABLE turns them on for its locks): acquire,
    # refresh and release answer only once DURABLE_REPLICAS replicas have the change (WAIT,
    # up to DURABLE_TIMEOUT seconds), else a 503 (an acquire's lock released again). Needs
    # a primary with replicas (Sentinel, Cluster).
    "DURABLE_REPLICAS": (1, int),
    "DURABLE_TIMEOUT": (1.0, float),
    "IDEMPOTENCY_TTL": (86400.0, float),  # seconds an Idempotency-Key's outcome is kept
    "REDIS_TIMEOUT": (5.0, float),  # seconds before a Redis call counts as failed
    "MAX_BODY": (1024 * 1024, int),  # bytes a request body may have; more: 413
    "MAX_NAME_LENGTH": (512, int),  # characters in a scope, resource, id or metadata key
    "MAX_NOTES_LENGTH": (2000, int),  # characters in an EDX lock's notes
    "MAX_METADATA_ENTRIES": (64, int),  # entries in one lock's metadata
    "MAX_METADATA_BYTES": (16 * 1024, int),  # UTF-8 bytes of one lock's metadata keys+values
    "AUTH_FAILURE_LIMIT": ("30/minute", str),  # failed authentications per client address
    "TRUSTED_PROXIES": (0, int),  # proxies in front whose X-Forwarded-For names the client
    "LOG_LEVEL": ("INFO", str),
    # /metrics reads the locks and waiters of at most this many scopes per scrape (a
    # SCAN, then one script per scope: O(locks)), at most once per METRICS_CACHE seconds
    # in each process; lockcore_metrics_scopes_truncated says when the cap cut the walk
    "METRICS_MAX_SCOPES": (10000, int),
    "METRICS_CACHE": (5.0, float),
}


#: Seconds a process trusts what it read about who may do what: a key's user, a catalog
#: entry (course, workspace, file), that an address is not blocked. A key revoked, a user
#: or a role changed elsewhere takes effect in every process within this bound (in the
#: process that made the change, at once). 0: read Redis every time. Not (yet) a
#: LOCKCORE_* setting: ``create_app``'s config may override it.
AUTH_CACHE_TTL = 1.0


def settings(units: Iterable[ApiUnit] | None = None) -> dict[str, Setting]:
    """The service's settings and those of ``units`` (default: every API)."""
    apis = Units(tuple(default_units() if units is None else units))
    return {**SETTINGS, **apis.settings()}


def load(
    override: Mapping[str, Any] | None = None, units: Iterable[ApiUnit] | None = None
) -> dict[str, Any]:
    """Defaults, then ``LOCKCORE_*`` environment variables, then ``override``, for the
    service's settings and those of ``units`` (default: every API)."""
    known = settings(units)
    config: dict[str, Any] = {name: default for name, (default, _) in known.items()}
    config["AUTH_CACHE_TTL"] = AUTH_CACHE_TTL
    for name, (_, parse) in known.items():
        raw = os.environ.get(f"LOCKCORE_{name}")
        if raw is not None:
            try:
                config[name] = parse(raw)
            except ValueError as exc:
                raise ValueError(f"LOCKCORE_{name}={raw!r}: {exc}") from exc
    config.update(override or {})
    return config
