"""The operator console at ``/console``: a page (plain JS and CSS shipped in this package,
nothing from a CDN) and the small JSON API it reads.

Sign in with an API key (kept in the tab's sessionStorage, sent as ``Authorization:
Bearer``). A sysadmin sees every scope of every API and may force-release a lock; anyone
else sees the ``/v1`` scopes, which any key holder may read through ``/v1`` too, and no
release button (the release endpoint refuses them: 403).

- ``GET /console/api/me``: who the key is.
- ``GET /console/api/scopes``: the scopes with live locks (a SCAN of the keyspace, capped
  at ``LOCKCORE_CONSOLE_MAX_SCOPES`` scopes: an operator's page, not a hot path).
- ``GET /console/api/scopes/<scope>``: its live locks, the waiters per resource, the
  server's time (the page counts down by the Redis clock) and the id of the newest event
  (the feed resumes from it, so no change between the snapshot and the feed is missed).
- ``GET /console/api/scopes/<scope>/events?after=<id>``: the scope's events as server-sent
  events (``text/event-stream``), read with XREAD from the scope's stream. The page reads
  it with ``fetch`` (an ``EventSource`` cannot send the key in a header, and a key in a
  URL ends up in logs); ``id:`` lines let a client resume from the last one it saw.
- ``POST /console/api/locks/<id>/release``: a sysadmin's forced release.
"""

from __future__ import annotations

import json
import re
import threading
import time
from collections.abc import Iterator
from importlib import resources
from typing import Any

import redis
from flask import Blueprint, Flask, Response, current_app, jsonify, request, stream_with_context
from marshmallow import Schema, fields

from lockcore import LockNotFound

from ..apis.native.schemas import SCOPE_PREFIX, LockSchema, lock_json
from ..auth import bearer_token, user_for_key
from ..errors import ApiError
from ..events import event_json, text
from ..identity import User
from ..observability import busy_scopes
from ..openapi import route
from ..server import draining
from ..services import services
from ..units import ApiUnit

bp = Blueprint("console", __name__, url_prefix="/console")

#: The page's own files (shipped with the package).
STATIC = resources.files(__name__) / "static"
ASSETS = {"console.js": "text/javascript", "console.css": "text/css"}

#: The page loads only its own files and talks only to the service.
CSP = (
    "default-src 'none'; script-src 'self'; style-src 'self'; connect-src 'self'; "
    "img-src 'self' data:; base-uri 'none'; form-action 'none'; frame-ancestors 'none'"
)

#: A stream entry's id.
EVENT_ID = re.compile(r"[0-9]{1,20}-[0-9]{1,20}")

#: A keep-alive comment after this many seconds without events (proxies close idle
#: connections).
KEEP_ALIVE = 15.0


TAG = "Console (/console)"
SECURITY: list[dict[str, list[str]]] = [{"ConsoleBearer": []}]


class ErrorBodySchema(Schema):
    status = fields.Integer(required=True)
    message = fields.String(required=True)


class ErrorSchema(Schema):
    """Every console API error: ``{"error": {"status", "message"}}``."""

    error = fields.Nested(ErrorBodySchema, required=True)


class MeSchema(Schema):
    id = fields.String()
    name = fields.String()
    sysadmin = fields.Boolean()


class ScopeRowSchema(Schema):
    scope = fields.String()
    locks = fields.Integer(metadata={"description": "live locks"})


class ScopesSchema(Schema):
    scopes = fields.List(fields.Nested(ScopeRowSchema))
    truncated = fields.Boolean(metadata={"description": "the scan stopped at its cap"})


class WaitersSchema(Schema):
    type = fields.String()
    resource = fields.String()
    waiting = fields.Integer()


class SnapshotSchema(Schema):
    scope = fields.String()
    now = fields.Float(metadata={"description": "the Redis server's time (s)"})
    last_event = fields.String(metadata={"description": "the newest event's id"})
    locks = fields.List(fields.Nested(LockSchema))
    waiters = fields.List(fields.Nested(WaitersSchema))


class ReleasedSchema(Schema):
    released = fields.Nested(LockSchema)
    by = fields.String()
    at = fields.Float()


def _errors(*statuses: int) -> dict[int, tuple[str, Any]]:
    described = {
        400: "Bad input",
        401: "No key, or an unknown one",
        403: "Not allowed for this key",
        404: "Not found",
        503: "Redis unavailable, or too many feeds",
    }
    return {status: (described[status], ErrorSchema) for status in statuses}


def envelope(exc: ApiError) -> tuple[Any, int]:
    return jsonify({"error": {"status": exc.status, "message": exc.message}}), exc.status


def caller() -> User:
    user = user_for_key(bearer_token())
    if user is None:
        raise ApiError(401, "Sign in with an API key (Authorization: Bearer <key>)")
    return user


def may_see(user: User, scope: str) -> bool:
    return user.is_sysadmin or scope.startswith(SCOPE_PREFIX)


def seen_scope(user: User, scope: str) -> str:
    if not may_see(user, scope):
        raise ApiError(403, f"Only a sysadmin may see the scope {scope!r}")
    return scope


@route(
    bp,
    "",
    "GET",
    summary="The console page",
    tag=TAG,
    responses={200: ("The page", None)},
    response_media=("text/html",),
)
def page() -> Response:
    html = (STATIC / "console.html").read_text(encoding="utf-8")
    response = Response(html, mimetype="text/html")
    response.headers["Content-Security-Policy"] = CSP
    response.headers["Cache-Control"] = "no-cache"
    return response


@route(
    bp,
    "/static/<name>",
    "GET",
    summary="The page's script and style sheet",
    tag=TAG,
    responses={200: ("The file", None), **_errors(404)},
)
def asset(name: str) -> Response:
    if name not in ASSETS:
        raise ApiError(404, f"No such file: {name}")
    response = Response((STATIC / name).read_bytes(), mimetype=ASSETS[name])
    response.headers["Cache-Control"] = "no-cache"
    return response


@route(
    bp,
    "/api/me",
    "GET",
    summary="Who the key is",
    tag=TAG,
    responses={200: ("The key's user", MeSchema), **_errors(401)},
    security=SECURITY,
)
def me() -> Any:
    user = caller()
    return jsonify({"id": user.id, "name": user.name, "sysadmin": user.is_sysadmin})


@route(
    bp,
    "/api/scopes",
    "GET",
    summary="The scopes with live locks that the key may see",
    tag=TAG,
    responses={200: ("Scopes", ScopesSchema), **_errors(401, 503)},
    security=SECURITY,
)
def scopes() -> Any:
    user = caller()
    svc = services()
    names, truncated = busy_scopes(
        svc.client, svc.locks.prefix, current_app.config["CONSOLE_MAX_SCOPES"]
    )
    rows = []
    for name in sorted(n for n in names if may_see(user, n)):
        count = svc.locks.count(name)
        if count:
            rows.append({"scope": name, "locks": count})
    return jsonify({"scopes": rows, "truncated": truncated})


@route(
    bp,
    "/api/scopes/<path:scope>",
    "GET",
    summary="A scope's live locks, its waiters, the server time and the newest event",
    tag=TAG,
    responses={200: ("The scope now", SnapshotSchema), **_errors(401, 403, 503)},
    security=SECURITY,
)
def scope_locks(scope: str) -> Any:
    seen_scope(caller(), scope)
    svc = services()
    stream = svc.locks.keys(scope).events
    # The newest event first, then the locks: the feed resumes after that event, so a
    # change made while the locks are read is seen (at worst twice: the page applies
    # each event idempotently).
    newest = svc.client.xrevrange(stream, count=1)
    last_event = text(newest[0][0]) if newest else "0-0"
    locks = list(svc.locks.iter_locks(scope, limit=1000))
    stats = svc.locks.scope_stats(scope)
    seconds, micros = svc.client.time()
    return jsonify(
        {
            "scope": scope,
            "now": int(seconds) + int(micros) / 1e6,
            "last_event": last_event,
            "locks": [lock_json(lock) for lock in locks],
            "waiters": [
                {"type": type_, "resource": resource, "waiting": count}
                for (type_, resource), count in sorted(stats.waiters.items())
            ],
        }
    )


@route(
    bp,
    "/api/scopes/<path:scope>/events",
    "GET",
    summary="The scope's events as server-sent events, after ?after= or Last-Event-ID",
    tag=TAG,
    responses={200: ("text/event-stream", None), **_errors(400, 401, 403, 503)},
    security=SECURITY,
)
def scope_events(scope: str) -> Response:
    seen_scope(caller(), scope)
    svc = services()
    stream = svc.locks.keys(scope).events
    after = request.headers.get("Last-Event-ID") or request.args.get("after") or "$"
    if after != "$" and not EVENT_ID.fullmatch(after):
        raise ApiError(400, f"Not an event id: {after!r} (expected <ms>-<seq>)")
    if after == "$":
        newest = svc.client.xrevrange(stream, count=1)
        after = text(newest[0][0]) if newest else "0-0"
    client = svc.client
    # Each XREAD blocks for less than the socket timeout (a longer block would count as a
    # failed call), and the drain (SIGTERM) is noticed within one block.
    block_ms = max(10, int(min(1.0, current_app.config["REDIS_TIMEOUT"] / 2) * 1000))
    slots = current_app.extensions["console_feeds"]
    if not slots.acquire(blocking=False):
        raise ApiError(503, "Too many open event feeds on this instance; try again shortly")

    def feed() -> Iterator[str]:
        last = after
        quiet_since = time.monotonic()
        yield f"retry: 1000\n: following {scope}\n\n"
        while not draining().is_set():
            try:
                read = client.xread({stream: last}, block=block_ms, count=100)
            except redis.RedisError:
                # The page reconnects (``retry``) and resumes after ``last``.
                yield "event: unavailable\ndata: {}\n\n"
                return
            if not read:
                if time.monotonic() - quiet_since >= KEEP_ALIVE:
                    quiet_since = time.monotonic()
                    yield ": keep-alive\n\n"
                continue
            quiet_since = time.monotonic()
            for _, entries in read:
                for entry_id, entry in entries:
                    last = text(entry_id)
                    event = event_json(stream, entry_id, entry)
                    yield f"id: {last}\nevent: lock\ndata: {json.dumps(event)}\n\n"

    response = Response(stream_with_context(feed()), mimetype="text/event-stream")
    response.headers["Cache-Control"] = "no-cache"
    response.headers["X-Accel-Buffering"] = "no"  # nginx: pass each event on at once
    # On close, started or not (a generator never started runs no finally clause).
    response.call_on_close(slots.release)
    return response


@route(
    bp,
    "/api/locks/<lock_id>/release",
    "POST",
    summary="Force-release a lock (sysadmins)",
    tag=TAG,
    responses={200: ("Released", ReleasedSchema), **_errors(401, 403, 404, 503)},
    security=SECURITY,
)
def force_release(lock_id: str) -> Any:
    user = caller()
    if not user.is_sysadmin:
        raise ApiError(403, "Only a sysadmin may force a release")
    try:
        lock = services().locks.release(lock_id, user.id, force=True)
    except LockNotFound:
        raise ApiError(404, f"No live lock {lock_id}") from None
    return jsonify({"released": lock_json(lock), "by": user.id, "at": time.time()})


def at_least_one(raw: str) -> int:
    value = int(raw)
    if value < 1:
        raise ValueError("must be at least 1")
    return value


def setup(app: Flask) -> None:
    # Each open feed holds a server thread: a cap per process (LOCKCORE_CONSOLE_MAX_FEEDS).
    app.extensions["console_feeds"] = threading.BoundedSemaphore(app.config["CONSOLE_MAX_FEEDS"])


UNIT = ApiUnit(
    "console",
    bp,
    envelope,
    security_schemes={"ConsoleBearer": {"type": "http", "scheme": "bearer"}},
    settings={
        "CONSOLE_MAX_SCOPES": (10_000, at_least_one),
        "CONSOLE_MAX_FEEDS": (16, at_least_one),
    },
    setup=setup,
    durable=False,
)
