"""Bounded, validated input, for every API: what a request may carry and how often a
client may fail to authenticate.

- Bodies: at most ``MAX_BODY`` bytes (413 in the API's envelope, before any view runs).
- JSON is parsed by orjson: strict RFC 8259 / I-JSON (no lone surrogates, no NaN), nesting
  at most 1024 deep; what it refuses is a 400 with its reason, never a RecursionError.
- Names, notes and metadata: ``check_name``, ``check_notes``, ``check_metadata`` against the
  limits in the app's config; every string must be encodable as UTF-8 (Redis stores bytes).
- Failed authentications: counted per client address in Redis with ``limits`` (so the
  count holds across processes and hosts); past ``AUTH_FAILURE_LIMIT`` the address gets 429
  with Retry-After on every API call until the window ends. Successful calls never count,
  and cost no Redis call of their own (see ``FailureLimit``).
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Mapping
from typing import Any

import orjson
from flask import Flask, Response, current_app, g, request
from flask.json.provider import DefaultJSONProvider
from limits import parse_many
from limits.storage import storage_from_string
from limits.strategies import FixedWindowRateLimiter
from marshmallow import ValidationError
from marshmallow.validate import Validator
from werkzeug.exceptions import RequestEntityTooLarge, TooManyRequests
from werkzeug.middleware.proxy_fix import ProxyFix
from werkzeug.wsgi import get_content_length

from .errors import envelope_for


class StrictJSONProvider(DefaultJSONProvider):
    """Flask's JSON, parsed by orjson: bounded nesting, valid Unicode only."""

    def loads(self, s: str | bytes, **kwargs: Any) -> Any:
        return orjson.loads(s)


def request_json() -> Any:
    """The request's JSON body; None when it is not sent as JSON (or is empty). ValueError,
    with the parser's reason, when it is not acceptable JSON."""
    req = request._get_current_object()  # type: ignore[attr-defined]
    if not req.is_json:
        return None
    raw = req.get_data()
    if not raw.strip():
        return None
    return current_app.json.loads(raw)


# -- strings ------------------------------------------------------------------------------


def encodable(text: str) -> bool:
    """Whether ``text`` has a UTF-8 form (a lone surrogate, from a ``\\ud800`` escape, has
    none: Redis and its Lua scripts would fail on it)."""
    try:
        text.encode()
    except UnicodeEncodeError:
        return False
    return True


def check_name(value: str, what: str) -> str | None:
    """The problem with a name (an id, a scope, a resource, a metadata key), or None."""
    limit = current_app.config["MAX_NAME_LENGTH"]
    if not value:
        return f"{what} must not be empty"
    if len(value) > limit:
        return f"{what} may be at most {limit} characters"
    if not encodable(value):
        return f"{what} must be valid Unicode text (no lone surrogates)"
    return None


def check_notes(value: str, what: str = "notes") -> str | None:
    limit = current_app.config["MAX_NOTES_LENGTH"]
    if len(value) > limit:
        return f"{what} may be at most {limit} characters"
    if not encodable(value):
        return f"{what} must be valid Unicode text (no lone surrogates)"
    return None


def check_metadata(metadata: Mapping[str, str | None], what: str = "metadata") -> str | None:
    """The problem with a lock's metadata as it would be stored, or None. Size counts the
    UTF-8 bytes of every key and value."""
    config = current_app.config
    if len(metadata) > config["MAX_METADATA_ENTRIES"]:
        return f"{what} may have at most {config['MAX_METADATA_ENTRIES']} entries"
    size = 0
    for key, value in metadata.items():
        if len(key) > config["MAX_NAME_LENGTH"]:
            return f"{what} keys may be at most {config['MAX_NAME_LENGTH']} characters"
        if not encodable(key) or (value is not None and not encodable(value)):
            return f"{what} must be valid Unicode text (no lone surrogates)"
        size += len(key.encode()) + len((value or "").encode())
    if size > config["MAX_METADATA_BYTES"]:
        return f"{what} may be at most {config['MAX_METADATA_BYTES']} bytes (keys and values)"
    return None


class Limited(Validator):
    """A marshmallow validator for a name, notes or metadata, against the app's limits; the
    OpenAPI document shows the limits in force (``openapi_properties``)."""

    def __init__(self, kind: str, what: str) -> None:
        self.kind, self.what = kind, what

    def __call__(self, value: Any) -> Any:
        check: dict[str, Callable[[Any, str], str | None]] = {
            "name": check_name,
            "notes": check_notes,
            "metadata": check_metadata,
        }
        problem = check[self.kind](value, self.what)
        if problem:
            raise ValidationError(problem)
        return value

    def openapi_properties(self, config: Mapping[str, Any]) -> dict[str, Any]:
        if self.kind == "name":
            return {"minLength": 1, "maxLength": config["MAX_NAME_LENGTH"]}
        if self.kind == "notes":
            return {"maxLength": config["MAX_NOTES_LENGTH"]}
        return {
            "maxProperties": config["MAX_METADATA_ENTRIES"],
            "description": f"at most {config['MAX_METADATA_ENTRIES']} entries and "
            f"{config['MAX_METADATA_BYTES']} bytes",
        }


class AtMost(Validator):
    """A number no greater than a setting (``V1_MAX_WAIT``, say), documented as such."""

    def __init__(self, setting: str, what: str, unit: str = "") -> None:
        self.setting, self.what, self.unit = setting, what, unit

    def __call__(self, value: Any) -> Any:
        limit = current_app.config[self.setting]
        if value is not None and value > limit:
            raise ValidationError(f"{self.what} may be at most {limit}{self.unit}")
        return value

    def openapi_properties(self, config: Mapping[str, Any]) -> dict[str, Any]:
        return {"maximum": config[self.setting]}


# -- request guards -----------------------------------------------------------------------


def _refuse_large_bodies() -> None:
    # A declared length is refused before anything runs; a chunked body meets the same
    # limit when read (Flask's MAX_CONTENT_LENGTH). request.content_length, read once from
    # the environ (through request.headers, each missing header raises inside werkzeug).
    length = get_content_length(request.environ)
    if length is not None:
        limit = current_app.config["MAX_CONTENT_LENGTH"]
        if length > limit:
            raise RequestEntityTooLarge(f"The request body may be at most {limit} bytes")


# -- failed authentications ---------------------------------------------------------------
#
# Counted with ``limits`` (fixed windows) in the service's Redis, under the keys Flask-Limiter
# used before (``<prefix>:LIMITER/auth-failures/<address>/global/<amount>/<n>/<unit>``), so
# processes of either kind share one count. A request reads its address's count only when
# this process has not read it (or counted a failure of it) within ``AUTH_CACHE_TTL``
# seconds: a successful call costs Redis nothing more. An address blocked by failures sent
# to *other* processes is refused by this one within that bound; failures sent here are
# counted in Redis at once and refuse the next request here at once.


class TooManyFailures(TooManyRequests):
    """429: the address failed to authenticate too often; ``retry_after`` seconds."""

    def __init__(self, retry_after: int) -> None:
        super().__init__(retry_after=retry_after)
        self.retry_after = retry_after


def authentication_failed() -> None:
    """Count this request against its address's failed-authentication allowance."""
    g.authentication_failed = True


def _storage(client: Any) -> tuple[str, dict[str, Any]]:
    """A ``limits`` storage on the service's own Redis: the client's connection pool, or a
    Cluster's nodes."""
    if hasattr(client, "connection_pool"):
        return "redis://", {"connection_pool": client.connection_pool}
    nodes = ",".join(f"{node.host}:{node.port}" for node in client.get_nodes())
    # The same timeouts, credentials and (no-)retry policy as the service's own client.
    given = client.nodes_manager.connection_kwargs
    options = {
        k: given[k]
        for k in ("socket_timeout", "socket_connect_timeout", "username", "password")
        if given.get(k) is not None
    }
    return f"redis+cluster://{nodes}", {**options, "retry": client.retry}


class FailureLimit:
    """The failed-authentication limit of one app: ``refuse_blocked`` before a view runs,
    ``count_failure`` after it."""

    #: Addresses remembered as not blocked, at most (then the memory starts again).
    MAX_REMEMBERED = 10_000

    def __init__(
        self, rule: str, storage: Any, ttl: float, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self.items = sorted(parse_many(rule))  # a bad setting fails here, at startup
        self.storage = storage
        self.strategy = FixedWindowRateLimiter(storage)
        self.ttl = ttl
        self.clock = clock
        #: address -> clock time until which it is known not to be blocked
        self._clear: dict[str, float] = {}

    @staticmethod
    def _identifiers(address: str) -> tuple[str, str, str]:
        return ("auth-failures", address, "global")

    def _remember_clear(self, address: str) -> None:
        if self.ttl <= 0:
            return
        if len(self._clear) >= self.MAX_REMEMBERED:
            self._clear.clear()
        self._clear[address] = self.clock() + self.ttl

    def refuse_blocked(self, address: str) -> None:
        """TooManyFailures if the address has used up an allowance (the smallest window
        first)."""
        until = self._clear.get(address)
        if until is not None and self.clock() < until:
            return
        identifiers = self._identifiers(address)
        for item in self.items:
            if not self.strategy.test(item, *identifiers):
                reset = self.strategy.get_window_stats(item, *identifiers).reset_time
                raise TooManyFailures(max(1, math.ceil(reset - time.time())))
        self._remember_clear(address)

    def count_failure(self, address: str) -> None:
        identifiers = self._identifiers(address)
        blocked = False
        for item in self.items:
            count = self.storage.incr(item.key_for(*identifiers), item.get_expiry())
            blocked = blocked or count >= item.amount  # the next call is refused
        if blocked:
            self._clear.pop(address, None)
        else:
            self._remember_clear(address)


def _client_address() -> str:
    return request.remote_addr or "127.0.0.1"


def init_app(app: Flask, client: Any) -> None:
    if app.config["TRUSTED_PROXIES"]:
        # The client's address, which failures are counted by, is the one the trusted
        # proxies saw; without them X-Forwarded-For is the caller's to invent, so ignored.
        app.wsgi_app = ProxyFix(  # type: ignore[method-assign]
            app.wsgi_app, x_for=app.config["TRUSTED_PROXIES"]
        )
    app.json = StrictJSONProvider(app)
    app.json.sort_keys = False
    app.config["MAX_CONTENT_LENGTH"] = app.config["MAX_BODY"]
    app.before_request(_refuse_large_bodies)
    uri, options = _storage(client)
    options["key_prefix"] = app.config["KEY_PREFIX"]
    limit = FailureLimit(
        app.config["AUTH_FAILURE_LIMIT"],
        storage_from_string(uri, **options),
        app.config["AUTH_CACHE_TTL"],
    )
    app.extensions["auth_failure_limit"] = limit

    @app.before_request
    def _refuse_blocked() -> None:
        # Only requests routed to an API view: probes, metrics, the API document and
        # unknown URLs are never refused.
        req = request._get_current_object()  # type: ignore[attr-defined]
        if req.endpoint is None or envelope_for(req.path) is None:
            return
        g.failure_limited = True
        limit.refuse_blocked(req.remote_addr or "127.0.0.1")

    @app.after_request
    def _count_failure(response: Response) -> Response:
        ctx_g = g._get_current_object()
        if getattr(ctx_g, "authentication_failed", False) and getattr(
            ctx_g, "failure_limited", False
        ):
            limit.count_failure(_client_address())
        return response
