"""The Vidispine part of the catalog: items, the collections and libraries that contain
them (an item inherits their deletion locks), and files on storages."""

from __future__ import annotations

from typing import Any

from marshmallow import Schema, fields, validate

from ...catalog import Catalog, name_field
from ...units import CatalogPart, Entities

#: entity type -> its kind in the catalog
KIND_OF = {"item": "items", "collection": "collections", "library": "libraries", "file": "vfiles"}


class ContainerSchema(Schema):
    id = name_field()
    items = fields.List(fields.String(), load_default=list)


class VidispineFileSchema(Schema):
    id = name_field()
    storage = fields.String(load_default="")


class VidispineSchema(Schema):
    items = fields.List(fields.String(validate=validate.Length(min=1)), load_default=list)
    collections = fields.List(fields.Nested(ContainerSchema), load_default=list)
    libraries = fields.List(fields.Nested(ContainerSchema), load_default=list)
    files = fields.List(fields.Nested(VidispineFileSchema), load_default=list)


def read_entity(catalog: Catalog, etype: str, entity_id: str) -> dict[str, Any] | None:
    """A Vidispine entity (item, collection, library or file) as stored, or None."""
    return catalog.get(KIND_OF[etype], entity_id)


def _new_item(item_id: str) -> dict[str, Any]:
    return {"id": item_id, "collections": [], "libraries": []}


def _entities(doc: dict[str, Any]) -> Entities:
    """Items with the containers they inherit from (derived from the containers' lists)."""
    vs = doc["vidispine"] or {}
    out: Entities = {"items": {}, "collections": {}, "libraries": {}, "vfiles": {}}
    for item in vs.get("items", []):
        out["items"][item] = _new_item(item)
    for kind in ("collections", "libraries"):
        for container in vs.get(kind, []):
            out[kind][container["id"]] = container
            for item in container["items"]:
                out["items"].setdefault(item, _new_item(item))[kind].append(container["id"])
    for f in vs.get("files", []):
        out["vfiles"][f["id"]] = f
    return out


def _contain(catalog: Catalog, kind: str, container: str, items: set[str]) -> None:
    """Keep each item's list of containers (what it inherits locks from) in step with
    the container's new list of items."""
    old = set((catalog.get(kind, container) or {}).get("items", []))
    for item_id in old ^ items:
        item = catalog.get("items", item_id) or _new_item(item_id)
        members = [c for c in item.get(kind, []) if c != container]
        if item_id in items:
            members.append(container)
        item[kind] = members
        catalog.put("items", item_id, item)


def _on_put(catalog: Catalog, kind: str, entity: dict[str, Any]) -> dict[str, Any]:
    if kind in ("collections", "libraries"):
        _contain(catalog, kind, entity["id"], set(entity.get("items", [])))
    if kind == "items":  # an item's containers are derived from theirs
        old = catalog.get("items", entity["id"]) or {}
        return {
            "id": entity["id"],
            "collections": old.get("collections", []),
            "libraries": old.get("libraries", []),
        }
    return entity


def _on_delete(catalog: Catalog, kind: str, entity_id: str) -> None:
    if kind in ("collections", "libraries"):
        _contain(catalog, kind, entity_id, set())


CATALOG = CatalogPart(
    document={"vidispine": fields.Nested(VidispineSchema, load_default=dict)},
    kinds={
        "collections": (ContainerSchema, "id"),
        "libraries": (ContainerSchema, "id"),
        "items": (ContainerSchema, "id"),  # items: {id}
        "vfiles": (VidispineFileSchema, "id"),
    },
    entities=_entities,
    on_put=_on_put,
    on_delete=_on_delete,
)
