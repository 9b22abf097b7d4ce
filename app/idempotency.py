"""``Idempotency-Key``: a repeated create request returns the first outcome instead of
acting again.

A client that got no answer (a timeout, a 503) cannot know whether its request acted. It
may send the same request again with the same ``Idempotency-Key`` header (1-255 printable
ASCII characters, e.g. a UUID) and get the first outcome, never a second lock:

- the first successful answer (2xx) is kept for ``LOCKCORE_IDEMPOTENCY_TTL`` seconds and
  replayed as it was, with ``Idempotent-Replayed: true``;
- the lock calls of the view carry a request id derived from the key, which the acquire
  script remembers in the same atomic step as the lock, so even when the first answer was
  lost (Redis answered after the client's timeout) the repeat finds that lock instead of
  making another;
- the same key with a different request (method, path, body) is refused with 422;
- a failed request (4xx, 5xx) is not kept: sending it again acts again.

Keys are namespaced by the API and the caller's credentials, so two callers' keys never
meet. The kept answer is encrypted with a key derived from the caller's credentials and
the idempotency key, neither of which Redis holds, so an answer carrying a secret (a new
API key) is not readable from Redis. Redis key: ``<prefix>:idem:{<h>}:<digest>``, a
string with an expiry.
"""

from __future__ import annotations

import base64
import hashlib
import json
from collections.abc import Callable
from functools import wraps
from typing import Any

import redis
from cryptography.fernet import Fernet, InvalidToken
from flask import Response, current_app, g, make_response, request

from .errors import ApiError
from .services import services

HEADER = "Idempotency-Key"
ENVIRON_KEY = "HTTP_" + HEADER.upper().replace("-", "_")
#: Every header an API reads credentials from.
CREDENTIALS = ("Authorization", "SID", "X-API-Key", "X-CKAN-API-Key", "EDX-API-Key")


#: Headers of a kept answer that its replay carries too.
KEPT_HEADERS = ("Cache-Control", "Location")

#: The header, as an OpenAPI parameter of the views that take it.
PARAMETER = {
    "name": HEADER,
    "in": "header",
    "required": False,
    "schema": {"type": "string", "minLength": 1, "maxLength": 255},
    "description": "Send the same value again to get the first outcome, not a second action",
}


def request_id() -> str | None:
    """The request id for lockcore calls of this request (None without the header)."""
    found: str | None = g.get("idempotency_request_id")
    return found


def _digest(*parts: str | bytes) -> bytes:
    h = hashlib.sha256()
    for part in parts:
        data = part.encode() if isinstance(part, str) else part
        h.update(len(data).to_bytes(8, "big") + data)
    return h.digest()


def _key_of_request() -> str | None:
    # The environ, not request.headers: a missing header is a raised KeyError there.
    key: str | None = request.environ.get(ENVIRON_KEY)
    if key is None:
        return None
    if not 1 <= len(key) <= 255 or not (key.isascii() and key.isprintable()):
        raise ApiError(400, f"{HEADER} must be 1-255 printable ASCII characters")
    return key


def idempotent(view: Callable[..., Any]) -> Callable[..., Any]:
    """Make a create view honour ``Idempotency-Key`` (see the module docstring)."""

    @wraps(view)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        return once(lambda: view(*args, **kwargs))

    return wrapper


def once(action: Callable[[], Any]) -> Any:
    """Run ``action`` (a view's work, returning its response) at most once per
    ``Idempotency-Key``: a repeat gets the first successful answer back."""
    key = _key_of_request()
    if key is None:
        return action()
    credentials = [request.headers.get(h, "") for h in CREDENTIALS]
    material = _digest(request.blueprint or "", key, *credentials)
    name = _digest(b"name", material).hex()
    store = f"{services().locks.prefix}:idem:{{{name[:16]}}}:{name}"
    cipher = Fernet(base64.urlsafe_b64encode(_digest(b"cipher", material)))
    fingerprint = _digest(request.method, request.full_path, request.get_data(cache=True)).hex()
    kept = services().client.get(store)
    if kept is not None:
        return _replay(cipher, kept, fingerprint)
    g.idempotency_request_id = _digest(b"request", material).hex()[:32]
    response = make_response(action())
    if 200 <= response.status_code < 300:
        entry = {
            "fingerprint": fingerprint,
            "status": response.status_code,
            "type": response.content_type,
            "body": response.get_data(as_text=True),
            "headers": {h: response.headers[h] for h in KEPT_HEADERS if h in response.headers},
        }
        ttl_ms = max(1, int(current_app.config["IDEMPOTENCY_TTL"] * 1000))
        try:
            services().client.set(
                store, cipher.encrypt(json.dumps(entry).encode()), px=ttl_ms, nx=True
            )
        except redis.RedisError:
            pass  # the answer still goes out; a repeat finds the lock by its request id
    return response


def _replay(cipher: Fernet, kept: bytes, fingerprint: str) -> Response:
    try:
        entry = json.loads(cipher.decrypt(kept))
    except (InvalidToken, ValueError) as exc:  # not ours to read: the same as a mismatch
        raise ApiError(422, f"This {HEADER} was used for another request") from exc
    if entry["fingerprint"] != fingerprint:
        raise ApiError(422, f"This {HEADER} was used for another request")
    response = Response(
        entry["body"],
        status=entry["status"],
        content_type=entry["type"],
        headers=entry.get("headers", {}),
    )
    response.headers["Idempotent-Replayed"] = "true"
    return response
