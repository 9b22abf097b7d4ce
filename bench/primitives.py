"""Section 10: what each primitive's acquire costs in Redis time, next to the exclusive
lock's, on the same server in the same run (``INFO commandstats``: the script's own time,
every command it runs included)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import redis

from lockcore import LEADER, LockManager, LockType, Mode

from . import common
from .common import Section, measure_server_time, median

TYPES = [
    LockType("job", default_ttl=300.0),
    LockType("rlock", reentrant=True, default_ttl=300.0),
    LockType("doc", mode=Mode.MULTI, read_write=True, default_ttl=300.0),
    LockType("gpu", mode=Mode.MULTI, max_holders=8, default_ttl=300.0),
    LockType("file", default_ttl=300.0),
    LEADER,
]


def primitives(url: str, count: int, rounds: int) -> Section:
    client = redis.Redis.from_url(url)
    client.flushall()
    mgr = LockManager(client, TYPES, prefix="bench", functions=common.FUNCTIONS)
    # Each measured acquire makes a new lock on its own resource (as section 1's does),
    # but for the ones whose point is what already holds the resource.
    mgr.acquire("held", "rlock", "r", "me")  # re-entered below
    for i in range(3):  # a resource with 3 readers, then one with 7 of 8 permits taken
        mgr.acquire("held", "doc", "shared", f"reader-{i}", shared=True)
    for i in range(7):
        mgr.acquire("held", "gpu", "node", f"job-{i}")
    # Acquires that make a new lock, against the exclusive lock's new lock; and, where
    # the point is what already holds the resource, an acquire + release in place,
    # against the exclusive lock's acquire + release.
    kinds: list[tuple[str, str, Callable[[int, int], Any]]] = [
        ("new", "exclusive lock", lambda r, i: mgr.acquire("s", "job", f"j{r}-{i}", "me")),
        (
            "new",
            "reentrant: re-entering one's own",
            lambda r, i: mgr.acquire("held", "rlock", "r", "me"),
        ),
        ("new", "write lock", lambda r, i: mgr.acquire("s", "doc", f"w{r}-{i}", "me")),
        (
            "new",
            "multi-lock of 3 resources (one call)",
            lambda r, i: mgr.acquire_all(
                "s", "file", [f"a{r}-{i}", f"b{r}-{i}", f"c{r}-{i}"], "me"
            ),
        ),
        (
            "new",
            "election campaign (a leader lock, events on)",
            lambda r, i: mgr.acquire("s", "leader", f"e{r}-{i}", "me"),
        ),
        (
            "cycle",
            "exclusive lock",
            lambda r, i: mgr.release(mgr.acquire("held", "job", "x", "me").lock, "me"),
        ),
        (
            "cycle",
            "read lock beside 3 readers",
            lambda r, i: mgr.release(
                mgr.acquire("held", "doc", "shared", "reader-x", shared=True).lock, "reader-x"
            ),
        ),
        (
            "cycle",
            "semaphore: the 8th of 8 permits",
            lambda r, i: mgr.release(mgr.acquire("held", "gpu", "node", "job-x").lock, "job-x"),
        ),
    ]
    found: dict[tuple[str, str], list[float]] = {(g, n): [] for g, n, _ in kinds}
    for rnd in range(rounds):
        for group, name, run in kinds if rnd % 2 == 0 else list(reversed(kinds)):
            found[(group, name)].append(
                measure_server_time(client, count, lambda i, f=run, r=rnd: f(r, i)).usec_per_op
            )
    client.close()
    base = {group: median(found[(group, "exclusive lock")]) for group in ("new", "cycle")}
    table = [["what", "Redis µs (median)", "vs the exclusive lock's"]]
    for group, name, _ in kinds:
        us = median(found[(group, name)])
        what = f"{name}: acquire" if group == "new" else f"{name}: acquire + release"
        table.append([what, f"{us:.1f}", f"{us / base[group]:.2f}"])
    return Section(
        "10. The primitives' acquire cost",
        f"Redis time (`INFO commandstats`: the scripts' own time, every command they run "
        f"included), {count} calls per run, the kinds interleaved over {rounds} rounds; "
        "medians. Acquires of new locks against the exclusive lock's; where the point is "
        "what already holds the resource (readers, permits), an acquire + release in "
        "place against the exclusive lock's acquire + release.",
        table,
        None,
        [
            "Read-write and semaphore acquires read the resource's live holders (a range of "
            "the scope's R index and one HGET each), and take the general path with its "
            "helpers; their cost grows with the holders (bounded by the cap for a "
            "semaphore). A multi-lock is one script for all its resources.",
        ],
        [],
        {
            "primitives_exclusive_us": base["new"],
            **{
                f"primitives_{g}_{i}_ratio": median(found[(g, n)]) / base[g]
                for i, (g, n, _) in enumerate(kinds)
            },
        },
    )


__all__ = ["primitives"]
