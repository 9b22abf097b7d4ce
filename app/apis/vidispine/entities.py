"""What a deletion lock is in lockcore's terms, and the entities locks are set on.

A deletion lock is a lock of type ``deletion-<entity type>`` (``multi``) on resource
``<entity id>`` in scope ``vidispine`` or, on a Redis Cluster, in the entity's shard scope
(``shards``); its id is ``VX-<lockcore id>``. The catalog says
which entities exist and which collections and libraries an item inherits locks from.
"""

from __future__ import annotations

from dataclasses import dataclass

from ...services import services
from .catalog import read_entity
from .envelope import not_found

SCOPE = "vidispine"
ENTITY_TYPES = ("item", "collection", "library", "file")
ID_PREFIX = "VX-"


@dataclass(frozen=True)
class Entity:
    type: str
    id: str
    containers: tuple[tuple[str, str], ...] = ()  # (type, id) it inherits locks from


def entity(etype: str, entity_id: str, storage_id: str | None = None) -> Entity:
    record = read_entity(services().catalog, etype, entity_id)
    if record is None or (storage_id is not None and record.get("storage") != storage_id):
        raise not_found(etype.capitalize(), entity_id)
    containers = tuple(("collection", c) for c in record.get("collections", [])) + tuple(
        ("library", c) for c in record.get("libraries", [])
    )
    return Entity(etype, entity_id, containers)


def lock_type(etype: str) -> str:
    return f"deletion-{etype}"
