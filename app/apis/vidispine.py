"""The Vidispine deletion lock API (seed 003): ``/API/.../deletion-lock``.

A deletion lock is a lockcore lock of type ``deletion-<entity type>`` (``multi``: many per
entity, each with its own expiry and metadata) on resource ``<entity id>``, all in scope
``vidispine``; its id is ``VX-<lockcore id>``. An entity's *effective* lock is the
unexpired lock with the latest expiry among its own and those it inherits: an item
inherits from every collection and library that contains it (per the catalog).

Bodies are XML (namespace ``http://xml.vidispine.com/schema/vidispine``, parsed with
defusedxml, which refuses DTDs and entities) or JSON, by ``Content-Type``; responses XML by
default, JSON when ``Accept`` asks for it. Credentials: HTTP Basic (user name and API key)
or ``Authorization: token <key>``; roles ``_deletion_lock_read`` for reads and
``_deletion_lock_write`` for changes (write implies read; a sysadmin has both).
"""

from __future__ import annotations

import base64
import binascii
import re
import xml.etree.ElementTree as ET
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any

import defusedxml.ElementTree as SafeET
from defusedxml import DefusedXmlException
from flask import Blueprint, Response, jsonify, request
from marshmallow import Schema, fields, validate
from werkzeug.routing import BaseConverter

from lockcore import InvalidLockRequest, Lock, LockNotFound, LockType, Mode

from .. import idempotency
from ..auth import user_for_key
from ..errors import ApiError
from ..identity import User
from ..limits import Limited, check_metadata, check_name, request_json
from ..openapi import REGISTRY, route
from ..services import services
from ..units import ApiUnit
from .vidispine_catalog import CATALOG, read_entity

bp = Blueprint("vidispine", __name__, url_prefix="/API")


class LockIdConverter(BaseConverter):
    """A lock id in a URL: any segment but ``check``, which names an entity's deletion
    check (``.../deletion-lock/check``), for every method."""

    regex = r"(?!check(?![^/]))[^/]+"


bp.record_once(lambda state: state.app.url_map.converters.setdefault("lockid", LockIdConverter))
TAG = "Vidispine deletion locks"
NS = "http://xml.vidispine.com/schema/vidispine"
SCOPE = "vidispine"
ENTITY_TYPES = ("item", "collection", "library", "file")
READ, WRITE = "_deletion_lock_read", "_deletion_lock_write"
ID_PREFIX = "VX-"

# -- envelope -----------------------------------------------------------------------------

ERROR_KINDS = {
    400: "invalidInput",
    401: "notAuthenticated",
    403: "permissionDenied",
    404: "notFound",
    405: "invalidInput",
    409: "conflict",
    503: "unavailable",
}


def wants_json() -> bool:
    best = request.accept_mimetypes.best_match(["application/xml", "application/json"])
    return (
        best == "application/json"
        and request.accept_mimetypes["application/json"]
        > request.accept_mimetypes["application/xml"]
    )


def render(root: str, body: dict[str, Any], status: int = 200) -> Response:
    """A document as JSON or as XML in Vidispine's namespace."""
    if wants_json():
        response = jsonify(body)
    else:
        element = ET.Element(root, xmlns=NS)
        _to_xml(element, body)
        text = ET.tostring(element, encoding="unicode")
        response = Response(
            '<?xml version="1.0" encoding="UTF-8" standalone="yes"?>\n' + text,
            mimetype="application/xml",
        )
    response.status_code = status
    return response


def _to_xml(parent: ET.Element, value: Any) -> None:
    for key, item in value.items():
        for one in item if isinstance(item, list) else [item]:
            child = ET.SubElement(parent, key)
            if isinstance(one, dict):
                _to_xml(child, one)
            elif isinstance(one, bool):
                child.text = "true" if one else "false"
            else:
                child.text = str(one)


def envelope(exc: ApiError) -> tuple[Any, int]:
    kind = ERROR_KINDS.get(exc.status, "error")
    detail: dict[str, Any] = {"explanation": exc.message}
    if isinstance(exc.details, dict):
        detail.update(exc.details)
    response = render("ExceptionDocument", {kind: detail}, exc.status)
    if exc.status == 401:
        response.headers["WWW-Authenticate"] = 'Basic realm="lockcore"'
    return response, exc.status


HTTP_MESSAGES = {404: "No such resource", 405: "Method not allowed on this resource"}
SECURITY = [{"VidispineBasic": []}, {"VidispineToken": []}]


def invalid(context: str, explanation: str) -> ApiError:
    return ApiError(400, explanation, details={"context": context})


def not_found(what: str, ident: str) -> ApiError:
    return ApiError(404, f"{what} {ident} not found", details={"type": what, "id": ident})


# -- schemas (OpenAPI) --------------------------------------------------------------------


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


class ErrorSchema(Schema):
    """ExceptionDocument: one element, named for the kind of error."""

    invalidInput = fields.Dict()
    notAuthenticated = fields.Dict()
    permissionDenied = fields.Dict()
    notFound = fields.Dict()
    conflict = fields.Dict()
    unavailable = fields.Dict()
    error = fields.Dict()


for _schema, _root in (
    (DeletionLockSchema, "DeletionLockDocument"),
    (DeletionLockNamingSchema, "DeletionLockDocument"),
    (DeletionLockUpdateSchema, "DeletionLockDocument"),
    (DeletionLockListSchema, "DeletionLockListDocument"),
    (MetadataSchema, "MetadataDocument"),
    (ErrorSchema, "ExceptionDocument"),
):
    REGISTRY.xml[_schema] = {"name": _root, "namespace": NS}


DOC_MEDIA = ("application/xml", "application/json")

# -- credentials --------------------------------------------------------------------------


def caller(role: str) -> User:
    header = request.headers.get("Authorization", "")
    scheme, _, value = header.partition(" ")
    user: User | None = None
    if scheme.lower() == "basic":
        try:
            name, _, key = base64.b64decode(value, validate=True).decode().partition(":")
        except (binascii.Error, UnicodeDecodeError):
            raise ApiError(401, "Malformed Basic credentials") from None
        user = user_for_key(key)
        if user is not None and user.id != name:
            user = None
    elif scheme.lower() in ("token", "bearer"):
        user = user_for_key(value)
    if user is None:
        raise ApiError(
            401, "Authentication required: HTTP Basic (user, API key) or Authorization: token <key>"
        )
    allowed = {READ, WRITE} if role == READ else {WRITE}
    if not (user.is_sysadmin or allowed & user.roles):
        raise ApiError(403, f"User {user.id} lacks the role {role}")
    return user


# -- entities, documents ------------------------------------------------------------------


@dataclass(frozen=True)
class Entity:
    type: str
    id: str
    containers: tuple[tuple[str, str], ...] = ()  # (type, id) it inherits locks from


def entity(etype: str, entity_id: str, storage_id: str | None = None) -> Entity:
    record = read_entity(services().catalog, etype, entity_id)
    if record is None or (storage_id is not None and record.get("storage") != storage_id):
        raise not_found(etype.capitalize(), entity_id)
    containers = tuple(("collection", c) for c in record.get("collections", [])) + tuple(
        ("library", c) for c in record.get("libraries", [])
    )
    return Entity(etype, entity_id, containers)


def lock_type(etype: str) -> str:
    return f"deletion-{etype}"


def iso(seconds: float) -> str:
    # Any stored instant reads back, even one past what a datetime holds (written before
    # parse_instant refused those, or by another client of the store): it shows as the
    # last representable moment rather than failing every answer that includes it.
    try:
        moment = datetime.fromtimestamp(seconds, tz=timezone.utc)
    except (OverflowError, OSError, ValueError):
        moment = (
            datetime.max.replace(tzinfo=timezone.utc)
            if seconds > 0
            else datetime.min.replace(tzinfo=timezone.utc)
        )
    return moment.isoformat(timespec="milliseconds")


def parse_instant(text: str, context: str) -> float:
    try:
        moment = datetime.fromisoformat(text.strip())
    except ValueError:
        raise invalid(
            context,
            f"{context}: '{text}' is not an ISO 8601 date and time "
            "(write '+' in an offset as %2B in a URL)",
        ) from None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=timezone.utc)
    try:
        moment.astimezone(timezone.utc)
    except OverflowError:
        raise invalid(
            context, f"{context}: '{text}' is outside the years 1 to 9999 (UTC)"
        ) from None
    return moment.timestamp()


def document(lock: Lock, *, inherited: bool = False, effective: bool = False) -> dict[str, Any]:
    etype = lock.type.removeprefix("deletion-")
    return {
        "id": ID_PREFIX + lock.id,
        "user": lock.owner,
        "expiryTime": iso(lock.expires_at or 0),
        "modified": iso(lock.updated_at or lock.acquired_at),
        "entityType": etype.capitalize(),
        "entityId": lock.resource,
        "isExpired": False,  # expired locks are gone from every answer
        "isInherited": inherited,
        "isEffective": effective,
        "metadata": {"field": [{"key": k, "value": v} for k, v in sorted(lock.metadata.items())]},
    }


@dataclass
class Body:
    expiry: float | None = None
    metadata: dict[str, str] | None = None
    entity_type: str | None = None
    entity_id: str | None = None
    extra: dict[str, Any] = field(default_factory=dict)


def _xml_fields(element: Any) -> dict[str, str]:
    out = {}
    for f in element.findall(f"{{{NS}}}field") + element.findall("field"):
        key = f.findtext(f"{{{NS}}}key") or f.findtext("key")
        value = f.findtext(f"{{{NS}}}value") or f.findtext("value") or ""
        if not key:
            raise invalid("metadata", "metadata: every field needs a key")
        out[key] = value
    return bounded(out)


def bounded(metadata: dict[str, str]) -> dict[str, str]:
    """Metadata within the service's limits (entries, size, valid text), or 400."""
    problem = check_metadata(metadata)
    if problem:
        raise invalid("metadata", problem)
    return metadata


def _json_fields(value: Any) -> dict[str, str]:
    items = value.get("field", []) if isinstance(value, dict) else None
    if not isinstance(items, list):
        raise invalid("metadata", 'metadata: expected {"field": [{"key", "value"}]}')
    out = {}
    for item in items:
        if not isinstance(item, dict) or not isinstance(item.get("key"), str) or not item["key"]:
            raise invalid("metadata", "metadata: every field needs a string key")
        out[item["key"]] = "" if item.get("value") is None else str(item["value"])
    return bounded(out)


def is_xml() -> bool:
    return request.mimetype in ("application/xml", "text/xml")


def parse_xml(root_name: str) -> Any:
    try:
        root = SafeET.fromstring(request.get_data(), forbid_dtd=True)
    except (ET.ParseError, DefusedXmlException) as exc:
        raise invalid(
            "body", f"body: not acceptable XML ({exc.__class__.__name__}: {exc})"
        ) from None
    except (ValueError, LookupError) as exc:
        # expat reads single-byte encodings only: UTF-7, Shift JIS, EUC-JP or an unknown
        # name in the declaration are refused here.
        raise invalid(
            "body",
            f"body: the XML declares an encoding this service does not read ({exc}); send UTF-8",
        ) from None
    if root.tag not in (f"{{{NS}}}{root_name}", root_name):
        raise invalid("body", f"body: expected a {root_name}")
    return root


def parse_json() -> Any:
    try:
        data = request_json()
    except ValueError as exc:
        raise invalid("body", f"body: not acceptable JSON ({exc})") from None
    if not isinstance(data, dict):
        raise invalid(
            "body", "body: expected a JSON object (or XML with Content-Type application/xml)"
        )
    return data


def lock_body(require_expiry: bool) -> Body:
    """A DeletionLockDocument from the request, XML or JSON."""
    body = Body()
    if is_xml():
        root = parse_xml("DeletionLockDocument")

        def text(name: str) -> str | None:
            found = root.findtext(f"{{{NS}}}{name}")
            return found if found is not None else root.findtext(name)

        expiry, body.entity_type, body.entity_id = (
            text("expiryTime"),
            text("entityType"),
            text("entityId"),
        )
        meta = root.find(f"{{{NS}}}metadata")
        meta = meta if meta is not None else root.find("metadata")
        body.metadata = _xml_fields(meta) if meta is not None else None
    else:
        data = parse_json()
        expiry, body.entity_type, body.entity_id = (
            data.get("expiryTime"),
            data.get("entityType"),
            data.get("entityId"),
        )
        if expiry is not None and not isinstance(expiry, str):
            raise invalid("expiryTime", "expiryTime: expected an ISO 8601 string")
        for name in ("entityType", "entityId"):
            if data.get(name) is not None and not isinstance(data[name], str):
                raise invalid(name, f"{name}: expected a string")
        body.metadata = _json_fields(data["metadata"]) if "metadata" in data else None
    if body.entity_id:
        problem = check_name(body.entity_id, "entityId")
        if problem:
            raise invalid("entityId", problem)
    if expiry:
        body.expiry = parse_instant(expiry, "expiryTime")
    elif require_expiry:
        raise invalid("expiryTime", "expiryTime is required: every deletion lock expires")
    return body


def metadata_body() -> dict[str, str]:
    if is_xml():
        root = parse_xml("MetadataDocument")
        return _xml_fields(root)
    return _json_fields(parse_json())


# -- list filters -------------------------------------------------------------------------


@dataclass
class Filters:
    only_effective: bool = False
    first: int = 1
    number: int = 100
    metadata: list[tuple[str, str]] = field(default_factory=list)
    users: set[str] | None = None
    low: float | None = None
    low_open: bool = False
    high: float | None = None
    high_open: bool = False
    types: tuple[str, ...] = ENTITY_TYPES

    @property
    def narrowing(self) -> bool:
        """Whether anything but paging and entity types filters the locks."""
        return bool(
            self.only_effective
            or self.metadata
            or self.users is not None
            or self.low is not None
            or self.high is not None
        )

    def accepts(self, lock: Lock) -> bool:
        if self.users is not None and lock.owner not in self.users:
            return False
        if any(lock.metadata.get(k) != v for k, v in self.metadata):
            return False
        expiry = lock.expires_at or 0.0
        if self.low is not None and (expiry < self.low or (self.low_open and expiry == self.low)):
            return False
        return not (
            self.high is not None
            and (expiry > self.high or (self.high_open and expiry == self.high))
        )


RANGE = re.compile(r"^([\[(])(.+?)\.\.(.+?)([\])])$")


def _boolean(name: str, value: str) -> bool:
    if value.lower() not in ("true", "false"):
        raise invalid(name, f"{name}: expected true or false, got '{value}'")
    return value.lower() == "true"


def _integer(name: str, value: str, minimum: int) -> int:
    if not re.fullmatch(r"\d+", value.strip()) or int(value) < minimum:
        raise invalid(name, f"{name}: expected an integer >= {minimum}, got '{value}'")
    return int(value)


def filters(allow_types: bool) -> Filters:
    args = request.args
    f = Filters()
    if "onlyEffective" in args:
        f.only_effective = _boolean("onlyEffective", args["onlyEffective"])
    if "first" in args:
        f.first = _integer("first", args["first"], 1)
    if "number" in args:
        f.number = _integer("number", args["number"], 0)
    for raw in args.getlist("metadata"):
        key, sep, value = raw.partition("=")
        if not sep or not key:
            raise invalid("metadata", f"metadata: expected key=value, got '{raw}'")
        f.metadata.append((key, value))
    names = args.get("username", args.get("user"))  # the seed's example says user=
    if names is not None:
        f.users = {n.strip() for n in names.split(",") if n.strip()}
    interval = args.get("range", args.get("expiry"))  # the seed's example says expiry=
    if interval is not None:
        _parse_range(f, interval)
    if "entityTypes" in args:
        if not allow_types:
            raise invalid("entityTypes", "entityTypes: only for GET /API/deletion-lock")
        wanted = [t.strip().lower() for t in args["entityTypes"].split(",") if t.strip()]
        unknown = [t for t in wanted if t not in (*ENTITY_TYPES, "all")]
        if unknown or not wanted:
            raise invalid(
                "entityTypes",
                f"entityTypes: unknown {', '.join(unknown) or '(none)'}"
                f"; valid: {', '.join(ENTITY_TYPES)}, all",
            )
        f.types = ENTITY_TYPES if "all" in wanted else tuple(t for t in ENTITY_TYPES if t in wanted)
    return f


def _parse_range(f: Filters, interval: str) -> None:
    match = RANGE.match(interval.strip())
    if not match:
        raise invalid(
            "range",
            f"range: '{interval}' is not one of [a..b] (a..b) [a..b) (a..b] (*..b] [a..*) (*..*)",
        )
    opening, low, high, closing = match.groups()
    if (low == "*" and opening != "(") or (high == "*" and closing != ")"):
        raise invalid("range", f"range: '{interval}': an open end '*' takes a round bracket")
    if low != "*":
        f.low, f.low_open = parse_instant(low, "range"), opening == "("
    if high != "*":
        f.high, f.high_open = parse_instant(high, "range"), closing == ")"
    if f.low is not None and f.high is not None and f.low > f.high:
        raise invalid("range", f"range: '{interval}' starts after it ends")


def listing(
    entries: Iterator[tuple[Lock, bool, bool]], f: Filters, total: int | None = None
) -> Response:
    """Page (first, number) over filtered entries, counting every hit."""
    page, hits = [], 0
    for lock, inherited, effective in entries:
        if (f.only_effective and not effective) or not f.accepts(lock):
            continue
        hits += 1
        if f.first <= hits < f.first + f.number:
            page.append(document(lock, inherited=inherited, effective=effective))
        elif total is not None and hits >= f.first + f.number:
            hits = total  # nothing narrows the listing: the count is known
            break
    return render("DeletionLockListDocument", {"hits": hits, "lock": page})


# -- reading locks ------------------------------------------------------------------------


def own_locks(etype: str, entity_id: str) -> list[Lock]:
    return list(
        services().locks.iter_locks(SCOPE, type=lock_type(etype), resource=entity_id, limit=1000)
    )


def entity_locks(e: Entity) -> list[tuple[Lock, bool, bool]]:
    """An entity's locks, its own first, then inherited ones, each marked effective or not."""
    locks = [(lock, False) for lock in own_locks(e.type, e.id)]
    for ctype, cid in e.containers:
        locks += [(lock, True) for lock in own_locks(ctype, cid)]
    winner = max(locks, key=lambda pair: pair[0].expires_at or 0.0, default=None)
    return [
        (lock, inherited, winner is not None and lock.id == winner[0].id)
        for lock, inherited in locks
    ]


def described(lock: Lock) -> dict[str, Any]:
    """A lock's document, marked effective if it is its own entity's effective lock."""
    e = entity(lock.type.removeprefix("deletion-"), lock.resource)
    effective = any(eff and lk.id == lock.id for lk, _, eff in entity_locks(e))
    return document(lock, effective=effective)


def find_lock(lock_id: str, e: Entity | None = None) -> Lock:
    """A live deletion lock by its VX- id (on ``e`` itself, if given)."""
    raw = lock_id.removeprefix(ID_PREFIX)
    try:
        lock = services().locks.get(raw) if lock_id.startswith(ID_PREFIX) else None
    except LockNotFound:
        lock = None
    if lock is None or lock.scope != SCOPE or not lock.type.startswith("deletion-"):
        raise not_found("DeletionLock", lock_id)
    if e is not None and (lock.type != lock_type(e.type) or lock.resource != e.id):
        raise not_found("DeletionLock", lock_id)
    return lock


def all_locks(types: tuple[str, ...]) -> Iterator[tuple[Lock, bool, bool]]:
    """Every live lock of these entity types, entity by entity, marking the latest-expiring
    of each entity's own locks as effective; one page at a time, never all at once."""
    for etype in types:
        group: list[Lock] = []
        for lock in services().locks.iter_locks(SCOPE, type=lock_type(etype), limit=500):
            if group and group[0].resource != lock.resource:
                yield from _marked(group)
                group = []
            group.append(lock)
        yield from _marked(group)


def _marked(group: list[Lock]) -> Iterator[tuple[Lock, bool, bool]]:
    if not group:
        return
    best = max(group, key=lambda lock: lock.expires_at or 0.0)
    for lock in group:
        yield lock, False, lock.id == best.id


# -- writing locks ------------------------------------------------------------------------


def create(user: User, e: Entity, body: Body) -> Response:
    return idempotency.once(lambda: _create(user, e, body))  # type: ignore[no-any-return]


def _create(user: User, e: Entity, body: Body) -> Response:
    assert body.expiry is not None
    try:
        result = services().locks.acquire(
            SCOPE,
            lock_type(e.type),
            e.id,
            user.id,
            expires_at=body.expiry,
            metadata=body.metadata or {},
            request_id=idempotency.request_id(),
        )
    except LockNotFound:  # a repeated Idempotency-Key whose lock is gone
        raise ApiError(
            409, "The lock this Idempotency-Key created was deleted or has expired"
        ) from None
    except InvalidLockRequest:
        raise invalid("expiryTime", "expiryTime is in the past") from None
    return render("DeletionLockDocument", described(result.lock))


def update(user: User, lock: Lock, body: Body) -> Response:
    if body.expiry is None and body.metadata is None:
        raise invalid("body", "nothing to update: give expiryTime and/or metadata")
    try:
        updated = services().locks.refresh(
            lock,
            user.id,
            force=True,
            expires_at=body.expiry,
            metadata=body.metadata,
            replace_metadata=body.metadata is not None,
        )
    except InvalidLockRequest:
        raise invalid("expiryTime", "expiryTime is in the past") from None
    except LockNotFound:
        raise not_found("DeletionLock", ID_PREFIX + lock.id) from None
    return render("DeletionLockDocument", described(updated))


def release(user: User, lock: Lock) -> Response:
    try:
        services().locks.release(lock, user.id, force=True)
    except LockNotFound:
        raise not_found("DeletionLock", ID_PREFIX + lock.id) from None
    return Response(status=200)


def change_metadata(user: User, lock: Lock, changes: dict[str, str | None], replace: bool) -> Lock:
    try:
        return services().locks.refresh(
            lock, user.id, force=True, metadata=changes, replace_metadata=replace
        )
    except LockNotFound:
        raise not_found("DeletionLock", ID_PREFIX + lock.id) from None


# -- views --------------------------------------------------------------------------------

ENTITY = "/<any(item, collection, library, file):etype>/<entity_id>"
STORAGE_FILE = "/storage/<storage_id>/<any(file):etype>/<entity_id>"
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


def _doc(rule: str, method: str, summary: str, **extra: Any) -> Any:
    responses = extra.pop("responses", {200: ("DeletionLockDocument", DeletionLockSchema)})
    return route(
        bp,
        rule,
        method,
        summary=summary,
        tag=TAG,
        security=SECURITY,
        response_media=DOC_MEDIA,
        responses={**responses, **ERRORS},
        **extra,
    )


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


@_doc(
    "/deletion-lock",
    "GET",
    "All deletion locks, filtered and paged",
    parameters=[*LIST_PARAMS, TYPES_PARAM],
    responses=LIST_RESPONSE,
)
def list_all() -> Any:
    caller(READ)
    f = filters(allow_types=True)
    total = None
    if not f.narrowing and f.types == ENTITY_TYPES:
        total = services().locks.count(SCOPE, multi=True)  # all deletion types are multi
    return listing(all_locks(f.types), f, total)


@_doc(
    "/<any(item, collection, library, file):etype>/deletion-lock",
    "GET",
    "All deletion locks set on entities of one type",
    parameters=LIST_PARAMS,
    responses=LIST_RESPONSE,
)
def list_type(etype: str) -> Any:
    caller(READ)
    return listing(all_locks((etype,)), filters(allow_types=False))


def _create_from_document(user: User, etype: str | None) -> Response:
    body = lock_body(require_expiry=True)
    kind = (body.entity_type or etype or "").lower()
    if kind not in ENTITY_TYPES or not body.entity_id or (etype and kind != etype):
        raise invalid(
            "entityId",
            "this URL names no entity: give entityType and entityId "
            "in the document, or POST to /API/{type}/{id}/deletion-lock",
        )
    return create(user, entity(kind, body.entity_id), body)


@_doc(
    "/deletion-lock",
    "POST",
    "Create a lock on the entity the document names",
    **{**CREATE, "body": DeletionLockNamingSchema},
)
def create_any() -> Any:
    return _create_from_document(caller(WRITE), None)


@_doc(
    "/<any(item, collection, library, file):etype>/deletion-lock",
    "POST",
    "Create a lock on the entity of this type the document names",
    **CREATE,
)
def create_typed(etype: str) -> Any:
    return _create_from_document(caller(WRITE), etype)


@_doc("/deletion-lock/<lockid:lock_id>", "GET", "Retrieve a lock")
def get_lock(lock_id: str) -> Any:
    caller(READ)
    return render("DeletionLockDocument", described(find_lock(lock_id)))


@_doc(
    "/deletion-lock/<lockid:lock_id>",
    "PUT",
    "Update a lock (expiryTime, metadata)",
    body=DeletionLockUpdateSchema,
    body_media=DOC_MEDIA,
)
def put_lock(lock_id: str) -> Any:
    user = caller(WRITE)
    return update(user, find_lock(lock_id), lock_body(require_expiry=False))


@_doc(
    "/deletion-lock/<lockid:lock_id>", "DELETE", "Delete a lock", responses={200: ("Deleted", None)}
)
def delete_lock(lock_id: str) -> Any:
    user = caller(WRITE)
    return release(user, find_lock(lock_id))


def _register_entity_views(prefix: str, suffix: str) -> None:
    """The entity's endpoints, under /{type}/{id} and /storage/{storage}/file/{id}."""

    def resolve(etype: str, entity_id: str, storage_id: str | None = None) -> Entity:
        return entity(etype, entity_id, storage_id)

    def list_entity(etype: str, entity_id: str, storage_id: str | None = None) -> Any:
        caller(READ)
        e = resolve(etype, entity_id, storage_id)
        return listing(iter(entity_locks(e)), filters(allow_types=False))

    def create_entity(etype: str, entity_id: str, storage_id: str | None = None) -> Any:
        user = caller(WRITE)
        e = resolve(etype, entity_id, storage_id)
        return create(user, e, lock_body(require_expiry=True))

    def check_entity(etype: str, entity_id: str, storage_id: str | None = None) -> Any:
        caller(READ)
        e = resolve(etype, entity_id, storage_id)
        for lock, inherited, effective in entity_locks(e):
            if effective:
                return render(
                    "DeletionLockDocument", document(lock, inherited=inherited, effective=True), 409
                )
        return render(
            "DeletionCheckDocument",
            {"entityType": etype.capitalize(), "entityId": entity_id, "deletable": True},
        )

    def get_entity_lock(
        etype: str, entity_id: str, lock_id: str, storage_id: str | None = None
    ) -> Any:
        caller(READ)
        lock = find_lock(lock_id, resolve(etype, entity_id, storage_id))
        return render("DeletionLockDocument", described(lock))

    def put_entity_lock(
        etype: str, entity_id: str, lock_id: str, storage_id: str | None = None
    ) -> Any:
        user = caller(WRITE)
        lock = find_lock(lock_id, resolve(etype, entity_id, storage_id))
        return update(user, lock, lock_body(require_expiry=False))

    def delete_entity_lock(
        etype: str, entity_id: str, lock_id: str, storage_id: str | None = None
    ) -> Any:
        user = caller(WRITE)
        return release(user, find_lock(lock_id, resolve(etype, entity_id, storage_id)))

    for view in (
        list_entity,
        create_entity,
        check_entity,
        get_entity_lock,
        put_entity_lock,
        delete_entity_lock,
    ):
        view.__name__ = f"{view.__name__}{suffix}"
    base = f"{prefix}/deletion-lock"
    _doc(
        base,
        "GET",
        "All locks of an entity, its own and inherited ones",
        parameters=LIST_PARAMS,
        responses=LIST_RESPONSE,
    )(list_entity)
    _doc(base, "POST", "Create a lock on the entity (expiryTime required)", **CREATE)(create_entity)
    _doc(
        f"{base}/check",
        "GET",
        "May the entity be deleted or moved: 409 with the effective lock, or 200",
        responses={200: ("Deletable", None), 409: ("Effectively locked", DeletionLockSchema)},
    )(check_entity)
    _doc(f"{base}/<lockid:lock_id>", "GET", "Retrieve a lock set on the entity")(get_entity_lock)
    _doc(
        f"{base}/<lockid:lock_id>",
        "PUT",
        "Update a lock set on the entity",
        body=DeletionLockUpdateSchema,
        body_media=DOC_MEDIA,
    )(put_entity_lock)
    _doc(
        f"{base}/<lockid:lock_id>",
        "DELETE",
        "Delete a lock set on the entity",
        responses={200: ("Deleted", None)},
    )(delete_entity_lock)
    _register_metadata_views(f"{base}/<lockid:lock_id>", suffix, resolve)


def _register_metadata_views(base: str, suffix: str, resolve: Any) -> None:
    """``.../metadata`` and ``.../metadata/{key}`` of a lock."""

    def lock_of(lock_id: str, scope_args: dict[str, Any]) -> Lock:
        e = resolve(**scope_args) if scope_args else None
        return find_lock(lock_id, e)

    def get_metadata(lock_id: str, **scope_args: Any) -> Any:
        caller(READ)
        return render("MetadataDocument", document(lock_of(lock_id, scope_args))["metadata"])

    def put_metadata(lock_id: str, **scope_args: Any) -> Any:
        user = caller(WRITE)
        lock = lock_of(lock_id, scope_args)
        changed = change_metadata(user, lock, dict(metadata_body()), replace=True)
        return render("MetadataDocument", document(changed)["metadata"])

    def get_key(lock_id: str, key: str, **scope_args: Any) -> Any:
        caller(READ)
        lock = lock_of(lock_id, scope_args)
        if key not in lock.metadata:
            raise not_found("MetadataField", key)
        return Response(lock.metadata[key], mimetype="text/plain")

    def put_key(lock_id: str, key: str, **scope_args: Any) -> Any:
        user = caller(WRITE)
        lock = lock_of(lock_id, scope_args)
        value = request.get_data(as_text=True)
        bounded({**lock.metadata, key: value})
        change_metadata(user, lock, {key: value}, replace=False)
        return Response(value, mimetype="text/plain")

    def delete_key(lock_id: str, key: str, **scope_args: Any) -> Any:
        user = caller(WRITE)
        lock = lock_of(lock_id, scope_args)
        if key not in lock.metadata:
            raise not_found("MetadataField", key)
        change_metadata(user, lock, {key: None}, replace=False)
        return Response(status=200)

    for view in (get_metadata, put_metadata, get_key, put_key, delete_key):
        view.__name__ = f"{view.__name__}{suffix}"
    meta = {200: ("MetadataDocument", MetadataSchema)}
    _doc(f"{base}/metadata", "GET", "A lock's metadata", responses=meta)(get_metadata)
    _doc(
        f"{base}/metadata",
        "PUT",
        "Replace a lock's metadata",
        body=MetadataSchema,
        body_media=DOC_MEDIA,
        responses=meta,
    )(put_metadata)
    text = {200: ("The value, text/plain", None)}
    _doc(f"{base}/metadata/<key>", "GET", "One metadata value", responses=text)(get_key)
    _doc(
        f"{base}/metadata/<key>",
        "PUT",
        "Set one metadata value (body: the value as text)",
        body={"type": "string"},
        body_media=("text/plain",),
        responses=text,
    )(put_key)
    _doc(
        f"{base}/metadata/<key>",
        "DELETE",
        "Remove one metadata field",
        responses={200: ("Removed", None)},
    )(delete_key)


_register_metadata_views("/deletion-lock/<lockid:lock_id>", "", None)
_register_entity_views(ENTITY, "_of_entity")
_register_entity_views(STORAGE_FILE, "_of_storage_file")


def lock_types(config: Mapping[str, Any]) -> list[LockType]:
    # Deletion locks: many per entity, one lock type per entity type, so a listing by
    # entity type is a range of one index; indexed by owner for the username filter.
    return [
        LockType(lock_type(etype), mode=Mode.MULTI, default_ttl=86400.0, index_owner=True)
        for etype in ENTITY_TYPES
    ]


UNIT = ApiUnit(
    "vidispine",
    bp,
    envelope,
    HTTP_MESSAGES,
    security_schemes={
        "VidispineBasic": {"type": "http", "scheme": "basic"},
        "VidispineToken": {
            "type": "apiKey",
            "in": "header",
            "name": "Authorization",
            "description": "token <key>",
        },
    },
    lock_types=lock_types,
    catalog=CATALOG,
)
