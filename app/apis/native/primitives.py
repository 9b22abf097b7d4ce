"""``/v1``'s multi-locks (all or none) and elections (observe; campaign and resign are a
``leader`` lock's acquire and release)."""

from __future__ import annotations

from typing import Any

from flask import current_app, jsonify, request

from lockcore import (
    Election,
    InvalidLockRequest,
    Lock,
    LockConflict,
    LockNotOwned,
)

from ...errors import ApiError
from ...openapi import route
from ...services import services
from .common import ERRORS, SECURITY, TAG, body, bp, caller, conflict, forced, waiting_slot
from .schemas import (
    ACQUIRE_ALL,
    RELEASE_ALL,
    SCOPE_PREFIX,
    AcquireAllSchema,
    ElectionSchema,
    ErrorSchema,
    LocksSchema,
    ReleaseAllSchema,
    to_json,
)


@route(
    bp,
    "/multilocks",
    "POST",
    summary="A multi-lock: locks on several resources of one scope, all or none",
    tag=TAG,
    security=SECURITY,
    body=AcquireAllSchema,
    responses={
        201: ("Every lock, in the order asked", LocksSchema),
        409: ("One is held by someone else: none taken", ErrorSchema),
        **ERRORS,
    },
)
def acquire_all() -> Any:
    user = caller()
    data = body(ACQUIRE_ALL)
    try:
        results = services().locks.acquire_all(
            SCOPE_PREFIX + data["scope"],
            data["type"],
            data["resources"],
            user.id,
            ttl=data["ttl"],
            metadata=data["metadata"],
        )
    except LockConflict as exc:
        raise conflict(exc) from exc
    except InvalidLockRequest as exc:
        raise ApiError(400, str(exc)) from exc
    return jsonify({"locks": [to_json(r.lock) for r in results]}), 201


@route(
    bp,
    "/multilocks/release",
    "POST",
    summary="Release a multi-lock's locks together (those already gone are passed over)",
    tag=TAG,
    security=SECURITY,
    body=ReleaseAllSchema,
    parameters=[{"name": "force", "in": "query", "required": False, "schema": {"type": "boolean"}}],
    responses={
        200: ("{released: how many}", None),
        403: ("One is another's: none released", ErrorSchema),
        **ERRORS,
    },
)
def release_all() -> Any:
    user = caller()
    data = body(RELEASE_ALL)
    force = forced(user)
    locks = [lock for lock in map(_live_or_none, data["ids"]) if lock is not None]
    if len({lock.scope for lock in locks}) > 1:
        raise ApiError(400, "A multi-lock's locks are all in one scope")
    try:
        released = services().locks.release_all(locks, user.id, force=force)
    except LockNotOwned as exc:
        owner = exc.holder.owner if exc.holder else "someone else"
        raise ApiError(
            403, f"Lock {exc.holder.id if exc.holder else ''} belongs to {owner}"
        ) from exc
    return jsonify({"released": released})


def _live_or_none(lock_id: str) -> Lock | None:
    return services().lock_under(lock_id, SCOPE_PREFIX)


@route(
    bp,
    "/scopes/<scope>/elections/<name>",
    "GET",
    summary="An election's leader (its term: the lock's token); ?after=TERM&wait=S waits "
    "for the next change. Campaign: POST /v1/locks with type leader; resign: release it",
    tag=TAG,
    security=SECURITY,
    parameters=[
        {"name": "after", "in": "query", "required": False, "schema": {"type": "integer"}},
        {
            "name": "wait",
            "in": "query",
            "required": False,
            "schema": {"type": "number", "minimum": 0},
            "description": "seconds to wait for a change after `after` (at most "
            "LOCKCORE_V1_MAX_WAIT)",
        },
    ],
    responses={200: ("The leader, or none", ElectionSchema), **ERRORS},
)
def election(scope: str, name: str) -> Any:
    caller()
    try:
        after = int(request.args["after"]) if "after" in request.args else None
        wait = float(request.args.get("wait", "0"))
    except ValueError as exc:
        raise ApiError(400, f"Invalid query: {exc}") from exc
    if not wait >= 0:
        raise ApiError(400, "wait is a number of seconds, 0 or more")
    wait = min(wait, current_app.config["V1_MAX_WAIT"])  # at most that long, as documented
    try:
        vote = Election(services().locks, name, scope=SCOPE_PREFIX + scope, type="leader")
    except InvalidLockRequest as exc:
        raise ApiError(400, str(exc)) from exc
    with waiting_slot(after is not None and wait > 0):
        leader = vote.observe(after, timeout=wait) if after is not None else vote.observe()
    return jsonify(
        {
            "leader": to_json(leader) if leader else None,
            "term": leader.fencing_token if leader else None,
        }
    )
