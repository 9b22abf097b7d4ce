"""Errors shared by every API family. Each blueprint turns them into its own envelope
with ``register_envelope``; views only raise."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import redis
from flask import Blueprint, Response, jsonify, make_response
from marshmallow import fields
from werkzeug.exceptions import HTTPException

from lockcore import LockError, LockNotDurable


class ApiError(Exception):
    """An error with an HTTP status and a message, shaped by the blueprint's envelope."""

    def __init__(self, status: int, message: str, *, kind: str = "", details: Any = None):
        super().__init__(message)
        self.status = status
        self.message = message
        self.kind = kind
        self.details = details


UNAVAILABLE = "The lock store (Redis) is unavailable; try again shortly"

#: The OpenAPI component of a body's field errors as marshmallow reports them: each field
#: name -> its messages, or, for a list's items, a dict's entries or a nested object's
#: fields, an object of the same shape (``{"resources": {"0": ["Not a valid string."]}}``).
FIELD_ERRORS_NAME = "FieldErrors"
FIELD_ERRORS: dict[str, Any] = {
    "type": "object",
    "additionalProperties": {
        "anyOf": [
            {"type": "array", "items": {"type": "string"}},
            {"$ref": f"#/components/schemas/{FIELD_ERRORS_NAME}"},
        ]
    },
    "example": {"resource": ["Missing data for required field."]},
}


def field_errors(**kwargs: Any) -> fields.Dict:
    """A documented error's field errors (``ValidationError.messages``): typed in the
    OpenAPI document as ``FieldErrors`` (app/openapi.py adds the component)."""
    metadata = {
        "additionalProperties": FIELD_ERRORS["additionalProperties"],
        "example": FIELD_ERRORS["example"],
        **kwargs.pop("metadata", {}),
    }
    return fields.Dict(keys=fields.String(), metadata=metadata, **kwargs)


Envelope = Callable[[ApiError], tuple[Any, int]]


def register_envelope(
    bp: Blueprint, envelope: Envelope, http_messages: dict[int, str] | None = None
) -> None:
    """Route every error raised in ``bp``'s views through ``envelope``: ApiError as is,
    Redis outages as 503, HTTP errors (404, 405, bad JSON...) with their status, and any
    other exception as a 500 without internals."""
    messages = http_messages or {}

    @bp.errorhandler(ApiError)
    def _api(exc: ApiError) -> tuple[Any, int]:
        return envelope(exc)

    @bp.errorhandler(redis.RedisError)
    def _redis(exc: redis.RedisError) -> tuple[Any, int]:
        from .observability import log_exception

        log_exception(exc)
        return envelope(ApiError(503, UNAVAILABLE, kind="Service Unavailable"))

    @bp.errorhandler(LockNotDurable)
    def _not_durable(exc: LockNotDurable) -> tuple[Any, int]:
        # the replicas did not confirm in time: as unavailable as Redis itself
        from .observability import log_exception

        log_exception(exc)
        return envelope(ApiError(503, UNAVAILABLE, kind="Service Unavailable"))

    @bp.errorhandler(HTTPException)
    def _http(exc: HTTPException) -> Response:
        return http_error(exc, envelope, messages)

    @bp.errorhandler(LockError)
    def _lock(exc: LockError) -> tuple[Any, int]:
        # Each API maps the lock errors it expects; reaching here is a bug of the mapping.
        from .observability import log_exception

        log_exception(exc)
        return envelope(ApiError(500, "Internal server error", kind="Internal Error"))

    @bp.errorhandler(Exception)
    def _any(exc: Exception) -> tuple[Any, int]:
        from .observability import log_exception

        log_exception(exc)
        return envelope(ApiError(500, "Internal server error", kind="Internal Error"))


#: Headers an HTTP error keeps in the API's envelope: the methods a URL allows (405), when
#: to try again (429, 503).
KEPT_HEADERS = ("Allow", "Retry-After")


def http_error(exc: HTTPException, envelope: Envelope, messages: dict[int, str]) -> Response:
    """An HTTP error (404, 405, 413, 429...) in ``envelope``, with its headers."""
    from .limits import TooManyFailures

    status = exc.code or 500
    message = messages.get(status, exc.description or exc.name)
    headers = {name: value for name, value in exc.get_headers() if name in KEPT_HEADERS}
    if isinstance(exc, TooManyFailures):
        wait = exc.retry_after
        message = f"Too many failed authentications from this address; try again in {wait} seconds"
        headers["Retry-After"] = str(wait)
    response = make_response(envelope(ApiError(status, message, kind=exc.name)))
    response.headers.update(headers)
    return response


def envelope_for(path: str) -> tuple[Envelope, dict[int, str]] | None:
    """The envelope of the API whose URL prefix ``path`` is under, for errors raised
    before a view is known (unknown URL, wrong method): the app's units, longest prefix
    first (see ``lockcore_service.units``)."""
    from flask import current_app

    units = current_app.extensions["lockcore_units"]
    unit = units.unit_of(path)
    return None if unit is None else (unit.envelope, dict(unit.http_messages))


def plain_envelope(exc: ApiError) -> tuple[Response, int]:
    """The service's own endpoints (ops, admin): {"error": {"status", "message"}}."""
    body: dict[str, Any] = {"status": exc.status, "message": exc.message}
    if exc.details is not None:
        body["details"] = exc.details
    return jsonify({"error": body}), exc.status
