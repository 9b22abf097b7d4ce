"""Who is calling, and whose lock is whose: what every API asks, answered once. Each API
reads the caller's key from its own headers with these."""

from __future__ import annotations

from typing import TypeGuard

from flask import request

from lockcore import Lock

from .identity import User
from .limits import authentication_failed
from .observability import annotate
from .services import services


def bearer(value: str | None) -> str | None:
    """The token of an ``Authorization`` value ``Bearer <token>`` (the scheme in any case),
    or None for no value or another scheme."""
    scheme, _, token = (value or "").strip().partition(" ")
    return token.strip() or None if scheme.lower() == "bearer" else None


def bearer_token() -> str | None:
    """The request's ``Authorization: Bearer <token>``, or None."""
    return bearer(request.environ.get("HTTP_AUTHORIZATION"))


def user_for_key(key: str | None) -> User | None:
    """The key's user; None for no key or an unknown one (which counts against the
    caller's address: see ``limits``)."""
    key = key.strip() if key else None
    user = services().users.authenticate(key)
    if key and user is None:
        authentication_failed()
    elif user is not None:
        annotate(user=user.id)  # for the request's log line
    return user


def held_by_other(lock: Lock | None, user: User) -> TypeGuard[Lock]:
    """Whether ``lock`` exists and someone other than ``user`` holds it."""
    return lock is not None and lock.owner != user.id
