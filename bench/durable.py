"""Section 9: what a durable lock costs. A primary and one replica of it (two private
redis-servers on loopback TCP); one client's acquire + release cycles, plain and durable
(``durable=True``: each change waits until the replica confirmed it, ``PING`` + ``WAIT``
on one connection), interleaved."""

from __future__ import annotations

import tempfile
import time

import redis

from lockcore import EmbeddedRedis, LockManager

from . import common
from .common import Section, lock_type, median
from .http import free_port


def _online(primary: redis.Redis) -> bool:
    return primary.info("replication").get("slave0", {}).get("state") == "online"


def durable(redis_server: str | None, cycles: int, rounds: int) -> Section:
    port, replica_port = free_port(), free_port()
    with (
        EmbeddedRedis(
            tempfile.mkdtemp(prefix="lc-bench-primary-"),
            appendonly=False,
            executable=redis_server,
            port=port,
        ),
        EmbeddedRedis(
            tempfile.mkdtemp(prefix="lc-bench-replica-"),
            appendonly=False,
            executable=redis_server,
            port=replica_port,
        ) as replica,
    ):
        replica.client().replicaof("127.0.0.1", port)
        client = redis.Redis(port=port)
        deadline = time.monotonic() + 30
        while not _online(client):
            if time.monotonic() > deadline:
                raise RuntimeError("the bench's replica never caught up")
            time.sleep(0.05)
        mgr = LockManager(client, [lock_type("job")], prefix="bench", functions=common.FUNCTIONS)

        def run(is_durable: bool, first: int) -> float:
            began = time.perf_counter()
            for i in range(first, first + cycles):
                lock = mgr.acquire("s", "job", f"r{i}", "me", ttl=30, durable=is_durable).lock
                mgr.release(lock, "me", durable=is_durable)
            return (time.perf_counter() - began) / cycles * 1e6

        run(False, 0)
        run(True, cycles)  # warm
        times: dict[bool, list[float]] = {False: [], True: []}
        for rnd in range(rounds):
            for kind in (False, True) if rnd % 2 == 0 else (True, False):
                times[kind].append(run(kind, (2 + 2 * rnd + kind) * cycles))
        lag = client.info("replication")["slave0"]
        client.close()
    plain, durable_us = median(times[False]), median(times[True])
    table = [
        ["cycle (acquire + release)", "µs per cycle (median)", "vs plain"],
        ["plain", f"{plain:,.0f}", "1.00"],
        [
            "durable (both changes wait for the replica)",
            f"{durable_us:,.0f}",
            f"{durable_us / plain:.2f}",
        ],
    ]
    return Section(
        "9. Durable locks: the cost of waiting for a replica",
        f"A primary and one replica (two private redis-servers on loopback TCP; the replica "
        f"in sync, offset {lag.get('offset', '?')} at the end); one client, {cycles} "
        f"acquire + release cycles of new locks per run, plain and durable interleaved, "
        f"{rounds} rounds each; medians. A durable change sends one more command pair "
        "(`PING` + `WAIT 1`) on one connection and returns once the replica acknowledged "
        "the primary's replication offset: a round trip to the primary and the replica's "
        "own acknowledgement (it reports every second, and at once when WAIT asks).",
        table,
        None,
        [],
        [],
        {
            "durable_cycle_us": durable_us,
            "plain_cycle_us": plain,
            "durable_ratio": durable_us / plain,
        },
    )


__all__ = ["durable"]
