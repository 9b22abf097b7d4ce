"""The OpenAPI 3 document, generated from the marshmallow schemas the views use.

Views are registered with ``route(bp, rule, method, ...)``: it adds the Flask route and
records the operation (summary, parameters, request body and response schemas), from which
``/openapi.json`` is built; ``/docs`` shows it in Swagger UI, served with its scripts and
stylesheet from the swagger-ui-bundle package (no CDN: the page works offline).
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path
from typing import Any

import swagger_ui_bundle  # type: ignore[import-untyped]  # ships no py.typed
from apispec import APISpec
from apispec.ext.marshmallow import MarshmallowPlugin
from flask import (
    Blueprint,
    Flask,
    Response,
    abort,
    current_app,
    jsonify,
    request,
)

from lockcore import __version__

from .errors import FIELD_ERRORS, FIELD_ERRORS_NAME


@dataclass
class Operation:
    path: str
    method: str
    spec: dict[str, Any]
    #: the blueprint whose view it is (None: the app's own): an app's document has the
    #: operations of the blueprints it registered
    blueprint: str | None = None


@dataclass
class Registry:
    operations: list[Operation] = field(default_factory=list)
    #: schema class -> its XML object (root element name, namespace), for XML bodies
    xml: dict[type, dict[str, str]] = field(default_factory=dict)

    def add(self, op: Operation) -> None:
        self.operations.append(op)


REGISTRY = Registry()


def _content(schema: Any, media: tuple[str, ...] = ("application/json",)) -> dict[str, Any]:
    return {m: {"schema": schema} for m in media}


def openapi_path(flask_rule: str) -> str:
    """``/a/<int:x>/<any(p, q):y>`` -> ``/a/{x}/{y}``."""
    return re.sub(r"<(?:[^<>]+:)?([^<>:]+)>", r"{\1}", flask_rule)


def _with_limits(
    responses: dict[int, tuple[str, Any]], body: Any, security: Any
) -> dict[int, tuple[str, Any]]:
    """The answers every API gives when input is out of bounds (see app/limits.py), in the
    operation's own error shape: 413 for a body over LOCKCORE_MAX_BODY, 429 once an address
    has failed to authenticate too often."""
    shape = next(
        (
            schema
            for status, (_, schema) in sorted(responses.items())
            if status >= 400 and schema is not None
        ),
        None,
    )
    added = dict(responses)
    if body is not None:
        added.setdefault(413, ("Request body over the size limit", shape))
    if security is not None:
        added.setdefault(429, ("Too many failed authentications from this address", shape))
    return added


def route(
    bp: Blueprint,
    rule: str,
    method: str,
    *,
    summary: str,
    tag: str,
    body: Any = None,
    body_media: tuple[str, ...] = ("application/json",),
    responses: dict[int, tuple[str, Any]] | None = None,
    parameters: list[dict[str, Any]] | None = None,
    security: list[dict[str, list[str]]] | None = None,
    response_media: tuple[str, ...] = ("application/json",),
) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    """Register a view on ``bp`` and document it. ``responses``: status -> (description,
    schema or None)."""
    path = (bp.url_prefix or "") + rule
    doc_path = openapi_path(path)
    params = list(parameters or [])
    choices = {
        name: [c.strip() for c in options.split(",")]
        for options, name in re.findall(r"<any\(([^)]*)\):([^<>]+)>", path)
    }
    for name in re.findall(r"{([^}]+)}", doc_path):
        if not any(p["name"] == name and p["in"] == "path" for p in params):
            schema: dict[str, Any] = {"type": "string"}
            if name in choices:
                schema["enum"] = choices[name]
            params.append({"name": name, "in": "path", "required": True, "schema": schema})
    spec: dict[str, Any] = {
        "summary": summary,
        "tags": [tag],
        "parameters": params,
        "responses": {},
    }
    if body is not None:
        spec["requestBody"] = {"required": True, "content": _content(body, body_media)}
    for status, (description, schema) in _with_limits(responses or {}, body, security).items():
        entry: dict[str, Any] = {"description": description}
        if schema is not None:
            entry["content"] = _content(schema, response_media)
        if status == 429:
            entry["headers"] = {
                "Retry-After": {"description": "seconds to wait", "schema": {"type": "integer"}}
            }
        spec["responses"][str(status)] = entry
    if security is not None:
        spec["security"] = security
    REGISTRY.add(Operation(doc_path, method.lower(), spec, bp.name))

    def decorator(view: Callable[..., Any]) -> Callable[..., Any]:
        bp.add_url_rule(rule, view_func=view, methods=[method])
        return view

    return decorator


def schema_name(schema: Any) -> str:
    """Component names carry their API's module (``VersalError``, ``DocspaceError``): each
    API has its own shapes, often with the same class names."""
    cls = schema if isinstance(schema, type) else type(schema)
    parts = cls.__module__.split(".")
    # an API package's modules (lockcore_service.apis.vidispine.documents) carry the API's name
    module = (parts[parts.index("apis") + 1] if "apis" in parts[:-1] else parts[-1]).capitalize()
    name = cls.__name__.removesuffix("Schema")
    return name if name.startswith(module) else module + name


def _configured(self: Any, field: Any, **kwargs: Any) -> dict[str, Any]:
    """Properties a field's validators take from the app's settings (the input limits):
    the document shows the limits in force."""
    properties: dict[str, Any] = {}
    for validator in getattr(field, "validators", ()):
        describe = getattr(validator, "openapi_properties", None)
        if describe is not None:
            properties.update(describe(current_app.config))
    return properties


#: apispec's null for a nullable nested schema in OpenAPI 3.0 (``anyOf`` it and the schema).
_APISPEC_NULL = {"type": "object", "nullable": True}


def _nullable_nested(self: Any, field: Any, ret: dict[str, Any], **kwargs: Any) -> dict[str, Any]:
    """A nullable nested schema as ``anyOf`` the schema, then null alone: apispec's null
    is any object (untyped; Swagger UI shows it as the example, ``{}``, when it comes
    first)."""
    choices = ret.get("anyOf")
    if not choices or _APISPEC_NULL not in choices:
        return {}
    return {
        "anyOf": [
            *(choice for choice in choices if choice != _APISPEC_NULL),
            {**_APISPEC_NULL, "enum": [None]},
        ]
    }


def build_spec() -> dict[str, Any]:
    plugin = MarshmallowPlugin(schema_name_resolver=schema_name)
    spec = APISpec(
        title="lockcore",
        version=__version__,
        openapi_version="3.0.3",
        plugins=[plugin],
        info={"description": "Four lock APIs on one Redis-backed lock engine."},
    )
    plugin.converter.add_attribute_function(_configured)  # type: ignore[union-attr]
    plugin.converter.add_attribute_function(_nullable_nested)  # type: ignore[union-attr]
    spec.components.schema(FIELD_ERRORS_NAME, FIELD_ERRORS)
    for unit in current_app.extensions["lockcore_units"].all:
        for name, scheme in unit.security_schemes.items():
            spec.components.security_scheme(name, scheme)
    by_path: dict[str, dict[str, Any]] = {}
    for op in REGISTRY.operations:
        if op.blueprint is None or op.blueprint in current_app.blueprints:
            by_path.setdefault(op.path, {})[op.method] = op.spec
    for path, operations in sorted(by_path.items()):
        spec.path(path=path, operations=operations)
    document = spec.to_dict()
    components = document.get("components", {}).get("schemas", {})
    for cls, xml in REGISTRY.xml.items():
        if schema_name(cls) in components:
            components[schema_name(cls)]["xml"] = xml
    return document


#: Swagger UI, as the swagger-ui-bundle package installs it (no CDN: /docs works offline).
SWAGGER_UI = Path(swagger_ui_bundle.swagger_ui_path)

#: The page: Swagger UI's stylesheet and script, then the initializer, all served from
#: ``/docs/...`` (relative URLs, so the page also works under a path prefix); no inline
#: script, so the page's policy allows scripts from the service only.
SWAGGER_PAGE = """<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>lockcore API</title>
<link rel="stylesheet" href="docs/swagger-ui.css">
<link rel="icon" type="image/png" href="docs/favicon-32x32.png" sizes="32x32">
<link rel="icon" type="image/png" href="docs/favicon-16x16.png" sizes="16x16"></head>
<body><div id="ui"></div>
<script src="docs/swagger-ui-bundle.js"></script>
<script src="docs/swagger-initializer.js"></script>
</body></html>
"""

#: The page's initializer, a served file: the document next to /docs, no validator badge
#: (it would load an image from validator.swagger.io).
SWAGGER_INITIALIZER = """window.ui = SwaggerUIBundle({
  url: "openapi.json",
  dom_id: "#ui",
  deepLinking: true,
  validatorUrl: null,
});
"""

#: The files of the bundle the page loads, and their media types (the bundle's other files
#: stay unserved).
SWAGGER_ASSETS = {
    "swagger-ui-bundle.js": "text/javascript",
    "swagger-ui.css": "text/css",
    "favicon-32x32.png": "image/png",
    "favicon-16x16.png": "image/png",
}
ASSET_TYPES = {"swagger-initializer.js": "text/javascript", **SWAGGER_ASSETS}


@cache
def _asset(name: str) -> tuple[bytes, str]:
    """A file of /docs and its ETag, read once (bytes, not a file: nothing to close)."""
    if name == "swagger-initializer.js":
        data = SWAGGER_INITIALIZER.encode()
    else:
        data = (SWAGGER_UI / name).read_bytes()
    return data, hashlib.sha256(data).hexdigest()[:32]


#: /docs: scripts, styles and data from the service only (Swagger UI sets its inline
#: styles through the DOM, which style-src does not restrict; its stylesheet draws its
#: icons from data: URLs), and framed by no one.
DOCS_CSP = (
    "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
    "connect-src 'self'; frame-ancestors 'none'"
)

#: How long a browser keeps the assets before asking again (then by ETag: 304 if unchanged).
ASSET_MAX_AGE = 24 * 3600


def document(
    path: str,
    method: str,
    summary: str,
    tag: str,
    media: str,
    parameters: list[dict[str, Any]] | None = None,
    errors: dict[int, str] | None = None,
) -> None:
    """Document a view registered on the app itself (not through ``route``); ``errors``:
    status -> description of its other answers."""
    spec: dict[str, Any] = {
        "summary": summary,
        "tags": [tag],
        "responses": {"200": {"description": summary, "content": {media: {}}}},
    }
    for status, description in (errors or {}).items():
        spec["responses"][str(status)] = {"description": description}
    if parameters:
        spec["parameters"] = parameters
    REGISTRY.add(Operation(path, method.lower(), spec))


def init_app(app: Flask) -> None:
    if not any(op.path == "/openapi.json" for op in REGISTRY.operations):
        document("/openapi.json", "GET", "This OpenAPI document", "Operations", "application/json")
        document("/docs", "GET", "Swagger UI", "Operations", "text/html")
        document(
            "/docs/{asset}",
            "GET",
            "Swagger UI's scripts, stylesheet and icons",
            "Operations",
            "*/*",
            [
                {
                    "name": "asset",
                    "in": "path",
                    "required": True,
                    "schema": {
                        "type": "string",
                        "enum": list(ASSET_TYPES),
                    },
                }
            ],
            {404: "No such file"},
        )
        document("/metrics", "GET", "Prometheus metrics", "Operations", "text/plain")

    @app.get("/openapi.json")
    def openapi_json() -> Response:
        return jsonify(build_spec())

    @app.get("/docs")
    def docs() -> Response:
        response = Response(SWAGGER_PAGE, mimetype="text/html")
        response.headers["Content-Security-Policy"] = DOCS_CSP
        return response

    @app.get("/docs/<asset>")
    def docs_asset(asset: str) -> Response:
        if asset not in ASSET_TYPES:
            abort(404)
        data, etag = _asset(asset)
        response = Response(data, mimetype=ASSET_TYPES[asset])
        response.cache_control.public = True
        response.cache_control.max_age = ASSET_MAX_AGE
        response.set_etag(etag)
        response.make_conditional(request)
        return response
