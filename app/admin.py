"""The admin API: a sysadmin edits the catalog, adds users, issues and revokes API keys.

Credentials: ``Authorization: Bearer <key>`` (or ``X-API-Key``) of a user with the
``sysadmin`` role. Errors: ``{"error": {"status", "message", "details"?}}``. Keys are
shown once, when issued (with ``Cache-Control: no-store``); afterwards only their ids.
"""

from __future__ import annotations

from typing import Any

from flask import Blueprint, Response, jsonify, request
from marshmallow import Schema, ValidationError, fields, validate

from . import idempotency
from .auth import bearer_token, user_for_key
from .catalog import CatalogError, catalog_schema
from .errors import ApiError, field_errors, plain_envelope
from .identity import IssuedKey, KeyNotFound, User, UserExists, UserNotFound, UserRecord
from .openapi import route
from .services import services
from .units import ApiUnit

bp = Blueprint("admin", __name__, url_prefix="/admin")
SECURITY: list[dict[str, list[str]]] = [{"AdminBearer": []}]
TAG = "Administration"


class NewUserSchema(Schema):
    id = fields.String(required=True, validate=validate.Length(min=1, max=256))
    name = fields.String(required=True, validate=validate.Length(min=1, max=256))
    email = fields.String(load_default="")
    roles = fields.List(fields.String(), load_default=list)


class IssuedKeySchema(Schema):
    id = fields.String(required=True, metadata={"description": "the user's id"})
    api_key = fields.String(required=True, metadata={"description": "shown only now"})
    key_id = fields.String(required=True, metadata={"description": "the key's id, to revoke it"})


class UserSchema(Schema):
    id = fields.String(required=True)
    name = fields.String(required=True)
    email = fields.String(required=True)
    roles = fields.List(fields.String(), required=True)
    key_ids = fields.List(
        fields.String(), required=True, metadata={"description": "ids of the user's API keys"}
    )


class RevokedSchema(Schema):
    revoked = fields.List(
        fields.String(), required=True, metadata={"description": "ids of the keys revoked"}
    )


class ErrorBodySchema(Schema):
    status = fields.Integer(required=True)
    message = fields.String(required=True)
    details = field_errors(metadata={"description": "an invalid body: the messages of each field"})


class ErrorSchema(Schema):
    error = fields.Nested(ErrorBodySchema, required=True)


#: Answers any admin call may get.
ERRORS: dict[int, tuple[str, Any]] = {
    401: ("No valid key", ErrorSchema),
    403: ("Not a sysadmin", ErrorSchema),
    503: ("Lock store unavailable", ErrorSchema),
}
NO_USER = {404: ("No such user", ErrorSchema)}


@bp.before_request
def require_sysadmin() -> None:
    user = user_for_key(bearer_token() or request.headers.get("X-API-Key"))
    if user is None:
        raise ApiError(401, "A sysadmin's API key is required (Authorization: Bearer <key>)")
    if not user.is_sysadmin:
        raise ApiError(403, f"User {user.id!r} is not a sysadmin")


def json_body() -> Any:
    data = request.get_json(silent=True)
    if data is None:
        raise ApiError(400, "The body must be JSON")
    return data


@route(
    bp,
    "/catalog",
    "GET",
    summary="The whole catalog",
    tag=TAG,
    security=SECURITY,
    responses={200: ("Catalog, by kind and id", None), **ERRORS},
)
def get_catalog() -> Any:
    return jsonify(services().catalog.dump())


@route(
    bp,
    "/catalog",
    "PUT",
    summary="Replace the whole catalog (same document as `lockcore catalog load`)",
    tag=TAG,
    security=SECURITY,
    body=catalog_schema(),  # every API's sections
    body_media=("application/json", "application/yaml"),
    responses={200: ("Counts by kind", None), 400: ("Invalid document", ErrorSchema), **ERRORS},
)
def put_catalog() -> Any:
    try:
        doc = services().catalog.parse(request.get_data(as_text=True))
    except CatalogError as exc:
        raise ApiError(400, "Invalid catalog document", details=exc.messages) from exc
    return jsonify(services().catalog.replace(doc, services().users))


def kind_schema(kind: str) -> tuple[type[Schema], str]:
    kinds = services().catalog.kinds
    if kind not in kinds:
        raise ApiError(404, f"Unknown catalog kind {kind!r}; known: {', '.join(kinds)}")
    return kinds[kind]


@route(
    bp,
    "/catalog/<kind>/<entity_id>",
    "PUT",
    summary="Create or replace one entity",
    tag=TAG,
    security=SECURITY,
    body={
        "type": "object",
        "description": "The entity, with its kind's fields as in the "
        "catalog document (the id comes from the URL)",
    },
    responses={
        200: ("The entity", None),
        400: ("Invalid entity", ErrorSchema),
        404: ("Unknown kind", ErrorSchema),
        **ERRORS,
    },
)
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


@route(
    bp,
    "/catalog/<kind>/<entity_id>",
    "DELETE",
    summary="Remove one entity",
    tag=TAG,
    security=SECURITY,
    responses={204: ("Removed", None), 404: ("Unknown kind or entity", ErrorSchema), **ERRORS},
)
def delete_entity(kind: str, entity_id: str) -> Any:
    kind_schema(kind)
    if not services().catalog.delete_entity(kind, entity_id):
        raise ApiError(404, f"No {kind} entity {entity_id!r}")
    return "", 204


def user_json(record: UserRecord) -> dict[str, Any]:
    u = record.user
    return {
        "id": u.id,
        "name": u.name,
        "email": u.email,
        "roles": sorted(u.roles),
        "key_ids": list(record.key_ids),
    }


def issued(key: IssuedKey) -> Response:
    """201 with a new key, which no cache (browser, proxy) may keep."""
    response = jsonify({"id": key.user_id, "api_key": key.key, "key_id": key.key_id})
    response.status_code = 201
    response.headers["Cache-Control"] = "no-store"
    return response


@route(
    bp,
    "/users",
    "GET",
    summary="Every user, with the ids of their API keys (never the keys)",
    tag=TAG,
    security=SECURITY,
    responses={200: ("Users by id", UserSchema(many=True)), **ERRORS},
)
def list_users() -> Any:
    return jsonify([user_json(record) for record in services().users.records()])


@route(
    bp,
    "/users",
    "POST",
    summary="Create a user and issue their first API key",
    tag=TAG,
    security=SECURITY,
    body=NewUserSchema,
    parameters=[idempotency.PARAMETER],
    responses={
        201: ("The key, shown only now", IssuedKeySchema),
        400: ("Invalid user", ErrorSchema),
        409: ("The id is taken (nothing changed)", ErrorSchema),
        422: ("Idempotency-Key reused for another request", ErrorSchema),
        **ERRORS,
    },
)
@idempotency.idempotent
def create_user() -> Any:
    try:
        data = NewUserSchema().load(json_body())
    except ValidationError as exc:
        raise ApiError(400, "Invalid user", details=exc.messages) from exc
    user = User(data["id"], data["name"], data["email"], frozenset(data["roles"]))
    try:
        return issued(services().users.create(user))
    except UserExists as exc:
        raise ApiError(
            409, f"User {user.id!r} already exists; add a key with POST /admin/users/<id>/keys"
        ) from exc


@route(
    bp,
    "/users/<user_id>",
    "GET",
    summary="One user, with the ids of their API keys",
    tag=TAG,
    security=SECURITY,
    responses={200: ("The user", UserSchema), **NO_USER, **ERRORS},
)
def get_user(user_id: str) -> Any:
    record = services().users.record(user_id)
    if record is None:
        raise ApiError(404, f"No user {user_id!r}")
    return jsonify(user_json(record))


@route(
    bp,
    "/users/<user_id>/keys",
    "POST",
    summary="Issue another API key to a user",
    tag=TAG,
    security=SECURITY,
    parameters=[idempotency.PARAMETER],
    responses={
        201: ("The key, shown only now", IssuedKeySchema),
        **NO_USER,
        422: ("Idempotency-Key reused for another request", ErrorSchema),
        **ERRORS,
    },
)
@idempotency.idempotent
def issue_key(user_id: str) -> Any:
    try:
        return issued(services().users.issue_key(user_id))
    except UserNotFound as exc:
        raise ApiError(404, f"No user {user_id!r}") from exc


@route(
    bp,
    "/users/<user_id>/keys/<key_id>",
    "DELETE",
    summary="Revoke one API key (by its id); it stops working at once",
    tag=TAG,
    security=SECURITY,
    responses={
        204: ("Revoked", None),
        404: ("No such user, or no such key of theirs", ErrorSchema),
        **ERRORS,
    },
)
def revoke_key(user_id: str, key_id: str) -> Any:
    try:
        services().users.revoke(user_id, key_id=key_id)
    except UserNotFound as exc:
        raise ApiError(404, f"No user {user_id!r}") from exc
    except KeyNotFound as exc:
        raise ApiError(404, f"User {user_id!r} has no key {key_id!r}") from exc
    return "", 204


@route(
    bp,
    "/users/<user_id>/keys",
    "DELETE",
    summary="Revoke every API key of a user",
    tag=TAG,
    security=SECURITY,
    responses={200: ("The ids of the keys revoked", RevokedSchema), **NO_USER, **ERRORS},
)
def revoke_keys(user_id: str) -> Any:
    try:
        return jsonify({"revoked": services().users.revoke(user_id, every=True)})
    except UserNotFound as exc:
        raise ApiError(404, f"No user {user_id!r}") from exc


UNIT = ApiUnit(
    "admin",
    bp,
    plain_envelope,
    security_schemes={"AdminBearer": {"type": "http", "scheme": "bearer"}},
    durable=False,
)
