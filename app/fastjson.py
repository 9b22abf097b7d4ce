"""``jsonify``'s answer, byte for byte, built by orjson where the two agree: several times
faster for a listing of locks.

For values made of ``str``, ``int`` (64-bit), ``bool``, ``None``, lists and dicts with
``str`` keys — no floats: orjson writes ``1e16`` where Python writes ``1e+16``. orjson's
output is then Flask's (compact separators, keys in order) whenever it is ASCII without
DEL: Flask escapes every other character as ``\\uXXXX``, orjson writes it as UTF-8. Any
other output, a value orjson cannot write, or an app that indents or sorts its JSON is
answered by ``jsonify`` itself.
"""

from __future__ import annotations

from typing import Any

import orjson
from flask import Response, current_app, jsonify


def json_response(value: Any) -> Response:
    """``jsonify(value)``, faster (see the module docstring for which values)."""
    app: Any = current_app._get_current_object()  # type: ignore[attr-defined]
    provider: Any = app.json
    if not (
        getattr(provider, "sort_keys", True) is False
        and (provider.compact or (provider.compact is None and not app.debug))
    ):
        return jsonify(value)
    try:
        raw = orjson.dumps(value)
    except orjson.JSONEncodeError:
        return jsonify(value)
    if not raw.isascii() or b"\x7f" in raw:
        return jsonify(value)
    response: Response = app.response_class(raw + b"\n", mimetype=provider.mimetype)
    return response
