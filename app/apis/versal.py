"""The Versal course gadget lock API (seed 004): ``/locks``.

A gadget lock is a lockcore lock of type ``gadget`` (one per owner: a user's new lock
releases their previous one in the course) on resource ``<gadgetId>`` in scope
``versal:course:<courseKey>``. Credentials come in the ``SID`` header. Errors are
``{"error": <status>, "message": ...}`` with the seed's messages.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from flask import Blueprint, jsonify, request
from marshmallow import EXCLUDE, Schema, ValidationError, fields, validate

from lockcore import Lock, LockConflict, LockNotFound, LockNotOwned, LockType

from .. import idempotency
from ..auth import user_for_key
from ..catalog import Catalog, name_field
from ..errors import ApiError
from ..fastjson import json_response
from ..identity import User
from ..limits import Limited, check_name, request_json
from ..openapi import route
from ..services import services
from ..units import ApiUnit, CatalogPart, Entities

bp = Blueprint("versal", __name__, url_prefix="/locks")
TAG = "Versal course gadget locks"
LOCK_TYPE = "gadget"
EDIT_ROLES = {"editor", "owner"}

INVALID_CREDENTIALS = "Invalid credentials"
INSUFFICIENT = "Insufficient permissions"
LOCKED = "Resource locked"


class Id(fields.Field[str]):
    """A course key or gadget id: a non-empty string (a number is taken as its text)."""

    def _deserialize(self, value: Any, attr: str | None, data: Any, **kwargs: Any) -> str:
        if isinstance(value, bool) or not isinstance(value, (str, int)):
            raise ValidationError("Must be a string.")
        text = str(value)
        if not text.strip():
            raise ValidationError("Must not be blank.")
        return text


#: What ``Id`` takes: text that is not blank, or a 64-bit integer.
ID_DOC = {
    "anyOf": [
        {"type": "string", "pattern": r"\S"},
        {"type": "integer", "minimum": -(2**63), "maximum": 2**63 - 1},
    ]
}


class SubjectSchema(Schema):
    class Meta:
        unknown = EXCLUDE

    courseId = Id(required=True, validate=Limited("name", "courseId"), metadata=ID_DOC)
    gadgetId = Id(required=True, validate=Limited("name", "gadgetId"), metadata=ID_DOC)


class LockRequestSchema(Schema):
    """Lock request."""

    class Meta:
        unknown = EXCLUDE

    type = fields.String(required=True, validate=validate.OneOf([LOCK_TYPE]))
    subject = fields.Nested(SubjectSchema, required=True)


class ResourceLockSchema(Schema):
    """Resource lock. ``id`` parses as a 64-bit integer; ``expiresIn`` is milliseconds."""

    id = fields.String(dump_only=True)
    type = fields.String(dump_only=True)
    subject = fields.Nested(SubjectSchema, dump_only=True)
    ownerId = fields.String(dump_only=True)
    expiresIn = fields.Integer(dump_only=True)


class ErrorSchema(Schema):
    error = fields.Integer(dump_only=True)
    message = fields.String(dump_only=True)


def envelope(exc: ApiError) -> tuple[Any, int]:
    return jsonify({"error": exc.status, "message": exc.message}), exc.status


HTTP_MESSAGES = {404: "Not found", 405: "Method not allowed"}
SECURITY: list[dict[str, list[str]]] = [{"SID": []}]

# -- the catalog: courses, their gadgets and who may do what -------------------------------

COURSE_ROLES = ("learner", "editor", "owner")  # learner: list; editor, owner: lock too


class CourseSchema(Schema):
    key = name_field()
    title = fields.String(load_default="")
    gadgets = fields.List(fields.String(validate=validate.Length(min=1)), load_default=list)
    roles = fields.Dict(
        keys=fields.String(),
        values=fields.String(validate=validate.OneOf(COURSE_ROLES)),
        load_default=dict,
    )


@dataclass(frozen=True)
class Course:
    key: str
    title: str
    gadgets: frozenset[str]
    roles: dict[str, str]

    def role_of(self, user_id: str) -> str | None:
        return self.roles.get(user_id)


def read_course(catalog: Catalog, key: str) -> Course | None:
    def read() -> Course | None:
        c = catalog.get("courses", key)
        if c is None:
            return None
        gadgets = frozenset(c.get("gadgets", []))
        return Course(c["key"], c.get("title", ""), gadgets, dict(c.get("roles", {})))

    return catalog.remembered("courses", key, read)


def _courses(doc: dict[str, Any]) -> Entities:
    return {"courses": {course["key"]: course for course in doc["courses"]}}


CATALOG = CatalogPart(
    document={"courses": fields.List(fields.Nested(CourseSchema), load_default=list)},
    kinds={"courses": (CourseSchema, "key")},
    entities=_courses,
)

# -- translation --------------------------------------------------------------------------


def scope_of(course_key: str) -> str:
    return f"versal:course:{course_key}"


def course_of(scope: str) -> str | None:
    prefix = scope_of("")
    return scope[len(prefix) :] if scope.startswith(prefix) else None


#: Built once: a schema is reusable, and building one per request costs more than using it.
LOCK_REQUEST = LockRequestSchema()


def _plain_id(value: Any) -> bool:
    """Whether ``Id`` and its ``Limited`` validator take ``value`` as it is: a non-blank
    string that is a valid name."""
    return type(value) is str and bool(value.strip()) and check_name(value, "") is None


def lock_request(data: dict[str, Any]) -> dict[str, Any]:
    """``LockRequestSchema().load(data)``. The usual request (strings, valid) is checked
    here, as the schema would, without it; anything else goes through the schema, for its
    conversions and its error messages."""
    subject = data.get("subject")
    if (
        data.get("type") == LOCK_TYPE
        and type(data["type"]) is str
        and type(subject) is dict
        and _plain_id(subject.get("courseId"))
        and _plain_id(subject.get("gadgetId"))
    ):
        return {
            "type": LOCK_TYPE,
            "subject": {"courseId": subject["courseId"], "gadgetId": subject["gadgetId"]},
        }
    return LOCK_REQUEST.load(data)  # type: ignore[no-any-return]


def resource_lock(lock: Lock, course: str | None = None) -> dict[str, Any]:
    """A Resource lock as ``ResourceLockSchema`` dumps it (built directly: a list answers
    up to 1000 of them, and a dump per lock costs more than the rest of the request).
    ``course``: the lock's course key, when the caller knows it (a listing's)."""
    return {
        "id": str(lock.id),
        "type": str(lock.type),
        "subject": {
            "courseId": course if course is not None else course_of(lock.scope),
            "gadgetId": lock.resource,
        },
        "ownerId": str(lock.owner),
        "expiresIn": int(round((lock.remaining or 0) * 1000)),
    }


def caller() -> User:
    # The environ, not request.headers: the same value, without werkzeug's key handling
    # (and a KeyError raised inside it when the header is missing).
    user = user_for_key(request.environ.get("HTTP_SID"))
    if user is None:
        raise ApiError(401, INVALID_CREDENTIALS)
    return user


def course_for(user: User, course_key: str, *, edit: bool) -> Course:
    course = read_course(services().catalog, course_key)
    if course is None:
        raise ApiError(404, f"Course '{course_key}' not found")
    role = course.role_of(user.id)
    allowed = role in EDIT_ROLES if edit else role is not None
    if not (allowed or user.is_sysadmin):
        raise ApiError(403, INSUFFICIENT)
    return course


def bad_request(what: str) -> ApiError:
    return ApiError(400, f"Bad request: {what}")


def flatten(messages: Any, path: str = "") -> list[str]:
    if isinstance(messages, dict):
        out = []
        for key, value in messages.items():
            out += flatten(value, f"{path}.{key}" if path else str(key))
        return out
    if isinstance(messages, list) and all(isinstance(m, str) for m in messages):
        return [f"{path}: {' '.join(messages)}"]
    return [f"{path}: {messages}"]


# -- views --------------------------------------------------------------------------------

ERRORS = {
    401: (INVALID_CREDENTIALS, ErrorSchema),
    403: (f"{INSUFFICIENT} / {LOCKED}", ErrorSchema),
    404: ("Course, gadget or lock not found", ErrorSchema),
    503: ("Lock store unavailable", ErrorSchema),
}


@route(
    bp,
    "",
    "GET",
    summary="Get active locks: all gadget locks of a course",
    tag=TAG,
    security=SECURITY,
    parameters=[
        {
            "name": "subject.courseId",
            "in": "query",
            "required": True,
            "schema": {"type": "string", "pattern": r"\S"},
            "description": "The course key",
        }
    ],
    responses={
        200: ("Array of Resource lock", {"type": "array", "items": ResourceLockSchema}),
        400: ("Bad request", ErrorSchema),
        **ERRORS,
    },
)
def list_locks() -> Any:
    user = caller()
    course_key = request.args.get("subject.courseId", "")
    if not course_key.strip():
        raise bad_request("query parameter 'subject.courseId' is required")
    course_for(user, course_key, edit=False)
    locks = services().locks.iter_locks(scope_of(course_key), type=LOCK_TYPE, limit=1000)
    return json_response([resource_lock(lock, course_key) for lock in locks]), 200


@route(
    bp,
    "",
    "POST",
    summary="Lock resource (releases the caller's previous gadget lock)",
    tag=TAG,
    security=SECURITY,
    body=LockRequestSchema,
    parameters=[idempotency.PARAMETER],
    responses={
        201: ("Resource lock", ResourceLockSchema),
        400: ("Bad request", ErrorSchema),
        409: ("Idempotency-Key: its lock is gone", ErrorSchema),
        422: ("Idempotency-Key reused for another request", ErrorSchema),
        **ERRORS,
    },
)
@idempotency.idempotent
def acquire() -> Any:
    user = caller()
    try:
        data = request_json()
    except ValueError as exc:
        raise bad_request(f"the body is not acceptable JSON: {exc}") from None
    if data is None:
        raise bad_request("the body must be a JSON Lock request")
    if not isinstance(data, dict):
        raise bad_request("the body must be a JSON object")
    try:
        body = lock_request(data)
    except ValidationError as exc:
        raise bad_request("; ".join(flatten(exc.messages))) from exc
    course_key, gadget = body["subject"]["courseId"], body["subject"]["gadgetId"]
    course = course_for(user, course_key, edit=True)
    if gadget not in course.gadgets:
        raise ApiError(404, f"Gadget '{gadget}' not found")
    try:
        result = services().locks.acquire(
            scope_of(course_key),
            LOCK_TYPE,
            gadget,
            user.id,
            metadata={"name": user.name, "email": user.email},
            request_id=idempotency.request_id(),
        )
    except LockConflict as exc:
        raise ApiError(403, LOCKED) from exc
    except LockNotFound as exc:  # a repeated Idempotency-Key whose lock is gone
        raise ApiError(
            409, "The lock this Idempotency-Key took was released or has expired"
        ) from exc
    return json_response(resource_lock(result.lock)), 201


def _lock_not_found(lock_id: str) -> ApiError:
    return ApiError(404, f"Lock '{lock_id}' not found")


@route(
    bp,
    "/<lock_id>",
    "DELETE",
    summary="Unlock resource",
    tag=TAG,
    security=SECURITY,
    responses={200: ("Released: {}", None), **ERRORS},
)
def release(lock_id: str) -> Any:
    user = caller()
    locks = services().locks
    try:
        # One round trip; another API's lock (a scope without Versal's prefix) is not a
        # Versal resource: not found.
        locks.release(lock_id, user.id, force=user.is_sysadmin, scope_prefix=scope_of(""))
    except LockNotFound as exc:
        raise _lock_not_found(lock_id) from exc
    except LockNotOwned as exc:
        raise ApiError(403, INSUFFICIENT) from exc
    return json_response({}), 200


def lock_types(config: Mapping[str, Any]) -> list[LockType]:
    return [
        LockType(
            LOCK_TYPE,
            one_per_owner=True,
            default_ttl=config["VERSAL_TTL"],
            max_ttl=config["VERSAL_MAX_TTL"],
        )
    ]


UNIT = ApiUnit(
    "versal",
    bp,
    envelope,
    HTTP_MESSAGES,
    security_schemes={"SID": {"type": "apiKey", "in": "header", "name": "SID"}},
    settings={
        "VERSAL_TTL": (300.0, float),  # seconds a gadget lock lasts (Versal's expiresIn)
        "VERSAL_MAX_TTL": (3600.0, float),
    },
    lock_types=lock_types,
    catalog=CATALOG,
)
