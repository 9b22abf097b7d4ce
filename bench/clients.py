"""Sections measured from the clients' side: one client's cycles per second (4), and
worker processes contending for a few resources (5)."""

from __future__ import annotations

import math
import multiprocessing as mp
import random
import time
from collections.abc import Callable
from typing import Any

import redis

from lockcore import LockConflict, LockManager

from . import common
from .common import Section, Target, at_least, at_most, bar_chart, lock_type, median

PREFIX = "bench"


def _types() -> list[Any]:
    return [lock_type("job", default_ttl=60.0)]


# -- 4. one client, uncontended -----------------------------------------------------------


def single_client(url: str, cycles: int, rounds: int) -> Section:
    import redis_lock
    from pottery import Redlock

    client = redis.Redis.from_url(url)
    client.flushall()
    mgr = LockManager(client, _types(), prefix=PREFIX, functions=common.FUNCTIONS)

    def lockcore_cycle(i: int) -> None:
        lock = mgr.acquire("single", "job", "r", "me").lock
        mgr.release(lock, "me")

    def redis_py_cycle(i: int) -> None:
        lock = client.lock("bench:redis-py", timeout=60)
        lock.acquire(blocking=False)
        lock.release()

    def python_redis_lock_cycle(i: int) -> None:
        lock = redis_lock.Lock(client, "bench-prl", expire=60)
        lock.acquire(blocking=False)
        lock.release()

    def pottery_cycle(i: int) -> None:
        lock = Redlock(key="bench-pottery", masters={client}, auto_release_time=60)
        lock.acquire(blocking=False)
        lock.release()

    def ping(i: int) -> None:
        client.ping()

    contenders: dict[str, Callable[[int], None]] = {
        "lockcore": lockcore_cycle,
        "redis-py Lock": redis_py_cycle,
        "python-redis-lock": python_redis_lock_cycle,
        "pottery Redlock (1 master)": pottery_cycle,
        "PING (round-trip floor)": ping,
    }
    rates: dict[str, list[float]] = {name: [] for name in contenders}
    for run in contenders.values():  # warm up: scripts loaded, connections made
        for i in range(50):
            run(i)
    for _ in range(rounds):
        for name, run in contenders.items():
            started = time.perf_counter()
            for i in range(cycles):
                run(i)
            rates[name].append(cycles / (time.perf_counter() - started))
    best = {name: median(values) for name, values in rates.items()}
    base = best["redis-py Lock"]
    table = [["contender", "cycles/s (median)", "vs redis-py Lock"]]
    for name, rate in best.items():
        table.append([name, f"{rate:,.0f}", f"{rate / base:.2f}"])
    ratio = best["lockcore"] / base
    chart = bar_chart(
        "single_client", "acquire+release cycles/s, one client", list(best), list(best.values())
    )
    client.close()
    return Section(
        "4. One client, uncontended: acquire + release cycles per second",
        f"{rounds} interleaved rounds of {cycles} cycles each, one lock at a time on one "
        "connection; medians.",
        table,
        chart,
        targets=[at_least("One client: lockcore cycles/s vs redis-py Lock", ratio, 1.0)],
        summary={"single_ratio": ratio},
    )


# -- 5. contention ------------------------------------------------------------------------

KINDS = ("lockcore", "redis-py Lock", "python-redis-lock")
#: Not a peer: the least a strict FIFO hand-off costs. One token per resource in a Redis
#: list; a worker BLPOPs it (Redis serves blocked clients in arrival order) and LPUSHes it
#: back: every hand-off is one command and one process wake-up, nothing else.
BATON = "floor: FIFO baton (BLPOP / LPUSH)"


def _contender(
    kind: str,
    url: str,
    resources: int,
    duration: float,
    hold: float,
    start: Any,
    out: Any,
    index: int,
) -> None:
    """One worker: pick a resource, acquire (waiting), hold ``hold`` s, release; again.
    Counts acquisitions made before the end, and the longest wait (one cut off by the end
    of the run counts as far as it went)."""
    client = redis.Redis.from_url(url)
    rng = random.Random(index)
    owner = f"w{index}"
    count = 0
    longest = 0.0
    mgr = LockManager(client, _types(), prefix=PREFIX, heartbeat=0.5, functions=common.FUNCTIONS)
    if kind == "python-redis-lock":
        import redis_lock
    client.ping()
    start.wait()
    stop = time.monotonic() + duration
    while True:
        began = time.monotonic()
        if began >= stop:
            break
        rid = rng.randrange(resources)
        release: Callable[[], Any] | None = None
        if kind == "lockcore":
            try:
                lock = mgr.acquire(
                    "contention", "job", f"r{rid}", owner, ttl=10, wait=max(0.001, stop - began)
                ).lock
                release = lambda lock=lock: mgr.release(lock, owner)  # noqa: E731
            except LockConflict:
                pass
        elif kind == BATON:
            key = f"bench:baton:{rid}"
            # (not under 2 ms: Redis 6.2 reads a BLPOP timeout under 1 ms as none)
            if client.blpop([key], timeout=max(0.01, stop - began)) is not None:
                release = lambda key=key: client.lpush(key, 1)  # noqa: E731
        elif kind == "redis-py Lock":
            plain = client.lock(
                f"bench:c:{rid}", timeout=10, sleep=0.001, blocking_timeout=max(0.001, stop - began)
            )
            if plain.acquire():
                release = plain.release
        else:
            prl = redis_lock.Lock(client, f"c{rid}", expire=10)
            if prl.acquire(blocking=True, timeout=max(1, math.ceil(stop - began))):
                release = prl.release
        got = time.monotonic()
        longest = max(longest, min(got, stop) - began)
        if release is None:
            continue
        if got < stop:
            count += 1
        time.sleep(hold)
        release()
    out.put((index, count, longest))
    client.close()


def _run_cell(
    kind: str, url: str, workers: int, resources: int, duration: float, hold: float
) -> tuple[list[int], float]:
    ctx = mp.get_context("fork")
    setup = redis.Redis.from_url(url)
    setup.flushall()
    if kind == BATON:
        for rid in range(resources):
            setup.rpush(f"bench:baton:{rid}", 1)
    setup.close()
    start, out = ctx.Event(), ctx.Queue()
    procs = [
        ctx.Process(target=_contender, args=(kind, url, resources, duration, hold, start, out, i))
        for i in range(workers)
    ]
    for p in procs:
        p.start()
    time.sleep(0.2 + 0.02 * workers)  # every worker connected and waiting
    start.set()
    answers = [out.get(timeout=duration + 60) for _ in procs]
    for p in procs:
        p.join(30)
    return [a[1] for a in answers], max(a[2] for a in answers)


def contention(
    url: str,
    workers_list: list[int],
    resources_list: list[int],
    duration: float,
    rounds: int,
    hold: float = 0.001,
) -> Section:
    table = [
        [
            "workers",
            "resources",
            "contender",
            "acquisitions/s (median)",
            "vs best peer",
            "max/min per worker (median)",
            "longest wait ms (max)",
        ]
    ]
    targets: list[Target] = []
    summary: dict[str, float] = {}
    notes = [
        "A strict FIFO hand-off pays one process wake-up per release: the releasing script "
        "grants the lock to the first waiter, whose `BLPOP` returns it (no second call). "
        "The peers barge: whoever asks first after a release gets the lock, most often the "
        "process that just released it (no wake-up), hence their max/min. A barging policy "
        "for lockcore (`handoff` of 20 or 50 ms) measured no better, as every release still "
        "wakes the first waiter, which finds the lock taken and waits again."
    ]
    for workers in workers_list:
        for resources in resources_list:
            kinds = (*KINDS, BATON)
            rates: dict[str, list[float]] = {k: [] for k in kinds}
            spreads: dict[str, list[float]] = {k: [] for k in kinds}
            waits: dict[str, list[float]] = {k: [] for k in kinds}
            for rnd in range(rounds):
                # lockcore, peer, peer, floor, lockcore, ...: drift falls on all alike
                order = kinds if rnd % 2 == 0 else kinds[::-1]
                for kind in order:
                    counts, longest = _run_cell(kind, url, workers, resources, duration, hold)
                    rates[kind].append(sum(counts) / duration)
                    spreads[kind].append(max(counts) / min(counts) if min(counts) else math.inf)
                    waits[kind].append(longest)
            rate = {k: median(v) for k, v in rates.items()}
            spread = {k: median(v) for k, v in spreads.items()}
            best_peer = max(rate[k] for k in KINDS[1:])
            for kind in kinds:
                table.append(
                    [
                        str(workers),
                        str(resources),
                        kind,
                        f"{rate[kind]:,.0f}",
                        f"{rate[kind] / best_peer:.2f}",
                        "∞ (a worker starved)"
                        if spread[kind] == math.inf
                        else f"{spread[kind]:.2f}",
                        f"{max(waits[kind]) * 1000:,.0f}",
                    ]
                )
            cell = f"{workers} workers on {resources} resource{'s' if resources > 1 else ''}"
            ratio = rate["lockcore"] / best_peer
            targets.append(
                at_least(f"Contention, {cell}: lockcore throughput vs best peer", ratio, 1.0)
            )
            fair = spread["lockcore"]
            targets.append(
                at_most(
                    f"Contention, {cell}: lockcore max/min acquisitions per worker",
                    None if fair == math.inf else fair,
                    1.5,
                )
            )
            if fair == math.inf:
                targets[-1].shown, targets[-1].met = "∞ (a worker starved)", False
            key = f"{workers}_{resources}"
            summary[f"contention_{key}"] = ratio
            summary[f"contention_fairness_{key}"] = fair if fair != math.inf else -1.0
            summary[f"contention_longest_wait_ms_{key}"] = max(waits["lockcore"]) * 1000
            summary[f"contention_vs_baton_{key}"] = rate["lockcore"] / rate[BATON]
            notes.append(
                f"{cell}: lockcore {rate['lockcore'] / rate[BATON]:.2f}× the FIFO "
                f"baton floor, the best peer {best_peer / rate[BATON]:.2f}× it."
            )
    return Section(
        "5. Contention: worker processes on 1 and on 16 resources",
        f"Each worker process loops: pick a resource at random, acquire it (waiting), hold "
        f"it {hold * 1000:g} ms (`time.sleep`), release. lockcore waits in its FIFO line "
        "(`acquire(wait=...)`, woken by the release); redis-py `Lock` polls "
        "(`blocking=True, sleep=0.001`); python-redis-lock waits on its BLPOP signal. The "
        "last row of each cell is not a peer but a floor: the least a strict FIFO hand-off "
        "costs, a token per resource in a Redis list that workers `BLPOP` (Redis serves "
        "blocked clients in arrival order) and `LPUSH` back, one command and one process "
        "wake-up per hand-off (no expiry, no owner, no fencing). Each "
        f"run lasts {duration:g} s; {rounds} rounds per cell, contenders interleaved (order "
        "reversed every other round); medians, except the longest wait: the longest any "
        "worker waited in any round (a wait cut off by the end of a run counts as far as "
        "it went). Only acquisitions made before the end count.",
        table,
        None,
        notes,
        targets,
        summary,
    )
