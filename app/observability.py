"""Request ids, one-JSON-object-per-line logs, Prometheus metrics, and the security
headers of every answer.

Under ``lockcore serve`` (several gunicorn workers) metrics are aggregated across
workers through ``PROMETHEUS_MULTIPROC_DIR``, which the serve command sets up.
"""

from __future__ import annotations

import json
import logging
import os
import sys
import threading
import time
import traceback
from typing import Any

from flask import Flask, Response, current_app, g, request
from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Histogram,
    generate_latest,
    multiprocess,
)

LOG = logging.getLogger("lockcore.app")

REQUESTS = Counter(
    "lockcore_http_requests_total", "HTTP requests by API and status", ["api", "status"]
)
LOCK_OPS = Counter("lockcore_lock_operations_total", "Lock operations by result", ["result"])
REDIS_LATENCY = Histogram(
    "lockcore_redis_call_seconds",
    "Latency of lock store calls",
    ["operation"],
    buckets=(0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1, 5),
)


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "ts": round(record.created, 3),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        entry.update(getattr(record, "fields", {}))
        if record.exc_info:
            entry["exception"] = "".join(traceback.format_exception(*record.exc_info))
        return json.dumps(entry, default=str)


class StderrHandler(logging.StreamHandler):  # type: ignore[type-arg]
    """Writes to whatever ``sys.stderr`` is at the time (test capture, redirection)."""

    @property
    def stream(self) -> Any:
        return sys.stderr

    @stream.setter
    def stream(self, _value: Any) -> None:
        pass


def setup_logging(level: str) -> None:
    root = logging.getLogger("lockcore")
    if not any(isinstance(h.formatter, JsonFormatter) for h in root.handlers):
        handler = StderrHandler()
        handler.setFormatter(JsonFormatter())
        root.addHandler(handler)
    root.setLevel(level)
    root.propagate = False


def request_id() -> str:
    return str(getattr(g, "request_id", "-"))


class RandomIds:
    """``uuid.uuid4().hex`` values (32 hex digits, version 4, RFC 4122 variant) from
    ``os.urandom`` read ``BATCH`` ids at a time by each thread: ``uuid4()`` makes a
    getrandom system call per id, which lets go of the GIL, and under a busy worker each
    such release costs a thread switch. A forked process (a gunicorn worker) starts on
    fresh randomness, never on its parent's leftovers."""

    BATCH = 64

    def __init__(self) -> None:
        self._local = threading.local()
        #: Bumped in a forked child: every thread's leftover ids are dropped.
        self._generation = 0
        os.register_at_fork(after_in_child=self._forked)

    def _forked(self) -> None:
        self._generation += 1

    def _refill(self) -> list[str]:
        raw = os.urandom(16 * self.BATCH)
        ids = []
        for start in range(0, len(raw), 16):
            n = int.from_bytes(raw[start : start + 16], "big")
            # What uuid.UUID(..., version=4) sets: the variant (10xx) and the version (4).
            n = (n & ~(0xC000 << 48)) | (0x8000 << 48)
            n = (n & ~(0xF000 << 64)) | (4 << 76)
            ids.append(f"{n:032x}")
        return ids

    def __call__(self) -> str:
        local = self._local
        pool: list[str] | None = getattr(local, "pool", None)
        if not pool or local.generation != self._generation:
            local.generation = self._generation
            pool = local.pool = self._refill()
        return pool.pop()


#: A new request id (when the request brings no X-Request-Id).
new_request_id = RandomIds()


def log_exception(exc: BaseException) -> None:
    LOG.error(
        "request failed: %s",
        exc.__class__.__name__,
        exc_info=exc,
        extra={"fields": {"request_id": request_id(), "path": request.path}},
    )


#: result -> its child of LOCK_OPS (``labels()`` takes a lock and builds a key each time).
_LOCK_OP_COUNTERS: dict[str, Any] = {}


def count_lock_op(result: str, count: int = 1) -> None:
    counter = _LOCK_OP_COUNTERS.get(result)
    if counter is None:
        counter = _LOCK_OP_COUNTERS[result] = LOCK_OPS.labels(result)
    counter.inc(count)


def api_of(blueprint: str | None, path: str) -> str:
    """The metric label of a request: its view's blueprint, else (an unknown URL, a wrong
    method) the blueprint of the API whose URL prefix the path is under, else ``ops``."""
    if blueprint:
        return blueprint
    unit = current_app.extensions["lockcore_units"].unit_of(path)
    return unit.blueprint.name if unit is not None else "ops"


#: Headers every answer carries unless its view set them (Content-Security-Policy aside).
SECURITY_HEADERS = (
    ("X-Content-Type-Options", "nosniff"),
    ("X-Frame-Options", "DENY"),
    ("Referrer-Policy", "no-referrer"),
)


def security_headers(response: Response) -> None:
    """Headers every answer carries: no MIME sniffing, no framing (clickjacking), no
    Referer leaking URLs. API answers load nothing, so their CSP forbids every source;
    HTML pages (Swagger UI at /docs loads its scripts and styles from a CDN) only forbid
    framing. A view's own value wins."""
    headers = response.headers
    # One pass over the few headers there are (a lookup of a missing header raises and
    # catches an exception inside werkzeug: four of them cost more than this).
    present = {name.lower() for name, _ in headers}
    for name, value in SECURITY_HEADERS:
        if name.lower() not in present:
            headers.add(name, value)
    if "content-security-policy" not in present:
        csp = "frame-ancestors 'none'"
        if response.mimetype != "text/html":
            csp = "default-src 'none'; " + csp
        headers.add("Content-Security-Policy", csp)


#: (api, status) -> its child of REQUESTS: ``labels()`` looks it up under a lock each time.
_REQUEST_COUNTERS: dict[tuple[str, int], Any] = {}


def count_request(api: str, status: int) -> None:
    counter = _REQUEST_COUNTERS.get((api, status))
    if counter is None:
        counter = _REQUEST_COUNTERS[(api, status)] = REQUESTS.labels(api, str(status))
    counter.inc()


def init_app(app: Flask) -> None:
    setup_logging(app.config["LOG_LEVEL"])

    @app.before_request
    def _start() -> None:
        # The environ, not request.headers: a missing header is a raised KeyError there.
        # g and request looked up once each (every proxy access finds the context anew).
        ctx_g = g._get_current_object()
        ctx_g.request_id = request.environ.get("HTTP_X_REQUEST_ID") or new_request_id()
        ctx_g.started = time.perf_counter()

    @app.after_request
    def _finish(response: Response) -> Response:
        ctx_g = g._get_current_object()
        req = request._get_current_object()  # type: ignore[attr-defined]
        rid = str(getattr(ctx_g, "request_id", "-"))
        response.headers["X-Request-Id"] = rid
        security_headers(response)
        path = req.path
        api = api_of(req.blueprint, path)
        status = response.status_code
        count_request(api, status)
        if LOG.isEnabledFor(logging.INFO):
            method = req.method
            LOG.info(
                "%s %s %s",
                method,
                path,
                status,
                extra={
                    "fields": {
                        "request_id": rid,
                        "method": method,
                        "path": path,
                        "status": status,
                        "api": api,
                        "ms": round(
                            (time.perf_counter() - getattr(ctx_g, "started", time.perf_counter()))
                            * 1000,
                            2,
                        ),
                    }
                },
            )
        return response

    @app.get("/metrics")
    def metrics() -> Response:
        if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
            registry = CollectorRegistry()
            multiprocess.MultiProcessCollector(registry)  # type: ignore[no-untyped-call]
            return Response(generate_latest(registry), content_type=CONTENT_TYPE_LATEST)
        # content_type, not mimetype: CONTENT_TYPE_LATEST already names its charset.
        return Response(generate_latest(), content_type=CONTENT_TYPE_LATEST)
