"""Vidispine's answers: documents as XML in its namespace, or JSON when ``Accept`` asks for
it, and errors as an ``ExceptionDocument`` named for the kind of error."""

from __future__ import annotations

import xml.etree.ElementTree as ET
from typing import Any

from flask import Response, jsonify, request

from ...errors import ApiError

NS = "http://xml.vidispine.com/schema/vidispine"

ERROR_KINDS = {
    400: "invalidInput",
    401: "notAuthenticated",
    403: "permissionDenied",
    404: "notFound",
    405: "invalidInput",
    409: "conflict",
    503: "unavailable",
}

#: Messages of the errors Flask raises itself (no route, a route without this method).
HTTP_MESSAGES = {404: "No such resource", 405: "Method not allowed on this resource"}


def wants_json() -> bool:
    best = request.accept_mimetypes.best_match(["application/xml", "application/json"])
    return (
        best == "application/json"
        and request.accept_mimetypes["application/json"]
        > request.accept_mimetypes["application/xml"]
    )


def render(root: str, body: dict[str, Any], status: int = 200) -> Response:
    """A document as JSON or as XML in Vidispine's namespace."""
    if wants_json():
        response = jsonify(body)
    else:
        element = ET.Element(root, xmlns=NS)
        _to_xml(element, body)
        text = ET.tostring(element, encoding="unicode")
        response = Response(
            '<?xml version="1.0" encoding="UTF-8" standalone="yes"?>\n' + text,
            mimetype="application/xml",
        )
    response.status_code = status
    return response


def _to_xml(parent: ET.Element, value: Any) -> None:
    for key, item in value.items():
        for one in item if isinstance(item, list) else [item]:
            child = ET.SubElement(parent, key)
            if isinstance(one, dict):
                _to_xml(child, one)
            elif isinstance(one, bool):
                child.text = "true" if one else "false"
            else:
                child.text = str(one)


def envelope(exc: ApiError) -> tuple[Any, int]:
    kind = ERROR_KINDS.get(exc.status, "error")
    detail: dict[str, Any] = {"explanation": exc.message}
    if isinstance(exc.details, dict):
        detail.update(exc.details)
    response = render("ExceptionDocument", {kind: detail}, exc.status)
    if exc.status == 401:
        response.headers["WWW-Authenticate"] = 'Basic realm="lockcore"'
    return response, exc.status


def invalid(context: str, explanation: str) -> ApiError:
    return ApiError(400, explanation, details={"context": context})


def not_found(what: str, ident: str) -> ApiError:
    return ApiError(404, f"{what} {ident} not found", details={"type": what, "id": ident})
