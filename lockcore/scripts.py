"""Loading of the Lua scripts in ``lua/`` and the one typed method per script.

This is the only module that builds KEYS and ARGV. Each file is read once, its
``--!include <file>`` lines replaced by that file's text, and registered on the client
(``register_script``: EVALSHA, falling back to SCRIPT LOAD on NOSCRIPT).

``python -m lockcore.scripts dump DIR`` writes the expanded scripts, ready for EVAL, for
Redis-native consumers in other languages.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Callable
from enum import IntEnum
from functools import cache
from pathlib import Path
from typing import Any, NamedTuple

from .exceptions import (
    InvalidLockRequest,
    LockConflict,
    LockError,
    LockNotFound,
    LockNotOwned,
    UnexpectedReply,
)
from .keys import ScopeKeys

SCRIPT_NAMES = ("acquire", "release", "refresh", "get", "list", "count", "leave", "validate")


def lua_dir() -> Path:
    """The scripts' folder: inside the installed package, else the source tree's ``lua/``."""
    here = Path(__file__).resolve().parent
    for candidate in (here / "lua", here.parent / "lua"):
        if (candidate / "acquire.lua").is_file():
            return candidate
    raise FileNotFoundError(f"lockcore's Lua scripts are missing (looked in {here})")


def expand_includes(text: str, folder: Path) -> str:
    lines = []
    for line in text.splitlines():
        if line.startswith("--!include "):
            lines.append(expand_includes((folder / line.split()[1]).read_text(), folder))
        else:
            lines.append(line)
    return "\n".join(lines) + "\n"


@cache
def source(name: str) -> str:
    """The expanded text of one script."""
    folder = lua_dir()
    return expand_includes((folder / f"{name}.lua").read_text(), folder)


class ReplyCode(IntEnum):
    """First element of every script reply (mirrors the constants in lua/_lib.lua)."""

    OK = 0
    CONFLICT = 1
    NOT_FOUND = 2
    NOT_OWNED = 3
    INVALID = 4


_ERRORS: dict[ReplyCode, type[LockError]] = {
    ReplyCode.CONFLICT: LockConflict,
    ReplyCode.NOT_FOUND: LockNotFound,
    ReplyCode.NOT_OWNED: LockNotOwned,
    ReplyCode.INVALID: InvalidLockRequest,
}


class Reply(NamedTuple):
    """A successful reply: the server's time (ms), how many locks the call found expired,
    and the rest of the array."""

    now_ms: int
    expired: int
    items: list[Any]


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


def check(
    reply: Any,
    script: str,
    scope: str,
    lock_id: str | None = None,
    on_expired: Callable[[int], None] | None = None,
) -> Reply:
    """Turn a raw script reply into a Reply, or raise the error its code stands for.
    ``on_expired`` hears how many locks the call found expired, success or not."""
    from .models import Lock

    try:
        code = ReplyCode(int(reply[0]))
        now_ms, expired = int(reply[1]), int(reply[2])
    except (TypeError, ValueError, IndexError) as exc:
        raise UnexpectedReply(f"{script}.lua replied {reply!r}", scope=scope) from exc
    if expired and on_expired is not None:
        on_expired(expired)
    if code is ReplyCode.OK:
        return Reply(now_ms, expired, list(reply[3:]))
    error = _ERRORS[code]
    holder = Lock.from_record(reply[3], scope, now_ms) if len(reply) > 3 and reply[3] else None
    messages = {
        LockConflict: f"held by {holder.owner} in {scope!r}" if holder else
        f"kept for an earlier waiter in {scope!r}",
        LockNotOwned: f"lock {lock_id} belongs to {holder.owner if holder else '?'}",
        LockNotFound: f"no live lock {lock_id} in {scope!r}",
        InvalidLockRequest: "the expiry is not in the future",
    }
    raise error(messages[error], lock_id=lock_id, scope=scope, holder=holder)


class Scripts:
    """The scripts registered on one client, one method per script."""

    def __init__(self, client: Any, *, event_maxlen: int, retention_ms: int) -> None:
        self._client = client
        self._head = [event_maxlen, retention_ms]
        self._scripts = {name: client.register_script(source(name)) for name in SCRIPT_NAMES}

    def load_all(self) -> list[str]:
        """Load every script on the server (SCRIPT LOAD; all primaries of a Cluster)."""
        for script in self._scripts.values():
            self._client.script_load(script.script)
        return list(SCRIPT_NAMES)

    def _run(self, name: str, keys: ScopeKeys, scope: str, *args: Any) -> Any:
        return self._scripts[name](keys=keys.all, args=[scope, *self._head, *args])

    def acquire(
        self,
        *,
        keys: ScopeKeys,
        scope: str,
        type: str,
        resource: str,
        owner: str,
        mode: str,
        one_per_owner: bool,
        ttl_ms: int,
        max_ttl_ms: int,
        metadata: dict[str, str],
        expires_at_ms: int | None = None,
        ticket: str = "",
        alive_ms: int = 0,
        queue_ms: int = 0,
        request_id: str = "",
        request_ms: int = 0,
    ) -> Any:
        return self._run(
            "acquire", keys, scope, type, resource, owner, mode, int(one_per_owner),
            ttl_ms, max_ttl_ms, json.dumps(metadata), keys.slot + 1,
            "" if expires_at_ms is None else expires_at_ms, ticket, alive_ms, queue_ms,
            request_id, request_ms,
        )

    def leave(self, *, keys: ScopeKeys, scope: str, type: str, resource: str,
              ticket: str) -> Any:
        return self._run("leave", keys, scope, type, resource, ticket)

    def validate(self, keys: ScopeKeys, scope: str, type: str, resource: str,
                 token: int) -> Any:
        return self._run("validate", keys, scope, type, resource, token)

    def release(self, keys: ScopeKeys, scope: str, lock_id: str, owner: str, force: bool) -> Any:
        return self._run("release", keys, scope, lock_id, owner, int(force))

    def refresh(
        self, keys: ScopeKeys, scope: str, lock_id: str, owner: str,
        ttl_ms: int | str | None, force: bool, expires_at_ms: int | None = None,
        metadata: dict[str, str | None] | None = None, replace_metadata: bool = False,
    ) -> Any:
        return self._run("refresh", keys, scope, lock_id, owner,
                         "" if ttl_ms is None else ttl_ms, int(force),
                         "" if expires_at_ms is None else expires_at_ms,
                         "" if metadata is None else json.dumps(metadata),
                         "replace" if replace_metadata else "merge")

    def count(self, keys: ScopeKeys, scope: str) -> Any:
        return self._run("count", keys, scope)

    def get(self, keys: ScopeKeys, scope: str, lock_id: str) -> Any:
        return self._run("get", keys, scope, lock_id)

    def list(
        self, *, keys: ScopeKeys, scope: str, index: str, prefix: str, cursor: str,
        count: int, owner: str, type: str, resource: str,
    ) -> Any:
        return self._run("list", keys, scope, index, prefix, cursor, count, owner, type, resource)


def _dump(folder: str) -> None:
    out = Path(folder)
    out.mkdir(parents=True, exist_ok=True)
    for name in SCRIPT_NAMES:
        (out / f"{name}.lua").write_text(source(name))
        print(out / f"{name}.lua")


if __name__ == "__main__":  # pragma: no cover - a tool for other languages' consumers
    if len(sys.argv) != 3 or sys.argv[1] != "dump":
        sys.exit("usage: python -m lockcore.scripts dump DIR")
    _dump(sys.argv[2])
