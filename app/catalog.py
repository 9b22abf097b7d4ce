"""The resource catalog: what can be locked, and who may do what with it.

One document (YAML or JSON) describes users, EDX workspaces, Versal courses and their
gadgets, DocSpace rooms and files, and Vidispine entities; ``lockcore catalog load FILE``
or the admin API stores it in Redis, where every service instance reads it. All catalog
keys share the hash tag ``{catalog}``, so a load is one MULTI/EXEC, also on a Cluster:
``<prefix>:{catalog}:<kind>`` HASH id -> JSON of the entity as in the document.
The demo catalog ships as ``app/demo_catalog.yaml``.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import yaml
from marshmallow import Schema, ValidationError, fields, validate

from .identity import User, Users
from .memo import Memo

COURSE_ROLES = ("learner", "editor", "owner")  # learner: list; editor, owner: lock too
DOCSPACE_ACCESS = (
    "RoomManager",
    "ContentCreator",
    "Editor",
    "Reviewer",
    "Commenter",
    "FormFiller",
    "Viewer",
)
DEMO_CATALOG = Path(__file__).with_name("demo_catalog.yaml")
T = TypeVar("T")


def _name() -> fields.String:
    return fields.String(required=True, validate=validate.Length(min=1, max=256))


class UserSchema(Schema):
    id = _name()
    name = _name()
    email = fields.String(load_default="")
    roles = fields.List(fields.String(), load_default=list)
    # Demo catalogs only: a fixed key, hashed on load. Use `lockcore users add` otherwise.
    api_key = fields.String(load_default=None)


class CourseSchema(Schema):
    key = _name()
    title = fields.String(load_default="")
    gadgets = fields.List(fields.String(validate=validate.Length(min=1)), load_default=list)
    roles = fields.Dict(
        keys=fields.String(),
        values=fields.String(validate=validate.OneOf(COURSE_ROLES)),
        load_default=dict,
    )


class WorkspaceSchema(Schema):
    id = _name()
    name = fields.String(load_default="")
    admins = fields.List(fields.String(), load_default=list)
    members = fields.List(fields.String(), load_default=list)


class FileSchema(Schema):
    id = _name()
    title = _name()


class RoomSchema(Schema):
    id = _name()
    title = fields.String(load_default="")
    access = fields.Dict(
        keys=fields.String(),
        values=fields.String(validate=validate.OneOf(DOCSPACE_ACCESS)),
        load_default=dict,
    )
    files = fields.List(fields.Nested(FileSchema), load_default=list)


class ContainerSchema(Schema):
    id = _name()
    items = fields.List(fields.String(), load_default=list)


class VidispineFileSchema(Schema):
    id = _name()
    storage = fields.String(load_default="")


class VidispineSchema(Schema):
    items = fields.List(fields.String(validate=validate.Length(min=1)), load_default=list)
    collections = fields.List(fields.Nested(ContainerSchema), load_default=list)
    libraries = fields.List(fields.Nested(ContainerSchema), load_default=list)
    files = fields.List(fields.Nested(VidispineFileSchema), load_default=list)


class CatalogSchema(Schema):
    users = fields.List(fields.Nested(UserSchema), load_default=list)
    courses = fields.List(fields.Nested(CourseSchema), load_default=list)
    workspaces = fields.List(fields.Nested(WorkspaceSchema), load_default=list)
    rooms = fields.List(fields.Nested(RoomSchema), load_default=list)
    vidispine = fields.Nested(VidispineSchema, load_default=dict)


#: kind -> (schema of one entity, its id field). The admin API edits these one by one.
KINDS: dict[str, tuple[type[Schema], str]] = {
    "courses": (CourseSchema, "key"),
    "workspaces": (WorkspaceSchema, "id"),
    "rooms": (RoomSchema, "id"),
    "collections": (ContainerSchema, "id"),
    "libraries": (ContainerSchema, "id"),
    "items": (ContainerSchema, "id"),  # items: {id}
    "vfiles": (VidispineFileSchema, "id"),
}


class CatalogError(ValueError):
    def __init__(self, messages: Any) -> None:
        super().__init__(json.dumps(messages))
        self.messages = messages


def parse_document(text: str) -> dict[str, Any]:
    """Validate a catalog document, JSON or YAML."""
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
        return CatalogSchema().load(data)
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


@dataclass(frozen=True)
class Course:
    key: str
    title: str
    gadgets: frozenset[str]
    roles: dict[str, str]

    def role_of(self, user_id: str) -> str | None:
        return self.roles.get(user_id)


@dataclass(frozen=True)
class Workspace:
    id: str
    name: str
    admins: frozenset[str]
    members: frozenset[str]


@dataclass(frozen=True)
class DocFile:
    id: str
    title: str
    room: str
    access: dict[str, str]  # the room's: user id -> access level


class Catalog:
    """The catalog in Redis. ``course``, ``workspace`` and ``docfile`` may remember what
    they found for ``cache_ttl`` seconds (0, the default: they read Redis every time):
    then a change made elsewhere (another process, the CLI) takes effect here within
    ``cache_ttl`` seconds, one made through this object at once. Nothing not found is
    remembered."""

    def __init__(
        self,
        client: Any,
        prefix: str,
        *,
        cache_ttl: float = 0.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.client = client
        self.prefix = prefix
        self.cache_ttl = cache_ttl
        self.clock = clock
        self._memo: Memo[tuple[str, str], Any] = Memo()

    def forget(self) -> None:
        """Drop everything remembered (called after each change made here)."""
        self._memo.forget()

    def _remembered(self, kind: str, entity_id: str, read: Callable[[], T | None]) -> T | None:
        """``read()``, or what it returned for this entity within ``cache_ttl``."""
        return self._memo.fetch((kind, entity_id), read, self.cache_ttl, self.clock)

    def key(self, kind: str) -> str:
        return f"{self.prefix}:{{catalog}}:{kind}"

    def _get(self, kind: str, entity_id: str) -> dict[str, Any] | None:
        raw = self.client.hget(self.key(kind), entity_id)
        return None if raw is None else json.loads(raw)

    def is_empty(self) -> bool:
        return not any(self.client.exists(self.key(kind)) for kind in KINDS)

    # -- writing -------------------------------------------------------------------------

    def _entities(self, doc: dict[str, Any]) -> dict[str, dict[str, dict[str, Any]]]:
        """The document as kind -> id -> entity, with derived fields (files' rooms,
        items' containers)."""
        out: dict[str, dict[str, dict[str, Any]]] = {kind: {} for kind in KINDS}
        out["files"] = {}
        for course in doc["courses"]:
            out["courses"][course["key"]] = course
        out["workspace_names"] = {}
        for ws in doc["workspaces"]:
            out["workspaces"][ws["id"]] = ws
            if ws.get("name"):
                out["workspace_names"][ws["name"]] = ws["id"]
        for room in doc["rooms"]:
            out["rooms"][room["id"]] = {k: v for k, v in room.items() if k != "files"}
            for f in room["files"]:
                out["files"][f["id"]] = {**f, "room": room["id"]}
        vs = doc["vidispine"] or {}
        for item in vs.get("items", []):
            out["items"][item] = {"id": item, "collections": [], "libraries": []}
        for kind in ("collections", "libraries"):
            for container in vs.get(kind, []):
                out[kind][container["id"]] = container
                for item in container["items"]:
                    entry = out["items"].setdefault(
                        item, {"id": item, "collections": [], "libraries": []}
                    )
                    entry[kind].append(container["id"])
        for f in vs.get("files", []):
            out["vfiles"][f["id"]] = f
        return out

    def replace(self, doc: dict[str, Any], users: Users | None = None) -> dict[str, int]:
        """Store a validated document, replacing the whole catalog atomically."""
        entities = self._entities(doc)
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
        counts = {kind: len(by_id) for kind, by_id in entities.items() if kind != "workspace_names"}
        return counts | {"users": len(doc["users"])}

    def dump(self) -> dict[str, dict[str, Any]]:
        out = {}
        for kind in (*KINDS, "files"):
            values = self.client.hgetall(self.key(kind))
            out[kind] = {_s(k): json.loads(v) for k, v in values.items()}
        return out

    def put_entity(self, kind: str, entity: dict[str, Any]) -> None:
        try:
            self._put_entity(kind, entity)
        finally:
            self.forget()

    def _put_entity(self, kind: str, entity: dict[str, Any]) -> None:
        schema, id_field = KINDS[kind]
        if kind in ("collections", "libraries"):
            self._contain(kind, entity["id"], set(entity.get("items", [])))
        if kind == "items":  # an item's containers are derived from theirs
            old = self._get("items", entity["id"]) or {}
            entity = {
                "id": entity["id"],
                "collections": old.get("collections", []),
                "libraries": old.get("libraries", []),
            }
        self.client.hset(self.key(kind), entity[id_field], json.dumps(entity))
        if kind == "workspaces" and entity.get("name"):
            self.client.hset(self.key("workspace_names"), entity["name"], json.dumps(entity["id"]))

    def delete_entity(self, kind: str, entity_id: str) -> bool:
        try:
            if kind in ("collections", "libraries"):
                self._contain(kind, entity_id, set())
            return bool(self.client.hdel(self.key(kind), entity_id))
        finally:
            self.forget()

    def _contain(self, kind: str, container: str, items: set[str]) -> None:
        """Keep each item's list of containers (what it inherits locks from) in step with
        the container's new list of items."""
        old = set((self._get(kind, container) or {}).get("items", []))
        for item_id in old ^ items:
            item = self._get("items", item_id) or {
                "id": item_id,
                "collections": [],
                "libraries": [],
            }
            members = [c for c in item.get(kind, []) if c != container]
            if item_id in items:
                members.append(container)
            item[kind] = members
            self.client.hset(self.key("items"), item_id, json.dumps(item))

    # -- reading -------------------------------------------------------------------------

    def course(self, key: str) -> Course | None:
        return self._remembered("courses", key, lambda: self._course(key))

    def _course(self, key: str) -> Course | None:
        c = self._get("courses", key)
        if c is None:
            return None
        return Course(
            c["key"], c.get("title", ""), frozenset(c.get("gadgets", [])), dict(c.get("roles", {}))
        )

    def workspace(self, ws_id: str) -> Workspace | None:
        """A workspace by id, or else by name (EDX accepts either)."""
        return self._remembered("workspaces", ws_id, lambda: self._workspace(ws_id))

    def _workspace(self, ws_id: str) -> Workspace | None:
        w = self._get("workspaces", ws_id)
        if w is None:
            by_name = self._get("workspace_names", ws_id)
            w = self._get("workspaces", by_name) if isinstance(by_name, str) else None
        if w is None:
            return None
        return Workspace(
            w["id"],
            w.get("name", ""),
            frozenset(w.get("admins", [])),
            frozenset(w.get("members", [])),
        )

    def vidispine_entity(self, etype: str, entity_id: str) -> dict[str, Any] | None:
        """A Vidispine entity (item, collection, library or file), or None."""
        kind = {
            "item": "items",
            "collection": "collections",
            "library": "libraries",
            "file": "vfiles",
        }[etype]
        return self._get(kind, entity_id)

    def docfile(self, file_id: str) -> DocFile | None:
        return self._remembered("files", file_id, lambda: self._docfile(file_id))

    def _docfile(self, file_id: str) -> DocFile | None:
        f = self._get("files", file_id)
        if f is None:
            return None
        room = self._get("rooms", f["room"]) or {}
        return DocFile(f["id"], f["title"], f["room"], dict(room.get("access", {})))


def _s(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


def load_file(path: str | Path) -> dict[str, Any]:
    return parse_document(Path(path).read_text())
