"""The lockcore service: four real lock APIs on one lock engine, stateless over Redis."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from flask import Flask, request
from werkzeug.exceptions import HTTPException


def create_app(config: Mapping[str, Any] | None = None) -> Flask:
    """Defaults, then ``LOCKCORE_*`` environment variables, then ``config``.

    ``config["REDIS_CLIENT"]`` (tests) supplies a ready client instead of a URL.
    """
    # Imported here, not at the top: `lockcore serve` must set up multi-process metrics
    # before prometheus_client is first imported, and it imports this package first.
    from . import admin, limits, observability, openapi, ops
    from . import config as config_module
    from .apis import docspace, edx, native, versal, vidispine
    from .errors import envelope_for, http_error, plain_envelope
    from .services import build

    app = Flask(__name__)
    app.config.update(config_module.load(config))
    app.extensions["lockcore"] = build(app.config)
    # Remembered keys and catalog entries (see identity.Users, catalog.Catalog): a key
    # revoked or a role changed elsewhere takes effect within AUTH_CACHE_TTL seconds.
    app.extensions["lockcore"].users.cache_ttl = app.config["AUTH_CACHE_TTL"]
    app.extensions["lockcore"].catalog.cache_ttl = app.config["AUTH_CACHE_TTL"]
    app.json.sort_keys = False  # type: ignore[attr-defined]
    # A bad override file fails here, at startup, not on a request.
    app.extensions["edx_features"] = edx.load_features(app.config["EDX_FEATURES_OVERRIDE"])

    observability.init_app(app)
    # After observability: a request refused here (413, 429) is still logged and measured.
    limits.init_app(app, app.extensions["lockcore"].client)
    openapi.init_app(app)

    for blueprint in (ops.bp, admin.bp, versal.bp, edx.bp, docspace.bp, vidispine.bp,
                      native.bp):
        app.register_blueprint(blueprint)

    @app.errorhandler(HTTPException)
    def _routing_error(exc: HTTPException) -> Any:
        # Unknown URL or wrong method: no view, so the envelope is chosen by path.
        found = envelope_for(request.path)
        envelope, messages = found if found else (plain_envelope, {})
        return http_error(exc, envelope, messages)

    return app
