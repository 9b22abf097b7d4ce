"""Values that cross lockcore's API: lock types, locks, results. Times are seconds."""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from enum import Enum
from types import MappingProxyType
from typing import Any

#: Pass as ``ttl`` for a lock that never expires (only where the type allows it).
FOREVER = math.inf


class Mode(str, Enum):
    EXCLUSIVE = "exclusive"  #: one holder per resource
    MULTI = "multi"  #: many locks per resource, each with its own id and expiry


@dataclass(frozen=True)
class LockType:
    """How locks of one type behave.

    ``default_ttl``: lease in seconds when acquire gives none; ``None`` means no expiry
    (then ``allow_no_expiry`` must be true). ``max_ttl`` caps acquire and refresh.
    """

    name: str
    mode: Mode = Mode.EXCLUSIVE
    one_per_owner: bool = False
    default_ttl: float | None = 30.0
    max_ttl: float | None = None
    allow_no_expiry: bool = False

    def __post_init__(self) -> None:
        object.__setattr__(self, "mode", Mode(self.mode))
        if self.default_ttl is None and not self.allow_no_expiry:
            raise ValueError(f"lock type {self.name!r}: no default_ttl needs allow_no_expiry")
        for name in ("default_ttl", "max_ttl"):
            value = getattr(self, name)
            if value is not None and not (0 < value < math.inf):
                raise ValueError(f"lock type {self.name!r}: {name} must be > 0, got {value!r}")


@dataclass(frozen=True)
class Lock:
    """A lock as the server saw it at ``as_of`` (server clock, seconds since the epoch);
    ``updated_at``: its last change (acquire, refresh, metadata)."""

    id: str
    scope: str
    type: str
    resource: str
    owner: str
    fencing_token: int
    acquired_at: float
    expires_at: float | None
    metadata: Mapping[str, str] = field(default_factory=dict)
    as_of: float = 0.0
    updated_at: float = 0.0

    @property
    def remaining(self) -> float | None:
        """Seconds of lease left at ``as_of``; None for a lock without expiry."""
        if self.expires_at is None:
            return None
        return max(0.0, self.expires_at - self.as_of)

    @classmethod
    def from_record(cls, raw: bytes | str, scope: str, now_ms: int) -> Lock:
        """Decode a record as stored by the scripts (milliseconds) into seconds."""
        r: dict[str, Any] = json.loads(raw)
        expires = r.get("expires_at")
        # Redis' cjson writes an empty table as {}; fakeredis' as [].
        metadata = r.get("metadata") or {}
        return cls(
            id=str(r["id"]),
            scope=scope,
            type=r["type"],
            resource=r["resource"],
            owner=r["owner"],
            fencing_token=int(r["token"]),
            acquired_at=int(r["acquired_at"]) / 1000,
            expires_at=None if expires is None else int(expires) / 1000,
            metadata=MappingProxyType({str(k): str(v) for k, v in metadata.items()}),
            as_of=now_ms / 1000,
            updated_at=int(r.get("updated_at", r["acquired_at"])) / 1000,
        )


@dataclass(frozen=True)
class AcquireResult:
    """What acquire did: ``created`` false when the owner already held it (refreshed)."""

    lock: Lock
    replaced: Lock | None = None
    created: bool = True


@dataclass(frozen=True)
class LockPage:
    """One page of a listing; pass ``cursor`` back for the next, None at the end."""

    locks: tuple[Lock, ...]
    cursor: str | None
