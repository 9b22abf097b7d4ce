"""The resource catalog: what can be locked, and who may do what with it.

One document (YAML or JSON) describes users and, in a section per API, what that API's
locks are about (Versal courses and their gadgets, EDX workspaces, DocSpace rooms and
files, Vidispine entities); each API declares its section as a ``CatalogPart`` of its
unit (``lockcore_service.units``). ``lockcore catalog load FILE`` or the admin API
stores it in Redis, where every service instance reads it. All catalog keys share the
hash tag ``{catalog}``, so a load is one MULTI/EXEC, also on a Cluster:
``<prefix>:{catalog}:<kind>`` HASH id -> JSON of the entity as in the document. The demo
catalog ships as ``app/demo_catalog.yaml``.
"""

from __future__ import annotations

import copy
import json
import time
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any, TypeVar

import yaml
from marshmallow import Schema, ValidationError, fields, validate

from .identity import User, Users
from .memo import Memo
from .units import CatalogPart, default_units

DEMO_CATALOG = Path(__file__).with_name("demo_catalog.yaml")
T = TypeVar("T")


def name_field() -> fields.String:
    """A required name in a catalog document: 1 to 256 characters."""
    return fields.String(required=True, validate=validate.Length(min=1, max=256))


class UserSchema(Schema):
    id = name_field()
    name = name_field()
    email = fields.String(load_default="")
    roles = fields.List(fields.String(), load_default=list)
    # Demo catalogs only: a fixed key, hashed on load. Use `lockcore users add` otherwise.
    api_key = fields.String(load_default=None)


def default_parts() -> list[CatalogPart]:
    """The catalog parts of every API."""
    return [unit.catalog for unit in default_units() if unit.catalog is not None]


def catalog_schema(parts: Iterable[CatalogPart] | None = None) -> type[Schema]:
    """The schema of a whole catalog document: users, and each part's sections."""
    declared: dict[str, Any] = {"users": fields.List(fields.Nested(UserSchema), load_default=list)}
    for part in default_parts() if parts is None else parts:
        declared.update(copy.deepcopy(dict(part.document)))
    return type("CatalogSchema", (Schema,), {**declared, "__module__": __name__})


class CatalogError(ValueError):
    def __init__(self, messages: Any) -> None:
        super().__init__(json.dumps(messages))
        self.messages = messages


def parse_document(text: str, parts: Iterable[CatalogPart] | None = None) -> dict[str, Any]:
    """Validate a catalog document, JSON or YAML, with the sections of ``parts`` (default:
    every API's)."""
    try:
        try:
            # JSON first: YAML reads a surrogate pair escape ("\\ud83d\\ude00") as two
            # lone surrogates, where JSON means one character.
            data = json.loads(text)
        except json.JSONDecodeError:
            data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise CatalogError({"_document": [f"not YAML or JSON: {exc}"]}) from exc
    except RecursionError as exc:  # both parsers compose nested collections recursively
        raise CatalogError({"_document": ["nested too deeply"]}) from exc
    if not isinstance(data, dict):
        raise CatalogError({"_document": ["a catalog is a mapping"]})
    if not _encodable(data):
        raise CatalogError(
            {
                "_document": [
                    "a string is not valid Unicode (a lone surrogate escape such as \\ud800)"
                ]
            }
        )
    try:
        return catalog_schema(parts)().load(data)  # type: ignore[no-any-return]
    except ValidationError as exc:
        raise CatalogError(exc.messages) from exc


def _encodable(data: Any) -> bool:
    """Every string in ``data`` can be stored (UTF-8): YAML and JSON escapes may spell lone
    surrogates, which Redis clients cannot encode."""
    stack = [data]
    while stack:
        item = stack.pop()
        if isinstance(item, dict):
            stack.extend(item.keys())
            stack.extend(item.values())
        elif isinstance(item, list):
            stack.extend(item)
        elif isinstance(item, str):
            try:
                item.encode()
            except UnicodeEncodeError:
                return False
    return True


class Catalog:
    """The catalog in Redis, with the kinds its ``parts`` declare (default: every API's).

    Readers (each API's, through ``remembered``) may remember what they found for
    ``cache_ttl`` seconds (0, the default: they read Redis every time): then a change made
    elsewhere (another process, the CLI) takes effect here within ``cache_ttl`` seconds,
    one made through this object at once. Nothing not found is remembered."""

    def __init__(
        self,
        client: Any,
        prefix: str,
        *,
        parts: Iterable[CatalogPart] | None = None,
        cache_ttl: float = 0.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.client = client
        self.prefix = prefix
        self.parts = tuple(default_parts() if parts is None else parts)
        self.cache_ttl = cache_ttl
        self.clock = clock
        self._memo: Memo[tuple[str, str], Any] = Memo()
        #: kind -> its part, for the kinds an admin edits one by one
        self._part_of = {kind: part for part in self.parts for kind in part.kinds}
        #: kind -> (schema of one entity, its id field)
        self.kinds = {kind: spec for part in self.parts for kind, spec in part.kinds.items()}
        #: every kind stored: edited, derived (shown in a dump), indexes (lookups only)
        self.stored = [
            *self.kinds,
            *(k for part in self.parts for k in part.derived),
            *(k for part in self.parts for k in part.indexes),
        ]
        self.schema = catalog_schema(self.parts)

    def forget(self) -> None:
        """Drop everything remembered (called after each change made here)."""
        self._memo.forget()

    def remembered(self, kind: str, entity_id: str, read: Callable[[], T | None]) -> T | None:
        """``read()``, or what it returned for this entity within ``cache_ttl``."""
        return self._memo.fetch((kind, entity_id), read, self.cache_ttl, self.clock)

    def key(self, kind: str) -> str:
        return f"{self.prefix}:{{catalog}}:{kind}"

    def get(self, kind: str, entity_id: str) -> dict[str, Any] | None:
        """One entity as stored (a JSON object), or None."""
        raw = self.client.hget(self.key(kind), entity_id)
        return None if raw is None else json.loads(raw)

    def put(self, kind: str, entity_id: str, entity: Any) -> None:
        """Store one entity as it is (parts keep their derived kinds with this)."""
        self.client.hset(self.key(kind), entity_id, json.dumps(entity))

    def is_empty(self) -> bool:
        return not any(self.client.exists(self.key(kind)) for kind in self.kinds)

    def parse(self, text: str) -> dict[str, Any]:
        """A catalog document with this catalog's sections, validated."""
        return parse_document(text, self.parts)

    # -- writing -------------------------------------------------------------------------

    def replace(self, doc: dict[str, Any], users: Users | None = None) -> dict[str, int]:
        """Store a validated document, replacing the whole catalog atomically."""
        entities: dict[str, dict[str, dict[str, Any]]] = {kind: {} for kind in self.stored}
        for part in self.parts:
            entities.update(part.entities(doc))
        pipe = self.client.pipeline(transaction=True)
        for kind, by_id in entities.items():
            pipe.delete(self.key(kind))
            if by_id:
                pipe.hset(self.key(kind), mapping={i: json.dumps(e) for i, e in by_id.items()})
        try:
            pipe.execute()
        finally:
            self.forget()
        if users is not None:
            for u in doc["users"]:
                users.put(
                    User(u["id"], u["name"], u["email"], frozenset(u["roles"])), u.get("api_key")
                )
        indexes = {kind for part in self.parts for kind in part.indexes}
        counts = {kind: len(by_id) for kind, by_id in entities.items() if kind not in indexes}
        return counts | {"users": len(doc["users"])}

    def dump(self) -> dict[str, dict[str, Any]]:
        out = {}
        for part in self.parts:
            for kind in (*part.kinds, *part.derived):
                values = self.client.hgetall(self.key(kind))
                out[kind] = {_s(k): json.loads(v) for k, v in values.items()}
        return out

    def put_entity(self, kind: str, entity: dict[str, Any]) -> None:
        """Create or replace one entity of an edited kind (validated by its schema)."""
        part = self._part_of[kind]
        try:
            if part.on_put is not None:
                entity = part.on_put(self, kind, entity)
            self.put(kind, entity[self.kinds[kind][1]], entity)
        finally:
            self.forget()

    def delete_entity(self, kind: str, entity_id: str) -> bool:
        part = self._part_of[kind]
        try:
            if part.on_delete is not None:
                part.on_delete(self, kind, entity_id)
            return bool(self.client.hdel(self.key(kind), entity_id))
        finally:
            self.forget()


def _s(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


def load_file(path: str | Path) -> dict[str, Any]:
    return parse_document(Path(path).read_text())
