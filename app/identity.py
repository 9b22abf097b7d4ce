"""Users and their API keys, in Redis. Keys are stored only as SHA-256 digests.

Keys are random 256-bit tokens, so a fast hash is enough: nobody can brute-force one.
``<prefix>:{users}:users`` HASH user id -> JSON {id, name, email, roles, key_digests};
``<prefix>:{users}:keys`` HASH key digest -> user id.

A key's *id* is the first 12 hex digits of its digest: safe to show (``lockcore users
list``, ``GET /admin/users``), enough to name the key to revoke. Every change of a user is
one compare-and-set script on both hashes, so concurrent changes never lose a key or
resurrect a revoked one.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import secrets
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from .memo import Memo

SYSADMIN = "sysadmin"
KEY_ID_LENGTH = 12


class UserError(Exception):
    """A user or key operation that cannot be done, with a one-line reason."""


class UserExists(UserError):
    """The user id is taken."""


class UserNotFound(UserError):
    """No user with this id."""


class KeyNotFound(UserError):
    """The user has no such key."""


@dataclass(frozen=True)
class User:
    id: str
    name: str
    email: str = ""
    roles: frozenset[str] = field(default_factory=frozenset)

    @property
    def is_sysadmin(self) -> bool:
        return SYSADMIN in self.roles

    @property
    def label(self) -> str:
        """``Full Name (email)``, as EDX shows a locker."""
        return label(self.name, self.email)


def label(name: str, email: str) -> str:
    """``Full Name (email)``, or the name alone when there is no email."""
    return f"{name} ({email})" if email else name


def digest(key: str) -> str:
    return hashlib.sha256(key.encode()).hexdigest()


def new_key() -> str:
    return "lc_" + secrets.token_urlsafe(32)


def key_id_of(key_digest: str) -> str:
    """The public name of a key: the start of its digest."""
    return key_digest[:KEY_ID_LENGTH]


@dataclass(frozen=True)
class UserRecord:
    """A user as an administrator sees them: never a key, only key ids."""

    user: User
    key_ids: tuple[str, ...]


@dataclass(frozen=True)
class IssuedKey:
    """A new key, visible only once, and its id."""

    user_id: str
    key: str
    key_id: str


# One round trip for every authenticated request: the key's user, then their record.
AUTHENTICATE = """
local user_id = redis.call('HGET', KEYS[1], ARGV[1])
if not user_id then
  return false
end
return redis.call('HGET', KEYS[2], user_id)
"""

SWAP = """
-- Write a user's record if it is still the one the caller read, and map key digests.
-- KEYS[1] users hash, KEYS[2] keys hash (digest -> user id)
-- ARGV[1] user id, ARGV[2] the record read ('' when there was none), ARGV[3] new record,
-- ARGV[4] n: how many digests to add, ARGV[5..4+n] them, ARGV[5+n..] digests to remove
-- Returns 1 when written, 0 when the record changed meanwhile (nothing written).
local current = redis.call('HGET', KEYS[1], ARGV[1])
if (current or '') ~= ARGV[2] then
  return 0
end
redis.call('HSET', KEYS[1], ARGV[1], ARGV[3])
local n = tonumber(ARGV[4])
for i = 5, 4 + n do
  redis.call('HSET', KEYS[2], ARGV[i], ARGV[1])
end
for i = 5 + n, #ARGV do
  if redis.call('HGET', KEYS[2], ARGV[i]) == ARGV[1] then
    redis.call('HDEL', KEYS[2], ARGV[i])
  end
end
return 1
"""


def _user(record: dict[str, Any]) -> User:
    return User(
        record["id"], record["name"], record.get("email", ""), frozenset(record.get("roles", []))
    )


def _user_record(record: dict[str, Any]) -> UserRecord:
    return UserRecord(_user(record), tuple(key_id_of(d) for d in record.get("key_digests", [])))


def _record(user: User, digests: list[str]) -> str:
    return json.dumps(
        {
            "id": user.id,
            "name": user.name,
            "email": user.email,
            "roles": sorted(user.roles),
            "key_digests": digests,
        }
    )


class Users:
    """Users and keys in Redis. ``authenticate`` may remember the users of keys it has
    accepted for ``cache_ttl`` seconds (0, the default: it reads Redis every time): then a
    key revoked or a user changed elsewhere (another process, the CLI) takes effect here
    within ``cache_ttl`` seconds, and a change made through this object at once. Unknown
    and revoked keys are never remembered: a new key works at once, and every failure is
    read from Redis."""

    #: Keys remembered at most (then the memory starts again).
    def __init__(
        self,
        client: Any,
        prefix: str,
        *,
        cache_ttl: float = 0.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.client = client
        self.users_key = f"{prefix}:{{users}}:users"
        self.keys_key = f"{prefix}:{{users}}:keys"
        self._authenticate = client.register_script(AUTHENTICATE)
        self._swap = client.register_script(SWAP)
        self.cache_ttl = cache_ttl
        self.clock = clock
        self._memo: Memo[str, User] = Memo()

    def forget(self) -> None:
        """Drop every remembered key (called after each change made here)."""
        self._memo.forget()

    def _change(
        self,
        user_id: str,
        change: Callable[[dict[str, Any] | None], tuple[str, list[str], list[str]]],
    ) -> None:
        """Apply ``change`` (record read, or None -> new record, digests to add, digests to
        remove) atomically, reading again whenever someone else changed the user first."""
        while True:
            raw = self.client.hget(self.users_key, user_id)
            current = raw.decode() if isinstance(raw, bytes) else (raw or "")
            record, added, removed = change(json.loads(current) if current else None)
            if self._swap(
                keys=[self.users_key, self.keys_key],
                args=[user_id, current, record, len(added), *added, *removed],
            ):
                self.forget()
                return

    def put(self, user: User, key: str | None = None) -> None:
        """Create or update a user, keeping their keys; with ``key``, add that API key."""
        added = [digest(key)] if key is not None else []

        def change(old: dict[str, Any] | None) -> tuple[str, list[str], list[str]]:
            digests = list(old["key_digests"]) if old else []
            return _record(user, digests + [d for d in added if d not in digests]), added, []

        self._change(user.id, change)

    def create(self, user: User) -> IssuedKey:
        """Add a new user with a first API key; UserExists if the id is taken."""
        key = new_key()

        def change(old: dict[str, Any] | None) -> tuple[str, list[str], list[str]]:
            if old is not None:
                raise UserExists(f"user {user.id!r} already exists")
            return _record(user, [digest(key)]), [digest(key)], []

        self._change(user.id, change)
        return IssuedKey(user.id, key, key_id_of(digest(key)))

    def issue_key(self, user_id: str) -> IssuedKey:
        """A new API key for an existing user; the only time it is visible."""
        key = new_key()

        def change(old: dict[str, Any] | None) -> tuple[str, list[str], list[str]]:
            if old is None:
                raise UserNotFound(f"no user {user_id!r}")
            return (_record(_user(old), [*old["key_digests"], digest(key)]), [digest(key)], [])

        self._change(user_id, change)
        return IssuedKey(user_id, key, key_id_of(digest(key)))

    def add_key(self, user_id: str) -> str:
        """Issue a new API key to an existing user; the only time it is visible."""
        return self.issue_key(user_id).key

    def revoke(
        self,
        user_id: str,
        *,
        key_id: str | None = None,
        key: str | None = None,
        every: bool = False,
    ) -> list[str]:
        """Revoke one key, named by its id or by the key itself, or ``every`` key of the
        user; returns the ids of the keys revoked. They stop authenticating at once."""
        wanted = digest(key) if key is not None else None
        revoked: list[str] = []

        def change(old: dict[str, Any] | None) -> tuple[str, list[str], list[str]]:
            if old is None:
                raise UserNotFound(f"no user {user_id!r}")
            digests: list[str] = old["key_digests"]
            gone = [
                d
                for d in digests
                if every or d == wanted or (key_id is not None and key_id_of(d) == key_id)
            ]
            if not gone and not every:
                raise KeyNotFound(
                    f"user {user_id!r} has no key "
                    f"{key_id if key_id is not None else '(the one given)'}"
                )
            revoked[:] = [key_id_of(d) for d in gone]
            return (_record(_user(old), [d for d in digests if d not in gone]), [], gone)

        self._change(user_id, change)
        return revoked

    def get(self, user_id: str) -> User | None:
        raw = self.client.hget(self.users_key, user_id)
        return None if raw is None else _user(json.loads(raw))

    def record(self, user_id: str) -> UserRecord | None:
        raw = self.client.hget(self.users_key, user_id)
        return None if raw is None else _user_record(json.loads(raw))

    def records(self) -> list[UserRecord]:
        """Every user with their key ids, by id."""
        out = [_user_record(json.loads(raw)) for raw in self.client.hvals(self.users_key)]
        return sorted(out, key=lambda rec: rec.user.id)

    def all(self) -> list[User]:
        return [rec.user for rec in self.records()]

    def exist(self) -> bool:
        """Whether any user (or key) is stored."""
        return bool(self.client.exists(self.users_key, self.keys_key))

    def authenticate(self, key: str | None) -> User | None:
        """The user owning this API key, or None."""
        if not key:
            return None
        wanted = digest(key)
        return self._memo.fetch(wanted, lambda: self._lookup(wanted), self.cache_ttl, self.clock)

    def _lookup(self, wanted: str) -> User | None:
        raw = self._authenticate(keys=[self.keys_key, self.users_key], args=[wanted])
        if not raw:
            return None
        r = json.loads(raw)
        if not any(hmac.compare_digest(wanted, d) for d in r.get("key_digests", [])):
            return None
        return _user(r)
