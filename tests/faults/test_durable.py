"""Durable changes on a real primary and replica: a durable acquire, refresh or release
returns once the replica has it (WAIT); with the replica paused (SIGSTOP) it raises
LockNotDurable, an acquire's lock released again, a refresh or release standing on the
primary. Also by the lock type's setting, through a grant to a waiter, with asyncio, and
on the Cluster (the WAIT goes to the key's primary)."""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import redis
import redis.asyncio

from lockcore import (
    AsyncLockManager,
    InvalidLockRequest,
    LockManager,
    LockNotDurable,
    LockType,
)

from ..servers import Replicated

SCOPE = "jobs"
TYPES = [LockType("job"), LockType("ledger", durable=True)]


@pytest.fixture
def pair(tmp_path: Path) -> Iterator[Replicated]:
    servers = Replicated(tmp_path).start()
    yield servers
    servers.stop()


def manager(pair: Replicated, **options: Any) -> LockManager:
    return LockManager(
        redis.Redis(port=pair.port), TYPES, prefix="d", durable_timeout=0.3, **options
    )


def on_replica(pair: Replicated, mgr: LockManager, token: int) -> bool:
    with redis.Redis(port=pair.replica_port) as replica:
        return replica.hget(mgr.keys(SCOPE).locks, str(token)) is not None


def test_a_durable_acquire_returns_once_the_replica_has_the_lock(pair: Replicated) -> None:
    mgr = manager(pair)
    lock = mgr.acquire(SCOPE, "job", "r", "alice", durable=True).lock
    assert on_replica(pair, mgr, lock.fencing_token)  # no waiting: WAIT said so
    refreshed = mgr.refresh(lock, "alice", 60, durable=True)
    assert refreshed.expires_at is not None and lock.expires_at is not None
    assert refreshed.expires_at > lock.expires_at
    mgr.release(lock, "alice", durable=True)
    assert not on_replica(pair, mgr, lock.fencing_token)


def test_a_durable_acquire_the_replica_did_not_confirm_is_released_again(pair: Replicated) -> None:
    mgr = manager(pair)
    pair.pause()
    try:
        with pytest.raises(LockNotDurable) as short:
            mgr.acquire(SCOPE, "job", "r", "alice", durable=True)
        assert (short.value.acked, short.value.wanted) == (0, 1)
        assert short.value.holder is not None and short.value.holder.owner == "alice"
        assert mgr.list(SCOPE).locks == ()  # released on the primary
        # a plain acquire does not wait for the replica
        plain = mgr.acquire(SCOPE, "job", "r", "bob").lock
        # a durable refresh or release stands on the primary, unconfirmed
        with pytest.raises(LockNotDurable):
            mgr.refresh(plain, "bob", 60, durable=True)
        assert mgr.get(plain.id).remaining == pytest.approx(60, abs=1)
        with pytest.raises(LockNotDurable):
            mgr.release(plain, "bob", durable=True)
        assert mgr.list(SCOPE).locks == ()
    finally:
        pair.resume()


def test_the_type_says_whether_its_changes_wait_and_a_call_may_say_otherwise(
    pair: Replicated,
) -> None:
    mgr = manager(pair)
    pair.pause()
    try:
        with pytest.raises(LockNotDurable):
            mgr.acquire(SCOPE, "ledger", "r", "alice")
        lock = mgr.acquire(SCOPE, "ledger", "r", "alice", durable=False).lock
        with pytest.raises(LockNotDurable):  # by id: the type is the lock's
            mgr.refresh(lock.id, "alice", 30)
        mgr.release(lock.id, "alice", durable=False)
    finally:
        pair.resume()


def test_a_lock_granted_to_a_waiter_is_confirmed_too(pair: Replicated) -> None:
    """The release made the waiter's lock; the waiter's WAIT still covers it (Redis
    counts a connection's WAIT from its last command, and replication is in order)."""
    holder, waiter = manager(pair), manager(pair, handoff=0)
    lock = holder.acquire(SCOPE, "job", "r", "holder").lock
    got: list[Any] = []

    def wait() -> None:
        try:
            got.append(waiter.acquire(SCOPE, "job", "r", "waiter", wait=10, durable=True))
        except LockNotDurable as exc:
            got.append(exc)

    thread = threading.Thread(target=wait)
    thread.start()
    line = f"{holder.keys(SCOPE).base}q:job:r"
    while not holder.client.exists(line):
        time.sleep(0.001)
    pair.pause()
    try:
        holder.release(lock, "holder")  # grants it to the waiter
        thread.join(10)
        assert got and isinstance(got[0], LockNotDurable)
        assert got[0].holder is not None and got[0].holder.owner == "waiter"
        assert holder.list(SCOPE).locks == ()  # the grant was released again
    finally:
        pair.resume()


def test_durable_changes_with_asyncio(pair: Replicated) -> None:
    async def main() -> None:
        client = redis.asyncio.Redis(port=pair.port)
        mgr = AsyncLockManager(client, TYPES, prefix="d", durable_timeout=0.3)
        try:
            lock = (await mgr.acquire(SCOPE, "job", "r", "alice", durable=True)).lock
            assert on_replica(pair, manager(pair), lock.fencing_token)
            await mgr.release(lock, "alice", durable=True)
            pair.pause()
            try:
                with pytest.raises(LockNotDurable):
                    await mgr.acquire(SCOPE, "ledger", "r", "alice")
                assert (await mgr.list(SCOPE)).locks == ()
            finally:
                pair.resume()
        finally:
            await client.aclose()

    asyncio.run(main())


def test_on_the_cluster_the_wait_goes_to_the_keys_primary(cluster: Any) -> None:
    """The test Cluster's primaries have no replicas: a durable acquire there is confirmed
    by none, whichever node holds the scope."""
    from redis.cluster import ClusterNode, RedisCluster

    client = RedisCluster(startup_nodes=[ClusterNode("127.0.0.1", p) for p in cluster.ports])
    mgr = LockManager(client, TYPES, prefix="d", durable_timeout=0.1)
    for scope in ("a", "b", "c", "d"):
        with pytest.raises(LockNotDurable) as short:
            mgr.acquire(scope, "job", "r", "alice", durable=True)
        assert short.value.acked == 0
        assert mgr.list(scope).locks == ()
    client.close()


@pytest.mark.parametrize("durable", [True, False])
def test_the_service_answers_503_in_the_apis_envelope_when_replicas_lag(
    pair: Replicated, durable: bool
) -> None:
    """LOCKCORE_<API>_DURABLE: a lock the replica did not confirm is a 503 in that API's
    own envelope (and is not left held); without it the same request is served."""
    from lockcore_service import create_app
    from lockcore_service.catalog import parse_document
    from lockcore_service.errors import UNAVAILABLE

    from ..conftest import CATALOG, KEYS

    application = create_app(
        {
            "REDIS_URL": f"redis://127.0.0.1:{pair.port}",
            "KEY_PREFIX": "t",
            "VERSAL_DURABLE": durable,
            "V1_DURABLE": durable,
            "DURABLE_TIMEOUT": 0.2,
        }
    )
    services = application.extensions["lockcore"]
    services.catalog.replace(parse_document(CATALOG), services.users)
    http = application.test_client()
    pair.pause()
    try:
        versal = http.post(
            "/locks",
            headers={"SID": KEYS["alice"]},
            json={"type": "gadget", "subject": {"courseId": "c1", "gadgetId": "g1"}},
        )
        v1 = http.post(
            "/v1/locks",
            headers={"Authorization": f"Bearer {KEYS['alice']}"},
            json={"scope": "batch", "resource": "nightly"},
        )
    finally:
        pair.resume()
    if durable:
        assert versal.status_code == 503
        assert versal.get_json() == {"error": 503, "message": UNAVAILABLE}
        assert v1.status_code == 503 and v1.get_json()["error"]["code"] == "unavailable"
        assert services.locks.list("versal:course:c1").locks == ()
        assert services.locks.list("v1:batch").locks == ()
    else:
        assert (versal.status_code, v1.status_code) == (201, 201)
    if services.connection is not None:
        services.connection.close()


def test_an_asyncio_cluster_client_is_told_durable_changes_need_another(cluster: Any) -> None:
    from redis.asyncio.cluster import ClusterNode, RedisCluster

    async def main() -> None:
        client = RedisCluster(startup_nodes=[ClusterNode("127.0.0.1", p) for p in cluster.ports])
        mgr = AsyncLockManager(client, TYPES, prefix="d")
        try:
            with pytest.raises(InvalidLockRequest, match="durable"):
                await mgr.acquire(SCOPE, "ledger", "r", "alice")  # a durable type
            assert (await mgr.list(SCOPE)).locks == ()  # refused before any lock
        finally:
            await client.aclose()

    asyncio.run(main())
