"""Fixtures: every core test runs on fakeredis, a real redis-server and a real Cluster."""

from __future__ import annotations

import os
import shutil
import signal
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import fakeredis
import pytest
from redis.cluster import RedisCluster

from lockcore import EmbeddedRedis, LockManager, LockType, Mode

from .browser import browser  # noqa: F401  (the real browser of the web page tests)
from .servers import Cluster

#: fakeredis (Lua by lupa, FCALL), the bundled redis-server 6.2 (EVALSHA), Debian's Redis 7
#: (FCALL of the FUNCTION library), a 3-master Cluster of the bundled server.
BACKENDS = ["fake", "real", "real7", "cluster"]

#: Lock types the core tests use, one of each behaviour.
TYPES = [
    LockType("gadget", one_per_owner=True, default_ttl=30.0, max_ttl=60.0),
    LockType("file", default_ttl=None, allow_no_expiry=True),
    LockType("job", default_ttl=10.0, max_ttl=20.0),
    LockType("deletion", mode=Mode.MULTI, default_ttl=60.0, allow_no_expiry=True),
]


@pytest.fixture(scope="session")
def real_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[EmbeddedRedis]:
    server = EmbeddedRedis(tmp_path_factory.mktemp("redis"), appendonly=False).start()
    yield server
    server.stop()


def redis7_binary(folder: Path) -> str:
    """Redis 7's server: Debian's redis-tools ships the one binary as redis-check-rdb, and
    run under the name redis-server it serves (``.ci/run`` installs redis-tools)."""
    found = shutil.which("redis-check-rdb")
    if found is None:
        raise RuntimeError("Redis 7 is missing: apt-get install redis-tools (.ci/run does)")
    link = folder / "redis-server"
    link.symlink_to(found)
    return str(link)


@pytest.fixture
def server(tmp_path: Path) -> Iterator[EmbeddedRedis]:
    """A server of the test's own (tests that pause it: SIGSTOP, resumed at the end)."""
    own = EmbeddedRedis(tmp_path / "redis", appendonly=False).start()
    yield own
    assert own.process is not None
    os.kill(own.process.pid, signal.SIGCONT)  # never leave it stopped
    own.stop()


@pytest.fixture(scope="session")
def real7_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[EmbeddedRedis]:
    folder = tmp_path_factory.mktemp("redis7")
    server = EmbeddedRedis(
        folder / "data", appendonly=False, executable=redis7_binary(folder)
    ).start()
    assert server.client().info("server")["redis_version"].startswith("7.")
    yield server
    server.stop()


@pytest.fixture(scope="session")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    nodes = Cluster(tmp_path_factory.mktemp("cluster")).start()
    yield nodes
    nodes.stop()


@pytest.fixture(params=BACKENDS)
def backend(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture
def make_client(backend: str, request: pytest.FixtureRequest) -> Iterator[Any]:
    """Makes clients of the parametrized backend, all on the same (clean) data."""
    made: list[Any] = []
    fake_server = fakeredis.FakeServer()

    def make() -> Any:
        if backend == "fake":
            client: Any = fakeredis.FakeRedis(server=fake_server)
        elif backend in ("real", "real7"):
            client = request.getfixturevalue(f"{backend}_server").client()
        else:
            client = request.getfixturevalue("cluster").client()
        made.append(client)
        return client

    first = make()
    if backend in ("real", "real7"):
        first.flushall()
    elif backend == "cluster":
        first.flushall(target_nodes=RedisCluster.PRIMARIES)
    yield make
    for client in made:
        client.close()


@pytest.fixture
def make_async_client(backend: str, request: pytest.FixtureRequest, make_client: Any) -> Any:
    """Makes redis.asyncio clients on the same data as ``make_client``'s (create and use
    them inside one event loop)."""
    first = make_client()

    def make() -> Any:
        if backend == "fake":
            from fakeredis import FakeAsyncRedis

            return FakeAsyncRedis(server=first.connection_pool.connection_kwargs["server"])
        if backend in ("real", "real7"):
            import redis.asyncio

            path = request.getfixturevalue(f"{backend}_server").socket_path
            return redis.asyncio.Redis(unix_socket_path=str(path))
        from redis.asyncio.cluster import ClusterNode as AsyncNode
        from redis.asyncio.cluster import RedisCluster as AsyncCluster

        ports = request.getfixturevalue("cluster").ports
        return AsyncCluster(startup_nodes=[AsyncNode("127.0.0.1", p) for p in ports])

    make.backend = backend  # type: ignore[attr-defined]
    return make


@pytest.fixture
def redis_client(make_client: Any) -> Any:
    """A clean client of the parametrized backend."""
    return make_client()


#: Backends where managers call the scripts as a FUNCTION library (FCALL), as they do by
#: default wherever the server has FUNCTION; the others (Redis 6.2) fall back to EVALSHA.
FUNCTIONS = ("fake", "real7")


@pytest.fixture
def mgr(redis_client: Any) -> LockManager:
    return LockManager(redis_client, TYPES, prefix="t", event_maxlen=50, retention=60.0)


def all_keys(client: Any) -> list[str]:
    """Every key in the backend (tests only: a full scan)."""
    if isinstance(client, RedisCluster):
        keys = client.keys(target_nodes=RedisCluster.PRIMARIES)
    else:
        keys = client.keys("*")
    return sorted(k.decode() if isinstance(k, bytes) else k for k in keys)


# --- the service -------------------------------------------------------------------------

#: Test users, by API key. Roles in the test catalog below.
KEYS = {
    "admin": "key-admin",
    "alice": "key-alice",
    "bob": "key-bob",
    "carol": "key-carol",
    "dave": "key-dave",
}

CATALOG = """
users:
  - {id: admin, name: EDX Administrator, email: admin@example.com, roles: [sysadmin],
     api_key: key-admin}
  - {id: alice, name: Alice Author, email: alice@example.com, api_key: key-alice,
     roles: [_deletion_lock_write]}
  - {id: bob, name: Bob Builder, email: bob@example.com, api_key: key-bob,
     roles: [_deletion_lock_read]}
  - {id: carol, name: Carol Reader, email: carol@example.com, api_key: key-carol}
  - {id: dave, name: Dave Outsider, email: dave@example.com, api_key: key-dave}
courses:
  - key: c1
    gadgets: [g1, g2, g3, "7"]
    roles: {alice: editor, bob: owner, carol: learner}
  - key: c2
    gadgets: [g1]
    roles: {alice: editor, bob: editor}
workspaces:
  - {id: ws-1, name: Carbon Atlas, admins: [alice, bob], members: [carol]}
  - {id: ws-2, name: Other, admins: [bob]}
rooms:
  - id: room-1
    access: {alice: RoomManager, bob: ContentCreator, carol: Editor, dave: Viewer}
    files:
      - {id: "123456", title: report.docx}
      - {id: "123457", title: budget.xlsx}
  - id: room-2
    access: {bob: RoomManager}
    files:
      - {id: "900", title: secret.docx}
vidispine:
  items: [VX-1, VX-2, VX-3]
  collections:
    - {id: VX-10, items: [VX-1, VX-2]}
    - {id: VX-11, items: [VX-1]}
  libraries:
    - {id: VX-20, items: [VX-1]}
  files:
    - {id: VX-30, storage: VX-5}
"""

SERVICE_BACKENDS = ["fake", "real"]


@pytest.fixture(params=SERVICE_BACKENDS)
def service_client(request: pytest.FixtureRequest) -> Iterator[Any]:
    """A clean client for service tests: fakeredis and a real redis-server."""
    if request.param == "fake":
        client: Any = fakeredis.FakeRedis(server=fakeredis.FakeServer())
    else:
        client = request.getfixturevalue("real_server").client()
        client.flushall()
    yield client
    client.close()


@pytest.fixture
def app(service_client: Any) -> Any:
    from lockcore_service import create_app
    from lockcore_service.catalog import parse_document

    # With the default settings, on fakeredis the APIs run the scripts as a FUNCTION
    # library (FCALL), on the bundled 6.2 server by EVALSHA: both ways behind every API test.
    application = create_app(
        {"REDIS_CLIENT": service_client, "KEY_PREFIX": "t", "VERSAL_TTL": 30.0}
    )
    services = application.extensions["lockcore"]
    services.catalog.replace(parse_document(CATALOG), services.users)
    return application


@pytest.fixture
def client(app: Any) -> Any:
    return app.test_client()
