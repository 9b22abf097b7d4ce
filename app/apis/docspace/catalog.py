"""The DocSpace part of the catalog: rooms, each user's access level in each, and the
rooms' files."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from marshmallow import Schema, fields, validate

from ...catalog import Catalog, name_field
from ...units import CatalogPart, Entities
from .access import ACCESS_LEVELS


class RoomFileSchema(Schema):
    id = name_field()
    title = name_field()


class RoomSchema(Schema):
    id = name_field()
    title = fields.String(load_default="")
    access = fields.Dict(
        keys=fields.String(),
        values=fields.String(validate=validate.OneOf(ACCESS_LEVELS)),
        load_default=dict,
    )
    files = fields.List(fields.Nested(RoomFileSchema), load_default=list)


@dataclass(frozen=True)
class DocFile:
    id: str
    title: str
    room: str
    access: dict[str, str]  # the room's: user id -> access level


def read_docfile(catalog: Catalog, file_id: str) -> DocFile | None:
    def read() -> DocFile | None:
        f = catalog.get("files", file_id)
        if f is None:
            return None
        room = catalog.get("rooms", f["room"]) or {}
        return DocFile(f["id"], f["title"], f["room"], dict(room.get("access", {})))

    return catalog.remembered("files", file_id, read)


def _rooms(doc: dict[str, Any]) -> Entities:
    out: Entities = {"rooms": {}, "files": {}}
    for room in doc["rooms"]:
        out["rooms"][room["id"]] = {k: v for k, v in room.items() if k != "files"}
        for f in room["files"]:
            out["files"][f["id"]] = {**f, "room": room["id"]}
    return out


CATALOG = CatalogPart(
    document={"rooms": fields.List(fields.Nested(RoomSchema), load_default=list)},
    kinds={"rooms": (RoomSchema, "id")},
    entities=_rooms,
    derived=("files",),
)
