"""Creating many locks fast, through lockcore's public API.

One acquire at a time costs a round trip each (~3,000/s here); the memory and growth
sections need 10⁵-10⁶ locks. So each acquire is made by the public ``LockManager.acquire``
on a client that *captures* the one command it sends instead of sending it, and the
captured commands go to Redis in pipelines, in two processes. The locks are exactly the
ones the API makes (same script, same arguments), only the replies are not read one by one.

That holds only while an acquire is one command whose arguments the client can build
alone. ``capture_works`` checks it once per run (an acquire sends one command, and locks
created by its captured commands are listed by the API as they should be); when it does
not hold, ``create`` makes the locks with plain API calls, in processes.
"""

from __future__ import annotations

import multiprocessing as mp
import time
from collections.abc import Callable
from typing import Any

import redis

from lockcore import LockManager

from .common import counting_client

#: ``op(manager, i)`` makes lock number ``i`` with one public API call.
Op = Callable[[LockManager, int], Any]
MakeManager = Callable[[Any], LockManager]

BATCH = 500
_WORKS: dict[str, bool] = {}


class _Captured(Exception):
    pass


class CaptureRedis(redis.Redis):
    """A client that, while ``capturing``, records a command instead of sending it (and
    raises, so the caller stops there)."""

    capturing = False

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.captured: list[tuple[tuple[Any, ...], dict[str, Any]]] = []

    def execute_command(self, *args: Any, **options: Any) -> Any:
        if self.capturing:
            self.captured.append((args, options))
            raise _Captured(args[0] if args else "")
        return super().execute_command(*args, **options)


def _capture(
    client: CaptureRedis, manager: LockManager, op: Op, i: int
) -> tuple[tuple[Any, ...], dict[str, Any]] | None:
    client.captured = []
    client.capturing = True
    try:
        op(manager, i)
    except Exception:  # noqa: BLE001 - _Captured, or the manager's reading of no reply
        pass
    finally:
        client.capturing = False
    return client.captured[0] if len(client.captured) == 1 else None


def _flush(pipe: Any) -> int:
    """Send the pipeline; the number of commands Redis refused."""
    return sum(isinstance(r, Exception) for r in pipe.execute(raise_on_error=False))


def capture_works(url: str, make_manager: MakeManager, type_name: str) -> bool:
    """Whether captured acquires make the locks plain acquires make (cached per URL)."""
    if url in _WORKS:
        return _WORKS[url]
    real = redis.Redis.from_url(url)
    # One owner per lock: the type may allow one lock per owner.
    probe_scope, owner = "bench-bulk-probe", "bench-probe-owner-"
    manager = make_manager(real)
    works = False
    try:
        # A first call loads the script (NOSCRIPT, SCRIPT LOAD, again): not counted.
        manager.release(manager.acquire(probe_scope, type_name, "warm", owner, ttl=60).lock, owner)
        counted, counter = counting_client(url)
        make_manager(counted).acquire(probe_scope, type_name, "p0", owner + "0", ttl=60)
        one_command = counter.writes == 1
        counted.close()
        capture = CaptureRedis.from_url(url)
        capturing = make_manager(capture)
        pipe = real.pipeline(transaction=False)
        for i in (1, 2, 3):
            command = _capture(
                capture,
                capturing,
                lambda m, n: m.acquire(probe_scope, type_name, f"p{n}", f"{owner}{n}", ttl=60),
                i,
            )
            if command is None:
                break
            pipe.execute_command(*command[0], **command[1])
        else:
            refused = _flush(pipe)
            locks = manager.list(probe_scope, limit=100).locks
            works = (
                one_command
                and refused == 0
                and sorted(lk.resource for lk in locks) == ["p0", "p1", "p2", "p3"]
                and all(lk.owner == owner + lk.resource[1:] for lk in locks)
                and len({lk.id for lk in locks}) == 4
                and manager.get(locks[-1].id).resource == locks[-1].resource
            )
        capture.close()
        for lock in manager.list(probe_scope, limit=100).locks:
            manager.release(lock, lock.owner)
    except Exception:  # noqa: BLE001 - any surprise means: do not capture
        works = False
    finally:
        real.close()
    _WORKS[url] = works
    return works


def _worker(
    url: str, make_manager: MakeManager, op: Op, indexes: range, capture: bool, out: Any
) -> None:
    refused = 0
    try:
        if capture:
            client = CaptureRedis.from_url(url)
            real = redis.Redis.from_url(url)
            manager = make_manager(client)
            pipe = real.pipeline(transaction=False)
            for i in indexes:
                command = _capture(client, manager, op, i)
                if command is None:
                    raise RuntimeError(f"lock {i}: the acquire did not send one command")
                pipe.execute_command(*command[0], **command[1])
                if len(pipe) >= BATCH:
                    refused += _flush(pipe)
            refused += _flush(pipe)
        else:
            manager = make_manager(redis.Redis.from_url(url))
            for i in indexes:
                op(manager, i)
        out.put(("ok", refused))
    except Exception as exc:  # noqa: BLE001 - reported to the parent
        out.put(("error", repr(exc)))


def create(
    url: str,
    make_manager: MakeManager,
    op: Op,
    count: int,
    *,
    type_name: str,
    start: int = 0,
    processes: int = 2,
) -> str:
    """Make locks ``start`` .. ``start + count - 1`` with ``op``; returns how (for the
    report): ``"captured"`` or ``"api"``."""
    if count <= 0:
        return "none"
    capture = capture_works(url, make_manager, type_name)
    ctx = mp.get_context("fork")
    out = ctx.Queue()
    per = -(-count // processes)
    chunks = [
        range(start + k * per, min(start + count, start + (k + 1) * per)) for k in range(processes)
    ]
    procs = [
        ctx.Process(target=_worker, args=(url, make_manager, op, chunk, capture, out))
        for chunk in chunks
        if len(chunk)
    ]
    started = time.monotonic()
    for proc in procs:
        proc.start()
    answers = [out.get(timeout=3600) for _ in procs]
    for proc in procs:
        proc.join(60)
    errors = [detail for status, detail in answers if status == "error"]
    refused = sum(detail for status, detail in answers if status == "ok")
    if errors or refused:
        raise RuntimeError(f"bulk creation failed: {errors or f'{refused} refused commands'}")
    how = "captured" if capture else "api"
    rate = count / max(1e-9, time.monotonic() - started)
    print(f"bench:   {count:,} locks created ({how}, {rate:,.0f}/s)", flush=True)
    return how


HOW = {
    "captured": "the public `acquire`'s own command, captured and sent in pipelines",
    "api": "plain public `acquire` calls in 2 processes",
    "none": "—",
}
