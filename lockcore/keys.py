"""The Redis key layout: names, their encoding, and the hash slot each lives in.

Every key of a scope carries the scope's hash tag, ``{<encoded scope>}``, so one script
touches one hash slot and runs on Redis Cluster. Names are percent-encoded (every byte
outside ``A-Z a-z 0-9 - . _ ~`` becomes ``%XX``), so ``:``, ``{``, ``}`` and any other
byte in a scope, type, resource or owner name can neither collide nor escape.

Lock ids start with their scope's hash slot (plus one), and each slot has a directory
(``<prefix>:{#<n>}:D``) from blocks of tokens to scopes, under a tag chosen to hash to
that slot.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache
from urllib.parse import quote, unquote

from redis.crc import REDIS_CLUSTER_HASH_SLOTS, key_slot

from . import slottags

#: Lock ids are ``<slot + 1><seq zero-padded to SEQ_DIGITS digits>``.
SEQ_DIGITS = 14


@lru_cache(maxsize=65536)
def _quote(name: str) -> str:
    return quote(name, safe="")


def encode(name: str) -> str:
    """Percent-encode a name for use inside a key, a field or a record."""
    if not isinstance(name, str) or name == "":
        raise ValueError(f"names must be non-empty strings, got {name!r}")
    return _quote(name)


def decode(text: str) -> str:
    return _unquoted(text) if "%" in text else text


# Listings decode the same owners and metadata again and again; unquote is slow.
_unquoted = lru_cache(maxsize=8192)(unquote)


def slot_of(scope: str, prefix: str) -> int:
    return key_slot(ScopeKeys.for_scope(prefix, scope).locks.encode())


@lru_cache(maxsize=1)
def _slot_tags() -> tuple[str, ...]:
    """The tag of each slot, from the table shipped beside this module (lockcore.slottags
    generates it), else computed (some 20 ms, against 3 to read it)."""
    try:
        return tuple("#" + n for n in slottags.parse(slottags.SHIPPED.read_text()))
    except (OSError, ValueError):
        return _computed_slot_tags()


def _computed_slot_tags() -> tuple[str, ...]:
    return tuple(f"#{n}" for n in slottags.compute())


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
    """The keys of one scope (see docs/redis-layout.md), all in the scope's hash slot."""

    locks: str  #: HASH: the scope's records, pointers and bookkeeping
    directory: str  #: HASH: the slot's directory (token blocks -> scope) and counter
    slot: int
    scope: str  #: the scope's name, percent-encoded
    id_prefix: str  #: ``slot + 1``, what every lock id of the scope starts with

    @classmethod
    def for_scope(cls, prefix: str, scope: str) -> ScopeKeys:
        encoded = encode(scope)
        locks = f"{prefix}:{{{encoded}}}:L"
        slot = key_slot(locks.encode())
        return cls(
            locks=locks,
            directory=directory_key(prefix, slot),
            slot=slot,
            scope=encoded,
            id_prefix=str(slot + 1),
        )

    @property
    def base(self) -> str:
        """``<prefix>:{<scope>}:``, which the scope's other keys extend."""
        return self.locks[:-1]

    @property
    def events(self) -> str:
        """STREAM of the scope's events (types with ``events=True``); also the channel
        on which each entry's id is PUBLISHed."""
        return self.base + "E"

    @property
    def multi_index(self) -> str:
        return self.base + "R"

    @property
    def owner_index(self) -> str:
        return self.base + "O"

    def waiter_signal(self, ticket: str) -> str:
        return f"{self.base}s:{ticket}"

    def queue(self, field: str) -> str:
        return f"{self.base}q:{field}"

    def request(self, request_id: str) -> str:
        return f"{self.base}i:{request_id}"


def directory_key(prefix: str, slot: int) -> str:
    """The slot's directory: HASH token block -> scope (encoded), and ``!seq``."""
    return f"{prefix}:{{{slot_tag(slot)}}}:D"


def check_prefix(prefix: str) -> str:
    if not prefix or "{" in prefix or "}" in prefix:
        raise ValueError(f"key prefix must be non-empty and free of braces: {prefix!r}")
    return prefix


def event_from_entry(stream: str, entry_id: str, fields: dict[str, str]) -> dict[str, str]:
    """A stream entry of ``<p>:{<scope>}:E`` as an event: its fields with names decoded,
    plus ``scope`` (from the key), ``token`` (from the id) and ``at`` (the entry's ms)."""
    event = {k: decode(v) if k in ("type", "resource", "owner") else v for k, v in fields.items()}
    scope = stream[stream.index("{") + 1 : stream.rindex("}")]
    event["scope"] = decode(scope)
    if event.get("id", "").isdigit():
        event["token"] = str(int(event["id"][-SEQ_DIGITS:]))
    event["at"] = entry_id.split("-", 1)[0]
    return event
