"""The ONLYOFFICE DocSpace file lock API (seeds 001, 002): ``/api/2.0/files/file/...``.

A file lock is a lockcore lock of type ``file`` on resource ``<fileId>`` in scope
``docspace:room:<roomId>``; it has no expiry unless ``LOCKCORE_DOCSPACE_TTL`` is set.
Who may do what follows the caller's access level in the file's room (a sysadmin counts as
a room manager). Credentials: ``Authorization: Bearer <key>``.

Envelope (camelCase, nulls omitted): ``{"response", "count", "links": [{"href",
"action"}], "status": 0, "statusCode"}``; errors ``{"error": {"message", "type"},
"status": 1, "statusCode"}``.
"""

from __future__ import annotations

from typing import Any

from flask import Blueprint, jsonify, request
from marshmallow import Schema, fields, validate

from lockcore import Lock, LockConflict, LockNotFound

from ...auth import bearer_token, held_by_other, user_for_key
from ...errors import ApiError
from ...identity import User
from ...limits import request_json
from ...openapi import route
from ...services import services
from ...units import ApiUnit, until_unlocked
from .access import ABILITIES, CONTENT_CREATOR, READ_FLAGS, ROOM_MANAGER, SECURITY_FLAGS
from .catalog import CATALOG, DocFile, read_docfile

bp = Blueprint("docspace", __name__, url_prefix="/api/2.0/files/file")
TAG = "ONLYOFFICE DocSpace file locks"
LOCK_TYPE = "file"

NO_PERMISSION = "You do not have enough permissions to edit the file"
NOT_FOUND = "The required file was not found"
LOCKED_BY_OTHER = "The file is currently locked by another user"
UNAUTHORIZED = "The request requires user authentication: send Authorization: Bearer <token>"

# -- envelope -----------------------------------------------------------------------------

TYPES = {
    400: "ArgumentException",
    401: "AuthenticationException",
    403: "SecurityException",
    404: "ItemNotFoundException",
    405: "MethodNotAllowed",
    503: "ServiceUnavailable",
}


def envelope(exc: ApiError) -> tuple[Any, int]:
    kind = (
        exc.kind
        if exc.kind in TYPES.values() or exc.kind == "InvalidOperationException"
        else TYPES.get(exc.status, "Exception")
    )
    return jsonify(
        {"error": {"message": exc.message, "type": kind}, "status": 1, "statusCode": exc.status}
    ), exc.status


HTTP_MESSAGES = {404: "The requested resource was not found", 405: "Method not allowed"}
SECURITY: list[dict[str, list[str]]] = [{"DocSpaceBearer": []}]


def ok(dto: Any) -> Any:
    return jsonify(
        {
            "response": dto,
            "count": len(dto) if isinstance(dto, list) else 1,
            "links": [{"href": request.url, "action": request.method}],
            "status": 0,
            "statusCode": 200,
        }
    )


# -- schemas (OpenAPI) --------------------------------------------------------------------


class LockFileSchema(Schema):
    lockFile = fields.Boolean(required=True)


class FileSchema(Schema):
    id = fields.Raw(
        dump_only=True,
        metadata={
            "anyOf": [{"type": "integer"}, {"type": "string"}],
            "description": "a number when the file's id is digits",
        },
    )
    title = fields.String(dump_only=True)
    folderId = fields.String(dump_only=True)
    locked = fields.Boolean(dump_only=True, metadata={"description": "present only when true"})
    lockedBy = fields.String(
        dump_only=True,
        metadata={"description": "the locker's name, for viewers other than the locker"},
    )
    security = fields.Dict(
        keys=fields.String(),
        values=fields.Boolean(),
        dump_only=True,
        metadata={
            "description": "what the caller may do: " + ", ".join(SECURITY_FLAGS),
            "example": {flag: flag in READ_FLAGS for flag in SECURITY_FLAGS},
        },
    )


class LinkSchema(Schema):
    href = fields.String(metadata={"description": "the request's URL"})
    action = fields.String(metadata={"description": "the request's method"})


class EnvelopeSchema(Schema):
    count = fields.Integer()
    links = fields.List(fields.Nested(LinkSchema))
    status = fields.Integer(validate=validate.OneOf([0]))
    statusCode = fields.Integer()


class FileEnvelopeSchema(EnvelopeSchema):
    response = fields.Nested(FileSchema)


class ProtectUserSchema(Schema):
    id = fields.String()
    name = fields.String()
    email = fields.String()
    hasAccess = fields.Boolean()
    access = fields.String(metadata={"description": "the user's access level in the room"})


class ProtectUsersEnvelopeSchema(EnvelopeSchema):
    response = fields.List(fields.Nested(ProtectUserSchema))


#: The ``type`` of an error: one of TYPES' (by status), InvalidOperationException, or
#: Exception for another status.
ERROR_TYPES = (*dict.fromkeys(TYPES.values()), "InvalidOperationException", "Exception")


class ErrorBodySchema(Schema):
    message = fields.String(required=True)
    type = fields.String(required=True, validate=validate.OneOf(ERROR_TYPES))


class ErrorSchema(Schema):
    """Every error: ``{"error": {"message", "type"}, "status": 1, "statusCode"}``."""

    error = fields.Nested(ErrorBodySchema, required=True)
    status = fields.Integer(required=True, validate=validate.OneOf([1]))
    statusCode = fields.Integer(required=True, metadata={"description": "the HTTP status"})


# -- translation --------------------------------------------------------------------------


def caller() -> User:
    user = user_for_key(bearer_token())
    if user is None:
        raise ApiError(401, UNAUTHORIZED)
    return user


def file_for(file_id: str) -> DocFile:
    doc = read_docfile(services().catalog, file_id)
    if doc is None:
        raise ApiError(404, NOT_FOUND)
    return doc


def access_of(user: User, doc: DocFile) -> str | None:
    return ROOM_MANAGER if user.is_sysadmin else doc.access.get(user.id)


def scope_of(doc: DocFile) -> str:
    return f"docspace:room:{doc.room}"


def current_lock(doc: DocFile) -> Lock | None:
    return services().current_lock(scope_of(doc), LOCK_TYPE, doc.id)


def may_lock(access: str | None, lock: Lock | None, user: User) -> bool:
    if access == ROOM_MANAGER:
        return True
    return access == CONTENT_CREATOR and not held_by_other(lock, user)


def file_dto(doc: DocFile, user: User, lock: Lock | None) -> dict[str, Any]:
    access = access_of(user, doc)
    abilities = set(ABILITIES.get(access or "", set()))
    locked_by_other = held_by_other(lock, user)
    if locked_by_other:
        abilities &= READ_FLAGS
    if may_lock(access, lock, user):
        abilities.add("Lock")
    else:
        abilities.discard("Lock")
    dto: dict[str, Any] = {
        "id": int(doc.id) if doc.id.isdigit() else doc.id,
        "title": doc.title,
        "folderId": doc.room,
    }
    if lock is not None:
        dto["locked"] = True
        if locked_by_other:
            dto["lockedBy"] = lock.metadata.get("name", lock.owner)
    dto["security"] = {flag: flag in abilities for flag in SECURITY_FLAGS}
    return dto


def readable(user: User, doc: DocFile) -> str:
    access = access_of(user, doc)
    if access is None:
        raise ApiError(403, NO_PERMISSION)
    return access


# -- views --------------------------------------------------------------------------------

ERRORS = {
    401: ("Not authenticated", ErrorSchema),
    403: ("Not allowed", ErrorSchema),
    404: (NOT_FOUND, ErrorSchema),
    503: ("Lock store unavailable", ErrorSchema),
}


@route(
    bp,
    "/<file_id>/lock",
    "PUT",
    summary="Lock or unlock a file",
    tag=TAG,
    security=SECURITY,
    body=LockFileSchema,
    responses={200: ("The file", FileEnvelopeSchema), 400: ("Bad lockFile", ErrorSchema), **ERRORS},
)
def lock_file(file_id: str) -> Any:
    user = caller()
    try:
        data = request_json()
    except ValueError as exc:
        raise ApiError(400, f"The body is not acceptable JSON: {exc}") from None
    if not isinstance(data, dict):
        raise ApiError(400, "The body must be a JSON object with lockFile: true or false")
    lock_wanted = data.get("lockFile")
    if not isinstance(lock_wanted, bool):
        raise ApiError(400, "lockFile is required and must be true or false")
    doc = file_for(file_id)
    access = readable(user, doc)
    locks = services().locks
    lock = current_lock(doc)
    if not may_lock(access, lock, user):
        raise ApiError(403, NO_PERMISSION)
    if lock_wanted and lock is None:
        try:
            lock = locks.acquire(
                scope_of(doc),
                LOCK_TYPE,
                doc.id,
                user.id,
                metadata={"name": user.name, "email": user.email},
            ).lock
        except LockConflict as exc:
            lock = exc.holder  # locked meanwhile; as a room manager would find it
            if not may_lock(access, lock, user):
                raise ApiError(403, NO_PERMISSION) from exc
    elif not lock_wanted and lock is not None:
        try:
            locks.release(lock, user.id, force=True)  # may_lock checked who may
        except LockNotFound:
            pass
        lock = None
    return ok(file_dto(doc, user, lock))


@route(
    bp,
    "/<file_id>",
    "GET",
    summary="A file, with its lock state for the caller",
    tag=TAG,
    security=SECURITY,
    responses={200: ("The file", FileEnvelopeSchema), **ERRORS},
)
def get_file(file_id: str) -> Any:
    user = caller()
    doc = file_for(file_id)
    readable(user, doc)
    return ok(file_dto(doc, user, current_lock(doc)))


@route(
    bp,
    "/<file_id>/protectusers",
    "GET",
    summary="Users with access to the file (except the caller), with their access level",
    tag=TAG,
    security=SECURITY,
    responses={200: ("Users", ProtectUsersEnvelopeSchema), **ERRORS},
)
def protect_users(file_id: str) -> Any:
    user = caller()
    doc = file_for(file_id)
    readable(user, doc)
    users = services().users
    out = []
    for user_id, access in sorted(doc.access.items()):
        if user_id == user.id:
            continue
        other = users.get(user_id)
        out.append(
            {
                "id": user_id,
                "name": other.name if other else user_id,
                "email": other.email if other else "",
                "hasAccess": True,
                "access": access,
            }
        )
    return ok(out)


@route(
    bp,
    "/<file_id>/edit-check",
    "GET",
    summary="May the caller save edits now (the editor integration asks before saving)",
    tag=TAG,
    security=SECURITY,
    responses={
        200: ("{canEdit: true}", None),
        403: (f"{LOCKED_BY_OTHER} / {NO_PERMISSION}", ErrorSchema),
        **ERRORS,
    },
)
def edit_check(file_id: str) -> Any:
    user = caller()
    doc = file_for(file_id)
    access = readable(user, doc)
    if "Edit" not in ABILITIES.get(access, set()):
        raise ApiError(403, NO_PERMISSION)
    lock = current_lock(doc)
    if held_by_other(lock, user):
        raise ApiError(403, LOCKED_BY_OTHER, kind="InvalidOperationException")
    return ok({"canEdit": True})


UNIT = ApiUnit(
    "docspace",
    bp,
    envelope,
    HTTP_MESSAGES,
    prefix="/api/2.0",  # the whole of DocSpace's API answers in its envelope
    security_schemes={"DocSpaceBearer": {"type": "http", "scheme": "bearer"}},
    settings={"DOCSPACE_TTL": (0.0, float)},  # seconds a file lock lasts; 0: until unlocked
    lock_types=until_unlocked(LOCK_TYPE, "DOCSPACE_TTL"),
    catalog=CATALOG,
)
