"""Where deletion locks live: the scope ``vidispine`` or one of 64 shard scopes.

A scope is one hash slot (its keys share the tag ``{<scope>}``), so on a Redis Cluster one
scope for every deletion lock would put them all on one master. On a Cluster, new locks go
to one of ``SHARD_COUNT`` shard scopes instead, chosen by a stable hash of the locked
entity (CRC-32 of ``<entity type>/<entity id>``): an entity's own locks are all in one
shard. Shard ``k`` is the scope ``vidispine.<k>.<n>`` for the smallest ``n >= 0`` whose
hash slot lies in the ``k``-th of ``SHARD_COUNT`` equal ranges of the 16384 slots, so the
shards spread evenly over however many masters hold slot ranges (3 masters: 21 or 22
each).

On a standalone Redis (one server holds every slot) new locks keep going to the one scope
``vidispine`` as before: a listing there is one index range per entity type and a count is
O(log n). ``VIDISPINE_SHARDS`` in the service's configuration overrides the choice: ``1``
(the one scope) or ``64`` (the shards); by default it follows the client (``RedisCluster``:
shards).

Reads never depend on that choice: they look at the scope ``vidispine`` *and* the shards,
always. So locks written before sharding (all in ``vidispine``), or by a deployment with the
other setting, stay listed, effective and releasable until they expire or are deleted;
nothing needs migrating, and no lock is ever hidden by the setting.
"""

from __future__ import annotations

import zlib
from functools import lru_cache

from flask import current_app
from redis.cluster import RedisCluster
from redis.crc import REDIS_CLUSTER_HASH_SLOTS, key_slot

from lockcore.keys import encode

from ...services import services
from .entities import SCOPE

#: The one scope of every deletion lock before sharding (and on a standalone Redis).
LEGACY = SCOPE
#: How many shard scopes a Cluster's deletion locks spread over. Part of the layout: a
#: lock's shard follows from it, so it is fixed (changing it needs a migration).
SHARD_COUNT = 64


def slot_of_scope(scope: str) -> int:
    """The hash slot of a scope's keys (its tag is the encoded scope name)."""
    return key_slot(("{" + encode(scope) + "}").encode())


@lru_cache(maxsize=1)
def shard_scopes() -> tuple[str, ...]:
    """The shard scopes, shard ``k`` in the ``k``-th range of slots."""
    width = REDIS_CLUSTER_HASH_SLOTS // SHARD_COUNT
    names = []
    for k in range(SHARD_COUNT):
        n = 0
        while slot_of_scope(f"{LEGACY}.{k}.{n}") // width != k:
            n += 1
        names.append(f"{LEGACY}.{k}.{n}")
    return tuple(names)


def shard_of(etype: str, entity_id: str) -> str:
    """The shard scope of an entity's locks."""
    digest = zlib.crc32(f"{etype}/{entity_id}".encode())
    return shard_scopes()[digest % SHARD_COUNT]


def all_scopes() -> tuple[str, ...]:
    """Every scope a deletion lock may live in: what a listing reads."""
    return (LEGACY, *shard_scopes())


def is_deletion_scope(scope: str) -> bool:
    return scope == LEGACY or scope in _shard_set()


@lru_cache(maxsize=1)
def _shard_set() -> frozenset[str]:
    return frozenset(shard_scopes())


def sharded() -> bool:
    """Whether new locks go to the shards (see the module's text)."""
    setting = current_app.config.get("VIDISPINE_SHARDS")
    if not setting:  # 0 (LOCKCORE_VIDISPINE_SHARDS's default) or unset: by the client
        return isinstance(services().locks.client, RedisCluster)
    return int(shard_setting(str(setting))) == SHARD_COUNT


def shard_setting(raw: str) -> int:
    """``LOCKCORE_VIDISPINE_SHARDS``: 0 (by the deployment), 1 or the shard count."""
    value = int(raw)
    if value not in (0, 1, SHARD_COUNT):
        raise ValueError(f"must be 0 (by the deployment), 1 or {SHARD_COUNT}")
    return value


def home(etype: str, entity_id: str) -> str:
    """The scope a new lock on the entity goes to."""
    return shard_of(etype, entity_id) if sharded() else LEGACY


def homes(etype: str, entity_id: str) -> tuple[str, str]:
    """The scopes an entity's locks may be in: ``vidispine`` and its shard."""
    return LEGACY, shard_of(etype, entity_id)
