"""Values that cross lockcore's API: lock types, locks, results. Times are seconds."""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from enum import Enum
from functools import lru_cache
from types import MappingProxyType
from typing import Any

from .keys import _quote, decode

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
    ``events``: every change of a lock of this type is added to the scope's event stream
    and announced (costs Redis time and a stream per scope; off by default).
    ``index_owner``: keep an index by owner, so that listing by owner costs what the
    owner holds, not what the scope holds (costs memory per lock; off by default).
    ``durable``: acquire, refresh and release of this type return only once the
    manager's ``durable_replicas`` replicas confirmed the change (``WAIT``), else raise
    LockNotDurable (off by default; each call may say otherwise).
    ``max_holders`` (multi types): a semaphore of that many permits: at most that many
    live locks per resource; one more conflicts (or waits in line, woken when a permit is
    released; an expired permit frees its slot by the server's clock).
    ``reentrant`` (exclusive types): the owner acquiring its own live lock again holds it
    once more (same lock, same token, the lease renewed), and each release by the owner
    gives back one hold: the lock is released with the last (Redisson's ``RLock``). A
    forced release, expiry or replacement ends every hold at once.
    ``read_write`` (multi types): read-write locks: ``acquire(..., shared=True)`` takes a
    read lock, which other read locks may share; a write lock is alone on the resource.
    A writer waiting in line stops new readers from joining the current ones, so a stream
    of readers cannot starve it (each holder has its own lease and token).
    """

    name: str
    mode: Mode = Mode.EXCLUSIVE
    one_per_owner: bool = False
    default_ttl: float | None = 30.0
    max_ttl: float | None = None
    allow_no_expiry: bool = False
    events: bool = False
    index_owner: bool = False
    durable: bool = False
    max_holders: int | None = None
    reentrant: bool = False
    read_write: bool = False

    def __post_init__(self) -> None:
        object.__setattr__(self, "mode", Mode(self.mode))
        if self.read_write and (self.mode is not Mode.MULTI or self.max_holders is not None):
            raise ValueError(
                f"lock type {self.name!r}: read_write needs mode=Mode.MULTI (and no max_holders)"
            )
        if self.reentrant and self.mode is not Mode.EXCLUSIVE:
            raise ValueError(f"lock type {self.name!r}: reentrant needs mode=Mode.EXCLUSIVE")
        if self.max_holders is not None:
            if self.mode is not Mode.MULTI:
                raise ValueError(f"lock type {self.name!r}: max_holders needs mode=Mode.MULTI")
            if (
                not isinstance(self.max_holders, int)
                or isinstance(self.max_holders, bool)
                or self.max_holders < 1
            ):
                raise ValueError(
                    f"lock type {self.name!r}: max_holders must be a positive integer, "
                    f"got {self.max_holders!r}"
                )
        if self.default_ttl is None and not self.allow_no_expiry:
            raise ValueError(f"lock type {self.name!r}: no default_ttl needs allow_no_expiry")
        for name in ("default_ttl", "max_ttl"):
            value = getattr(self, name)
            if value is not None and not (0 < value < math.inf):
                raise ValueError(f"lock type {self.name!r}: {name} must be > 0, got {value!r}")
        if not isinstance(self.name, str) or not self.name:
            raise ValueError(f"lock type names must be non-empty strings, got {self.name!r}")

    @property
    def flags(self) -> str:
        """The type's flags as the scripts read them (see lua/_lib.lua)."""
        return (
            ("x" if self.mode is Mode.EXCLUSIVE else "m")
            + ("o" if self.one_per_owner else "")
            + ("e" if self.events else "")
            + ("i" if self.index_owner else "")
            + ("c" if self.reentrant else "")
            + ("k" if self.read_write else "")
        )


#: the metadata of every lock that has none (read-only, so one serves all)
NO_METADATA: Mapping[str, str] = MappingProxyType({})


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

    def __hash__(self) -> int:
        # Equal locks have the same id and token (metadata, a read-only mapping, has no hash)
        return hash((self.id, self.fencing_token))

    def __getstate__(self) -> dict[str, Any]:
        # pickle and deepcopy: the metadata as a plain dict (a mapping proxy cannot be
        # pickled), made read-only again on the way back
        return {**self.__dict__, "metadata": dict(self.metadata)}

    def __setstate__(self, state: dict[str, Any]) -> None:
        meta = state["metadata"]
        fields = {**state, "metadata": MappingProxyType(dict(meta)) if meta else NO_METADATA}
        object.__setattr__(self, "__dict__", fields)

    @property
    def remaining(self) -> float | None:
        """Seconds of lease left at ``as_of``; None for a lock without expiry."""
        if self.expires_at is None:
            return None
        return max(0.0, self.expires_at - self.as_of)

    @classmethod
    def from_record(
        cls, token: Any, record: bytes | str, scope: str, now_ms: int, id_prefix: str
    ) -> Lock:
        """Decode a record as the scripts store it (see lua/_lib.lua; ms) into seconds."""
        text = record.decode() if isinstance(record, bytes) else record
        words = text.split(" ", 8)
        if len(words) == 5:  # the short form: acquired = expires - ttl, never updated
            _flags, expires, owner, field, ttl = words
            acquired, updated, meta = str(int(expires) - int(ttl)), "0", ""
        else:
            _flags, expires, owner, field, acquired, updated, _ttl, _max, meta = words
        type_, resource = field.split(":", 1)
        expires_ms, acquired_ms, seq = int(expires), int(acquired), int(token)
        return cls._made(
            {
                "id": f"{id_prefix}{seq:014d}",
                "scope": scope,
                "type": decode(type_),
                "resource": decode(resource),
                "owner": decode(owner),
                "fencing_token": seq,
                "acquired_at": acquired_ms / 1000,
                "expires_at": expires_ms / 1000 if expires_ms else None,
                "metadata": metadata_view(meta) if meta else NO_METADATA,
                "as_of": now_ms / 1000,
                "updated_at": (acquired_ms + int(updated)) / 1000,
            }
        )

    @classmethod
    def _made(cls, fields: dict[str, Any]) -> Lock:
        """A Lock of ``fields``, every field given as the dataclass's __init__ would take it
        (nothing checked): set at once, where a frozen dataclass's __init__ calls
        object.__setattr__ once per field (a listing builds a Lock per record)."""
        lock = object.__new__(cls)
        object.__setattr__(lock, "__dict__", fields)
        return lock


def encode_metadata(metadata: Mapping[str, str | None] | None) -> str:
    """``k=v&k=v``, percent-encoded; a None value becomes ``k`` (removed by a merge)."""
    if not metadata:
        return ""
    # (the same owners' names and e-mails come again and again: quoted once, cached)
    return "&".join(
        _quote(k) if v is None else f"{_quote(k)}={_quote(v)}" for k, v in metadata.items()
    )


@lru_cache(maxsize=4096)
def metadata_view(text: str) -> Mapping[str, str]:
    """Stored metadata as a read-only mapping: one per distinct text (listings read the
    same owners' metadata again and again), so locks share it."""
    return MappingProxyType(decode_metadata(text))


def decode_metadata(text: str) -> dict[str, str]:
    if not text:
        return {}
    out = {}
    for item in text.split("&"):
        key, _, value = item.partition("=")
        out[decode(key)] = decode(value)
    return out


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


@dataclass(frozen=True)
class ScopeStats:
    """A scope's locks at one instant, by type (``LockManager.scope_stats``; for metrics).

    ``held``: live locks per type. ``expired``: expired locks removed from the scope, per
    type, by whichever call removed them (this one included), since a call with
    ``take_expired`` last took the counts: each removal is taken once, by one caller (a
    deployment's metrics). ``waiters``: callers waiting in line per (type, resource), for
    resources whose holder has someone waiting. ``as_of``: the server's clock (seconds
    since the epoch)."""

    held: Mapping[str, int]
    expired: Mapping[str, int]
    waiters: Mapping[tuple[str, str], int]
    as_of: float = 0.0
