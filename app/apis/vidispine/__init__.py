"""The Vidispine deletion lock API (seed 003): ``/API/.../deletion-lock``.

A deletion lock is a lockcore lock of type ``deletion-<entity type>`` (``multi``: many per
entity, each with its own expiry and metadata) on resource ``<entity id>``, in scope
``vidispine`` or, on a Redis Cluster, in one of 64 shard scopes by entity (``shards``: the
locks spread over the masters); its id is ``VX-<lockcore id>``. An entity's *effective* lock is the
unexpired lock with the latest expiry among its own and those it inherits: an item
inherits from every collection and library that contains it (per the catalog).

Bodies are XML (namespace ``http://xml.vidispine.com/schema/vidispine``, parsed with
defusedxml, which refuses DTDs and entities) or JSON, by ``Content-Type``; responses XML by
default, JSON when ``Accept`` asks for it. Credentials: HTTP Basic (user name and API key)
or ``Authorization: token <key>``; roles ``_deletion_lock_read`` for reads and
``_deletion_lock_write`` for changes (write implies read; a sysadmin has both).

The modules: ``envelope`` (XML or JSON answers, the error document), ``documents`` (a
lock's document, request bodies), ``filters`` (the list calls' query, paging),
``entities``, ``shards`` (which scope a lock is in) and ``locks`` (lockcore's side, reads
and writes), ``credentials``,
``schemas`` (the OpenAPI side), ``views`` (the blueprint and its routes), ``catalog``
(its part of the catalog: items and the containers they inherit from, files).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from lockcore import LockType, Mode

from ...units import ApiUnit
from .catalog import CATALOG
from .credentials import READ, SECURITY, SECURITY_SCHEMES, WRITE, caller
from .entities import ENTITY_TYPES, ID_PREFIX, SCOPE, lock_type
from .envelope import HTTP_MESSAGES, NS, envelope, render
from .shards import shard_setting
from .views import TAG, bp


def lock_types(config: Mapping[str, Any]) -> list[LockType]:
    # Deletion locks: many per entity, one lock type per entity type, so a listing by
    # entity type is a range of one index; indexed by owner for the username filter.
    return [
        LockType(lock_type(etype), mode=Mode.MULTI, default_ttl=86400.0, index_owner=True)
        for etype in ENTITY_TYPES
    ]


UNIT = ApiUnit(
    "vidispine",
    bp,
    envelope,
    HTTP_MESSAGES,
    security_schemes=SECURITY_SCHEMES,
    lock_types=lock_types,
    catalog=CATALOG,
    settings={"VIDISPINE_SHARDS": (0, shard_setting)},
)

__all__ = [
    "ENTITY_TYPES",
    "ID_PREFIX",
    "NS",
    "READ",
    "SCOPE",
    "SECURITY",
    "TAG",
    "UNIT",
    "WRITE",
    "bp",
    "caller",
    "envelope",
    "render",
]
