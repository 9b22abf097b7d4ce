"""Who calls: HTTP Basic (user name and API key) or ``Authorization: token <key>``, and
whether they hold the role a call needs (write implies read; a sysadmin has both)."""

from __future__ import annotations

import base64
import binascii

from flask import request

from ...auth import user_for_key
from ...errors import ApiError
from ...identity import User

READ, WRITE = "_deletion_lock_read", "_deletion_lock_write"

SECURITY_SCHEMES: dict[str, dict[str, str]] = {
    "VidispineBasic": {"type": "http", "scheme": "basic"},
    "VidispineToken": {
        "type": "apiKey",
        "in": "header",
        "name": "Authorization",
        "description": "token <key>",
    },
}
SECURITY: list[dict[str, list[str]]] = [{"VidispineBasic": []}, {"VidispineToken": []}]


def caller(role: str) -> User:
    header = request.headers.get("Authorization", "")
    scheme, _, value = header.partition(" ")
    user: User | None = None
    if scheme.lower() == "basic":
        try:
            name, _, key = base64.b64decode(value, validate=True).decode().partition(":")
        except (binascii.Error, UnicodeDecodeError):
            raise ApiError(401, "Malformed Basic credentials") from None
        user = user_for_key(key)
        if user is not None and user.id != name:
            user = None
    elif scheme.lower() in ("token", "bearer"):
        user = user_for_key(value)
    if user is None:
        raise ApiError(
            401, "Authentication required: HTTP Basic (user, API key) or Authorization: token <key>"
        )
    allowed = {READ, WRITE} if role == READ else {WRITE}
    if not (user.is_sysadmin or allowed & user.roles):
        raise ApiError(403, f"User {user.id} lacks the role {role}")
    return user
