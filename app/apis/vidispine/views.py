"""The blueprint and its routes, ``/API/...``: each view is registered, and documented,
once for every URL it serves.

A lock is reached by its id alone (``/deletion-lock/{lock_id}``) or under the entity it is
set on: ``/{type}/{id}``, or a file by its storage, ``/storage/{storage}/file/{id}``. One
view serves all of these; the URL's values (``etype``, ``entity_id``, ``storage_id``) say
which entity, if any, the lock must be set on.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from flask import Blueprint, Response, request
from flask.blueprints import BlueprintSetupState
from werkzeug.routing import BaseConverter

from lockcore import Lock

from ...openapi import route
from .credentials import READ, SECURITY, WRITE, caller
from .documents import bounded, document, lock_body, metadata_body
from .entities import ENTITY_TYPES, entity
from .envelope import invalid, not_found, render
from .filters import filters, listing
from .locks import (
    all_locks,
    change_metadata,
    count_all,
    create,
    described,
    entity_locks,
    find_lock,
    release,
    update,
)
from .schemas import (
    CREATE,
    DOC_MEDIA,
    ERRORS,
    LIST_PARAMS,
    LIST_RESPONSE,
    TYPES_PARAM,
    DeletionLockNamingSchema,
    DeletionLockSchema,
    DeletionLockUpdateSchema,
    MetadataSchema,
)

bp = Blueprint("vidispine", __name__, url_prefix="/API")
TAG = "Vidispine deletion locks"


class LockIdConverter(BaseConverter):
    """A lock id in a URL: any segment but ``check``, which names an entity's deletion
    check (``.../deletion-lock/check``), for every method."""

    regex = r"(?!check(?![^/]))[^/]+"


def _add_converter(state: BlueprintSetupState) -> None:
    state.app.url_map.converters.setdefault("lockid", LockIdConverter)


bp.record_once(_add_converter)

ETYPE = f"<any({', '.join(ENTITY_TYPES)}):etype>"
#: An entity: by type and id, or a file by its storage.
ENTITIES = (f"/{ETYPE}/<entity_id>", "/storage/<storage_id>/<any(file):etype>/<entity_id>")
LOCKS = "/deletion-lock"
LOCK = "/deletion-lock/<lockid:lock_id>"
ENTITY_LOCKS = tuple(e + LOCKS for e in ENTITIES)
ENTITY_LOCK = tuple(e + LOCK for e in ENTITIES)
METADATA = tuple(f"{lock}/metadata" for lock in (LOCK, *ENTITY_LOCK))
METADATA_KEY = tuple(f"{metadata}/<key>" for metadata in METADATA)

View = Callable[..., Any]


def _doc(
    rules: str | tuple[str, ...], method: str, summary: str, **extra: Any
) -> Callable[[View], View]:
    """Register the view for each of ``rules``, each documented as an operation."""
    responses = extra.pop("responses", {200: ("DeletionLockDocument", DeletionLockSchema)})

    def register(view: View) -> View:
        for rule in (rules,) if isinstance(rules, str) else rules:
            route(
                bp,
                rule,
                method,
                summary=summary,
                tag=TAG,
                security=SECURITY,
                response_media=DOC_MEDIA,
                responses={**responses, **ERRORS},
                **extra,
            )(view)
        return view

    return register


def _lock(lock_id: str, where: dict[str, str]) -> Lock:
    """The lock a URL names: by its id, and if the URL names an entity, set on it (or 404)."""
    return find_lock(lock_id, entity(**where) if where else None)


# -- every lock, locks by entity type -----------------------------------------------------


@_doc(
    LOCKS,
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
        total = count_all()
    return listing(all_locks(f.types, f.users), f, total)


@_doc(
    f"/{ETYPE}{LOCKS}",
    "GET",
    "All deletion locks set on entities of one type",
    parameters=LIST_PARAMS,
    responses=LIST_RESPONSE,
)
def list_type(etype: str) -> Any:
    caller(READ)
    f = filters(allow_types=False)
    return listing(all_locks((etype,), f.users), f)


@_doc(
    f"/{ETYPE}{LOCKS}",
    "POST",
    "Create a lock on the entity of this type the document names",
    **CREATE,
)
@_doc(
    LOCKS,
    "POST",
    "Create a lock on the entity the document names",
    **{**CREATE, "body": DeletionLockNamingSchema},
)
def create_named(etype: str | None = None) -> Any:
    user = caller(WRITE)
    body = lock_body(require_expiry=True)
    kind = (body.entity_type or etype or "").lower()
    if kind not in ENTITY_TYPES or not body.entity_id or (etype and kind != etype):
        raise invalid(
            "entityId",
            "this URL names no entity: give entityType and entityId "
            "in the document, or POST to /API/{type}/{id}/deletion-lock",
        )
    return create(user, entity(kind, body.entity_id), body)


# -- an entity's locks --------------------------------------------------------------------


@_doc(
    ENTITY_LOCKS,
    "GET",
    "All locks of an entity, its own and inherited ones",
    parameters=LIST_PARAMS,
    responses=LIST_RESPONSE,
)
def list_entity(etype: str, entity_id: str, storage_id: str | None = None) -> Any:
    caller(READ)
    e = entity(etype, entity_id, storage_id)
    return listing(iter(entity_locks(e)), filters(allow_types=False))


@_doc(ENTITY_LOCKS, "POST", "Create a lock on the entity (expiryTime required)", **CREATE)
def create_entity(etype: str, entity_id: str, storage_id: str | None = None) -> Any:
    user = caller(WRITE)
    e = entity(etype, entity_id, storage_id)
    return create(user, e, lock_body(require_expiry=True))


@_doc(
    tuple(f"{locks}/check" for locks in ENTITY_LOCKS),
    "GET",
    "May the entity be deleted or moved: 409 with the effective lock, or 200",
    responses={200: ("Deletable", None), 409: ("Effectively locked", DeletionLockSchema)},
)
def check_entity(etype: str, entity_id: str, storage_id: str | None = None) -> Any:
    caller(READ)
    e = entity(etype, entity_id, storage_id)
    # "Deletable" only if a second read finds no lock either: the scopes are read in one
    # round trip but not as one snapshot (see ``locks``), and a lock handed over from one
    # scope to another between their reads is then seen by the second.
    for _ in range(2):
        for lock, inherited, effective in entity_locks(e):
            if effective:
                return render(
                    "DeletionLockDocument",
                    document(lock, inherited=inherited, effective=True),
                    409,
                )
    return render(
        "DeletionCheckDocument",
        {"entityType": etype.capitalize(), "entityId": entity_id, "deletable": True},
    )


# -- one lock, by its id alone or under its entity ----------------------------------------


@_doc(ENTITY_LOCK, "GET", "Retrieve a lock set on the entity")
@_doc(LOCK, "GET", "Retrieve a lock")
def get_lock(lock_id: str, **where: str) -> Any:
    caller(READ)
    return render("DeletionLockDocument", described(_lock(lock_id, where)))


@_doc(
    ENTITY_LOCK,
    "PUT",
    "Update a lock set on the entity",
    body=DeletionLockUpdateSchema,
    body_media=DOC_MEDIA,
)
@_doc(
    LOCK,
    "PUT",
    "Update a lock (expiryTime, metadata)",
    body=DeletionLockUpdateSchema,
    body_media=DOC_MEDIA,
)
def put_lock(lock_id: str, **where: str) -> Any:
    user = caller(WRITE)
    lock = _lock(lock_id, where)
    return update(user, lock, lock_body(require_expiry=False))


@_doc(
    ENTITY_LOCK,
    "DELETE",
    "Delete a lock set on the entity",
    responses={200: ("Deleted", None)},
)
@_doc(LOCK, "DELETE", "Delete a lock", responses={200: ("Deleted", None)})
def delete_lock(lock_id: str, **where: str) -> Any:
    user = caller(WRITE)
    return release(user, _lock(lock_id, where))


# -- a lock's metadata --------------------------------------------------------------------

META = {200: ("MetadataDocument", MetadataSchema)}
TEXT = {200: ("The value, text/plain", None)}


@_doc(METADATA, "GET", "A lock's metadata", responses=META)
def get_metadata(lock_id: str, **where: str) -> Any:
    caller(READ)
    return render("MetadataDocument", document(_lock(lock_id, where))["metadata"])


@_doc(
    METADATA,
    "PUT",
    "Replace a lock's metadata",
    body=MetadataSchema,
    body_media=DOC_MEDIA,
    responses=META,
)
def put_metadata(lock_id: str, **where: str) -> Any:
    user = caller(WRITE)
    lock = _lock(lock_id, where)
    changed = change_metadata(user, lock, dict(metadata_body()), replace=True)
    return render("MetadataDocument", document(changed)["metadata"])


@_doc(METADATA_KEY, "GET", "One metadata value", responses=TEXT)
def get_key(lock_id: str, key: str, **where: str) -> Any:
    caller(READ)
    lock = _lock(lock_id, where)
    if key not in lock.metadata:
        raise not_found("MetadataField", key)
    return Response(lock.metadata[key], mimetype="text/plain")


@_doc(
    METADATA_KEY,
    "PUT",
    "Set one metadata value (body: the value as text)",
    body={"type": "string"},
    body_media=("text/plain",),
    responses=TEXT,
)
def put_key(lock_id: str, key: str, **where: str) -> Any:
    user = caller(WRITE)
    lock = _lock(lock_id, where)
    value = request.get_data(as_text=True)
    bounded({**lock.metadata, key: value})
    change_metadata(user, lock, {key: value}, replace=False)
    return Response(value, mimetype="text/plain")


@_doc(METADATA_KEY, "DELETE", "Remove one metadata field", responses={200: ("Removed", None)})
def delete_key(lock_id: str, key: str, **where: str) -> Any:
    user = caller(WRITE)
    lock = _lock(lock_id, where)
    if key not in lock.metadata:
        raise not_found("MetadataField", key)
    change_metadata(user, lock, {key: None}, replace=False)
    return Response(status=200)
