"""The lockcore service: four real lock APIs on one lock engine, stateless over Redis."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import TYPE_CHECKING, Any

from flask import Flask, request
from werkzeug.exceptions import HTTPException

if TYPE_CHECKING:
    from .units import ApiUnit


class App(Flask):
    """Flask, with what it decides about each hook and view on every request decided
    once per function."""

    #: Functions remembered as plain (synchronous) at most (then the memory starts again).
    MAX_REMEMBERED = 1000

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        #: Functions known to be plain ``def``s: ``ensure_sync`` returns them as they are.
        self._plain: set[Any] = set()

    def ensure_sync(self, func: Any) -> Any:
        # Flask asks inspect.iscoroutinefunction about every before/after-request hook and
        # the view of every request; a function's answer does not change.
        try:
            if func in self._plain:
                return func
        except TypeError:  # unhashable: ask every time
            return super().ensure_sync(func)
        sync = super().ensure_sync(func)
        if sync is func:
            if len(self._plain) >= self.MAX_REMEMBERED:
                self._plain.clear()
            self._plain.add(func)
        return sync


def create_app(
    config: Mapping[str, Any] | None = None, apis: Iterable[ApiUnit] | None = None
) -> Flask:
    """The service: its own endpoints, and ``apis`` (default:
    ``lockcore_service.apis.UNITS``).

    Settings: defaults, then ``LOCKCORE_*`` environment variables, then ``config``.
    ``config["REDIS_CLIENT"]`` (tests) supplies a ready client instead of a URL.
    """
    # Imported here, not at the top: `lockcore serve` must set up multi-process metrics
    # before prometheus_client is first imported, and it imports this package first.
    from . import admin, console, limits, observability, openapi, ops
    from . import config as config_module
    from .errors import envelope_for, http_error, plain_envelope
    from .services import build
    from .units import Units, default_units

    units = Units(
        (ops.UNIT, admin.UNIT, console.UNIT, *(default_units() if apis is None else apis))
    )
    app = App(__name__)
    app.extensions["lockcore_units"] = units
    app.config.update(config_module.load(config, units.all))
    app.extensions["lockcore"] = build(app.config, units.all)
    # Remembered keys and catalog entries (see identity.Users, catalog.Catalog): a key
    # revoked or a role changed elsewhere takes effect within AUTH_CACHE_TTL seconds.
    app.extensions["lockcore"].users.cache_ttl = app.config["AUTH_CACHE_TTL"]
    app.extensions["lockcore"].catalog.cache_ttl = app.config["AUTH_CACHE_TTL"]
    app.json.sort_keys = False  # type: ignore[attr-defined]

    observability.init_app(app)
    # After observability: a request refused here (413, 429) is still logged and measured.
    limits.init_app(app, app.extensions["lockcore"].client)
    openapi.init_app(app)

    for unit in units.all:
        if unit.setup is not None:
            unit.setup(app)
        app.register_blueprint(unit.blueprint)

    @app.errorhandler(HTTPException)
    def _routing_error(exc: HTTPException) -> Any:
        # Unknown URL or wrong method: no view, so the envelope is chosen by path.
        found = envelope_for(request.path)
        envelope, messages = found if found else (plain_envelope, {})
        return http_error(exc, envelope, messages)

    return app
