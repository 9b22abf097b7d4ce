"""lockcore's own JSON API for workers in any language: ``/v1``.

Locks in scopes of the caller's naming (kept apart from the four product APIs' scopes
under ``v1:``), of the types ``job`` (an exclusive lease), ``rlock`` (reentrant), ``rw``
(read-write: ``"shared": true`` for a read lock), ``permit`` (a semaphore of
``LOCKCORE_V1_PERMITS``) and ``leader`` (elections); multi-locks (all or none) and
elections' observers. ``Authorization: Bearer <key>``; the caller is the owner. Errors:
``{"error": {"code", "message", "holder"?}}``. The modules: ``common`` (blueprint,
envelope, caller, body), ``schemas``, ``locks`` and ``primitives`` (the views).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from lockcore import LockType, Mode

from ...units import ApiUnit
from . import locks, primitives  # noqa: F401  (their views, on the blueprint)
from .common import bp, envelope
from .schemas import LOCK_TYPE


def lock_types(config: Mapping[str, Any]) -> list[LockType]:
    # every type listed by owner too; elections need their events, whatever LOCKCORE_EVENTS
    ttl, max_ttl = config["V1_TTL"], config["V1_MAX_TTL"]
    lease = {"default_ttl": ttl, "max_ttl": max_ttl, "index_owner": True}
    return [
        LockType(LOCK_TYPE, **lease),
        LockType("rlock", reentrant=True, **lease),
        LockType("rw", mode=Mode.MULTI, read_write=True, **lease),
        LockType("permit", mode=Mode.MULTI, max_holders=config["V1_PERMITS"], **lease),
        LockType("leader", events=True, **lease),
    ]


UNIT = ApiUnit(
    "v1",
    bp,
    envelope,
    security_schemes={"V1Bearer": {"type": "http", "scheme": "bearer"}},
    settings={
        "V1_TTL": (30.0, float),  # default lease of /v1 worker locks
        "V1_MAX_TTL": (3600.0, float),
        "V1_MAX_WAIT": (30.0, float),  # longest long-poll a /v1 acquire may ask for
        "V1_MAX_WAITERS": (96, int),  # long polls one process serves at once; more get a 503
        "V1_PERMITS": (4, int),  # holders a /v1 "permit" (semaphore) lock may have at once
    },
    lock_types=lock_types,
)
