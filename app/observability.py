"""Request ids, one-JSON-object-per-line logs, Prometheus metrics, and the security
headers of every answer.

Under ``lockcore serve`` (several gunicorn workers) counters and histograms are aggregated
across workers through ``PROMETHEUS_MULTIPROC_DIR``, which the serve command sets up. The
gauges of what Redis holds now (locks held, waiters, ``lockcore_redis_up``) are not
stored there: the process answering a scrape reads them from Redis (``LockStats``), so
they are never summed over workers.

Metrics (names and labels are a contract: dashboards and alert rules use them):

- ``lockcore_http_requests_total{api,status}`` counter
- ``lockcore_http_request_seconds{api,route,method}`` histogram; route: the URL rule
  (``/v1/locks/<lock_id>``), ``unmatched`` for an unknown URL
- ``lockcore_lock_operations_total{api,type,result}`` counter; result: acquired,
  refreshed, replaced, released, conflict, not_found, not_owned, expired, timeout (a wait
  that ended without the lock)
- ``lockcore_locks_held{api,type}``, ``lockcore_lock_waiters{api,type}`` gauges
- ``lockcore_lock_wait_seconds{api,type,outcome}`` histogram (acquired, timeout,
  cancelled): time in line of acquires that waited
- ``lockcore_lock_expirations_total{api,type}`` counter
- ``lockcore_redis_call_seconds{operation}`` histogram: Redis round trips only
- ``lockcore_redis_up`` gauge; ``lockcore_metrics_scopes_truncated`` gauge

``api`` is the blueprint name of the API whose lock type it is (the same value as in the
HTTP metrics: ``native`` for ``/v1``), ``unknown`` where not known.
"""

from __future__ import annotations

import json
import logging
import os
import sys
import threading
import time
import traceback
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

import redis
from flask import Flask, Response, current_app, g, has_request_context, request
from prometheus_client import (
    CONTENT_TYPE_LATEST,
    REGISTRY,
    CollectorRegistry,
    Counter,
    Histogram,
    generate_latest,
    multiprocess,
)
from prometheus_client.core import GaugeMetricFamily, Metric

from lockcore.keys import decode

LOG = logging.getLogger("lockcore.app")

#: the label of what is not known (a lock type nobody configured, a lock gone by id)
UNKNOWN = "unknown"

REQUESTS = Counter(
    "lockcore_http_requests_total", "HTTP requests by API and status", ["api", "status"]
)
HTTP_LATENCY = Histogram(
    "lockcore_http_request_seconds",
    "HTTP request latency by API, route template and method (long polls included)",
    ["api", "route", "method"],
    buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60),
)
LOCK_OPS = Counter(
    "lockcore_lock_operations_total",
    "Lock operations by API, lock type and result",
    ["api", "type", "result"],
)
LOCK_WAIT = Histogram(
    "lockcore_lock_wait_seconds",
    "Time acquires spent waiting in line, by outcome (only acquires that waited)",
    ["api", "type", "outcome"],
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300),
)
EXPIRATIONS = Counter(
    "lockcore_lock_expirations_total",
    "Locks that expired (removed from Redis), by API and lock type",
    ["api", "type"],
)
REDIS_LATENCY = Histogram(
    "lockcore_redis_call_seconds",
    "Latency of lock store calls (Redis round trips; never time waiting in line)",
    ["operation"],
    buckets=(0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1, 5),
)


def iso_time(created: float) -> str:
    """``2026-11-24T10:01:05.123Z``: UTC, to the millisecond."""
    ms = int(created * 1000)
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(ms // 1000)) + f".{ms % 1000:03d}Z"


class JsonFormatter(logging.Formatter):
    """One JSON object per line: ``time`` (ISO-8601 UTC, ms), ``level``, ``logger``,
    ``message``, then the record's ``fields`` (``extra={"fields": {...}}``)."""

    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "time": iso_time(record.created),
            "level": record.levelname,
            "logger": record.name,
            "pid": record.process,
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


def json_handler() -> logging.Handler:
    handler = StderrHandler()
    handler.setFormatter(JsonFormatter())
    return handler


def setup_logging(level: str, *, everything: bool = False) -> None:
    """lockcore's loggers write JSON lines to stderr. ``everything`` (a served process):
    every other logger too (the root logger's one handler, Python's warnings included),
    so that no line on stderr is plain text."""
    root = logging.getLogger("lockcore")
    if not any(isinstance(h.formatter, JsonFormatter) for h in root.handlers):
        root.addHandler(json_handler())
    root.setLevel(level)
    root.propagate = False
    if everything:
        top = logging.getLogger()
        for handler in list(top.handlers):
            top.removeHandler(handler)
        top.addHandler(json_handler())
        top.setLevel(level)
        logging.captureWarnings(True)


def annotate(**fields: Any) -> None:
    """Fields for this request's log line (``user``, ``scope``, ``lock_id``...), kept on
    ``flask.g`` (a later value wins; None is no value). Outside a request: nothing."""
    if not has_request_context():
        return
    ctx_g = g._get_current_object()
    kept: dict[str, Any] | None = getattr(ctx_g, "log_fields", None)
    if kept is None:
        kept = ctx_g.log_fields = {}
    for name, value in fields.items():
        if value is not None:
            kept[name] = value


def request_api() -> str | None:
    """The API (blueprint) of the request being served, if any."""
    if not has_request_context():
        return None
    return api_of(request.blueprint, request.path)


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
    fields = {"request_id": request_id(), "path": request.path}
    fields.update(getattr(g, "log_fields", None) or {})
    LOG.error("request failed: %s", exc.__class__.__name__, exc_info=exc, extra={"fields": fields})


class Children:
    """A metric's children by label values, kept: ``labels()`` takes a lock and builds a
    key at every call, a hot-path cost."""

    def __init__(self, metric: Any) -> None:
        self.metric = metric
        self.children: dict[tuple[str, ...], Any] = {}

    def __call__(self, *values: str) -> Any:
        child = self.children.get(values)
        if child is None:
            child = self.children[values] = self.metric.labels(*values)
        return child


_LOCK_OPS = Children(LOCK_OPS)
_LOCK_WAIT = Children(LOCK_WAIT)
_REQUESTS = Children(REQUESTS)
_HTTP_LATENCY = Children(HTTP_LATENCY)


def count_lock_op(api: str, type: str, result: str, count: int = 1) -> None:
    _LOCK_OPS(api, type, result).inc(count)


def observe_wait(api: str, type: str, outcome: str, seconds: float) -> None:
    _LOCK_WAIT(api, type, outcome).observe(seconds)


def count_expired(api: str, type: str, count: int) -> None:
    """Expired locks removed from Redis (each counted once: see ``LockStats``)."""
    EXPIRATIONS.labels(api, type).inc(count)
    count_lock_op(api, type, "expired", count)


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
    HTML pages without a policy of their own only forbid framing (/docs and /console
    set strict ones). A view's own value wins."""
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


def count_request(api: str, status: int) -> None:
    _REQUESTS(api, str(status)).inc()


def observe_request(api: str, route: str, method: str, seconds: float) -> None:
    _HTTP_LATENCY(api, route, method).observe(seconds)


# --- what Redis holds now, read at a scrape ----------------------------------------------


@dataclass(frozen=True)
class Snapshot:
    """What one stats pass saw (``LockStats``)."""

    up: bool
    held: Mapping[tuple[str, str], int] = field(default_factory=dict)
    waiters: Mapping[tuple[str, str], int] = field(default_factory=dict)
    truncated: bool = False


def busy_scopes(client: Any, prefix: str, limit: int) -> tuple[list[str], bool]:
    """The scopes that have a hash of locks (``SCAN MATCH <prefix>:{*}:L``; on a Cluster,
    every master), at most ``limit``; and whether the limit cut the walk."""
    pattern = "".join("\\" + c if c in "*?[]\\" else c for c in prefix) + ":{*}:L"
    names: dict[str, None] = {}
    for raw in client.scan_iter(match=pattern, count=1000):
        key = raw.decode() if isinstance(raw, bytes) else raw
        name = decode(key[key.index("{") + 1 : key.rindex("}")])
        if name not in names:
            if len(names) >= limit:
                return list(names), True
            names[name] = None
    return list(names), False


class LockStats:
    """The scrape's stats pass: every busy scope's ``scope_stats`` (pipelined in batches),
    at most once per ``cache`` seconds in this process (concurrent scrapes share one
    pass). Costs O(locks in Redis) of Redis time per pass: a SCAN of the keyspace, then
    one script per scope reading its whole hash.

    Every expired lock is removed exactly once (by a lock call that meets it, the core's
    sweep, or a pass) and counted exactly once, by type, by the pass that takes its scope's
    counts: ``lockcore_lock_expirations_total`` sums correctly over workers and replicas
    (``sum(rate(...))``); a pass only sees the first ``max_scopes`` scopes (their counts
    wait in Redis until a pass reaches them)."""

    def __init__(
        self,
        manager: Any,
        apis: Mapping[str, str],
        *,
        max_scopes: int,
        cache: float,
        batch: int = 100,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.manager = manager
        self.apis = apis
        self.max_scopes = max_scopes
        self.cache = cache
        self.batch = batch
        self.clock = clock
        self._lock = threading.Lock()
        self._last: tuple[float, Snapshot] | None = None

    def api(self, type: str) -> str:
        return self.apis.get(type, UNKNOWN)

    def snapshot(self) -> Snapshot:
        with self._lock:
            last = self._last
            if last is not None and self.clock() - last[0] < self.cache:
                return last[1]
            taken = self._take()
            self._last = (self.clock(), taken)
            return taken

    def _take(self) -> Snapshot:
        held: dict[tuple[str, str], int] = {(api, t): 0 for t, api in self.apis.items()}
        waiters = dict(held)
        try:
            scopes, truncated = busy_scopes(
                self.manager.client, self.manager.prefix, self.max_scopes
            )
            for start in range(0, len(scopes), self.batch):
                found = self.manager.scopes_stats(
                    scopes[start : start + self.batch], take_expired=True
                )
                for stats in found.values():
                    for type_, n in stats.expired.items():
                        count_expired(self.api(type_), type_, n)
                    for type_, n in stats.held.items():
                        key = (self.api(type_), type_)
                        held[key] = held.get(key, 0) + n
                    for (type_, _resource), n in stats.waiters.items():
                        key = (self.api(type_), type_)
                        waiters[key] = waiters.get(key, 0) + n
        except redis.RedisError as exc:
            LOG.warning(
                "metrics: Redis did not answer: %s",
                exc.__class__.__name__,
                extra={"fields": {"error": str(exc)}},
            )
            return Snapshot(up=False)
        return Snapshot(up=True, held=held, waiters=waiters, truncated=truncated)


class LiveCollector:
    """The gauges of one snapshot, for the registry a scrape builds (never the
    multi-process files: one process answers, nothing is summed)."""

    def __init__(self, snapshot: Snapshot) -> None:
        self.snapshot = snapshot

    def collect(self) -> Iterator[Metric]:
        snap = self.snapshot
        yield GaugeMetricFamily(
            "lockcore_redis_up", "1 if Redis answered at this scrape, else 0", value=int(snap.up)
        )
        yield GaugeMetricFamily(
            "lockcore_metrics_scopes_truncated",
            "1 if the scrape read only LOCKCORE_METRICS_MAX_SCOPES scopes",
            value=int(snap.truncated),
        )
        for name, text, values in (
            ("lockcore_locks_held", "Live locks in Redis", snap.held),
            ("lockcore_lock_waiters", "Callers waiting in line for a lock", snap.waiters),
        ):
            family = GaugeMetricFamily(name, text, labels=["api", "type"])
            if snap.up:
                for (api, type_), value in sorted(values.items()):
                    family.add_metric([api, type_], value)
            yield family


def _exposition(collectors: Iterable[Any]) -> bytes:
    registry = CollectorRegistry(auto_describe=False)
    for collector in collectors:
        registry.register(collector)
    return generate_latest(registry)


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
        method = req.method
        rule = req.url_rule
        route = rule.rule if rule is not None else "unmatched"
        seconds = time.perf_counter() - getattr(ctx_g, "started", time.perf_counter())
        count_request(api, status)
        observe_request(api, route, method, seconds)
        if LOG.isEnabledFor(logging.INFO):
            fields = {
                "request_id": rid,
                "method": method,
                "path": path,
                "route": route,
                "status": status,
                "api": api,
                "ms": round(seconds * 1000, 2),
            }
            extra = getattr(ctx_g, "log_fields", None)
            if extra:
                fields.update(extra)
            LOG.info("%s %s %s", method, path, status, extra={"fields": fields})
        return response

    @app.get("/metrics")
    def metrics() -> Response:
        stats = lock_stats(app)
        # First the pass (it counts the expirations it takes), then the counters.
        live = _exposition([LiveCollector(stats.snapshot())])
        if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
            registry = CollectorRegistry()
            multiprocess.MultiProcessCollector(registry)  # type: ignore[no-untyped-call]
            counted = generate_latest(registry)
        else:
            counted = generate_latest(REGISTRY)
        # content_type, not mimetype: CONTENT_TYPE_LATEST already names its charset.
        return Response(counted + live, content_type=CONTENT_TYPE_LATEST)


def lock_stats(app: Flask) -> LockStats:
    """The app's stats pass (made at the first scrape), with the app's settings."""
    stats: LockStats | None = app.extensions.get("lockcore_metrics")
    if stats is None:
        locks = app.extensions["lockcore"].locks
        made = LockStats(locks, locks.apis, max_scopes=0, cache=0.0)
        stats = app.extensions.setdefault("lockcore_metrics", made)
    stats.cache = float(app.config["METRICS_CACHE"])
    stats.max_scopes = int(app.config["METRICS_MAX_SCOPES"])
    return stats
