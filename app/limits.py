"""Bounded, validated input, for every API: what a request may carry and how often a
client may fail to authenticate.

- Bodies: at most ``MAX_BODY`` bytes (413 in the API's envelope, before any view runs).
- JSON is parsed by orjson: strict RFC 8259 / I-JSON (no lone surrogates, no NaN), nesting
  at most 1024 deep; what it refuses is a 400 with its reason, never a RecursionError.
- Names, notes and metadata: ``check_name``, ``check_notes``, ``check_metadata`` against the
  limits in the app's config; every string must be encodable as UTF-8 (Redis stores bytes).
- Failed authentications: counted per client address in Redis by Flask-Limiter (so the
  count holds across processes and hosts); past ``AUTH_FAILURE_LIMIT`` the address gets 429
  with Retry-After on every API call until the window ends. Successful calls never count.
"""

from __future__ import annotations

import math
import time
from collections.abc import Mapping
from typing import Any

import orjson
from flask import Flask, current_app, g, request
from flask.json.provider import DefaultJSONProvider
from flask_limiter import Limiter, RateLimitExceeded
from flask_limiter.util import get_remote_address
from limits import parse_many
from marshmallow import ValidationError
from marshmallow.validate import Validator
from werkzeug.exceptions import RequestEntityTooLarge
from werkzeug.middleware.proxy_fix import ProxyFix

from .errors import envelope_for


class StrictJSONProvider(DefaultJSONProvider):
    """Flask's JSON, parsed by orjson: bounded nesting, valid Unicode only."""

    def loads(self, s: str | bytes, **kwargs: Any) -> Any:
        return orjson.loads(s)


def request_json() -> Any:
    """The request's JSON body; None when it is not sent as JSON (or is empty). ValueError,
    with the parser's reason, when it is not acceptable JSON."""
    if not request.is_json:
        return None
    raw = request.get_data()
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
        check = {"name": check_name, "notes": check_notes, "metadata": check_metadata}
        problem = check[self.kind](value, self.what)
        if problem:
            raise ValidationError(problem)
        return value

    def openapi_properties(self, config: Mapping[str, Any]) -> dict[str, Any]:
        if self.kind == "name":
            return {"minLength": 1, "maxLength": config["MAX_NAME_LENGTH"]}
        if self.kind == "notes":
            return {"maxLength": config["MAX_NOTES_LENGTH"]}
        return {"maxProperties": config["MAX_METADATA_ENTRIES"],
                "description": f"at most {config['MAX_METADATA_ENTRIES']} entries and "
                               f"{config['MAX_METADATA_BYTES']} bytes"}


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
    # limit when read (Flask's MAX_CONTENT_LENGTH).
    limit = current_app.config["MAX_CONTENT_LENGTH"]
    if request.content_length is not None and request.content_length > limit:
        raise RequestEntityTooLarge(f"The request body may be at most {limit} bytes")


# -- failed authentications ---------------------------------------------------------------


def authentication_failed() -> None:
    """Count this request against its address's failed-authentication allowance."""
    g.authentication_failed = True


def _failed(_response: Any) -> bool:
    return bool(g.get("authentication_failed"))


def _outside_apis() -> bool:
    # Probes, metrics and the API document are never refused.
    return envelope_for(request.path) is None


def _storage(client: Any) -> tuple[str, dict[str, Any]]:
    """A ``limits`` storage on the service's own Redis: the client's connection pool, or a
    Cluster's nodes."""
    if hasattr(client, "connection_pool"):
        return "redis://", {"connection_pool": client.connection_pool}
    nodes = ",".join(f"{node.host}:{node.port}" for node in client.get_nodes())
    # The same timeouts, credentials and (no-)retry policy as the service's own client.
    given = client.nodes_manager.connection_kwargs
    options = {k: given[k] for k in ("socket_timeout", "socket_connect_timeout", "username",
                                     "password") if given.get(k) is not None}
    return f"redis+cluster://{nodes}", {**options, "retry": client.retry}


def retry_after(exc: RateLimitExceeded) -> int:
    """Whole seconds until the address may try again."""
    try:
        return max(1, math.ceil(exc.limit.reset_at - time.time()))
    except Exception:  # the store is unreachable: the window's length is an upper bound
        return int(exc.limit.limit.get_expiry())


def init_app(app: Flask, client: Any) -> None:
    if app.config["TRUSTED_PROXIES"]:
        # The client's address, which failures are counted by, is the one the trusted
        # proxies saw; without them X-Forwarded-For is the caller's to invent, so ignored.
        app.wsgi_app = ProxyFix(app.wsgi_app, x_for=app.config["TRUSTED_PROXIES"])
    app.json = StrictJSONProvider(app)
    app.json.sort_keys = False  # type: ignore[attr-defined]
    app.config["MAX_CONTENT_LENGTH"] = app.config["MAX_BODY"]
    app.before_request(_refuse_large_bodies)
    rule = app.config["AUTH_FAILURE_LIMIT"]
    parse_many(rule)  # a bad setting fails at startup, not on a request
    uri, options = _storage(client)
    options["key_prefix"] = app.config["KEY_PREFIX"]
    limiter = Limiter(
        get_remote_address, app=app, storage_uri=uri, storage_options=options,
        application_limits=[rule], application_limits_deduct_when=_failed,
        application_limits_exempt_when=_outside_apis, strategy="fixed-window",
        key_prefix="auth-failures", headers_enabled=False)
    app.extensions["auth_failure_limiter"] = limiter
