"""lockcore's own JSON API for workers in any language: ``/v1``.

Locks of type ``job`` (exclusive leases) in scopes of the caller's naming (kept apart from
the four product APIs' scopes). ``Authorization: Bearer <key>``; the caller is the owner.
Errors: ``{"error": {"code", "message", "holder"?}}``.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from typing import Any

from flask import Blueprint, current_app, jsonify, request
from marshmallow import Schema, ValidationError

from lockcore import (
    AcquireResult,
    InvalidLockRequest,
    Lock,
    LockConflict,
    LockNotFound,
    LockNotOwned,
    LockType,
    WaitCancelled,
)

from ... import idempotency
from ...auth import bearer_token, user_for_key
from ...errors import ApiError
from ...identity import User
from ...limits import request_json
from ...openapi import route
from ...server import draining
from ...services import services
from ...units import ApiUnit
from .schemas import (
    ACQUIRE,
    LOCK_TYPE,
    REFRESH,
    SCOPE_PREFIX,
    VALIDATE,
    AcquireSchema,
    ErrorSchema,
    LockSchema,
    PageSchema,
    RefreshSchema,
    ValidateSchema,
    to_json,
)

bp = Blueprint("native", __name__, url_prefix="/v1")
TAG = "Native lock API (/v1)"
CODES = {
    400: "invalid",
    401: "unauthenticated",
    403: "forbidden",
    404: "not_found",
    405: "method_not_allowed",
    409: "conflict",
    413: "too_large",
    429: "too_many_failures",
    503: "unavailable",
}


def envelope(exc: ApiError) -> tuple[Any, int]:
    error: dict[str, Any] = {
        "code": exc.kind if exc.kind in CODES.values() else CODES.get(exc.status, "error"),
        "message": exc.message,
    }
    if exc.details is not None:
        error.update(exc.details)
    return jsonify({"error": error}), exc.status


SECURITY: list[dict[str, list[str]]] = [{"V1Bearer": []}]


def caller() -> User:
    user = user_for_key(bearer_token())
    if user is None:
        raise ApiError(401, "Send Authorization: Bearer <API key>")
    return user


def body(schema: Schema) -> dict[str, Any]:
    try:
        data = request_json()
    except ValueError as exc:
        raise ApiError(400, f"The body is not acceptable JSON: {exc}") from None
    if data is None and not request.get_data().strip():
        data = {}
    if not isinstance(data, dict):
        raise ApiError(400, "The body must be a JSON object")
    try:
        return schema.load(data)  # type: ignore[no-any-return]
    except ValidationError as exc:
        messages = exc.normalized_messages()  # type: ignore[no-untyped-call]
        problems = "; ".join(
            f"{name}: {' '.join(map(str, errors))}" if isinstance(errors, list) else str(name)
            for name, errors in messages.items()
        )
        raise ApiError(
            400, f"Invalid request: {problems}", details={"fields": exc.messages}
        ) from exc


def own_lock(lock_id: str) -> Lock:
    lock = services().lock_under(lock_id, SCOPE_PREFIX)
    if lock is None:
        raise ApiError(404, f"No lock {lock_id}")
    return lock


def changed(lock: Lock, change: Callable[[], Lock]) -> Any:
    """The lock after a refresh or release, or the error that change met."""
    try:
        return jsonify(to_json(change()))
    except LockNotOwned as exc:
        raise ApiError(403, f"Lock {lock.id} belongs to {lock.owner}") from exc
    except LockNotFound as exc:
        raise ApiError(404, f"No lock {lock.id}") from exc


def conflict(exc: LockConflict) -> ApiError:
    holder = to_json(exc.holder) if exc.holder else None
    return ApiError(409, "The resource is held by someone else", details={"holder": holder})


ERRORS = {
    400: ("Invalid request", ErrorSchema),
    401: ("No valid key", ErrorSchema),
    503: ("Lock store unavailable", ErrorSchema),
}


@route(
    bp,
    "/locks",
    "POST",
    summary="Acquire a lock (optionally waiting in line)",
    tag=TAG,
    security=SECURITY,
    body=AcquireSchema,
    parameters=[idempotency.PARAMETER],
    responses={
        201: ("Acquired", LockSchema),
        200: ("Already yours: refreshed", LockSchema),
        409: ("Held by someone else (after the wait)", ErrorSchema),
        422: ("Idempotency-Key reused for another request", ErrorSchema),
        **ERRORS,
    },
)
@idempotency.idempotent
def acquire() -> Any:
    user = caller()
    data = body(ACQUIRE)
    limit = current_app.config["V1_MAX_WAIT"]
    if data["wait"] is not None and data["wait"] > limit:
        raise ApiError(400, f"wait may be at most {limit} seconds")
    with waiting_slot(bool(data["wait"])):
        result = _acquire(user, data)
    return jsonify(to_json(result.lock)), 201 if result.created else 200


@contextmanager
def waiting_slot(waits: bool) -> Iterator[None]:
    """A long poll takes one of the process's waiter slots (see app/server.py), or is
    refused at once when none is free: waiters never take the threads others need."""
    if not waits:
        yield
        return
    slots = current_app.extensions.setdefault(
        "v1_waiters", threading.BoundedSemaphore(current_app.config["V1_MAX_WAITERS"])
    )
    if not slots.acquire(blocking=False):
        raise ApiError(
            503, "Too many requests are waiting for locks; try again shortly", kind="unavailable"
        )
    try:
        yield
    finally:
        slots.release()


def _acquire(user: User, data: dict[str, Any]) -> AcquireResult:
    try:
        return services().locks.acquire(
            SCOPE_PREFIX + data["scope"],
            data["type"],
            data["resource"],
            user.id,
            ttl=data["ttl"],
            metadata=data["metadata"],
            wait=data["wait"] or None,
            request_id=idempotency.request_id(),
            cancel=draining().is_set,
        )
    except LockConflict as exc:
        raise conflict(exc) from exc
    except WaitCancelled as exc:
        raise ApiError(
            503, "The service is shutting down; send the request again", kind="unavailable"
        ) from exc
    except LockNotFound as exc:  # a repeated Idempotency-Key whose lock is gone
        raise ApiError(
            409,
            "The lock this Idempotency-Key acquired was released or has expired",
            kind="conflict",
        ) from exc
    except InvalidLockRequest as exc:
        raise ApiError(400, str(exc)) from exc


@route(
    bp,
    "/locks/<lock_id>",
    "GET",
    summary="A lock",
    tag=TAG,
    security=SECURITY,
    responses={200: ("The lock", LockSchema), 404: ("No such lock", ErrorSchema), **ERRORS},
)
def get_lock(lock_id: str) -> Any:
    caller()
    return jsonify(to_json(own_lock(lock_id)))


@route(
    bp,
    "/locks/<lock_id>/refresh",
    "POST",
    summary="Extend a lease",
    tag=TAG,
    security=SECURITY,
    body=RefreshSchema,
    responses={
        200: ("The lock", LockSchema),
        403: ("Not yours", ErrorSchema),
        404: ("No such lock", ErrorSchema),
        **ERRORS,
    },
)
def refresh(lock_id: str) -> Any:
    user = caller()
    data = body(REFRESH)
    lock = own_lock(lock_id)
    return changed(lock, lambda: services().locks.refresh(lock, user.id, data["ttl"]))


@route(
    bp,
    "/locks/<lock_id>",
    "DELETE",
    summary="Release a lock (?force=true: sysadmins)",
    tag=TAG,
    security=SECURITY,
    parameters=[{"name": "force", "in": "query", "required": False, "schema": {"type": "boolean"}}],
    responses={
        200: ("Released", LockSchema),
        403: ("Not yours", ErrorSchema),
        404: ("No such lock", ErrorSchema),
        **ERRORS,
    },
)
def release(lock_id: str) -> Any:
    user = caller()
    force = request.args.get("force", "false").lower() == "true"
    if force and not user.is_sysadmin:
        raise ApiError(403, "Only a sysadmin may force a release")
    lock = own_lock(lock_id)
    return changed(lock, lambda: services().locks.release(lock, user.id, force=force))


@route(
    bp,
    "/scopes/<scope>/locks",
    "GET",
    summary="A scope's live locks, a page at a time",
    tag=TAG,
    security=SECURITY,
    parameters=[
        {"name": n, "in": "query", "required": False, "schema": schema}
        for n, schema in (
            ("owner", {"type": "string"}),
            ("resource", {"type": "string"}),
            ("cursor", {"type": "string"}),
            ("limit", {"type": "integer", "minimum": 1, "maximum": 10000}),
        )
    ],
    responses={200: ("A page", PageSchema), **ERRORS},
)
def list_locks(scope: str) -> Any:
    caller()
    args = request.args
    try:
        limit = int(args.get("limit", "100"))
        page = services().locks.list(
            # An empty filter is no filter.
            SCOPE_PREFIX + scope,
            owner=args.get("owner") or None,
            type=LOCK_TYPE,
            resource=args.get("resource") or None,
            cursor=args.get("cursor"),
            limit=limit,
        )
    except (ValueError, InvalidLockRequest) as exc:
        raise ApiError(400, f"Invalid listing: {exc}") from exc
    return jsonify({"locks": [to_json(lock) for lock in page.locks], "cursor": page.cursor})


@route(
    bp,
    "/validate",
    "POST",
    summary="Fencing check: is this token the live lock's?",
    tag=TAG,
    security=SECURITY,
    body=ValidateSchema,
    responses={200: ("{valid: bool}", None), **ERRORS},
)
def validate_token() -> Any:
    caller()
    data = body(VALIDATE)
    valid = services().locks.validate(
        SCOPE_PREFIX + data["scope"], data["type"], data["resource"], data["fencing_token"]
    )
    return jsonify({"valid": valid})


def lock_types(config: Mapping[str, Any]) -> list[LockType]:
    # exclusive leases, listed by owner too
    ttl, max_ttl = config["V1_TTL"], config["V1_MAX_TTL"]
    return [LockType(LOCK_TYPE, default_ttl=ttl, max_ttl=max_ttl, index_owner=True)]


UNIT = ApiUnit(
    "v1",
    bp,
    envelope,
    security_schemes={"V1Bearer": {"type": "http", "scheme": "bearer"}},
    settings={
        "V1_TTL": (30.0, float),  # default lease of /v1 worker locks
        "V1_MAX_TTL": (3600.0, float),
        "V1_MAX_WAIT": (30.0, float),  # longest long-poll a /v1 acquire may ask for
        "V1_MAX_WAITERS": (96, int),  # long polls one process serves at once; more get a 503
    },
    lock_types=lock_types,
)
