"""The Redis key layout: names, their encoding, and the hash slot each lives in.

Every key of a scope carries the scope's hash tag, ``{<encoded scope>}``, so one script
touches one hash slot and runs on Redis Cluster. Names are percent-encoded (every byte
outside ``A-Z a-z 0-9 - . _ ~`` becomes ``%XX``), so ``:``, ``{``, ``}`` and any other
byte in a scope, type, resource or owner name can neither collide nor escape.

Lock ids start with their scope's hash slot (plus one), and each slot has a directory
(``<prefix>:{#<n>}:ids``) from id to scope, under a tag chosen to hash to that slot.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache
from urllib.parse import quote

from redis.crc import REDIS_CLUSTER_HASH_SLOTS, key_slot

#: Lock ids are ``<slot + 1><seq zero-padded to SEQ_DIGITS digits>``.
SEQ_DIGITS = 14


def encode(name: str) -> str:
    """Percent-encode a name for use inside a key or an index member."""
    if not isinstance(name, str) or name == "":
        raise ValueError(f"names must be non-empty strings, got {name!r}")
    return quote(name, safe="")


def slot_of(scope: str, prefix: str) -> int:
    return key_slot(ScopeKeys.for_scope(prefix, scope).locks.encode())


@lru_cache(maxsize=1)
def _slot_tags() -> tuple[str, ...]:
    # The tag of slot s is "#<n>" for the smallest n >= 0 whose CRC16 falls in slot s.
    tags: list[str | None] = [None] * REDIS_CLUSTER_HASH_SLOTS
    missing = REDIS_CLUSTER_HASH_SLOTS
    n = 0
    while missing:
        tag = f"#{n}"
        slot = key_slot(tag.encode())
        if tags[slot] is None:
            tags[slot] = tag
            missing -= 1
        n += 1
    return tuple(t for t in tags if t is not None)


def slot_tag(slot: int) -> str:
    """The hash tag (without braces) that the slot's own keys use."""
    return _slot_tags()[slot]


def slot_of_id(lock_id: str) -> int | None:
    """The hash slot a lock id belongs to, or None if it is not a lockcore id."""
    if not isinstance(lock_id, str) or not lock_id.isdigit() or lock_id[0] == "0":
        return None
    head = lock_id[:-SEQ_DIGITS]
    if not head or len(lock_id) > 19 or int(lock_id) >= 2**63:
        return None
    slot = int(head) - 1
    if not 0 <= slot < REDIS_CLUSTER_HASH_SLOTS:
        return None
    return slot


@dataclass(frozen=True)
class ScopeKeys:
    """The eight keys every script receives, in order (see lua/_lib.lua)."""

    locks: str
    res: str
    own: str
    exp: str
    events: str
    ids: str
    idexp: str
    seq: str
    slot: int

    @classmethod
    def for_scope(cls, prefix: str, scope: str) -> ScopeKeys:
        base = f"{prefix}:{{{encode(scope)}}}:"
        slot = key_slot(f"{base}locks".encode())
        slot_base = f"{prefix}:{{{slot_tag(slot)}}}:"
        return cls(
            locks=base + "locks",
            res=base + "res",
            own=base + "own",
            exp=base + "exp",
            events=base + "events",
            ids=slot_base + "ids",
            idexp=slot_base + "idexp",
            seq=slot_base + "seq",
            slot=slot,
        )

    @property
    def base(self) -> str:
        """``<prefix>:{<scope>}:``, which the waiting keys extend (see lua/_lib.lua)."""
        return self.locks[: -len("locks")]

    def waiter_signal(self, ticket: str) -> str:
        return f"{self.base}s:{ticket}"

    @property
    def all(self) -> list[str]:
        return [self.locks, self.res, self.own, self.exp,
                self.events, self.ids, self.idexp, self.seq]


def directory_key(prefix: str, slot: int) -> str:
    """The slot's id directory: HASH lock id -> scope name."""
    return f"{prefix}:{{{slot_tag(slot)}}}:ids"


def check_prefix(prefix: str) -> str:
    if not prefix or "{" in prefix or "}" in prefix:
        raise ValueError(f"key prefix must be non-empty and free of braces: {prefix!r}")
    return prefix
