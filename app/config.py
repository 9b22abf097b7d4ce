"""Service configuration: defaults, then ``LOCKCORE_*`` environment variables, then the
override passed to ``create_app`` (tests)."""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import Any

#: name -> (default, parser). Each is read from the environment as LOCKCORE_<name>.
SETTINGS: dict[str, tuple[Any, Any]] = {
    "REDIS_URL": ("", str),  # empty: the embedded redis-server in DATA_DIR
    "DATA_DIR": ("lockcore-data", str),
    "KEY_PREFIX": ("lockcore", str),
    "EVENT_MAXLEN": (1000, int),
    "RETENTION": (7 * 86400.0, float),  # seconds keys and events outlive the last lock
    "VERSAL_TTL": (300.0, float),  # seconds a gadget lock lasts (Versal's expiresIn)
    "VERSAL_MAX_TTL": (3600.0, float),
    "EDX_TTL": (0.0, float),  # seconds an EDX workspace lock lasts; 0: until unlocked
    "EDX_FEATURES_OVERRIDE": ("", str),  # YAML file changing the restricted-feature table
    "DOCSPACE_TTL": (0.0, float),  # seconds a DocSpace file lock lasts; 0: until unlocked
    "V1_TTL": (30.0, float),  # default lease of /v1 worker locks
    "V1_MAX_TTL": (3600.0, float),
    "V1_MAX_WAIT": (30.0, float),  # longest long-poll a /v1 acquire may ask for
    "REDIS_TIMEOUT": (5.0, float),  # seconds before a Redis call counts as failed
    "LOG_LEVEL": ("INFO", str),
}


def load(override: Mapping[str, Any] | None = None) -> dict[str, Any]:
    config = {name: default for name, (default, _) in SETTINGS.items()}
    for name, (_, parse) in SETTINGS.items():
        raw = os.environ.get(f"LOCKCORE_{name}")
        if raw is not None:
            try:
                config[name] = parse(raw)
            except ValueError as exc:
                raise ValueError(f"LOCKCORE_{name}={raw!r}: {exc}") from exc
    config.update(override or {})
    return config
