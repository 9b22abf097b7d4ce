"""Users and their API keys, in Redis. Keys are stored only as SHA-256 digests.

Keys are random 256-bit tokens, so a fast hash is enough: nobody can brute-force one.
``<prefix>:{users}:users`` HASH user id -> JSON {id, name, email, roles, key_digests};
``<prefix>:{users}:keys`` HASH key digest -> user id.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import secrets
from dataclasses import dataclass, field
from typing import Any

SYSADMIN = "sysadmin"


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
        return f"{self.name} ({self.email})" if self.email else self.name


def digest(key: str) -> str:
    return hashlib.sha256(key.encode()).hexdigest()


def new_key() -> str:
    return "lc_" + secrets.token_urlsafe(32)


# One round trip for every authenticated request: the key's user, then their record.
AUTHENTICATE = """
local user_id = redis.call('HGET', KEYS[1], ARGV[1])
if not user_id then
  return false
end
return redis.call('HGET', KEYS[2], user_id)
"""


class Users:
    def __init__(self, client: Any, prefix: str) -> None:
        self.client = client
        self.users_key = f"{prefix}:{{users}}:users"
        self.keys_key = f"{prefix}:{{users}}:keys"
        self._authenticate = client.register_script(AUTHENTICATE)

    def put(self, user: User, key: str | None = None) -> None:
        """Create or update a user; with ``key``, add that API key to them."""
        raw = self.client.hget(self.users_key, user.id)
        digests = json.loads(raw)["key_digests"] if raw else []
        pipe = self.client.pipeline(transaction=True)
        if key is not None:
            digests.append(digest(key))
            pipe.hset(self.keys_key, digest(key), user.id)
        record = {"id": user.id, "name": user.name, "email": user.email,
                  "roles": sorted(user.roles), "key_digests": digests}
        pipe.hset(self.users_key, user.id, json.dumps(record))
        pipe.execute()

    def add_key(self, user_id: str) -> str:
        """Issue a new API key to an existing user; the only time it is visible."""
        user = self.get(user_id)
        if user is None:
            raise KeyError(user_id)
        key = new_key()
        self.put(user, key)
        return key

    def get(self, user_id: str) -> User | None:
        raw = self.client.hget(self.users_key, user_id)
        if raw is None:
            return None
        r = json.loads(raw)
        return User(r["id"], r["name"], r.get("email", ""), frozenset(r.get("roles", [])))

    def all(self) -> list[User]:
        users = []
        for raw in self.client.hvals(self.users_key):
            r = json.loads(raw)
            users.append(User(r["id"], r["name"], r.get("email", ""),
                              frozenset(r.get("roles", []))))
        return sorted(users, key=lambda u: u.id)

    def authenticate(self, key: str | None) -> User | None:
        """The user owning this API key, or None."""
        if not key:
            return None
        wanted = digest(key)
        raw = self._authenticate(keys=[self.keys_key, self.users_key], args=[wanted])
        if not raw:
            return None
        r = json.loads(raw)
        if not any(hmac.compare_digest(wanted, d) for d in r.get("key_digests", [])):
            return None
        return User(r["id"], r["name"], r.get("email", ""), frozenset(r.get("roles", [])))
