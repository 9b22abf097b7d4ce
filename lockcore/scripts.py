"""The scripts in ``lua/`` and lockcore's pure core: building each script call (KEYS and
ARGV) and reading its reply, with no I/O, shared by ``LockManager`` and
``AsyncLockManager``.

This is the only module that knows the scripts' calling conventions. Each script is
``lua/_lib.lua`` followed by the script's own file (its ``--!include`` line dropped).
``python -m lockcore.scripts dump DIR`` writes the expanded scripts, ready for EVAL, for
Redis-native consumers in other languages.
"""

from __future__ import annotations

import hashlib
import inspect
import math
import re
import sys
from collections.abc import Callable, Iterable, Mapping, Sequence
from enum import IntEnum
from functools import cache, lru_cache
from pathlib import Path
from typing import Any, NamedTuple

import redis
from redis.exceptions import NoScriptError

from .exceptions import (
    InvalidLockRequest,
    LockConflict,
    LockError,
    LockNotFound,
    LockNotOwned,
    UnexpectedReply,
)
from .keys import SEQ_DIGITS, ScopeKeys, check_prefix, decode, directory_key, encode, slot_of_id
from .models import (
    NO_METADATA,
    AcquireResult,
    Lock,
    LockPage,
    LockType,
    Mode,
    ScopeStats,
    encode_metadata,
    metadata_view,
)
from .wire import Wire

SCRIPT_NAMES = (
    "acquire",
    "release",
    "refresh",
    "get",
    "list",
    "leave",
    "validate",
    "count",
    "acquire_all",
    "release_all",
    "stats",
)


def lua_dir() -> Path:
    """The scripts' folder: inside the installed package, else the source tree's ``lua/``."""
    here = Path(__file__).resolve().parent
    for candidate in (here / "lua", here.parent / "lua"):
        if (candidate / "acquire.lua").is_file():
            return candidate
    raise FileNotFoundError(f"lockcore's Lua scripts are missing (looked in {here})")


@cache
def source(name: str) -> str:
    """One script, ready for EVAL/EVALSHA (see the header of ``lua/_lib.lua``): the state
    part of ``_lib.lua``, ``begin()``, then the script's body with the helpers part of
    ``_lib.lua`` at its ``--!helpers`` line (or at its start; not at all with a line
    ``--!no-helpers``), and the helpers' first part (the hand-off's, down to
    ``--!waking-end``) at any ``--!waking`` line."""
    folder = lua_dir()
    state, helpers = (folder / "_lib.lua").read_text().split("--!helpers\n", 1)
    waking = helpers.split("--!waking-end\n", 1)[0]
    body = [
        waking if line.strip() == "--!waking" else line
        for line in (folder / f"{name}.lua").read_text().splitlines()
        if not line.startswith("--!include ")
    ]
    before: list[str] = []
    if any(line.startswith("--!no-helpers") for line in body):
        helpers = ""
    elif "--!helpers" in body:
        at = body.index("--!helpers")
        before, body = body[:at], body[at + 1 :]
    return "\n".join([state, "begin()", *before, helpers, *body, ""])


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


#: acquire's ARGV[5..16] when left off (see lua/acquire.lua); ARGV[1..4] always sent.
_ACQUIRE_DEFAULTS: list[Any] = [
    "",
    "",
    "",
    "",
    "",
    0,
    "",
    604_800_000,
    5,
    "",
    1000,
    "",
    "",
    "",
    "",
    "",
]

#: refresh's ARGV[9..11] when left off (see lua/refresh.lua).
_REFRESH_DEFAULTS: list[Any] = [604_800_000, "", 1000]
#: release's ARGV[3..8] when left off (see lua/release.lua).
_RELEASE_DEFAULTS: list[Any] = ["", "", 604_800_000, 5, "", 1000]


class Call(NamedTuple):
    """One script call: which script, its KEYS, its ARGV; ``scope`` (raw name, None when
    only the id is known) and ``lock_id`` for reading the reply."""

    script: str
    keys: list[str]
    args: list[Any]
    scope: str | None = None
    lock_id: str | None = None
    #: acquire: (type, resource, owner) as asked, to read the short reply
    asked: tuple[str, str, str] | None = None


class Reply(NamedTuple):
    now_ms: int
    expired: int
    items: list[Any]


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


def _ms(seconds: float) -> int:
    """The one place seconds become the milliseconds Redis works in."""
    return max(1, math.ceil(seconds * 1000))


def _positive(value: Any, what: str) -> float:
    if not isinstance(value, (int, float)) or isinstance(value, bool) or not value > 0:
        raise InvalidLockRequest(f"{what} must be a positive number of seconds, got {value!r}")
    return float(value)


def _instant_ms(instant: float | None) -> int | None:
    if instant is None:
        return None
    if (
        not isinstance(instant, (int, float))
        or isinstance(instant, bool)
        or not (0 < instant < math.inf)
    ):
        raise InvalidLockRequest(f"expires_at must be seconds since the epoch, got {instant!r}")
    return math.ceil(instant * 1000)


_REQUEST_ID = re.compile(r"[A-Za-z0-9_.-]{1,128}")


def check_request_id(request_id: Any) -> str:
    if not isinstance(request_id, str) or not _REQUEST_ID.fullmatch(request_id):
        raise InvalidLockRequest(
            f"request_id must be 1-128 of A-Z a-z 0-9 - _ ., got {request_id!r}"
        )
    return request_id


def _name(label: str, value: Any) -> str:
    """A name's encoded form; refuses what has none (not a string, empty, a lone
    surrogate: Redis stores bytes)."""
    if not isinstance(value, str) or not value:
        raise InvalidLockRequest(f"{label} must be a non-empty string, got {value!r}")
    try:
        return encode(value)
    except UnicodeEncodeError:
        raise InvalidLockRequest(
            f"{label} must be valid Unicode text (no lone surrogates), got {value!r}"
        ) from None


def _metadata(metadata: Mapping[str, Any] | None, none_allowed: bool = False) -> str:
    if not metadata:
        return ""
    clean = {
        str(key): None if (value is None and none_allowed) else str(value)
        for key, value in metadata.items()
    }
    try:
        return encode_metadata(clean)
    except UnicodeEncodeError:  # say which part cannot be stored
        for key, text in clean.items():
            for label, part in (("metadata key", key), (f"metadata[{key!r}]", text or "")):
                try:
                    part.encode()
                except UnicodeEncodeError:
                    raise InvalidLockRequest(
                        f"{label} must be valid Unicode text (no lone surrogates), got {part!r}"
                    ) from None
        raise


def _token(lock_id: Any) -> tuple[int, str]:
    """(slot, token) of a lock id, or LockNotFound."""
    slot = slot_of_id(lock_id) if isinstance(lock_id, str) else None
    if slot is None:
        raise LockNotFound(f"{lock_id!r} is not a lock id", lock_id=str(lock_id))
    return slot, str(int(lock_id[-SEQ_DIGITS:]))


class Core:
    """What both managers share: configuration, validation, script calls, replies."""

    def __init__(
        self,
        types: Iterable[LockType] | Mapping[str, LockType],
        *,
        prefix: str,
        event_maxlen: int,
        retention: float,
        heartbeat: float,
        request_ttl: float,
        handoff: float,
    ) -> None:
        values = types.values() if isinstance(types, Mapping) else types
        self.types: dict[str, LockType] = {t.name: t for t in values}
        self.prefix = check_prefix(prefix)
        self.heartbeat = heartbeat
        self.event_maxlen = int(event_maxlen)
        self.retention_ms = _ms(retention)
        self.request_ms = _ms(request_ttl)
        self.handoff_ms = max(0, math.ceil(handoff * 1000))
        self._keys = lru_cache(maxsize=4096)(self._scope_keys)
        self._tails: dict[str, list[Any]] = {}
        self._events = any(t.events for t in self.types.values())

    # -- names -----------------------------------------------------------------------

    def _scope_keys(self, scope: str) -> ScopeKeys:
        try:
            return ScopeKeys.for_scope(self.prefix, scope)
        except (ValueError, UnicodeEncodeError) as exc:
            raise InvalidLockRequest(f"bad scope: {exc}") from exc

    def keys(self, scope: str) -> ScopeKeys:
        return self._keys(scope)

    def lock_type(self, name: str) -> LockType:
        try:
            return self.types[name]
        except (KeyError, TypeError):
            known = ", ".join(sorted(self.types)) or "none"
            raise InvalidLockRequest(f"unknown lock type {name!r} (known: {known})") from None

    def _ttl_ms(self, lock_type: LockType, ttl: float | None) -> int:
        """Milliseconds for a requested ttl; 0 stands for no expiry."""
        if ttl is None:
            ttl = lock_type.default_ttl if lock_type.default_ttl is not None else math.inf
        _positive(ttl, "ttl")
        if ttl == math.inf:
            if not lock_type.allow_no_expiry:
                raise InvalidLockRequest(f"locks of type {lock_type.name!r} must expire")
            return 0
        if lock_type.max_ttl is not None:
            ttl = min(ttl, lock_type.max_ttl)
        return _ms(ttl)

    # -- acquire ---------------------------------------------------------------------

    def _tail(self, lock_type: LockType) -> list[Any]:
        """acquire's ARGV[5..11] for a lock of this type without metadata or absolute
        expiry, with the trailing defaults left off (events: the id prefix is added)."""
        tail = self._tails.get(lock_type.name)
        if tail is None:
            tail = [
                "",
                0 if lock_type.max_ttl is None else _ms(lock_type.max_ttl),
                "",
                self.retention_ms,
                self.handoff_ms,
                "",
                self.event_maxlen,
            ]
            while tail and tail[-1] == _ACQUIRE_DEFAULTS[len(tail) + 3]:
                tail.pop()
            self._tails[lock_type.name] = tail
        return tail

    def acquire(
        self,
        scope: str,
        type: str,
        resource: str,
        owner: str,
        *,
        ttl: float | None,
        metadata: Mapping[str, str] | None,
        expires_at: float | None,
        request_id: str | None,
        shared: bool = False,
    ) -> Call:
        lock_type = self.types.get(type) if isinstance(type, str) else None
        if lock_type is None:
            lock_type = self.lock_type(type)
        if shared and not lock_type.read_write:
            raise InvalidLockRequest(f"lock type {lock_type.name!r} has no shared locks")
        keys = self._keys(scope)
        field = f"{encode(type)}:{_name('resource', resource)}"
        args: list[Any] = [
            field,
            _name("owner", owner),
            self._ttl_ms(lock_type, ttl if expires_at is None else None),
            lock_type.flags + "s" if shared else lock_type.flags,
        ]
        # ARGV[5..16] (see lua/acquire.lua), with the trailing defaults left off.
        meta = _metadata(metadata) if metadata else ""
        if (
            not meta
            and expires_at is None
            and request_id is None
            and not lock_type.events
            and not lock_type.max_holders
        ):
            args += self._tail(lock_type)
        else:
            at = _instant_ms(expires_at)
            args += [
                meta,
                0 if lock_type.max_ttl is None else _ms(lock_type.max_ttl),
                "" if at is None else at,
                self.retention_ms,
                self.handoff_ms,
                keys.id_prefix if lock_type.events else "",
                self.event_maxlen,
            ]
            if request_id is not None:
                args += ["", "", "", check_request_id(request_id), self.request_ms]
            if lock_type.max_holders:  # ARGV[17]
                args += _ACQUIRE_DEFAULTS[len(args) :]
                args.append(lock_type.max_holders)
            elif request_id is None:
                while len(args) > 4 and args[-1] == _ACQUIRE_DEFAULTS[len(args) - 1]:
                    args.pop()
        return Call(
            "acquire", [keys.locks, keys.directory], args, scope, asked=(type, resource, owner)
        )

    def waiting(self, call: Call, ticket: str, since_ms: int | None, alive_ms: int) -> Call:
        """The same acquire, from a waiter in line."""
        args = list(call.args)
        args += _ACQUIRE_DEFAULTS[len(args) : 11]
        args[11:14] = [ticket, "" if since_ms is None else since_ms, alive_ms]
        return call._replace(args=args)

    def acquired(
        self, raw: Any, call: Call, on_expired: Callable[[int], None] | None = None
    ) -> AcquireResult:
        scope = call.scope or ""
        reply = self.check(raw, call, on_expired)
        prefix = self.keys(scope).id_prefix
        if len(reply.items) == 1:
            return self._made(call, int(reply.items[0]), reply.now_ms, prefix)
        token, record, created, rtoken, rrecord = reply.items[:5]
        replaced = (
            Lock.from_record(rtoken, rrecord, scope, reply.now_ms, prefix)
            if _text(rtoken)
            else None
        )
        return AcquireResult(
            lock=Lock.from_record(token, record, scope, reply.now_ms, prefix),
            replaced=replaced,
            created=bool(int(created)),
        )

    def acquire_all(
        self,
        scope: str,
        type: str,
        resources: Sequence[str],
        owner: str,
        *,
        ttl: float | None,
        metadata: Mapping[str, str] | None,
    ) -> Call:
        """A multi-lock: locks of one exclusive type on several resources of one scope."""
        lock_type = self.lock_type(type)
        if lock_type.mode is not Mode.EXCLUSIVE or lock_type.one_per_owner:
            raise InvalidLockRequest(
                f"lock type {type!r}: a multi-lock needs an exclusive type, not one per owner"
            )
        if isinstance(resources, str) or not resources:
            raise InvalidLockRequest("a multi-lock needs a list of one or more resources")
        fields = [f"{encode(type)}:{_name('resource', r)}" for r in resources]
        if len(set(fields)) != len(fields):
            raise InvalidLockRequest("a multi-lock names each resource once")
        keys = self._keys(scope)
        args: list[Any] = [
            _name("owner", owner),
            self._ttl_ms(lock_type, ttl),
            lock_type.flags,
            _metadata(metadata) if metadata else "",
            0 if lock_type.max_ttl is None else _ms(lock_type.max_ttl),
            self.retention_ms,
            keys.id_prefix if lock_type.events else "",
            self.event_maxlen,
            *fields,
        ]
        return Call("acquire_all", [keys.locks, keys.directory], args, scope)

    def acquired_all(
        self, raw: Any, call: Call, on_expired: Callable[[int], None] | None = None
    ) -> list[AcquireResult]:
        scope = call.scope or ""
        reply = self.check(raw, call, on_expired)
        prefix = self.keys(scope).id_prefix
        items = reply.items
        return [
            AcquireResult(
                lock=Lock.from_record(items[i], items[i + 1], scope, reply.now_ms, prefix),
                replaced=None,
                created=bool(int(items[i + 2])),
            )
            for i in range(0, len(items), 3)
        ]

    def release_all(self, scope: str, locks: Sequence[Lock], owner: str, force: bool) -> Call:
        """The locks of a multi-lock (all of ``scope``), released together."""
        keys = self._keys(scope)
        if any(lock.scope != scope for lock in locks):
            raise InvalidLockRequest(f"a multi-lock's locks are all in one scope ({scope!r})")
        events = any(self.lock_type(lock.type).events for lock in locks if lock.type in self.types)
        args: list[Any] = [
            _name("owner", owner),
            int(bool(force)),
            self.retention_ms,
            self.handoff_ms,
            keys.id_prefix if events else "",
            self.event_maxlen,
            *(lock.fencing_token for lock in locks),
        ]
        return Call("release_all", [keys.locks], args, scope)

    def released_all(self, raw: Any, call: Call) -> int:
        return int(self.check(raw, call).items[0])

    def leave(self, call: Call, ticket: str) -> Call:
        args = [call.args[0], ticket, self.handoff_ms]
        idp = call.args[9] if len(call.args) > 9 else ""
        if idp:  # events: the id prefix and the stream's length, for a released grant
            args += [idp, call.args[10] if len(call.args) > 10 else _ACQUIRE_DEFAULTS[10]]
        return Call("leave", call.keys[:1], args, call.scope)

    def granted(self, signal: Any, call: Call) -> AcquireResult | None:
        """The lock a waiter's wake-up signal grants it (``g <token> <now ms> <record>``,
        made by the release; see wake() in lua/_lib.lua), or None for a plain wake-up."""
        text = _text(signal)
        if not text.startswith("g "):
            return None
        # Made from the waiter's own request, so exactly as asked: the call says the rest.
        _, token, now, _record = text.split(" ", 3)
        return self._made(call, int(token), int(now), self.keys(call.scope or "").id_prefix)

    @staticmethod
    def _made(call: Call, token: int, now: int, prefix: str) -> AcquireResult:
        """A new lock made exactly as ``call`` asked (its record is the call's arguments):
        acquire's short reply, and a grant."""
        type_, resource, owner = call.asked  # type: ignore[misc]
        ttl_ms = int(call.args[2])
        meta = call.args[4] if len(call.args) > 4 else ""
        lock = Lock._made(
            {
                "id": f"{prefix}{token:0{SEQ_DIGITS}d}",
                "scope": call.scope or "",
                "type": type_,
                "resource": resource,
                "owner": owner,
                "fencing_token": token,
                "acquired_at": now / 1000,
                "expires_at": (now + ttl_ms) / 1000 if ttl_ms else None,
                "metadata": metadata_view(meta) if meta else NO_METADATA,
                "as_of": now / 1000,
                "updated_at": now / 1000,
            }
        )
        return AcquireResult(lock=lock, replaced=None, created=True)

    def requested_key(self, scope: str, request_id: str) -> str:
        return self.keys(scope).request(check_request_id(request_id))

    def requested_id(self, scope: str, raw: Any) -> str:
        """The lock id in a request key's value (``<token>:<created>``)."""
        token = _text(raw).split(":", 1)[0]
        return f"{self.keys(scope).id_prefix}{int(token):0{SEQ_DIGITS}d}"

    # -- by id -----------------------------------------------------------------------

    def _by_id(
        self, script: str, lock: str | Lock, scope: str | None, args: Callable[[str], list[Any]]
    ) -> Call:
        """A call of a script that takes a lock id; ``args(id_prefix)`` gives the rest of
        its ARGV."""
        if isinstance(lock, Lock):
            # The lock says where it is: no id to parse, no directory lookup.
            keys = self.keys(lock.scope)
            return Call(
                script,
                [keys.directory],
                [str(lock.fencing_token), keys.scope, *args(keys.id_prefix)],
                lock.scope,
                lock.id,
            )
        lock_id = lock
        slot, token = _token(lock_id)
        encoded = ""
        if scope is not None:
            keys = self.keys(scope)
            if keys.slot != slot:
                raise LockNotFound(
                    f"no live lock {lock_id} in {scope!r}", lock_id=lock_id, scope=scope
                )
            encoded = keys.scope
        return Call(
            script,
            [directory_key(self.prefix, slot)],
            [token, encoded, *args(str(slot + 1))],
            scope,
            lock_id,
        )

    def release(
        self,
        lock: str | Lock,
        owner: str,
        force: bool,
        scope: str | None,
        scope_prefix: str | None = None,
    ) -> Call:
        owner_enc = _name("owner", owner)

        def args(idp: str) -> list[Any]:
            # ARGV[3..8] (see lua/release.lua), with the trailing defaults left off.
            given = [
                owner_enc,
                int(bool(force)),
                self.retention_ms,
                self.handoff_ms,
                idp if self._events else "",
                self.event_maxlen,
            ]
            while len(given) > 2 and given[-1] == _RELEASE_DEFAULTS[len(given) - 1]:
                given.pop()
            return given

        call = self._by_id("release", lock, scope, args)
        if scope_prefix is not None and scope is None and not isinstance(lock, Lock):
            # Found in the slot's directory, and only in a scope that has the prefix.
            # ("*" is never part of an encoded name.)
            prefix = encode(scope_prefix) if scope_prefix else ""
            call.args[1] = prefix + "*"
        return call

    def refresh(
        self,
        lock: str | Lock,
        owner: str,
        ttl: float | None,
        force: bool,
        expires_at: float | None,
        metadata: Mapping[str, str | None] | None,
        replace_metadata: bool,
        scope: str | None = None,
    ) -> Call:
        ttl_arg: int | str = ""
        if metadata is not None and ttl is None and expires_at is None:
            ttl_arg = "keep"
        if ttl is not None:
            if _positive(ttl, "ttl") == math.inf:
                raise InvalidLockRequest(f"ttl must be a positive number of seconds, got {ttl!r}")
            ttl_arg = _ms(ttl)
        at = _instant_ms(expires_at)
        meta = "" if metadata is None else _metadata(metadata, none_allowed=True)
        if metadata is not None and not meta and replace_metadata:
            meta = "&"  # an empty replacement: no pairs, but not "unchanged"
        owner_enc = _name("owner", owner)

        def args(idp: str) -> list[Any]:
            # ARGV[3..11] (see lua/refresh.lua), with the trailing defaults left off.
            given = [
                owner_enc,
                int(bool(force)),
                ttl_arg,
                "" if at is None else at,
                meta,
                "replace" if replace_metadata else "merge",
                self.retention_ms,
                idp if self._events else "",
                self.event_maxlen,
            ]
            while len(given) > 6 and given[-1] == _REFRESH_DEFAULTS[len(given) - 7]:
                given.pop()
            return given

        return self._by_id("refresh", lock, scope, args)

    def get(self, lock_id: str) -> Call:
        return self._by_id("get", lock_id, None, lambda idp: [])

    def one(self, raw: Any, call: Call, on_expired: Callable[[int], None] | None = None) -> Lock:
        """The lock in a reply of release, refresh or get."""
        reply = self.check(raw, call, on_expired)
        return self._lock(reply, reply.items[0], reply.items[1], reply.items[2], call)

    def _lock(self, reply: Reply, token: Any, record: Any, scope_enc: Any, call: Call) -> Lock:
        scope = call.scope if call.scope is not None else decode(_text(scope_enc))
        # Ids of one slot share their prefix (slot + 1): that of the id asked about.
        prefix = call.lock_id[:-SEQ_DIGITS] if call.lock_id else self.keys(scope).id_prefix
        return Lock.from_record(token, record, scope, reply.now_ms, prefix)

    # -- reads -----------------------------------------------------------------------

    def validate(self, scope: str, type: str, resource: str, token: int) -> Call:
        keys = self.keys(scope)
        if not isinstance(token, int) or isinstance(token, bool):
            token = int(token)
        return Call(
            "validate",
            [keys.locks],
            [f"{_name('type', type)}:{_name('resource', resource)}", token],
            scope,
        )

    def count(self, scope: str) -> Call:
        return Call("count", [self.keys(scope).locks], [], scope)

    def stats(self, scope: str, take_expired: bool = False) -> Call:
        """The scope's live locks and waiters by type, its expired locks removed (see
        lua/stats.lua): one call reads the whole scope."""
        keys = self.keys(scope)
        args: list[Any] = [
            keys.id_prefix if self._events else "",
            self.event_maxlen,
            self.retention_ms,
            self.handoff_ms,
        ]
        if take_expired:
            args.append(1)
        return Call("stats", [keys.locks], args, scope)

    def scope_stats(
        self, raw: Any, call: Call, on_expired: Callable[[int], None] | None = None
    ) -> ScopeStats:
        reply = self.check(raw, call, on_expired)
        held, gone, lines = (
            [_text(v) for v in part] if isinstance(part, list) else [] for part in reply.items[:3]
        )

        def counts(flat: list[str]) -> dict[str, int]:
            return {decode(flat[i]): int(flat[i + 1]) for i in range(0, len(flat), 2)}

        waiters: dict[tuple[str, str], int] = {}
        for i in range(0, len(lines), 2):
            type_, _, resource = lines[i].partition(":")
            if int(lines[i + 1]):
                waiters[(decode(type_), decode(resource))] = int(lines[i + 1])
        return ScopeStats(
            held=counts(held), expired=counts(gone), waiters=waiters, as_of=reply.now_ms / 1000
        )

    def list(
        self,
        scope: str,
        *,
        owner: str | None = None,
        type: str | None = None,
        resource: str | None = None,
        cursor: str | None = None,
        limit: int = 100,
    ) -> Call:
        if not isinstance(limit, int) or isinstance(limit, bool) or not 1 <= limit <= 10_000:
            raise InvalidLockRequest(f"limit must be an integer in 1..10000, got {limit!r}")
        keys = self.keys(scope)
        try:
            e_owner, e_type, e_res = (
                encode(n) if n is not None else "" for n in (owner, type, resource)
            )
        except (ValueError, UnicodeEncodeError) as exc:
            raise InvalidLockRequest(str(exc)) from exc
        lock_type = self.types.get(type) if type is not None else None
        how, arg = "h", ""
        if lock_type is not None and lock_type.mode is Mode.EXCLUSIVE and resource is not None:
            how, arg = "p", f"{e_type}:{e_res}"
        elif owner is not None and (
            lock_type.index_owner
            if lock_type is not None
            else (bool(self.types) and all(t.index_owner for t in self.types.values()))
        ):
            how = "o"
            arg = f"{e_owner}:" + (f"{e_type}:" if type is not None else "")
        elif lock_type is not None and lock_type.mode is Mode.MULTI:
            how = "r"
            arg = f"{e_type}:" + (f"{e_res}:" if resource is not None else "")
        return Call(
            "list", [keys.locks], [how, arg, cursor or "", limit, e_owner, e_type, e_res], scope
        )

    def page(self, raw: Any, call: Call) -> LockPage:
        reply = self.check(raw, call)
        cursor, *flat = reply.items
        scope = call.scope or ""
        prefix = self.keys(scope).id_prefix
        locks = tuple(
            Lock.from_record(flat[i], flat[i + 1], scope, reply.now_ms, prefix)
            for i in range(0, len(flat), 2)
        )
        return LockPage(locks=locks, cursor=_text(cursor) or None)

    # -- replies ---------------------------------------------------------------------

    def check(self, raw: Any, call: Call, on_expired: Callable[[int], None] | None = None) -> Reply:
        """A raw reply as a Reply, or the error its code stands for."""
        scope = call.scope
        try:
            code = raw[0]
            now_ms, expired = int(raw[1]), int(raw[2])
            if code != 0:
                code = ReplyCode(int(code))
        except (TypeError, ValueError, IndexError) as exc:
            raise UnexpectedReply(f"{call.script}.lua replied {raw!r}", scope=scope) from exc
        if expired and on_expired is not None:
            on_expired(expired)
        if code == 0:
            return Reply(now_ms, expired, list(raw[3:]))
        reply = Reply(now_ms, expired, list(raw[3:]))
        holder = None
        if len(raw) > 4 and _text(raw[3]):
            holder = self._lock(reply, raw[3], raw[4], raw[5] if len(raw) > 5 else "", call)
        where = f" in {scope!r}" if scope is not None else ""
        error = _ERRORS[code]
        messages = {
            LockConflict: f"held by {holder.owner}{where}"
            if holder
            else f"kept for an earlier waiter{where}",
            LockNotOwned: f"lock {call.lock_id} belongs to {holder.owner if holder else '?'}",
            LockNotFound: f"no live lock {call.lock_id}{where}"
            if call.lock_id
            else f"no live lock{where}",
            InvalidLockRequest: "the expiry is not in the future",
        }
        raise error(
            messages[error],
            lock_id=call.lock_id,
            scope=scope if scope is not None else (holder.scope if holder else None),
            holder=holder,
            now_ms=now_ms,
        )


@cache
def library() -> tuple[str, str]:
    """(name, code) of the scripts as one Redis 7 FUNCTION library: ``_lib.lua`` once, and
    each script's body as a function ``<name>_<script>``. Its helpers are made once, when
    the library loads, not at every call as under EVALSHA. The name carries a digest of
    the code, so processes of two lockcore versions each call their own."""
    folder = lua_dir()
    state, helpers = (folder / "_lib.lua").read_text().split("--!helpers\n", 1)
    bodies = {
        name: "\n".join(
            line
            for line in (folder / f"{name}.lua").read_text().splitlines()
            if not line.startswith("--!include ")
            and line.strip() not in ("--!helpers", "--!waking")
        )
        for name in SCRIPT_NAMES
    }
    digest = hashlib.sha1("\0".join([state, helpers, *bodies.values()]).encode())
    name = f"lockcore_{digest.hexdigest()[:12]}"
    parts = [f"#!lua name={name}", state, helpers]
    parts += [
        f"redis.register_function('{name}_{script}', function(KEYS, ARGV)\nbegin()\n{body}\nend)"
        for script, body in bodies.items()
    ]
    return name, "\n".join(parts) + "\n"


class Scripts:
    """The scripts registered on one client (sync or asyncio): ``run(call)`` returns the
    raw reply, or an awaitable of it. With ``functions`` (the default), by FCALL of the
    FUNCTION library where the server has it (Redis 7+; loaded on first use, and again if
    the server lost it); by EVALSHA where it has not, where loading the library is refused
    (an ACL without FUNCTION), or without ``functions`` (falling back to the script on
    NOSCRIPT)."""

    def __init__(self, client: Any, functions: bool = True) -> None:
        self.client = client
        self._scripts = {name: client.register_script(source(name)) for name in SCRIPT_NAMES}
        self.library, self._code = library()
        #: False: EVALSHA. None: FCALL asked for, not yet known to work; True: it does.
        self.functions: bool | None = None if functions else False
        self._async = inspect.iscoroutinefunction(client.execute_command)
        #: the lean path for a plain sync client (see lockcore.wire), else None
        self.wire = Wire(client) if Wire.serves(client) else None

    def run(self, call: Call) -> Any:
        if self._async:
            return self._run_async(call)
        wire = self.wire
        lean = wire is not None and wire.usable()
        if self.functions is not False:
            send = wire.execute if lean else self.client.execute_command  # type: ignore[union-attr]
            fcall = (
                "FCALL",
                f"{self.library}_{call.script}",
                len(call.keys),
                *call.keys,
                *call.args,
            )
            try:
                reply = send(*fcall)
            except redis.RedisError as exc:
                way = self._recover(exc)
                if way == "load":
                    try:
                        self.client.function_load(self._code, replace=True)
                    except redis.RedisError as refused:
                        way = self._refused(refused)
                if way is None:
                    raise
                if way == "load":
                    reply = send(*fcall)
                else:
                    return self.run(call)  # by EVALSHA from now on
            self.functions = True
            return reply
        script = self._scripts[call.script]
        if not lean:
            return script(keys=call.keys, args=call.args)
        evalsha = ("EVALSHA", script.sha, len(call.keys), *call.keys, *call.args)
        try:
            return wire.execute(*evalsha)  # type: ignore[union-attr]
        except NoScriptError:  # not run: load it, then call again
            self.client.script_load(script.script)
            return wire.execute(*evalsha)  # type: ignore[union-attr]

    def run_many(self, calls: Sequence[Call]) -> list[Any]:
        """Several calls (sync clients) in pipelined round trips (on a Cluster, one per
        node), replies in order; an error is returned in its call's place, not raised. The
        first call goes alone, as ``run`` sends it: that finds out FCALL or EVALSHA and
        loads what is missing; a later call that finds its script or library missing
        (another node) is sent again the same way."""
        if not calls:
            return []
        replies: list[Any] = []
        try:
            replies.append(self.run(calls[0]))
        except redis.RedisError as exc:
            replies.append(exc)
        rest = calls[1:]
        if not rest:
            return replies
        pipe = self.client.pipeline(transaction=False)
        for call in rest:
            if self.functions:
                pipe.execute_command(
                    "FCALL", f"{self.library}_{call.script}", len(call.keys), *call.keys, *call.args
                )
            else:
                sha = self._scripts[call.script].sha
                pipe.execute_command("EVALSHA", sha, len(call.keys), *call.keys, *call.args)
        for call, piped in zip(rest, pipe.execute(raise_on_error=False), strict=True):
            reply = piped
            if isinstance(piped, redis.RedisError) and (
                isinstance(piped, NoScriptError) or self._recover(piped) == "load"
            ):
                try:
                    reply = self.run(call)
                except redis.RedisError as exc:
                    reply = exc
            replies.append(reply)
        return replies

    def wait_signal(self, key: str, timeout: float) -> Any:
        """BLPOP one waiter's signal list (sync clients): the lean path where the script
        calls take it (a woken waiter's first work is on the hand-off's critical path)."""
        wire = self.wire
        if wire is not None and wire.usable():
            return wire.execute("BLPOP", key, f"{timeout:.3f}")
        return self.client.blpop([key], timeout=timeout)

    def confirm(self, key: str, replicas: int, timeout_ms: int) -> int:
        """How many replicas have every write the primary of ``key`` made so far (``WAIT``,
        up to ``timeout_ms``). ``PING`` first, on the same connection: Redis counts a
        connection's WAIT from its last command, whichever connection made the writes."""
        client = self.client
        if isinstance(client, redis.RedisCluster):  # the primary of the key's slot
            client = client.get_redis_connection(client.get_node_from_key(key))  # type: ignore[no-untyped-call]
        pipe = client.pipeline(transaction=False)
        pipe.ping()
        pipe.execute_command("WAIT", replicas, timeout_ms)
        return int(pipe.execute()[1])

    def check_durable_async(self) -> None:
        """Durable changes with asyncio need a client whose pipeline is one connection."""
        from redis.asyncio.cluster import RedisCluster as AsyncCluster

        if isinstance(self.client, AsyncCluster):
            raise InvalidLockRequest(
                "durable changes need a standalone or Sentinel client "
                "with asyncio (a Cluster: use the sync manager)"
            )

    async def confirm_async(self, key: str, replicas: int, timeout_ms: int) -> int:
        self.check_durable_async()
        async with self.client.pipeline(transaction=False) as pipe:
            pipe.ping()
            pipe.execute_command("WAIT", replicas, timeout_ms)
            return int((await pipe.execute())[1])

    async def _run_async(self, call: Call) -> Any:
        if self.functions is not False:
            fcall = (f"{self.library}_{call.script}", len(call.keys), *call.keys, *call.args)
            try:
                reply = await self.client.fcall(*fcall)
            except redis.RedisError as exc:
                way = self._recover(exc)
                if way == "load":
                    try:
                        await self.client.function_load(self._code, replace=True)
                    except redis.RedisError as refused:
                        way = self._refused(refused)
                if way is None:
                    raise
                if way == "load":
                    reply = await self.client.fcall(*fcall)
                else:
                    return await self._run_async(call)  # by EVALSHA from now on
            self.functions = True
            return reply
        return await self._scripts[call.script](keys=call.keys, args=call.args)

    def _recover(self, exc: Exception) -> str | None:
        """How to get past an FCALL error: "evalsha" (no FCALL on this server: EVALSHA
        from now on), "load" (the library is not loaded there yet: load it, call again), or
        None (a real error)."""
        text = str(exc).lower()
        unknown = (
            "unknown command" in text  # the server's answer; a Cluster client's:
            or "command doesn't exist" in text
            or "invalid command" in text
        )
        if unknown:  # FCALL did not run (a concurrent first call may have found out first)
            self.functions = False
            return "evalsha"
        return "load" if "function not found" in text else None

    def _loaded(self, exc: Exception | None) -> None:
        """After loading the library (``exc``: how it failed): FCALL from now on, EVALSHA
        (a server without FUNCTION, or refusing it), or raise."""
        if exc is None:
            self.functions = True
        elif self._recover(exc) != "evalsha" and self._refused(exc) != "evalsha":
            raise exc

    def load_library(self) -> None:
        """Load the FUNCTION library now, where FCALL is wanted: finds out whether the
        server has it (else EVALSHA from now on)."""
        if self.functions is not False:
            try:
                self.client.function_load(self._code, replace=True)
            except redis.RedisError as exc:
                self._loaded(exc)
                return
            self._loaded(None)

    async def load_library_async(self) -> None:
        if self.functions is not False:
            try:
                await self.client.function_load(self._code, replace=True)
            except redis.RedisError as exc:
                self._loaded(exc)
                return
            self._loaded(None)

    def _refused(self, exc: Exception) -> str | None:
        """The server refused to load the library (an ACL without FUNCTION, a read-only
        replica...): EVALSHA from now on if FCALL never worked here, else the error."""
        if self.functions is None and isinstance(exc, redis.ResponseError):
            self.functions = False
            return "evalsha"
        return None

    def sources(self) -> list[str]:
        return [source(name) for name in SCRIPT_NAMES]


def _dump(folder: str) -> None:
    out = Path(folder)
    out.mkdir(parents=True, exist_ok=True)
    for name in SCRIPT_NAMES:
        (out / f"{name}.lua").write_text(source(name))
        print(out / f"{name}.lua")
    (out / "library.lua").write_text(library()[1])  # for FUNCTION LOAD (Redis 7+)
    print(out / "library.lua")


__all__ = ["Call", "Core", "ReplyCode", "Scripts", "library"]

if __name__ == "__main__":  # pragma: no cover - a tool for other languages' consumers
    if len(sys.argv) != 3 or sys.argv[1] != "dump":
        sys.exit("usage: python -m lockcore.scripts dump DIR")
    _dump(sys.argv[2])
