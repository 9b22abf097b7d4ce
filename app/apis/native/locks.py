"""``/v1``'s locks: acquire (waiting in line), get, refresh, release, list, validate."""

from __future__ import annotations

from typing import Any

from flask import current_app, jsonify, request

from lockcore import (
    AcquireResult,
    InvalidLockRequest,
    LockConflict,
    LockNotFound,
    WaitCancelled,
)

from ... import idempotency
from ...errors import ApiError
from ...identity import User
from ...openapi import route
from ...server import draining
from ...services import services
from .common import (
    ERRORS,
    SECURITY,
    TAG,
    body,
    bp,
    caller,
    changed,
    conflict,
    forced,
    own_lock,
    waiting_slot,
)
from .schemas import (
    ACQUIRE,
    REFRESH,
    SCOPE_PREFIX,
    TYPES,
    VALIDATE,
    AcquireSchema,
    ErrorSchema,
    LockSchema,
    PageSchema,
    RefreshSchema,
    ValidateSchema,
    to_json,
)


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
            shared=data["shared"] and data["type"] == "rw",
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
    force = forced(user)
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
            ("type", {"type": "string", "enum": list(TYPES)}),
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
    if args.get("type") and args["type"] not in TYPES:
        raise ApiError(400, f"Invalid listing: type is one of {', '.join(TYPES)}")
    try:
        limit = int(args.get("limit", "100"))
        page = services().locks.list(
            # An empty filter is no filter.
            SCOPE_PREFIX + scope,
            owner=args.get("owner") or None,
            type=args.get("type") or None,
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
