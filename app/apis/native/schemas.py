"""The ``/v1`` API's request and answer shapes (marshmallow schemas: they validate the
requests and document the API)."""

from __future__ import annotations

from typing import Any

from marshmallow import EXCLUDE, Schema, ValidationError, fields, validate

from lockcore import Lock

from ...errors import field_errors
from ...limits import AtMost, Limited

LOCK_TYPE = "job"
#: /v1's lock types: job (exclusive lease), rlock (reentrant), rw (read-write: shared for
#: a read lock), permit (a semaphore of LOCKCORE_V1_PERMITS), leader (elections)
TYPES = (LOCK_TYPE, "rlock", "rw", "permit", "leader")
#: the types a multi-lock may take (exclusive, not one per owner)
MULTI_LOCK_TYPES = (LOCK_TYPE, "rlock")
SCOPE_PREFIX = "v1:"


#: A lock's metadata, as the document shows it.
METADATA_EXAMPLE = {"host": "worker-3"}


def metadata_field() -> fields.Dict:
    """A lock's metadata: string keys and values, within the service's limits."""
    return fields.Dict(
        keys=fields.String(),
        values=fields.String(),
        load_default=dict,
        validate=Limited("metadata", "metadata"),
        metadata={"example": METADATA_EXAMPLE},
    )


class JsonBool(fields.Boolean):
    """JSON ``true`` or ``false`` only (marshmallow's Boolean takes 0, 1, "yes"...)."""

    def _deserialize(self, value: Any, attr: str | None, data: Any, **kwargs: Any) -> bool:
        if not isinstance(value, bool):
            raise ValidationError("Not a valid boolean.")
        return value


class AcquireSchema(Schema):
    class Meta:
        unknown = EXCLUDE

    scope = fields.String(required=True, validate=Limited("name", "scope"))
    resource = fields.String(required=True, validate=Limited("name", "resource"))
    type = fields.String(load_default=LOCK_TYPE, validate=validate.OneOf(TYPES))
    shared = JsonBool(
        load_default=False,
        metadata={"description": "type rw: a read lock (else a write lock); other types: ignored"},
    )
    ttl = fields.Float(
        load_default=None,
        validate=validate.Range(min=0.001),
        metadata={"description": "lease in seconds"},
    )
    wait = fields.Float(
        load_default=None,
        validate=[validate.Range(min=0), AtMost("V1_MAX_WAIT", "wait", " s")],
        metadata={"description": "seconds to wait in line (long poll)"},
    )
    metadata = metadata_field()


class RefreshSchema(Schema):
    class Meta:
        unknown = EXCLUDE

    ttl = fields.Float(load_default=None, validate=validate.Range(min=0.001))


class ValidateSchema(Schema):
    class Meta:
        unknown = EXCLUDE

    scope = fields.String(required=True, validate=Limited("name", "scope"))
    resource = fields.String(required=True, validate=Limited("name", "resource"))
    type = fields.String(load_default=LOCK_TYPE, validate=validate.OneOf(TYPES))
    fencing_token = fields.Integer(
        required=True, strict=True, validate=validate.Range(min=0, max=2**63 - 1)
    )


class LockSchema(Schema):
    id = fields.String()
    scope = fields.String()
    type = fields.String()
    resource = fields.String()
    owner = fields.String()
    fencing_token = fields.Integer()
    acquired_at = fields.Float(metadata={"description": "seconds since the epoch"})
    expires_at = fields.Float(allow_none=True)
    expires_in = fields.Float(allow_none=True, metadata={"description": "seconds left"})
    metadata = fields.Dict(
        keys=fields.String(), values=fields.String(), metadata={"example": METADATA_EXAMPLE}
    )


def unique(items: list[Any]) -> None:
    if len(set(items)) != len(items):
        raise ValidationError("Each item once.")


class AcquireAllSchema(Schema):
    """A multi-lock: every resource or none."""

    class Meta:
        unknown = EXCLUDE

    scope = fields.String(required=True, validate=Limited("name", "scope"))
    resources = fields.List(
        fields.String(validate=Limited("name", "resource")),
        required=True,
        validate=[validate.Length(min=1, max=100), unique],
        metadata={"uniqueItems": True},
    )
    type = fields.String(load_default=LOCK_TYPE, validate=validate.OneOf(MULTI_LOCK_TYPES))
    ttl = fields.Float(load_default=None, validate=validate.Range(min=0.001))
    metadata = metadata_field()


class ReleaseAllSchema(Schema):
    """A multi-lock's locks, released together."""

    class Meta:
        unknown = EXCLUDE

    ids = fields.List(
        fields.String(),
        required=True,
        validate=[validate.Length(min=1, max=100), unique],
        metadata={"uniqueItems": True},
    )


class LocksSchema(Schema):
    locks = fields.List(fields.Nested(LockSchema))


class ElectionSchema(Schema):
    leader = fields.Nested(LockSchema, allow_none=True)
    term = fields.Integer(allow_none=True, metadata={"description": "the leader's token"})


class PageSchema(Schema):
    locks = fields.List(fields.Nested(LockSchema))
    cursor = fields.String(allow_none=True)


#: The codes of /v1's errors: common.CODES' (by status), or "error" for another status.
ERROR_CODES = (
    "invalid",
    "unauthenticated",
    "forbidden",
    "not_found",
    "method_not_allowed",
    "conflict",
    "too_large",
    "too_many_failures",
    "unavailable",
    "error",
)


class ErrorBodySchema(Schema):
    code = fields.String(required=True, validate=validate.OneOf(ERROR_CODES))
    message = fields.String(required=True)
    field_errors = field_errors(
        data_key="fields",
        metadata={"description": "an invalid body (400): the messages of each field"},
    )
    holder = fields.Nested(
        LockSchema,
        allow_none=True,
        metadata={"description": "a conflict (409): the lock in the way (null: gone since)"},
    )


class ErrorSchema(Schema):
    """Every /v1 error: ``{"error": {"code", "message", ...}}``."""

    error = fields.Nested(ErrorBodySchema, required=True)


SCOPE_PREFIX = "v1:"


# Built once: a schema is reusable, and building one per request costs more than using it.
LOCK = LockSchema()
ACQUIRE = AcquireSchema()
REFRESH = RefreshSchema()
VALIDATE = ValidateSchema()
ACQUIRE_ALL = AcquireAllSchema()
RELEASE_ALL = ReleaseAllSchema()


def lock_json(lock: Lock, scope_prefix: str = "") -> dict[str, Any]:
    """A lock as ``/v1`` shows it (its scope without ``scope_prefix``); the CLI shows
    locks of every scope the same way."""
    dumped: dict[str, Any] = LOCK.dump(
        {
            "id": lock.id,
            "scope": lock.scope.removeprefix(scope_prefix),
            "type": lock.type,
            "resource": lock.resource,
            "owner": lock.owner,
            "fencing_token": lock.fencing_token,
            "acquired_at": lock.acquired_at,
            "expires_at": lock.expires_at,
            "expires_in": lock.remaining,
            "metadata": dict(lock.metadata),
        }
    )
    return dumped


def to_json(lock: Lock) -> dict[str, Any]:
    """A ``/v1`` lock (in a scope under ``SCOPE_PREFIX``) as the API shows it."""
    return lock_json(lock, SCOPE_PREFIX)
