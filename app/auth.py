"""Who is calling: each API reads the caller's key from its own headers."""

from __future__ import annotations

from .identity import User
from .limits import authentication_failed
from .services import services


def user_for_key(key: str | None) -> User | None:
    """The key's user; None for no key or an unknown one (which counts against the
    caller's address: see ``limits``)."""
    key = key.strip() if key else None
    user = services().users.authenticate(key)
    if key and user is None:
        authentication_failed()
    return user
