"""One URL reaches any deployment: embedded, unix socket, Cluster, Sentinel."""

from __future__ import annotations

from pathlib import Path

import pytest
import redis

from lockcore import LockConflict, LockManager, connect

from .conftest import TYPES
from .servers import Cluster, SentinelSetup


def exercise(mgr: LockManager) -> None:
    for n in range(10):
        lock = mgr.acquire(f"scope-{n}", "job", "r", "alice").lock
        with pytest.raises(LockConflict):
            mgr.acquire(f"scope-{n}", "job", "r", "bob")
        assert mgr.get(lock.id).scope == f"scope-{n}"
        mgr.release(lock.id, "alice")


def test_no_url_starts_the_embedded_server(tmp_path: Path) -> None:
    mgr = LockManager.from_url(None, TYPES, data_dir=str(tmp_path))
    assert mgr.connection is not None and mgr.connection.embedded is not None
    exercise(mgr)
    mgr.close()
    assert not (tmp_path / "redis.sock").exists()


def test_unix_socket_url(real_server) -> None:  # type: ignore[no-untyped-def]
    mgr = LockManager.from_url(real_server.url, TYPES, prefix="url")
    exercise(mgr)
    mgr.close()


def test_cluster_url(cluster: Cluster) -> None:
    mgr = LockManager.from_url(f"redis+cluster://127.0.0.1:{cluster.ports[1]}", TYPES, prefix="url")
    exercise(mgr)
    mgr.close()


def test_sentinel_url_reaches_the_master(tmp_path: Path) -> None:
    setup = SentinelSetup(tmp_path).start()
    try:
        mgr = LockManager.from_url(setup.url, TYPES, prefix="url")
        exercise(mgr)
        lock = mgr.acquire("s", "job", "r", "alice").lock
        with redis.Redis(port=setup.master_port) as master:
            assert master.hexists(mgr.keys("s").locks, str(lock.fencing_token))
        mgr.close()
    finally:
        setup.stop()


@pytest.mark.parametrize("url", ["http://x", "redis+sentinel://127.0.0.1:1"])
def test_bad_urls_are_refused(url: str) -> None:
    with pytest.raises(ValueError):
        connect(url)
