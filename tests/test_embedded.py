"""The embedded redis-server: starts, persists across restarts, stops cleanly."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import pytest

from lockcore import EmbeddedRedis, LockConflict, LockManager
from lockcore.embedded import find_binary

from .conftest import TYPES


def test_binary_is_found_without_any_server_installed() -> None:
    assert Path(find_binary("redis-server")).is_file()
    assert Path(find_binary("redis-cli")).is_file()


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
