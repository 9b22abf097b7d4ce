"""The admin API: a sysadmin edits the catalog and issues API keys.

Credentials: ``Authorization: Bearer <key>`` (or ``X-API-Key``) of a user with the
``sysadmin`` role. Errors: ``{"error": {"status", "message", "details"?}}``.
"""

from __future__ import annotations

from typing import Any

from flask import Blueprint, jsonify, request
from marshmallow import Schema, ValidationError, fields, validate

from .auth import user_for_key
from .catalog import KINDS, CatalogError, parse_document
from .errors import ApiError, plain_envelope, register_envelope, register_prefix
from .identity import User
from .openapi import REGISTRY, route
from .services import services

bp = Blueprint("admin", __name__, url_prefix="/admin")
register_envelope(bp, plain_envelope)
register_prefix("/admin", plain_envelope)
REGISTRY.security_schemes["AdminBearer"] = {"type": "http", "scheme": "bearer"}
SECURITY = [{"AdminBearer": []}]
TAG = "Administration"


class NewUserSchema(Schema):
    id = fields.String(required=True, validate=validate.Length(min=1, max=256))
    name = fields.String(required=True, validate=validate.Length(min=1, max=256))
    email = fields.String(load_default="")
    roles = fields.List(fields.String(), load_default=list)


class IssuedKeySchema(Schema):
    id = fields.String()
    api_key = fields.String()


@bp.before_request
def require_sysadmin() -> None:
    header = request.headers.get("Authorization", "")
    key = header[7:] if header.lower().startswith("bearer ") else request.headers.get(
        "X-API-Key")
    user = user_for_key(key)
    if user is None:
        raise ApiError(401, "A sysadmin's API key is required (Authorization: Bearer <key>)")
    if not user.is_sysadmin:
        raise ApiError(403, f"User {user.id!r} is not a sysadmin")


def json_body() -> Any:
    data = request.get_json(silent=True)
    if data is None:
        raise ApiError(400, "The body must be JSON")
    return data


@route(bp, "/catalog", "GET", summary="The whole catalog", tag=TAG, security=SECURITY,
       responses={200: ("Catalog, by kind and id", None)})
def get_catalog() -> Any:
    return jsonify(services().catalog.dump())


@route(bp, "/catalog", "PUT", summary="Replace the whole catalog (same document as "
       "`lockcore catalog load`)", tag=TAG, security=SECURITY,
       responses={200: ("Counts by kind", None), 400: ("Invalid document", None)})
def put_catalog() -> Any:
    try:
        doc = parse_document(request.get_data(as_text=True))
    except CatalogError as exc:
        raise ApiError(400, "Invalid catalog document", details=exc.messages) from exc
    return jsonify(services().catalog.replace(doc, services().users))


def kind_schema(kind: str) -> tuple[type[Schema], str]:
    if kind not in KINDS:
        raise ApiError(404, f"Unknown catalog kind {kind!r}; known: {', '.join(KINDS)}")
    return KINDS[kind]


@route(bp, "/catalog/<kind>/<entity_id>", "PUT", summary="Create or replace one entity",
       tag=TAG, security=SECURITY, responses={200: ("The entity", None),
                                             400: ("Invalid entity", None)})
def put_entity(kind: str, entity_id: str) -> Any:
    schema, id_field = kind_schema(kind)
    data = json_body()
    if not isinstance(data, dict):
        raise ApiError(400, "The body must be a JSON object")
    try:
        entity = schema().load({**data, id_field: entity_id})
    except ValidationError as exc:
        raise ApiError(400, "Invalid entity", details=exc.messages) from exc
    services().catalog.put_entity(kind, entity)
    return jsonify(entity)


@route(bp, "/catalog/<kind>/<entity_id>", "DELETE", summary="Remove one entity", tag=TAG,
       security=SECURITY, responses={204: ("Removed", None), 404: ("Unknown", None)})
def delete_entity(kind: str, entity_id: str) -> Any:
    kind_schema(kind)
    if not services().catalog.delete_entity(kind, entity_id):
        raise ApiError(404, f"No {kind} entity {entity_id!r}")
    return "", 204


@route(bp, "/users", "POST", summary="Create a user and issue their first API key", tag=TAG,
       security=SECURITY, body=NewUserSchema,
       responses={201: ("The key, shown only now", IssuedKeySchema)})
def create_user() -> Any:
    try:
        data = NewUserSchema().load(json_body())
    except ValidationError as exc:
        raise ApiError(400, "Invalid user", details=exc.messages) from exc
    users = services().users
    users.put(User(data["id"], data["name"], data["email"], frozenset(data["roles"])))
    return jsonify({"id": data["id"], "api_key": users.add_key(data["id"])}), 201
