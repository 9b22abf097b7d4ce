"""What the ``/v1`` views share: the blueprint, the envelope, the caller, the body."""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

from flask import Blueprint, current_app, jsonify, request
from marshmallow import Schema, ValidationError

from lockcore import (
    Lock,
    LockConflict,
    LockNotFound,
    LockNotOwned,
)

from ...auth import bearer_token, user_for_key
from ...errors import ApiError
from ...identity import User
from ...limits import request_json
from ...services import services
from .schemas import (
    SCOPE_PREFIX,
    ErrorSchema,
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


def forced(user: User) -> bool:
    """The query's ``force`` (``true`` or ``false``, once; sysadmins only)."""
    values = request.args.getlist("force")
    if not values:
        return False
    if len(values) > 1 or values[0].lower() not in ("true", "false"):
        raise ApiError(400, "force is true or false")
    if values[0].lower() == "true" and not user.is_sysadmin:
        raise ApiError(403, "Only a sysadmin may force a release")
    return values[0].lower() == "true"


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
