"""``lockcore locks``: the operators' view of the locks (list, show, release, watch)."""

from __future__ import annotations

import argparse
import json
import sys
import time
from typing import Any

import redis

from lockcore import Lock

from ..events import event_json
from .common import redis_for, table, text


def _lock_json(lock: Lock) -> dict[str, Any]:
    """/v1's shape of a lock, with the scope's internal name (``v1:batch``, not ``batch``):
    operators name scopes that way, and see every API's. Times in seconds, to the ms."""
    from ..apis.native.schemas import lock_json

    shown = lock_json(lock)
    for name in ("acquired_at", "expires_at", "expires_in"):
        if shown.get(name) is not None:
            shown[name] = round(shown[name], 3)
    return shown


def _no_lock(lock_id: str) -> str:
    """The one wording of an unknown (or expired, or released) lock id."""
    return f"no live lock {lock_id}"


def _lock_row(lock: Any) -> list[str]:
    left = "never" if lock.remaining is None else f"{lock.remaining:.1f}s"
    meta = ", ".join(f"{k}={v}" for k, v in sorted(lock.metadata.items()))
    return [lock.id, lock.type, lock.resource, lock.owner, str(lock.fencing_token), left, meta]


HEADER = ["ID", "TYPE", "RESOURCE", "OWNER", "TOKEN", "EXPIRES IN", "METADATA"]


def _with_manager(args: argparse.Namespace, action: Any) -> int:
    from lockcore import LockManager

    from ..services import lock_types

    with redis_for(args) as (client, settings):
        mgr = LockManager(client, lock_types(settings), prefix=settings["KEY_PREFIX"])
        return int(action(mgr, client))


def locks_list(args: argparse.Namespace) -> int:
    def run(mgr: Any, _client: Any) -> int:
        locks = list(
            mgr.iter_locks(
                args.scope, owner=args.owner, type=args.type, resource=args.resource, limit=500
            )
        )
        if not locks and not mgr.client.exists(mgr.keys(args.scope).locks):
            print(f"lockcore: no scope {args.scope!r} (see lockcore locks scopes)", file=sys.stderr)
            return 1
        if args.json:
            print(json.dumps([_lock_json(lock) for lock in locks], indent=2))
        elif locks:
            print(table([HEADER, *(_lock_row(lock) for lock in locks)]))
        else:
            print(f"no live locks in {args.scope!r}")
        return 0

    return _with_manager(args, run)


def locks_scopes(args: argparse.Namespace) -> int:
    """The scopes with live locks, and how many each holds. An operator's command: it
    scans the keyspace."""
    from lockcore.keys import decode

    def run(mgr: Any, client: Any) -> int:
        pattern = f"{mgr.prefix}:{{*}}:L"
        names = sorted(
            {
                decode(k[k.index("{") + 1 : k.rindex("}")])
                for k in map(text, client.scan_iter(match=pattern, count=1000))
            }
        )
        counted = ((name, mgr.count(name)) for name in names)
        # a scope whose hash is only kept (RETENTION) holds no live lock: not busy
        rows = [[name, str(count)] for name, count in counted if count]
        if args.json:
            print(json.dumps([{"scope": n, "locks": int(c)} for n, c in rows], indent=2))
        elif rows:
            print(table([["SCOPE", "LIVE LOCKS"], *rows]))
        else:
            print("no scopes")
        return 0

    return _with_manager(args, run)


def locks_show(args: argparse.Namespace) -> int:
    from lockcore import LockNotFound

    def run(mgr: Any, _client: Any) -> int:
        try:
            lock = mgr.get(args.id)
        except LockNotFound:
            print(f"lockcore: {_no_lock(args.id)}", file=sys.stderr)
            return 1
        if args.json:
            print(json.dumps(_lock_json(lock), indent=2))
        else:
            print(table([["SCOPE", *HEADER], [lock.scope, *_lock_row(lock)]]))
        return 0

    return _with_manager(args, run)


def locks_release(args: argparse.Namespace) -> int:
    from lockcore import LockNotFound, LockNotOwned

    def run(mgr: Any, _client: Any) -> int:
        try:
            lock = mgr.release(args.id, args.owner or "operator", force=args.owner is None)
        except LockNotFound:
            print(f"lockcore: {_no_lock(args.id)}", file=sys.stderr)
            return 1
        except LockNotOwned as exc:
            print(f"lockcore: {exc}", file=sys.stderr)
            return 1
        print(
            f"released {lock.id} ({lock.type} {lock.resource!r} of {lock.owner} in {lock.scope!r})"
        )
        return 0

    return _with_manager(args, run)


def _event_line(event: dict[str, Any]) -> str:
    at = event.get("time", "")
    return (
        f"{at}  {event.get('event', '?'):9}  {event.get('scope', '')}  "
        f"{event.get('type', '')}  {event.get('resource', '')}  {event.get('owner', '')}  "
        f"id={event.get('id', '')} token={event.get('token', '')}"
    )


#: what a watch rides out once it is following: Redis restarted, failed over, or the
#: connection dropped (the first call's error, e.g. a wrong URL, still ends the command)
_OUTAGES = (redis.ConnectionError, redis.TimeoutError)


class _Backoff:
    """Waits between tries to reach Redis again: 0.2 s, doubling up to 5 s; one line on
    stderr when the outage starts and one when it ends."""

    def __init__(self) -> None:
        self.delay = 0.0

    def failed(self, exc: Exception) -> None:
        if not self.delay:
            print(f"lockcore: lost Redis ({exc}); retrying", file=sys.stderr, flush=True)
        self.delay = min(5.0, self.delay * 2 or 0.2)
        time.sleep(self.delay)

    def ok(self) -> None:
        if self.delay:
            print("lockcore: Redis is back; following again", file=sys.stderr, flush=True)
            self.delay = 0.0


def locks_watch(args: argparse.Namespace) -> int:
    """Follow events: one scope's stream (XREAD, durable), or every scope's channel. Once
    following, a Redis outage is waited out (retrying with a backoff) and the watch goes
    on from the last event shown: the stream still holds what happened meanwhile."""

    def show(event: dict[str, Any]) -> None:
        print(json.dumps(event) if args.json else _event_line(event), flush=True)

    def more() -> bool:
        return args.count is None or seen < args.count

    seen = 0

    def run(mgr: Any, client: Any) -> int:
        nonlocal seen
        backoff = _Backoff()
        if args.scope:
            stream = mgr.keys(args.scope).events
            # From the newest entry now, not "$" at every read: an event added between two
            # reads would be missed.
            newest = client.xrevrange(stream, count=1)
            last = newest[0][0] if newest else "0-0"
            while more():
                try:
                    replies = client.xread({stream: last}, block=1000) or []
                except _OUTAGES as exc:
                    backoff.failed(exc)
                    continue
                backoff.ok()
                for _, entries in replies:
                    for entry_id, fields in entries:
                        last = entry_id
                        show(event_json(stream, entry_id, fields))
                        seen += 1
            return 0
        # Every scope: each entry's id is PUBLISHed on a channel named like its stream.
        # A stream already seen is read from its last entry shown up to the announced one:
        # an announcement lost on the way (pub/sub does not queue) costs no event. After an
        # outage, each stream already seen is read up to its end (what it got meanwhile).
        pattern = f"{mgr.prefix}:*:E"
        shown: dict[str, str] = {}

        def show_range(channel: str, start: str, end: str) -> None:
            nonlocal seen
            for entry_id, fields in client.xrange(channel, start, end):
                if not more():
                    return
                shown[channel] = text(entry_id)
                show(event_json(channel, entry_id, fields))
                seen += 1

        pubsub = client.pubsub()
        pubsub.psubscribe(pattern)
        try:
            while more():
                try:
                    if pubsub is None:
                        pubsub = client.pubsub()
                        pubsub.psubscribe(pattern)
                        for channel, after in list(shown.items()):
                            show_range(channel, f"({after}", "+")
                        backoff.ok()
                    message = pubsub.get_message(timeout=1.0)
                    if message and message["type"] == "pmessage":
                        channel, entry = text(message["channel"]), text(message["data"])
                        start = f"({shown[channel]}" if channel in shown else entry
                        show_range(channel, start, entry)
                except _OUTAGES as exc:
                    if pubsub is not None:
                        pubsub.close()
                        pubsub = None
                    backoff.failed(exc)
        finally:
            if pubsub is not None:
                pubsub.close()
        return 0

    try:
        return _with_manager(args, run)
    except KeyboardInterrupt:
        return 0
