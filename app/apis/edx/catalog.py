"""The EDX part of the catalog: workspaces (by id, or by name), their admins and members."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from marshmallow import Schema, fields

from ...catalog import Catalog, name_field
from ...units import CatalogPart, Entities


class WorkspaceSchema(Schema):
    id = name_field()
    name = fields.String(load_default="")
    admins = fields.List(fields.String(), load_default=list)
    members = fields.List(fields.String(), load_default=list)


@dataclass(frozen=True)
class Workspace:
    id: str
    name: str
    admins: frozenset[str]
    members: frozenset[str]


def read_workspace(catalog: Catalog, ws_id: str) -> Workspace | None:
    """A workspace by id, or else by name (EDX accepts either)."""

    def read() -> Workspace | None:
        w = catalog.get("workspaces", ws_id)
        if w is None:
            by_name = catalog.get("workspace_names", ws_id)
            w = catalog.get("workspaces", by_name) if isinstance(by_name, str) else None
        if w is None:
            return None
        admins, members = frozenset(w.get("admins", [])), frozenset(w.get("members", []))
        return Workspace(w["id"], w.get("name", ""), admins, members)

    return catalog.remembered("workspaces", ws_id, read)


def _workspaces(doc: dict[str, Any]) -> Entities:
    out: Entities = {"workspaces": {}, "workspace_names": {}}
    for ws in doc["workspaces"]:
        out["workspaces"][ws["id"]] = ws
        if ws.get("name"):
            out["workspace_names"][ws["name"]] = ws["id"]
    return out


def _put_workspace(catalog: Catalog, kind: str, entity: dict[str, Any]) -> dict[str, Any]:
    if entity.get("name"):
        catalog.put("workspace_names", entity["name"], entity["id"])
    return entity


CATALOG = CatalogPart(
    document={"workspaces": fields.List(fields.Nested(WorkspaceSchema), load_default=list)},
    kinds={"workspaces": (WorkspaceSchema, "id")},
    entities=_workspaces,
    indexes=("workspace_names",),
    on_put=_put_workspace,
)
