"""`lockcore locks list|show|release|watch`, against a real redis-server."""

from __future__ import annotations

import contextlib
import json
import select
import subprocess
import sys
import time
from collections.abc import Iterator
from typing import Any

import pytest

from lockcore import LockManager, LockNotFound

from .live import LOCKCORE


@pytest.fixture
def url(real_server: Any) -> str:
    real_server.client().flushall()
    return str(real_server.url)


@pytest.fixture
def mgr(real_server: Any) -> LockManager:
    from lockcore_service import config
    from lockcore_service.services import lock_types

    return LockManager(real_server.client(), lock_types(config.load()))


def cli(url: str, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [LOCKCORE, "locks", *args, "--redis-url", url],
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )


def test_list_shows_a_readable_table_and_json(url: str, mgr: LockManager) -> None:
    a = mgr.acquire("v1:batch", "job", "nightly", "alice", metadata={"host": "w1"}).lock
    mgr.acquire("v1:batch", "job", "hourly", "bob")
    table = cli(url, "list", "v1:batch")
    assert table.returncode == 0
    lines = table.stdout.splitlines()
    assert lines[0].split()[:5] == ["ID", "TYPE", "RESOURCE", "OWNER", "TOKEN"]
    assert any(a.id in line and "alice" in line and "host=w1" in line for line in lines)
    as_json = json.loads(cli(url, "list", "v1:batch", "--owner", "alice", "--json").stdout)
    assert [(lk["id"], lk["owner"]) for lk in as_json] == [(a.id, "alice")]


def test_show_and_release(url: str, mgr: LockManager) -> None:
    lock = mgr.acquire("v1:batch", "job", "nightly", "alice").lock
    shown = json.loads(cli(url, "show", lock.id, "--json").stdout)
    assert shown["scope"] == "v1:batch" and shown["fencing_token"] == lock.fencing_token
    refused = cli(url, "release", lock.id, "--owner", "bob")
    assert refused.returncode == 1 and "belongs to alice" in refused.stderr
    released = cli(url, "release", lock.id)
    assert released.returncode == 0 and lock.id in released.stdout
    with pytest.raises(LockNotFound):
        mgr.get(lock.id)
    missing = cli(url, "show", lock.id)
    assert missing.returncode == 1 and "no live lock" in missing.stderr


@pytest.mark.parametrize("scope", ["v1:batch", None])
def test_watch_follows_events_live(url: str, mgr: LockManager, scope: str | None) -> None:
    with watching(mgr, url, *([scope] if scope else []), "--count", "2") as (watcher, before):
        lock = mgr.acquire("v1:batch", "job", "nightly", "alice").lock
        mgr.release(lock, "alice")
        events, _ = shown_events(watcher)
    assert [(e["event"], e["id"]) for e in events] == [("acquired", lock.id), ("released", lock.id)]
    first = events[0]  # numbers in seconds, as list --json; the instant in ISO-8601 UTC
    assert first["token"] == lock.fencing_token and isinstance(first["at"], float)
    assert first["time"].endswith("Z") and first["time"][:4].isdigit() and "T" in first["time"]
    assert first["expires_at"] == pytest.approx(lock.expires_at, abs=0.001)


def wait_until_following(client: Any, before: set[str], timeout: float = 30.0) -> None:
    """Until a new client reads the stream or listens to the channels: the watcher is
    ready."""
    deadline = time.monotonic() + timeout
    while not any(
        c["id"] not in before and c.get("cmd") in ("xread", "psubscribe")
        for c in client.client_list()
    ):
        assert time.monotonic() < deadline, "the watcher never started following"
        time.sleep(0.02)


@contextlib.contextmanager
def watching(
    mgr: LockManager, url: str, *args: str
) -> Iterator[tuple[subprocess.Popen[str], set[str]]]:
    """``lockcore locks watch ARGS --json`` running and following, and the ids of the
    clients Redis had before it; killed on the way out if it has not ended."""
    command = [LOCKCORE, "locks", "watch", *args, "--json", "--redis-url", url]
    before = {c["id"] for c in mgr.client.client_list()}
    watcher = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        wait_until_following(mgr.client, before)
        yield watcher, before
    finally:
        if watcher.poll() is None:
            watcher.kill()
            watcher.communicate()


def shown_events(watcher: subprocess.Popen[str]) -> tuple[list[dict[str, Any]], str]:
    """The events the watcher printed until it ended (it must end well), and its stderr."""
    out, err = watcher.communicate(timeout=30)
    assert watcher.returncode == 0, err
    return [json.loads(line) for line in out.splitlines()], err


def test_cli_help_lists_the_lock_commands() -> None:
    out = subprocess.run(
        [sys.executable, "-m", "lockcore_service.cli", "locks", "--help"],
        capture_output=True,
        text=True,
        check=True,
    )
    for command in ("list", "show", "release", "watch"):
        assert command in out.stdout


def test_json_is_numbers_in_seconds_to_the_ms(url: str, mgr: LockManager) -> None:
    lock = mgr.acquire("v1:batch", "job", "nightly", "alice", ttl=20).lock
    [shown] = json.loads(cli(url, "list", "v1:batch", "--json").stdout)
    for name in ("acquired_at", "expires_at", "expires_in"):
        assert isinstance(shown[name], float) and round(shown[name], 3) == shown[name]
    assert shown["fencing_token"] == lock.fencing_token


def test_an_unknown_scope_and_lock_are_said_so(url: str, mgr: LockManager) -> None:
    unknown = cli(url, "list", "v1:nothing-here")
    assert unknown.returncode == 1 and "no scope 'v1:nothing-here'" in unknown.stderr
    lock = mgr.acquire("v1:batch", "job", "nightly", "alice").lock
    mgr.release(lock, "alice")
    empty = cli(url, "list", "v1:batch")  # known, nothing live: not an error
    assert empty.returncode == 0 and "no live locks" in empty.stdout
    shown, released = cli(url, "show", lock.id), cli(url, "release", lock.id)
    assert shown.returncode == released.returncode == 1
    assert shown.stderr == released.stderr == f"lockcore: no live lock {lock.id}\n"


def test_scopes_lists_the_scopes_and_their_live_locks(url: str, mgr: LockManager) -> None:
    mgr.acquire("v1:batch", "job", "a", "alice")
    mgr.acquire("v1:batch", "job", "b", "bob")
    mgr.acquire("v1:other", "job", "c", "carol")
    gone = mgr.acquire("v1:gone", "job", "d", "dave").lock
    mgr.release(gone, "dave")  # its hash is kept (retention): not a busy scope
    listed = json.loads(cli(url, "scopes", "--json").stdout)
    assert listed == [{"scope": "v1:batch", "locks": 2}, {"scope": "v1:other", "locks": 1}]
    # lockcore scopes: the same command at the top level
    top = subprocess.run(
        [LOCKCORE, "scopes", "--redis-url", url],
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    assert top.returncode == 0
    assert [line.split() for line in top.stdout.splitlines()] == [
        ["SCOPE", "LIVE", "LOCKS"],
        ["v1:batch", "2"],
        ["v1:other", "1"],
    ]


def test_no_data_directory_is_warned_about(tmp_path: Any) -> None:
    missing = tmp_path / "nowhere"
    out = subprocess.run(
        [LOCKCORE, "locks", "scopes", "--data-dir", str(missing)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert out.returncode == 0 and "no data directory" in out.stderr


def test_watch_of_every_scope_misses_no_event_whose_announcement_was_lost(
    url: str, mgr: LockManager
) -> None:
    """Pub/sub does not queue: an entry whose id was never received (here: written with no
    PUBLISH) is read with the next announced entry of its stream."""
    with watching(mgr, url, "--count", "3") as (watcher, before):
        first = mgr.acquire("v1:batch", "job", "a", "alice").lock
        stream = mgr.keys("v1:batch").events
        mgr.client.xadd(stream, {"event": "released", "id": first.id, "type": "job"})
        second = mgr.acquire("v1:batch", "job", "b", "bob").lock
        events, _ = shown_events(watcher)
    assert [(e["event"], e["id"]) for e in events] == [
        ("acquired", first.id),
        ("released", first.id),
        ("acquired", second.id),
    ]


@pytest.mark.parametrize("scope", ["v1:batch", None])
def test_watch_rides_out_a_dropped_connection_and_misses_nothing(
    url: str, mgr: LockManager, scope: str | None
) -> None:
    """Redis drops the watcher's connections (CLIENT KILL, as a restart or a failover
    would) and two events happen before it is back: it says so on stderr, reconnects and
    shows them, in order, once each (it used to end with the error)."""
    with watching(mgr, url, *([scope] if scope else []), "--count", "3") as (watcher, before):
        first = mgr.acquire("v1:batch", "job", "a", "alice").lock
        assert watcher.stdout is not None
        ready, _, _ = select.select([watcher.stdout], [], [], 30)
        assert ready, "the first event was not shown"
        shown = [json.loads(watcher.stdout.readline())]
        mine = mgr.client.client_id()
        for c in mgr.client.client_list():
            if c["id"] not in before and int(c["id"]) != mine:
                mgr.client.client_kill_filter(_id=c["id"])
        second = mgr.acquire("v1:batch", "job", "b", "bob").lock
        mgr.release(second, "bob")
        rest, err = shown_events(watcher)
    shown += rest
    assert [(e["event"], e["id"]) for e in shown] == [
        ("acquired", first.id),
        ("acquired", second.id),
        ("released", second.id),
    ]
    assert "lost Redis" in err and "Redis is back" in err
