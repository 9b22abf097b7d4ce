"""What the OpenAPI document says of this API: the documents' marshmallow schemas (with
their XML roots), the list calls' query parameters, the error and create answers."""

from __future__ import annotations

from marshmallow import Schema, fields, validate

from ... import idempotency
from ...limits import Limited
from ...openapi import REGISTRY
from .entities import ENTITY_TYPES
from .envelope import NS


def any_case(*words: str, anchored: bool = True) -> str:
    """A pattern matching any of ``words`` in any letter case (the API lowers them)."""
    either = (
        "(?:"
        + "|".join(
            "".join(f"[{c.lower()}{c.upper()}]" if c.isalpha() else c for c in word)
            for word in words
        )
        + ")"
    )
    return f"^{either}$" if anchored else either


class FieldSchema(Schema):
    key = fields.String(required=True, validate=validate.Length(min=1))
    value = fields.String(metadata={"description": "absent or null: empty"})


class MetadataSchema(Schema):
    field = fields.List(fields.Nested(FieldSchema))


class DeletionLockSchema(Schema):
    """DeletionLockDocument."""

    id = fields.String(dump_only=True, metadata={"example": "VX-44800005283200001"})
    user = fields.String(dump_only=True)
    expiryTime = fields.String(
        required=True,
        metadata={
            "description": "ISO 8601, with an offset (else UTC); in the future, before the year "
            "10000 UTC"
        },
    )
    modified = fields.String(dump_only=True)
    entityType = fields.String(
        metadata={
            "description": "Item, Collection, Library or File",
            "pattern": any_case(*ENTITY_TYPES),
        }
    )
    entityId = fields.String(validate=Limited("name", "entityId"))
    isExpired = fields.Boolean(dump_only=True)
    isInherited = fields.Boolean(dump_only=True)
    isEffective = fields.Boolean(dump_only=True)
    metadata = fields.Nested(MetadataSchema)


class DeletionLockNamingSchema(DeletionLockSchema):
    """DeletionLockDocument naming its entity (POST /API/deletion-lock)."""

    entityType = fields.String(
        required=True,
        metadata={
            "description": "Item, Collection, Library or File",
            "pattern": any_case(*ENTITY_TYPES),
        },
    )
    entityId = fields.String(required=True, validate=Limited("name", "entityId"))


class DeletionLockUpdateSchema(DeletionLockSchema):
    """DeletionLockDocument changing a lock: expiryTime and/or metadata."""

    expiryTime = fields.String(
        metadata={"description": "ISO 8601, with an offset (else UTC); in the future"}
    )


class DeletionLockListSchema(Schema):
    hits = fields.Integer()
    lock = fields.List(fields.Nested(DeletionLockSchema))


class ExceptionSchema(Schema):
    """What went wrong, in the element named for the kind of error."""

    explanation = fields.String(required=True)
    context = fields.String(metadata={"description": "invalidInput: the input in question"})
    type = fields.String(metadata={"description": "notFound: the kind of thing not found"})
    id = fields.String(metadata={"description": "notFound: its id"})


def _kind(when: str) -> fields.Nested:
    return fields.Nested(ExceptionSchema, metadata={"description": when})


class ErrorSchema(Schema):
    """ExceptionDocument: one element, named for the kind of error."""

    invalidInput = _kind("400 (and 405)")
    notAuthenticated = _kind("401")
    permissionDenied = _kind("403")
    notFound = _kind("404")
    conflict = _kind("409")
    unavailable = _kind("503")
    error = _kind("any other status")


#: The root element of each document in XML.
XML_ROOTS = {
    DeletionLockSchema: "DeletionLockDocument",
    DeletionLockNamingSchema: "DeletionLockDocument",
    DeletionLockUpdateSchema: "DeletionLockDocument",
    DeletionLockListSchema: "DeletionLockListDocument",
    MetadataSchema: "MetadataDocument",
    ErrorSchema: "ExceptionDocument",
}
for _schema in (FieldSchema, ExceptionSchema, *XML_ROOTS):
    # The document names a component after its schema's module (app/openapi.py, so that
    # VidispineError stands beside VersalError): these schemas are the package's.
    _schema.__module__ = __package__
for _schema, _root in XML_ROOTS.items():
    REGISTRY.xml[_schema] = {"name": _root, "namespace": NS}

DOC_MEDIA = ("application/xml", "application/json")
ERRORS = {
    400: ("invalidInput", ErrorSchema),
    401: ("Not authenticated", ErrorSchema),
    403: ("Missing role", ErrorSchema),
    404: ("notFound", ErrorSchema),
    503: ("Lock store unavailable", ErrorSchema),
}
LIST_PARAMS = [
    {"name": name, "in": "query", "required": False, "schema": schema, "description": text}
    for name, schema, text in (
        ("onlyEffective", {"type": "boolean"}, "only the effective lock"),
        ("first", {"type": "integer", "minimum": 1}, "1-based offset, default 1"),
        ("number", {"type": "integer", "minimum": 0}, "page size, default 100"),
        (
            "metadata",
            {"type": "array", "items": {"type": "string", "pattern": "^[^=]+="}},
            "key=value, repeatable",
        ),
        ("username", {"type": "string"}, "comma-separated user names"),
        (
            "range",
            {"type": "string"},
            "expiry interval: [a..b] (a..b) [a..b) (a..b] (*..b] [a..*) (*..*), ISO 8601",
        ),
    )
]
TYPES_PARAM = {
    "name": "entityTypes",
    "in": "query",
    "required": False,
    "schema": {
        "type": "string",
        "pattern": r"^\s*(?:"
        + any_case(*ENTITY_TYPES, "all", anchored=False)
        + r"\s*(?:,\s*|$))+$",
    },
    "description": "item, collection, library, file, all (default); comma-separated",
}

LIST_RESPONSE = {200: ("DeletionLockListDocument", DeletionLockListSchema)}
#: The create calls take an Idempotency-Key (app/idempotency.py).
CREATE = {
    "body": DeletionLockSchema,
    "body_media": DOC_MEDIA,
    "parameters": [idempotency.PARAMETER],
    "responses": {
        200: ("DeletionLockDocument", DeletionLockSchema),
        409: ("Idempotency-Key: its lock is gone", ErrorSchema),
        422: ("Idempotency-Key reused for another request", ErrorSchema),
    },
}
