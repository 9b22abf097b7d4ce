"""Sections measured from Redis's side: server time per operation (1), round trips per
operation (2), memory per held lock (3), latency as the store grows (6)."""

from __future__ import annotations

import shutil
import tempfile
import time
import uuid
from collections.abc import Callable
from typing import Any

import redis
from redis.lock import Lock as RedisPyLock

from lockcore import EmbeddedRedis, LockManager

from . import bulk, common
from .common import (
    Section,
    Target,
    at_most,
    counting_client,
    events_label,
    events_supported,
    line_chart,
    lock_type,
    measure_server_time,
    median,
    settle,
)

PREFIX = "bench"


def _types() -> list[Any]:
    return [lock_type("job", default_ttl=60.0), lock_type("job-ev", events=True, default_ttl=60.0)]


def _manager(client: Any) -> LockManager:
    return LockManager(client, _types(), prefix=PREFIX, functions=common.FUNCTIONS)


# -- 1. Redis time per operation ----------------------------------------------------------

#: Scripts that do less than any lock with server-clock expiry and fencing tokens can:
#: what a Lua script costs on this server before it does anything useful (the floors the
#: targets are set against). Called with acquire's KEYS and first four ARGV.
FLOORS = {
    "floor-empty": ("an empty script (`return 1`), 2 keys and 4 arguments", "return 1"),
    "floor-set": (
        "a script that only runs `SET NX PX`",
        "return redis.call('SET', KEYS[1] .. ARGV[1], ARGV[2], 'NX', 'PX', ARGV[3])",
    ),
    "floor-acquire": (
        "the least an acquire can do: `TIME`, `HMGET` of the resource and the next token, "
        "`HSET` of the record and the token (no checks, no helpers)",
        "local t = redis.call('TIME')\n"
        "local now = t[1] .. string.sub('000000' .. t[2], -6, -4)\n"
        "local got = redis.call('HMGET', KEYS[1], ARGV[1], '!b')\n"
        "if got[1] then return {1, now, 0, got[1]} end\n"
        "local tok = tonumber(got[2] or '1000')\n"
        "local toks = string.format('%d', tok)\n"
        "redis.call('HSET', KEYS[1], toks, ARGV[4] .. ' ' .. string.format('%d', now + "
        "ARGV[3]) .. ' ' .. ARGV[2] .. ' ' .. ARGV[1] .. ' ' .. now .. ' 0 ' .. ARGV[3], "
        "ARGV[1], toks, '!b', string.format('%d', tok + 1))\n"
        "return {0, now, 0, toks}",
    ),
    # The next two act on the locks floor-acquire made, given their tokens (ARGV[2]).
    "floor-refresh": (
        "the least a refresh can do: `TIME`, `HGET` of the record, `HSET` of it with the "
        "new expiry (no checks)",
        "local t = redis.call('TIME')\n"
        "local now = t[1] .. string.sub('000000' .. t[2], -6, -4)\n"
        "local raw = redis.call('HGET', KEYS[1], ARGV[2])\n"
        "if not raw then return {2, now, 0} end\n"
        "redis.call('HSET', KEYS[1], ARGV[2], ARGV[4] .. ' ' .. string.format('%d', now + "
        "ARGV[3]) .. string.sub(raw, 16))\n"
        "return {0, now, 0, ARGV[2], raw}",
    ),
    "floor-release": (
        "the least a release can do: `TIME`, `HGET` of the record, `HDEL` of it and of the "
        "resource (no checks)",
        "local t = redis.call('TIME')\n"
        "local now = t[1] .. string.sub('000000' .. t[2], -6, -4)\n"
        "local raw = redis.call('HGET', KEYS[1], ARGV[2])\n"
        "if not raw then return {2, now, 0} end\n"
        "redis.call('HDEL', KEYS[1], ARGV[2], ARGV[1])\n"
        "return {0, now, 0, ARGV[2], raw}",
    ),
}


def _held_locks(mgr: LockManager, scope: str, resource_prefix: str) -> list[Any]:
    """The scope's live locks whose resource starts with ``resource_prefix``, in the order
    they were made (listed through the public API)."""
    found, cursor = [], None
    while True:
        page = mgr.list(scope, cursor=cursor, limit=10_000)
        found += [lk for lk in page.locks if lk.resource.startswith(resource_prefix)]
        if page.cursor is None:
            break
        cursor = page.cursor
    return sorted(found, key=lambda lk: int(lk.resource.rsplit("-", 1)[1]))


def redis_time(
    url: str,
    ops: int,
    rounds: int,
    sequential_ops: int | None = None,
    held: int = 1000,
    batch: int = 100,
) -> Section:
    """Server time per operation from ``INFO commandstats``, each phase after its own
    CONFIG RESETSTAT, as a ratio to ``SET key val NX PX 30000`` on the same server; each
    measured pipelined (batches of ``batch``) and one call at a time."""
    sequential_ops = sequential_ops or ops
    client = redis.Redis.from_url(url)
    client.flushall()
    mgr = _manager(client)
    capture = bulk.CaptureRedis.from_url(url)
    capturing = _manager(capture)
    scopes = {False: ("cost", "job"), True: ("cost-ev", "job-ev")}

    def fill() -> None:  # each scope already holds `held` locks
        for scope, type_name in scopes.values():
            bulk.create(
                url,
                _manager,
                lambda m, i, s=scope, t=type_name: m.acquire(
                    s, t, f"held{i}", f"holder{i % 10}", ttl=3600
                ),
                held,
                type_name=type_name,
            )

    fill()
    token = uuid.uuid4().hex
    # Warm up every path once (scripts loaded, connection made).
    for scope, type_name in scopes.values():
        lock = mgr.acquire(scope, type_name, "warm", "owner", ttl=30).lock
        mgr.refresh(lock, "owner", 30)
        mgr.release(lock, "owner")
    warm = client.lock("bench:rp:warm", timeout=30)
    warm.acquire(blocking=False)
    warm.extend(30, replace_ttl=True)
    warm.release()
    client.set("bench:set:warm", token, nx=True, px=30_000)
    can_capture = bulk.capture_works(url, _manager, "job")
    floor_shas = {name: client.script_load(text) for name, (_, text) in FLOORS.items()}
    # The floors' own hash, as full as the scope lockcore's acquires go into.
    floor_key = "bench:{floor}:L"
    client.hset(floor_key, mapping={f"job:held{i}": str(1000 + i) for i in range(held)})

    times: dict[tuple[str, str], list[float]] = {}
    calls: dict[tuple[str, str], list[float]] = {}
    sequential_only: set[str] = set()

    def record(name: str, how: str, result: Any) -> None:
        times.setdefault((name, how), []).append(result.usec_per_op)
        calls.setdefault((name, how), []).append(result.script_calls_per_op)

    def pipelined(name: str, count: int, queue: Callable[[Any, int], Any]) -> None:
        """``queue(pipe, i)`` puts operation i in the pipeline."""
        pipe = client.pipeline(transaction=False)

        def run(i: int) -> None:
            queue(pipe, i)
            if len(pipe) >= batch or i == count - 1:
                refused = [
                    r for r in pipe.execute(raise_on_error=False) if isinstance(r, Exception)
                ]
                if refused:
                    raise RuntimeError(f"{name}: Redis refused {refused[0]!r}")

        record(name, "pipelined", measure_server_time(client, count, run))

    def lockcore(name: str, count: int, call: Callable[[LockManager, int], Any], how: str) -> None:
        """The public API call ``call(manager, i)``: one call at a time, or pipelined as
        the one command it sends (when it sends one: else one at a time)."""
        if how == "sequential" or not can_capture or name in sequential_only:
            if how == "pipelined":
                sequential_only.add(name)
            record(name, how, measure_server_time(client, count, lambda i: call(mgr, i)))
            return
        commands = []
        for i in range(count):
            command = bulk._capture(capture, capturing, call, i)
            if command is None:
                sequential_only.add(name)
                return lockcore(name, count, call, how)
            commands.append(command)
        pipelined(
            name, count, lambda pipe, i: pipe.execute_command(*commands[i][0], **commands[i][1])
        )

    for rnd in range(rounds):
        for how, count in (("pipelined", ops), ("sequential", sequential_ops)):
            tag = f"{rnd}{how[0]}"
            if how == "pipelined":
                pipelined(
                    "set",
                    count,
                    lambda pipe, i, t=tag: pipe.set(
                        f"bench:set:{t}:{i}", token, nx=True, px=30_000
                    ),
                )
            else:
                record(
                    "set",
                    how,
                    measure_server_time(
                        client,
                        count,
                        lambda i, t=tag: client.set(
                            f"bench:set:{t}:{i}", token, nx=True, px=30_000
                        ),
                    ),
                )
            made: list[Any] = []  # the tokens of the locks floor-acquire made
            for name, sha in floor_shas.items():
                if name == "floor-refresh":
                    made = client.hmget(
                        floor_key, [f"job:floor-acquire{tag}-{i}" for i in range(count)]
                    )
                    if None in made:
                        raise RuntimeError("floor-acquire did not make its locks")

                def floor_args(
                    i: int, t: str = tag, n: str = name, s: str = sha, toks: list[Any] = made
                ) -> tuple[Any, ...]:
                    if n in ("floor-refresh", "floor-release"):
                        return (
                            s,
                            2,
                            floor_key,
                            "bench:{floor}:D",
                            f"job:floor-acquire{t}-{i}",
                            toks[i],
                            30_000,
                            "x",
                        )
                    return (
                        s,
                        2,
                        floor_key if n == "floor-acquire" else "bench:fl:",
                        "bench:{floor}:D",
                        f"job:{n}{t}-{i}",
                        "owner",
                        30_000,
                        "x",
                    )

                if how == "pipelined":
                    pipelined(name, count, lambda pipe, i, a=floor_args: pipe.evalsha(*a(i)))
                else:
                    record(
                        name,
                        how,
                        measure_server_time(
                            client, count, lambda i, a=floor_args: client.evalsha(*a(i))
                        ),
                    )
            for events, (scope, type_name) in scopes.items():
                lockcore(
                    f"acquire-{events}",
                    count,
                    lambda m, i, t=tag, s=scope, n=type_name: m.acquire(
                        s, n, f"new{t}-{i}", "owner", ttl=30
                    ),
                    how,
                )
                locks = _held_locks(mgr, scope, f"new{tag}-")
                assert len(locks) == count, (len(locks), count)
                lockcore(
                    f"refresh-{events}",
                    count,
                    lambda m, i, out=locks: m.refresh(out[i], "owner", 30),
                    how,
                )
                lockcore(
                    f"release-{events}",
                    count,
                    lambda m, i, out=locks: m.release(out[i], "owner"),
                    how,
                )
            on = client.pipeline(transaction=False) if how == "pipelined" else client
            peers = [RedisPyLock(on, f"bench:rp:{tag}:{i}", timeout=30) for i in range(count)]
            for peer in peers:
                peer.acquire(blocking=False)
            if how == "pipelined":
                on.execute()
                pipelined(
                    "rp-extend",
                    count,
                    lambda pipe, i, p=peers: (
                        setattr(p[i], "redis", pipe),
                        p[i].extend(30, replace_ttl=True),
                    ),
                )
                pipelined(
                    "rp-release",
                    count,
                    lambda pipe, i, p=peers: (setattr(p[i], "redis", pipe), p[i].release()),
                )
            else:
                record(
                    "rp-extend",
                    how,
                    measure_server_time(
                        client, count, lambda i, p=peers: p[i].extend(30, replace_ttl=True)
                    ),
                )
                record(
                    "rp-release",
                    how,
                    measure_server_time(client, count, lambda i, p=peers: p[i].release()),
                )
        client.flushall()
        fill()
        client.hset(floor_key, mapping={f"job:held{i}": str(1000 + i) for i in range(held)})
    client.flushall()
    client.close()
    capture.close()

    usec = {key: median(values) for key, values in times.items()}
    per_op = {key: median(values) for key, values in calls.items()}

    def ratio(name: str, how: str) -> float:
        return usec[(name, how)] / usec[("set", how)]

    judged = "sequential" if not can_capture else "pipelined"
    goals: dict[str, tuple[str, float | None]] = {
        "acquire-False": ("acquire a new lock (scope holding 1,000), " + events_label(False), 6.0),
        "acquire-True": ("acquire a new lock (scope holding 1,000), " + events_label(True), 8.0),
        "refresh-False": ("refresh, " + events_label(False), 4.0),
        "refresh-True": ("refresh, " + events_label(True), None),
        "release-False": ("release, " + events_label(False), 4.0),
        "release-True": ("release, " + events_label(True), None),
    }
    table = [
        [
            "operation",
            "Redis µs per op, pipelined",
            "vs SET, pipelined",
            "Redis µs per op, one at a time",
            "vs SET, one at a time",
            "script calls per op",
            "target",
            "verdict",
        ]
    ]

    def row(label: str, name: str) -> list[str]:
        return [
            label,
            f"{usec[(name, 'pipelined')]:.2f}",
            f"{ratio(name, 'pipelined'):.1f}×",
            f"{usec[(name, 'sequential')]:.2f}",
            f"{ratio(name, 'sequential'):.1f}×",
            f"{per_op[(name, judged)]:.2f}" if name != "set" else "—",
        ]

    table.append(row("`SET key val NX PX 30000` (the baseline)", "set") + ["", ""])
    targets: list[Target] = []
    summary: dict[str, float] = {}
    for name, (label, limit) in goals.items():
        how = "sequential" if name in sequential_only else judged
        key = "redis_time_" + name.replace("-False", "").replace("-True", "_events")
        summary[key] = ratio(name, how)
        if limit is None:
            table.append(row(f"lockcore {label}", name) + ["(context)", ""])
            continue
        target = at_most(f"Redis time: {label}, vs SET NX PX", ratio(name, how), limit, digits=1)
        targets.append(target)
        table.append(row(f"lockcore {label}", name) + [f"{target.goal} ({how})", target.cell])
    for name, label in (
        ("rp-extend", "redis-py Lock extend (Lua), a peer"),
        ("rp-release", "redis-py Lock release (Lua), a peer"),
    ):
        table.append(row(label, name) + ["(context)", ""])
    for name, (label, _) in FLOORS.items():
        table.append(row(f"floor: {label}", name) + ["(context)", ""])
        summary["redis_time_" + name.replace("-", "_")] = ratio(name, judged)
    summary["redis_time_set_usec"] = usec[("set", judged)]
    notes = []
    if not events_supported():
        notes.append(
            "This lockcore has no `LockType(events=...)`: every type publishes "
            'events, so the "events off" rows measure events on too.'
        )
    if sequential_only or not can_capture:
        notes.append(
            "Not pipelined (an operation that is not one command the client can "
            "build alone), judged one at a time against SET one at a time: "
            + (", ".join(sorted(sequential_only)) if can_capture else "all")
            + "."
        )

    def over(name: str, floor: str) -> str:
        return f"{usec[(name, judged)] / usec[(floor, judged)]:.2f}×"

    notes.append(
        "The floors are scripts that do less than any lock with server-clock expiry, fencing "
        "tokens and a conflict check can: an empty script, a script around one SET, and "
        "acquire, refresh and release each reduced to its three commands with no checks "
        "(`TIME`, a read, a write). Measured here they cost "
        f"{ratio('floor-acquire', judged):.1f}× (acquire), "
        f"{ratio('floor-refresh', judged):.1f}× (refresh) and "
        f"{ratio('floor-release', judged):.1f}× (release) a SET: a target below its floor "
        "is below what a script that reads the server's clock, reads a hash and writes it "
        "costs on this server. A layout of one key per lock expired by Redis itself (PX) "
        "would save the `TIME` call but needs an index entry per lock to list a scope, an "
        "owner's or a resource's locks, so one more write per acquire and release instead. "
        f"lockcore over its floor: acquire {over('acquire-False', 'floor-acquire')}, "
        f"refresh {over('refresh-False', 'floor-refresh')}, "
        f"release {over('release-False', 'floor-release')} (events off)."
    )
    notes.append(
        "Redis's time of a script call includes every command the script runs; "
        "commandstats lists those commands too, under their own names, so only "
        "the script calls are added up (for an operation that runs no script, every "
        "command it sent). One at a time, Redis idles between calls and each call "
        "runs with colder caches: the pipelined figures are the targets' measure."
    )
    return Section(
        "1. Redis time per operation (Redis's own accounting)",
        f"Each phase: `CONFIG RESETSTAT`, operations of one kind, then `INFO commandstats`; "
        "Redis's time per operation is the phase's script time over the operations "
        "(`usec_per_call` of `cmdstat_evalsha`/`cmdstat_fcall` when an operation is one "
        f"call). Pipelined: {ops:,} operations in pipelines of {batch} (lockcore's as the "
        "command the public API call sends, captured); one at a time: "
        f"{sequential_ops:,} public API calls. Acquires take a new lock in a scope that "
        f"already holds {held:,}; refresh and release act on those locks (passed as "
        "`Lock`). The baseline is `SET key val NX PX 30000` on new keys, sent the same "
        f"way; the peers are redis-py `Lock`'s own scripts. {rounds} interleaved rounds; "
        "medians.",
        table,
        None,
        notes,
        targets,
        summary,
        targets_in_table=True,
    )


# -- 2. round trips per operation ---------------------------------------------------------


def _monitored(mon: Any, marker: str) -> list[str]:
    """The commands MONITOR saw from clients (not from scripts) up to ``marker``'s end."""
    seen: list[str] = []
    inside = False
    while True:
        entry = mon.next_command()
        command = entry["command"]
        if command == f"ECHO {marker}-begin":
            inside = True
            continue
        if command == f"ECHO {marker}-end":
            return seen
        if inside and entry.get("client_type") != "lua":
            seen.append(command.split(" ", 1)[0].upper())


def round_trips(url: str) -> Section:
    """Commands and round trips one operation costs the client: MONITOR (the server's
    view, script-internal commands left out) and the client's own count of writes."""
    client, counter = counting_client(url)
    client.flushall()
    mgr = _manager(client)
    # Warm up: every script loaded (a first call may meet NOSCRIPT), connection made.
    lock = mgr.acquire("rt", "job", "warm", "owner", ttl=30).lock
    mgr.refresh(lock.id, "owner", 30)
    mgr.get(lock.id)
    mgr.list("rt", limit=10)
    mgr.release(lock.id, "owner")
    held: dict[str, Any] = {}

    def acquire() -> None:
        held["lock"] = mgr.acquire("rt", "job", "r1", "owner", ttl=30).lock

    ops: list[tuple[str, Callable[[], Any], bool]] = [
        ("acquire (a new lock)", acquire, True),
        (
            "refresh by bare id: `refresh(lock.id, owner, ttl)`",
            lambda: mgr.refresh(held["lock"].id, "owner", 30),
            True,
        ),
        ("get by bare id: `get(lock.id)`", lambda: mgr.get(held["lock"].id), True),
        ("list one page: `list(scope)`", lambda: mgr.list("rt", limit=100), False),
        (
            "release by bare id: `release(lock.id, owner)`",
            lambda: mgr.release(held["lock"].id, "owner"),
            True,
        ),
    ]
    monitor_client = redis.Redis.from_url(url)
    results: list[tuple[str, list[str], int, bool]] = []
    with monitor_client.monitor() as mon:
        for n, (name, run, judged) in enumerate(ops):
            client.echo(f"bench-rt-{n}-begin")
            before = counter.writes
            run()
            writes = counter.writes - before
            client.echo(f"bench-rt-{n}-end")
            results.append((name, _monitored(mon, f"bench-rt-{n}"), writes, judged))
    monitor_client.close()
    client.flushall()
    client.close()
    table = [
        [
            "operation",
            "commands sent (MONITOR)",
            "which",
            "round trips (client writes)",
            "target",
            "verdict",
        ]
    ]
    targets = []
    summary = {}
    for name, commands, writes, judged in results:
        row = [name, str(len(commands)), ", ".join(commands) or "—", str(writes)]
        key = "round_trips_" + name.split(" ", 1)[0]
        summary[key] = float(len(commands))
        if judged:
            target = at_most(
                f"Round trips: {name.split(':')[0]}", float(len(commands)), 1, unit="", digits=0
            )
            targets.append(target)
            table.append(row + [target.goal, target.cell])
        else:
            table.append(row + ["(context)", ""])
    return Section(
        "2. Round trips per operation",
        "One operation at a time, on a warm connection. *Commands sent* is what `MONITOR` "
        "saw from the client between two markers, leaving out the commands scripts ran "
        "(Redis 6.2's commandstats counts those too: one acquire shows ~19 calls there, so a "
        "commandstats delta cannot count round trips); *round trips* is the client's own "
        "count of socket writes (a pipeline is one). The target is judged on commands "
        "sent.",
        table,
        None,
        [],
        targets,
        summary,
        targets_in_table=True,
    )


# -- 3. memory per held lock --------------------------------------------------------------


def _memory_usage_sum(client: redis.Redis, limit: int) -> int | None:
    """The sum of ``MEMORY USAGE`` of every key (exact: SAMPLES 0), or None when there are
    more than ``limit`` keys."""
    if client.dbsize() > limit:
        return None
    total = 0
    pipe = client.pipeline(transaction=False)
    for key in client.scan_iter(count=1000):
        pipe.memory_usage(key, samples=0)
        if len(pipe) >= 1000:
            total += sum(int(v or 0) for v in pipe.execute())
    total += sum(int(v or 0) for v in pipe.execute())
    return total


def memory(url: str, count: int, ttl: float = 300.0, cross_check_limit: int = 250_000) -> Section:
    """Bytes per held lock (``used_memory`` delta after FLUSHALL, over the count) in three
    layouts, against redis-py Lock keys made the same way."""
    client = redis.Redis.from_url(url)
    layouts = [(1, count), (min(1000, max(1, count // 100)), 100), (count, 1)]
    table = [
        [
            "layout (scopes × locks)",
            "lockcore B/lock",
            "redis-py Lock B/lock",
            "lockcore / redis-py",
            "MEMORY USAGE cross-check (lockcore, redis-py)",
            "target",
            "verdict",
        ]
    ]
    targets = []
    summary = {}
    how = "none"
    for scopes, per_scope in layouts:
        total = scopes * per_scope

        def scope_of(i: int, per: int = per_scope) -> str:
            return f"s{i // per}"

        def resource_of(i: int, per: int = per_scope) -> str:
            return f"r{i % per}"

        client.flushall()
        before = settle(client)
        how = bulk.create(
            url,
            _manager,
            lambda m, i: m.acquire(scope_of(i), "job", resource_of(i), f"owner{i % 50}", ttl=ttl),
            total,
            type_name="job",
        )
        lockcore = (settle(client) - before) / total
        sample = mgr_scope_size(client, scope_of(total - 1))
        if sample != per_scope:
            raise RuntimeError(
                f"memory: scope {scope_of(total - 1)} holds {sample} locks, not {per_scope}"
            )
        usage_lc = _memory_usage_sum(client, cross_check_limit)
        client.flushall()
        before = settle(client)
        pipe = client.pipeline(transaction=False)
        for i in range(total):  # redis-py's own Lock.acquire, its SETs sent in pipelines
            RedisPyLock(pipe, f"lock:{scope_of(i)}:{resource_of(i)}", timeout=ttl).acquire(
                blocking=False
            )
            if len(pipe) >= 1000:
                pipe.execute()
        pipe.execute()
        plain = (settle(client) - before) / total
        usage_rp = _memory_usage_sum(client, cross_check_limit)
        client.flushall()
        ratio = lockcore / plain
        limit = 3.0 if per_scope == 1 else 1.5
        label = f"{scopes:,} × {per_scope:,}"
        target = at_most(f"Memory per held lock, {label}, vs redis-py Lock", ratio, limit, digits=2)
        targets.append(target)
        cross = (
            "—"
            if usage_lc is None or usage_rp is None
            else f"{usage_lc / total:,.0f}, {usage_rp / total:,.0f}"
        )
        table.append(
            [
                label,
                f"{lockcore:,.0f}",
                f"{plain:,.0f}",
                f"{ratio:.2f}×",
                cross,
                target.goal,
                target.cell,
            ]
        )
        summary[f"memory_ratio_{scopes}x{per_scope}"] = ratio
        summary[f"memory_bytes_{scopes}x{per_scope}"] = lockcore
    client.close()
    return Section(
        f"3. Memory per held lock ({count:,} locks per layout)",
        "Each layout starts from `FLUSHALL`; bytes per lock = `used_memory` after, less "
        "before (both once it stops moving), over the count. lockcore locks are made by "
        f"{bulk.HOW[how]}, type `job` ({events_label(False)}), TTL {ttl:g} s; the peer is "
        "as many redis-py `Lock`s (one key each, `lock:<scope>:<resource>`, same TTL) "
        "acquired by redis-py's own `Lock.acquire` in pipelines. The cross-check adds up "
        "`MEMORY USAGE` of every key (it leaves out Redis's per-key dictionary overhead; "
        f"skipped above {cross_check_limit:,} keys).",
        table,
        None,
        [],
        targets,
        summary,
        targets_in_table=True,
    )


def mgr_scope_size(client: redis.Redis, scope: str) -> int:
    """How many live locks the public API lists in ``scope``."""
    mgr = _manager(client)
    size, cursor = 0, None
    while True:
        page = mgr.list(scope, cursor=cursor, limit=10_000)
        size += len(page.locks)
        if page.cursor is None:
            return size
        cursor = page.cursor


# -- 6. growth ----------------------------------------------------------------------------


#: Section 6's blocks per server, and the pause between two rounds of blocks (s).
GROWTH_BLOCKS, GROWTH_PACE = 24, 0.3


def growth(
    sizes: list[int], samples: int, executable: str | None = None, spread: int = 5000
) -> Section:
    """Acquire, release and list latency in one scope with ``sizes`` locks held in other
    scopes: one private server per size, filled side by side, then measured in
    interleaved blocks (so machine noise falls on every size alike), with Redis's own time
    per operation beside the latency."""
    servers = [
        EmbeddedRedis(
            tempfile.mkdtemp(prefix="lc-growth-"), appendonly=False, executable=executable
        ).start()
        for _ in sizes
    ]
    try:
        return _growth(servers, sizes, samples, spread)
    finally:
        for server in servers:
            server.stop()
            shutil.rmtree(server.data_dir, ignore_errors=True)


def _growth(servers: list[EmbeddedRedis], sizes: list[int], samples: int, spread: int) -> Section:
    how = "none"
    clients = [redis.Redis.from_url(server.url) for server in servers]
    mgrs = [_manager(client) for client in clients]
    for server, mgr, size in zip(servers, mgrs, sizes, strict=True):
        for i in range(20):
            mgr.acquire("probe", "job", f"fixed{i}", "me", ttl=3600)
        how = bulk.create(
            server.url,
            _manager,
            lambda m, i: m.acquire(f"g{i % spread}", "job", f"r{i}", "owner", ttl=3600),
            size,
            type_name="job",
        )
    for client, mgr in zip(clients, mgrs, strict=True):
        settle(client)  # Redis rehashes its tables incrementally after a bulk load
        for i in range(300):
            mgr.release(mgr.acquire("probe", "job", f"warm{i % 50}", "me").lock, "me")
    kinds = ("acquire", "release", "list", "ping")
    # blocks[server][kind]: one median per block. Blocks alternate between the servers
    # (order reversed every other round), spread over several seconds; each figure is the
    # lowest block median: noise on a shared machine only ever adds (it comes in spells of
    # a second or more that slow one process, PING included), growth would show in every
    # block.
    blocks: list[dict[str, list[float]]] = [{k: [] for k in kinds} for _ in servers]
    for block in range(GROWTH_BLOCKS):
        if block:
            time.sleep(GROWTH_PACE)
        order = list(range(len(servers)))
        for n in order if block % 2 == 0 else order[::-1]:
            mgr, client = mgrs[n], clients[n]
            values: dict[str, list[float]] = {k: [] for k in kinds}
            for i in range(max(1, samples // GROWTH_BLOCKS)):
                started = time.perf_counter()
                lock = mgr.acquire("probe", "job", f"r{i % 50}", "me").lock
                acquired = time.perf_counter()
                mgr.release(lock, "me")
                released = time.perf_counter()
                mgr.list("probe", limit=100)
                listed = time.perf_counter()
                client.ping()
                pinged = time.perf_counter()
                values["acquire"].append((acquired - started) * 1e6)
                values["release"].append((released - acquired) * 1e6)
                values["list"].append((listed - released) * 1e6)
                values["ping"].append((pinged - listed) * 1e6)
            for key, series in values.items():
                blocks[n][key].append(median(series))
    # Redis's own time per operation, one kind per phase (commandstats).
    redis_us: list[dict[str, float]] = []
    for client, mgr in zip(clients, mgrs, strict=True):
        locks: list[Any] = []
        us = {
            "acquire": measure_server_time(
                client,
                samples,
                lambda i, m=mgr, held=locks: held.append(
                    m.acquire("probe", "job", f"t{i}", "me").lock
                ),
            ).usec_per_op
        }
        us["release"] = measure_server_time(
            client, samples, lambda i, m=mgr, held=locks: m.release(held[i], "me")
        ).usec_per_op
        us["list"] = measure_server_time(
            client, samples, lambda i, m=mgr: m.list("probe", limit=100)
        ).usec_per_op
        redis_us.append(us)
    for client in clients:
        client.close()
    best = [{k: min(series) for k, series in b.items()} for b in blocks]
    table = [
        [
            "locks held elsewhere",
            "acquire µs",
            "release µs",
            "list µs (20 locks)",
            "PING µs",
            "Redis µs: acquire",
            "release",
            "list",
        ]
    ]
    for size, b, us in zip(sizes, best, redis_us, strict=True):
        table.append(
            [f"{size:,}"]
            + [f"{b[k]:,.0f}" for k in kinds]
            + [f"{us[k]:.1f}" for k in ("acquire", "release", "list")]
        )
    small, large = best[0], best[-1]
    table.append(
        [f"ratio, {sizes[-1]:,} / {sizes[0]:,}"]
        + [f"{large[k] / small[k]:.2f}×" for k in kinds]
        + [f"{redis_us[-1][k] / redis_us[0][k]:.2f}×" for k in ("acquire", "release", "list")]
    )
    targets = []
    summary = {}
    for name in ("acquire", "release", "list"):
        ratio = large[name] / small[name]
        targets.append(
            at_most(
                f"Growth: {name} latency at {sizes[-1]:,} vs {sizes[0]:,} locks held elsewhere",
                ratio,
                1.2,
            )
        )
        summary[f"growth_{name}"] = ratio
        summary[f"growth_{name}_redis"] = redis_us[-1][name] / redis_us[0][name]
    chart = line_chart(
        "growth",
        "median latency (µs) vs locks held elsewhere",
        sizes,
        {k: [b[k] for b in best] for k in ("acquire", "release", "list")},
    )
    return Section(
        "6. Growth: one scope's latency with many locks held elsewhere",
        f"One private redis-server per size (the same binary and settings), each holding "
        f"that many other locks spread over {spread:,} scopes, made by {bulk.HOW[how]}; "
        "the probed scope holds 20 locks. Latency: the servers are measured in turn, "
        f"{GROWTH_BLOCKS} blocks of {max(1, samples // GROWTH_BLOCKS)} samples each, "
        f"alternating between the servers, {GROWTH_PACE:g} s apart (so the machine's "
        "noise, which comes in spells of a second or more that slow one process, PING "
        "included, falls on both alike); each figure is the lowest block median (noise "
        "only adds). Acquire takes a new lock, release returns it (as a "
        "`Lock`), list reads one page. Redis µs: Redis's own time per operation "
        f"(commandstats) over {samples} operations of each kind.",
        table,
        chart,
        [],
        targets,
        summary,
    )
