"""Who is calling: each API reads the caller's key from its own headers."""

from __future__ import annotations

from .identity import User
from .services import services


def user_for_key(key: str | None) -> User | None:
    return services().users.authenticate(key.strip() if key else None)
