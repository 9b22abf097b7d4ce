"""Operational endpoints: liveness and readiness."""

from __future__ import annotations

from typing import Any

import redis
from flask import Blueprint, jsonify

from .errors import UNAVAILABLE, plain_envelope
from .observability import log_exception
from .openapi import route
from .services import services
from .units import ApiUnit

bp = Blueprint("ops", __name__)


@route(
    bp,
    "/healthz",
    "GET",
    summary="The process is up",
    tag="Operations",
    responses={200: ("Up", None)},
)
def healthz() -> Any:
    return jsonify({"status": "ok"})


@route(
    bp,
    "/readyz",
    "GET",
    summary="Redis is reachable and the scripts are loaded",
    tag="Operations",
    responses={200: ("Ready", None), 503: ("Not ready", None)},
)
def readyz() -> Any:
    try:
        return jsonify({"status": "ready", **services().ready()})
    except redis.RedisError as exc:
        # The cause (host, socket path, server message) goes to the log, not to callers.
        log_exception(exc)
        return jsonify({"status": "unavailable", "message": UNAVAILABLE}), 503


UNIT = ApiUnit("ops", bp, plain_envelope, durable=False)
