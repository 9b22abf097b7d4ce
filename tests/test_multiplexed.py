"""Multiplexed waiting (lockcore.waking): a process's waiters beyond its first few share
one subscriber connection, so many waiters use a small constant number of connections,
and are still served in line order, woken by the release. On fakeredis, real Redis 6.2
and 7, and a 3-master Cluster."""

from __future__ import annotations

import asyncio
import threading
import time
from pathlib import Path
from typing import Any

import pytest
import requests
from redis.cluster import RedisCluster

from lockcore import EmbeddedRedis, LockManager
from lockcore.aio import AsyncLockManager
from lockcore.waking import DIRECT_WAITERS, WAITER_CALLS
from lockcore_service.identity import User, Users

from .conftest import TYPES
from .live import LiveService

SCOPE = "jobs"
WAITERS = 200
#: what one manager's waiters may use: the direct ones, the shared calls, the subscriber
BOUND = DIRECT_WAITERS + WAITER_CALLS + 1


NAME = "lockcore-many-waiters"


def server_clients(admin: Any) -> int:
    """Connections the server (every master of a Cluster) has open now."""
    if isinstance(admin, RedisCluster):
        infos = admin.info("clients", target_nodes=RedisCluster.PRIMARIES)
        return sum(int(i["connected_clients"]) for i in infos.values())
    return int(admin.info("clients")["connected_clients"])


def named_clients(admin: Any, name: str = NAME) -> int:
    """Connections named ``name`` on the server (every master of a Cluster)."""
    if isinstance(admin, RedisCluster):
        lists = [admin.get_redis_connection(n).client_list() for n in admin.get_primaries()]
    else:
        lists = [admin.client_list()]
    return sum(1 for clients in lists for c in clients if c.get("name") == name)


def pool_size(client: Any) -> int:
    pool = client.connection_pool
    return len(pool._available_connections) + len(pool._in_use_connections)


class Meter:
    """The most connections the waiters' client had open (named ``NAME``; on fakeredis,
    its pool's) beyond those it had before anyone waited (``start``: a Cluster client keeps
    the connections it found the nodes with); with ``base``, the server's connections
    beyond ``base``."""

    def __init__(
        self, admin: Any, backend: str, client: Any = None, base: int | None = None
    ) -> None:
        self.admin, self.fake, self.client, self.base = admin, backend == "fake", client, base
        self.most = 0
        self.before = 0

    def start(self) -> None:
        self.look()
        self.before, self.most = self.most, 0

    def look(self) -> None:
        if self.base is not None:
            now = server_clients(self.admin) - self.base
        elif self.fake:
            now = pool_size(self.client) if self.client is not None else 0
        else:
            now = named_clients(self.admin)
        self.most = max(self.most, now - self.before)


def named(make_client: Any, backend: str, request: pytest.FixtureRequest) -> Any:
    """A client of the backend whose connections are named ``NAME``."""
    if backend == "fake":
        return make_client()
    if backend == "cluster":
        return request.getfixturevalue("cluster").client(client_name=NAME)
    return request.getfixturevalue(f"{backend}_server").client(client_name=NAME)


def named_async(make_async_client: Any, backend: str, request: pytest.FixtureRequest) -> Any:
    if backend == "fake":
        return make_async_client()
    import redis.asyncio
    from redis.asyncio.cluster import ClusterNode
    from redis.asyncio.cluster import RedisCluster as AsyncCluster

    if backend == "cluster":
        ports = request.getfixturevalue("cluster").ports
        nodes = [ClusterNode("127.0.0.1", p) for p in ports]
        return AsyncCluster(startup_nodes=nodes, client_name=NAME)
    path = request.getfixturevalue(f"{backend}_server").socket_path
    return redis.asyncio.Redis(unix_socket_path=str(path), client_name=NAME)


def queued(admin: Any, holder: Any) -> int:
    return int(admin.llen(f"{holder.keys(SCOPE).base}q:job:r"))


def wait_until(condition: Any, timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "condition not met in time"
        time.sleep(0.002)


def test_many_thread_waiters_share_a_few_connections_and_keep_the_order(
    make_client: Any, backend: str, request: pytest.FixtureRequest
) -> None:
    admin = make_client()
    holder = LockManager(admin, TYPES, prefix="t")
    client = named(make_client, backend, request)
    meter = Meter(admin, backend, client)
    waiters = LockManager(client, TYPES, prefix="t")
    waiters.list(SCOPE)  # the client's own connections (a Cluster's: to its nodes)
    meter.start()
    first = holder.acquire(SCOPE, "job", "r", "holder").lock
    got: list[tuple[int, int]] = []
    errors: list[BaseException] = []
    lock = threading.Lock()

    def wait(i: int) -> None:
        try:
            result = waiters.acquire(SCOPE, "job", "r", f"w{i}", ttl=30, wait=60)
            with lock:
                got.append((i, result.lock.fencing_token))
            waiters.release(result.lock, f"w{i}")
        except BaseException as exc:  # noqa: BLE001 - reported below
            errors.append(exc)

    threads = []
    for i in range(WAITERS):  # one at a time, so that the line's order is known
        thread = threading.Thread(target=wait, args=(i,), daemon=True)
        thread.start()
        threads.append(thread)
        wait_until(lambda n=i + 1: queued(admin, holder) == n)
        if i % 20 == 0:
            meter.look()
    meter.look()
    holder.release(first, "holder")
    deadline = time.monotonic() + 60
    for thread in threads:
        while thread.is_alive():
            assert time.monotonic() < deadline, f"served {len(got)} of {WAITERS}"
            meter.look()
            thread.join(0.05)
    waiters.close()
    client.close()
    assert not errors, errors[:3]
    assert [i for i, _ in got] == list(range(WAITERS))
    tokens = [t for _, t in got]
    assert tokens == sorted(tokens) and len(set(tokens)) == WAITERS
    print(f"connections beside {WAITERS} waiters: {meter.most}")
    assert meter.most <= BOUND, meter.most


def test_many_task_waiters_share_a_few_connections_and_keep_the_order(
    make_client: Any, make_async_client: Any, backend: str, request: pytest.FixtureRequest
) -> None:
    admin = make_client()
    holder = LockManager(admin, TYPES, prefix="t")
    meter = Meter(admin, backend)
    first = holder.acquire(SCOPE, "job", "r", "holder").lock
    got: list[tuple[int, int]] = []

    async def main() -> None:
        client = named_async(make_async_client, backend, request)
        meter.client = client
        waiters = AsyncLockManager(client, TYPES, prefix="t")
        await waiters.list(SCOPE)  # the client's own connections (a Cluster's: to its nodes)
        meter.start()

        async def wait(i: int) -> None:
            result = await waiters.acquire(SCOPE, "job", "r", f"w{i}", ttl=30, wait=60)
            got.append((i, result.lock.fencing_token))
            await waiters.release(result.lock, f"w{i}")

        async def joined(n: int) -> None:
            deadline = time.monotonic() + 20
            while queued(admin, holder) != n:
                assert time.monotonic() < deadline
                await asyncio.sleep(0.002)

        tasks = []
        for i in range(WAITERS):
            tasks.append(asyncio.ensure_future(wait(i)))
            await joined(i + 1)
            if i % 20 == 0:
                meter.look()
        meter.look()
        await asyncio.to_thread(holder.release, first, "holder")
        done = asyncio.gather(*tasks)
        deadline = time.monotonic() + 60
        while not done.done():
            assert time.monotonic() < deadline, f"served {len(got)} of {WAITERS}"
            meter.look()
            await asyncio.wait([done], timeout=0.05)
        await done
        await waiters.close()
        await client.aclose()

    asyncio.run(main())
    assert [i for i, _ in got] == list(range(WAITERS))
    tokens = [t for _, t in got]
    assert tokens == sorted(tokens) and len(set(tokens)) == WAITERS
    print(f"connections beside {WAITERS} waiters: {meter.most}")
    assert meter.most <= BOUND, meter.most


LONG_POLLS = 1000
WORKERS = 2


@pytest.mark.slow
def test_a_thousand_long_polls_on_one_instance_use_a_few_connections(tmp_path: Path) -> None:
    """1,000 concurrent /v1 long polls on one service instance (2 workers): every one gets
    the lock once, in the order they joined the line, and Redis's connections stay a small
    constant per worker however many wait."""
    with EmbeddedRedis(tmp_path / "redis") as redis_server:
        admin = redis_server.client()
        users = Users(admin, "lockcore")
        for i in range(LONG_POLLS + 1):
            users.put(User(id=f"u{i}", name=f"U {i}"), key=f"key-{i}")
        env = {"LOCKCORE_V1_MAX_WAITERS": "600", "LOCKCORE_V1_MAX_WAIT": "180"}
        args = ["--redis-url", redis_server.url, "--threads", "600"]
        with LiveService(tmp_path / "svc", *args, workers=WORKERS, env=env) as service:
            session = requests.Session()

            def auth(i: int) -> dict[str, str]:
                return {"Authorization": f"Bearer key-{i}"}

            body = {"scope": "crowd", "resource": "r", "ttl": 60}
            first = service.request("POST", "/v1/locks", json=body, headers=auth(LONG_POLLS))
            assert first.status_code == 201, first.text
            line = "lockcore:{v1%3Acrowd}:q:"
            # the service's connections: all the server has but the test's own
            meter = Meter(admin, "real", base=server_clients(admin))
            got: list[tuple[int, int]] = []
            errors: list[str] = []

            def poll(i: int) -> None:
                try:
                    answer = requests.post(
                        service.url + "/v1/locks",
                        json={**body, "wait": 120},
                        headers=auth(i),
                        timeout=150,
                    )
                    if answer.status_code != 201:
                        errors.append(f"{i}: {answer.status_code} {answer.text}")
                        return
                    lock = answer.json()
                    got.append((i, lock["fencing_token"]))
                    requests.delete(
                        f"{service.url}/v1/locks/{lock['id']}", headers=auth(i), timeout=30
                    )
                except Exception as exc:  # noqa: BLE001 - reported below
                    errors.append(f"{i}: {exc!r}")

            def queued_now() -> int:
                keys = [k for k in admin.scan_iter(match=line + "*")]
                return sum(int(admin.llen(k)) for k in keys)

            threads = []
            for i in range(LONG_POLLS):  # one at a time: the line's order is known
                thread = threading.Thread(target=poll, args=(i,), daemon=True)
                thread.start()
                threads.append(thread)
                wait_until(lambda n=i + 1: queued_now() == n or bool(errors))
                assert not errors, errors[:3]
                if i % 50 == 0:
                    meter.look()
            meter.look()
            first_lock = first.json()
            gone = session.delete(
                f"{service.url}/v1/locks/{first_lock['id']}", headers=auth(LONG_POLLS)
            )
            assert gone.status_code == 200
            deadline = time.monotonic() + 120
            for thread in threads:
                while thread.is_alive():
                    assert time.monotonic() < deadline, f"served {len(got)} of {LONG_POLLS}"
                    meter.look()
                    thread.join(0.05)
    assert not errors, errors[:3]
    assert sorted(i for i, _ in got) == list(range(LONG_POLLS))  # each exactly once
    tokens = [t for _, t in sorted(got)]
    assert tokens == sorted(tokens)  # in the order they joined
    # each worker: its waiters' few connections, and its own ordinary calls
    print(f"connections beside 1,000 long polls: {meter.most}")
    assert meter.most <= WORKERS * (BOUND + 3), meter.most


# --- the shared path keeps what waiting promises: cancellation wins, nothing left behind ---


def helper_keys(admin: Any, holder: Any) -> list[str]:
    """The scope's waiting keys (line, alive marks, signals) still in Redis."""
    base = holder.keys(SCOPE).base
    found = []
    for suffix in ("q:*", "a:*", "s:*"):
        if isinstance(admin, RedisCluster):
            keys = admin.keys(base + suffix, target_nodes=RedisCluster.PRIMARIES)
        else:
            keys = admin.keys(base + suffix)
        found += [k.decode() if isinstance(k, bytes) else k for k in keys]
    return found


def line(admin: Any, holder: Any) -> list[str]:
    raw = admin.lrange(f"{holder.keys(SCOPE).base}q:job:r", 0, -1)
    return [t.decode() if isinstance(t, bytes) else t for t in raw]


def test_a_shared_waiter_that_is_cancelled_leaves_the_line_at_once(make_client: Any) -> None:
    from lockcore import WaitCancelled

    admin = make_client()
    holder = LockManager(admin, TYPES, prefix="t")
    held = holder.acquire(SCOPE, "job", "r", "holder").lock
    waiters = LockManager(make_client(), TYPES, prefix="t", heartbeat=0.05, direct_waiters=0)
    seen: list[list[str]] = []

    def cancel() -> bool:
        seen.append(line(admin, holder))
        return len(seen) >= 2

    with pytest.raises(WaitCancelled):
        waiters.acquire(SCOPE, "job", "r", "waiter", wait=30, cancel=cancel)
    # it waited on the shared path (a ticket of the process's waker), asked between waits
    assert len(seen[0]) == 1 and seen[0][0].startswith("m")
    assert helper_keys(admin, holder) == []
    assert holder.get(held.id).owner == "holder"
    # and the next waiter of that manager is served as usual, woken by the release
    got: list[Any] = []
    taker = threading.Thread(
        target=lambda: got.append(waiters.acquire(SCOPE, "job", "r", "next", wait=10).lock)
    )
    taker.start()
    wait_until(lambda: len(line(admin, holder)) == 1)
    holder.release(held, "holder")
    taker.join(10)
    assert got and got[0].owner == "next"


def test_a_shared_task_waiter_that_is_cancelled_leaves_nothing_behind(
    make_client: Any, make_async_client: Any
) -> None:
    admin = make_client()
    holder = LockManager(admin, TYPES, prefix="t")
    held = holder.acquire(SCOPE, "job", "r", "holder").lock

    async def main() -> None:
        client = make_async_client()
        waiters = AsyncLockManager(client, TYPES, prefix="t", heartbeat=0.05, direct_waiters=0)
        task = asyncio.ensure_future(waiters.acquire(SCOPE, "job", "r", "waiter", wait=30))
        deadline = time.monotonic() + 20
        while len(line(admin, holder)) != 1:
            assert time.monotonic() < deadline, "the waiter never joined the line"
            await asyncio.sleep(0.005)
        assert line(admin, holder)[0].startswith("m")  # the shared path
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        while helper_keys(admin, holder):
            assert time.monotonic() < deadline, "the cancelled waiter left keys behind"
            await asyncio.sleep(0.005)
        await client.aclose()

    asyncio.run(main())
    assert holder.get(held.id).owner == "holder"


def test_a_shared_waiter_whose_wake_up_is_lost_still_gets_the_lock(real_server: Any) -> None:
    """The waker's connection is cut while its waiter waits: the release's PUBLISH may
    reach nobody; the waiter takes its grant at its next heartbeat (or when the resubscribed
    waker tells every waiter to look), well within the grant's second."""
    admin = real_server.client()
    admin.flushall()
    holder = LockManager(admin, TYPES, prefix="t")
    held = holder.acquire(SCOPE, "job", "r", "holder").lock
    waiters = LockManager(real_server.client(), TYPES, prefix="t", heartbeat=0.2, direct_waiters=0)
    got: list[Any] = []
    thread = threading.Thread(
        target=lambda: got.append(waiters.acquire(SCOPE, "job", "r", "waiter", wait=30).lock)
    )
    thread.start()
    wait_until(lambda: len(line(admin, holder)) == 1)
    assert line(admin, holder)[0].startswith("m")
    assert admin.client_kill_filter(_type="pubsub") >= 1  # the waker's subscriber
    holder.release(held, "holder")
    thread.join(30)
    assert got and got[0].owner == "waiter"
    assert holder.get(got[0].id).owner == "waiter"  # its grant taken, not lapsed
    assert helper_keys(admin, holder) == []
