"""A Sentinel failover on real processes: a primary, its replica and a Sentinel; the
primary killed -9, the Sentinel promotes the replica. Durable locks (each confirmed by the
replica before it was acknowledged) all survive it, and the fencing tokens after it are
larger than any before; plain locks written while the replica lagged are lost, and the
test counts them rather than hiding them."""

from __future__ import annotations

import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import redis
from redis.sentinel import Sentinel

from lockcore import LockManager, LockNotFound, LockType, connect

from ..servers import Replicated, _wait, find_binary, free_port, stop_all

SCOPE = "jobs"
TYPES = [LockType("job", default_ttl=300)]
SERVICE = "main"


class WithSentinel:
    """``Replicated`` plus one Sentinel (quorum 1) that fails over fast."""

    def __init__(self, base: Path) -> None:
        self.pair = Replicated(base)
        self.base = base
        self.sentinel_port = free_port({self.pair.port, self.pair.replica_port})
        self.sentinel: subprocess.Popen[bytes] | None = None

    def start(self) -> WithSentinel:
        self.pair.start()
        conf = self.base / "sentinel.conf"
        conf.write_text(
            f"port {self.sentinel_port}\nbind 127.0.0.1\ndir {self.base}\n"
            f"sentinel monitor {SERVICE} 127.0.0.1 {self.pair.port} 1\n"
            f"sentinel down-after-milliseconds {SERVICE} 300\n"
            f"sentinel failover-timeout {SERVICE} 3000\n"
        )
        self.sentinel = subprocess.Popen(
            [find_binary(), str(conf), "--sentinel"],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )

        def knows_both() -> bool:
            try:
                with redis.Redis(port=self.sentinel_port) as sentinel:
                    return len(sentinel.sentinel_slaves(SERVICE)) == 1
            except redis.RedisError:
                return False

        _wait(knows_both, "the sentinel to know the primary and its replica", 30)
        return self

    @property
    def url(self) -> str:
        return f"redis+sentinel://127.0.0.1:{self.sentinel_port}/{SERVICE}"

    def master_port(self) -> int | None:
        """The primary as clients find it (redis-py's ``discover_master``: the Sentinel's
        master entry, which moves once the failover is done, not when it starts)."""
        try:
            return int(Sentinel([("127.0.0.1", self.sentinel_port)]).discover_master(SERVICE)[1])
        except (redis.RedisError, TypeError):
            return None

    def kill_primary(self) -> None:
        primary = self.pair.processes[0]
        primary.kill()
        primary.wait(10)

    def wait_for_promotion(self) -> None:
        """Until the Sentinel made the replica primary, and the replica knows it."""
        _wait(lambda: self.master_port() == self.pair.replica_port, "the failover", 60)
        with redis.Redis(port=self.pair.replica_port) as promoted:
            _wait(lambda: promoted.info("replication")["role"] == "master", "promotion", 30)

    def stop(self) -> None:
        if self.sentinel is not None:
            stop_all([self.sentinel])
        self.pair.stop()


@pytest.fixture
def servers(tmp_path: Path) -> Iterator[WithSentinel]:
    started = WithSentinel(tmp_path).start()
    yield started
    started.stop()


def lost(mgr: LockManager, ids: list[str]) -> int:
    """How many of these locks the (new) primary does not have. A read may meet a
    connection to the dead primary once: it is read again (reads are safe to repeat)."""
    gone = 0
    for lock_id in ids:
        for attempt in range(5):
            try:
                mgr.get(lock_id)
            except LockNotFound:
                gone += 1
            except redis.ConnectionError:
                if attempt == 4:
                    raise
                continue
            break
    return gone


def manager(url: str) -> Any:
    connection = connect(url, socket_timeout=2)
    return connection, LockManager(connection.client, TYPES, prefix="f", durable_timeout=2.0)


def test_durable_locks_survive_a_failover_and_tokens_go_on_growing(servers: WithSentinel) -> None:
    connection, mgr = manager(servers.url)
    try:
        locks = [mgr.acquire(SCOPE, "job", f"r{n}", "worker", durable=True).lock for n in range(50)]
        servers.kill_primary()
        servers.wait_for_promotion()
        assert lost(mgr, [lock.id for lock in locks]) == 0
        newest = max(lock.fencing_token for lock in locks)
        after = mgr.acquire(SCOPE, "job", "after", "worker", durable=False).lock
        assert after.fencing_token > newest
    finally:
        connection.close()


def test_plain_locks_the_replica_never_got_are_lost_and_counted(servers: WithSentinel) -> None:
    connection, mgr = manager(servers.url)
    try:
        # The replica falls behind: frozen, and cut off (what was already sent to it
        # still arrives; nothing written from now on does), as a broken link would be.
        servers.pair.pause()
        with redis.Redis(port=servers.pair.port) as primary:
            primary.client_kill_filter(_type="replica")
        plain = [mgr.acquire(SCOPE, "job", f"r{n}", "worker").lock.id for n in range(50)]
        servers.kill_primary()
        servers.pair.resume()
        servers.wait_for_promotion()
        # every one was acknowledged, and none is on the new primary
        assert lost(mgr, plain) == 50
    finally:
        connection.close()


def test_tokens_grow_across_a_failover_to_a_replica_whose_clock_is_behind(tmp_path: Path) -> None:
    """The replica's clock runs an hour behind the primary's. Durable locks put the token
    counters on the replica before they are acknowledged, so after it is promoted the
    tokens of a resource go on from them, a new block of tokens included: the clock is
    only a floor, never the source."""
    pair = Replicated(tmp_path, replica_clock=-3600).start()
    try:
        with redis.Redis(port=pair.port) as primary, redis.Redis(port=pair.replica_port) as replica:
            skew = primary.time()[0] - replica.time()[0]
            assert 3590 < skew < 3610  # the replica's Redis does run an hour behind
        mgr = LockManager(redis.Redis(port=pair.port), TYPES, prefix="f", durable_timeout=2.0)
        tokens = []
        for _ in range(20):
            lock = mgr.acquire(SCOPE, "job", "r", "worker", durable=True).lock
            tokens.append(lock.fencing_token)
            mgr.release(lock, "worker", durable=True)
        pair.processes[0].kill()  # the primary dies; the replica is made primary
        pair.processes[0].wait(10)
        promoted = redis.Redis(port=pair.replica_port)
        promoted.replicaof("NO", "ONE")
        after = LockManager(promoted, TYPES, prefix="f")
        block = tokens[-1] // 1000  # on, across the block's end into a new block
        while tokens[-1] // 1000 == block:
            lock = after.acquire(SCOPE, "job", "r", "worker").lock
            tokens.append(lock.fencing_token)
            after.release(lock, "worker")
        assert tokens == sorted(set(tokens)) and len(tokens) > 20
        promoted.close()
        mgr.client.close()
    finally:
        pair.stop()
