"""`lockcore run --lock NAME -- CMD` and `lockcore elect NAME -- CMD`, against a real
redis-server: the command runs under the lock with its token, its status is ours, the
lock is released after it, a second one waits or is refused, a lost lock stops it."""

from __future__ import annotations

import subprocess
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from lockcore import LockManager

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


def until(condition: Callable[[], Any], timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.02)


def with_url(url: str, args: tuple[str, ...]) -> list[str]:
    """``lockcore ARGS`` with ``--redis-url`` among its own arguments (before ``--``)."""
    at = args.index("--") if "--" in args else len(args)
    return [LOCKCORE, *args[:at], "--redis-url", url, *args[at:]]


def lockcore(url: str, *args: str, **kwargs: Any) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        with_url(url, args),
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
        **kwargs,
    )


STARTED: list[subprocess.Popen[str]] = []


@pytest.fixture(autouse=True)
def stop_what_was_started() -> Any:
    """Every process a test started is gone after it, passed or failed."""
    yield
    while STARTED:
        process = STARTED.pop()
        if process.poll() is None:
            process.terminate()  # lockcore passes it on to its command
            try:
                process.communicate(timeout=30)
            except subprocess.TimeoutExpired:
                process.kill()
        process.communicate(timeout=30)


def start(url: str, *args: str, cwd: Path) -> subprocess.Popen[str]:
    process = subprocess.Popen(
        with_url(url, args), cwd=cwd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )
    STARTED.append(process)
    return process


def finish(process: subprocess.Popen[str]) -> tuple[int, str]:
    """Its exit status and stderr, once it exits (its pipes closed)."""
    _, err = process.communicate(timeout=60)
    return process.returncode, err


#: A command that says it started, then waits until told to go (a file), then exits.
WAIT_FOR_GO = "echo $LOCKCORE_FENCING_TOKEN > started; while [ ! -e go ]; do sleep 0.02; done"


def test_the_command_runs_under_the_lock_with_its_token(url: str, mgr: LockManager) -> None:
    shown = lockcore(
        url,
        "run",
        "--lock",
        "deploy",
        "--owner",
        "ci-7",
        "--",
        "sh",
        "-c",
        'echo "$LOCKCORE_LOCK_ID $LOCKCORE_FENCING_TOKEN"; exit 3',
    )
    assert shown.returncode == 3, shown.stderr  # the command's status
    lock_id, token = shown.stdout.split()
    assert lock_id.startswith(mgr.keys("v1:cli").id_prefix) and int(token) > 0
    assert mgr.list("v1:cli").locks == ()  # released when the command exited


def test_a_second_run_is_refused_or_waits_for_the_first(
    url: str, mgr: LockManager, tmp_path: Path
) -> None:
    first = start(url, "run", "--lock", "deploy", "--", "sh", "-c", WAIT_FOR_GO, cwd=tmp_path)
    until(lambda: (tmp_path / "started").exists() and (tmp_path / "started").read_text())
    token = int((tmp_path / "started").read_text())
    holder = mgr.list("v1:cli").locks[0]
    assert (holder.resource, holder.fencing_token) == ("deploy", token)  # /v1 sees it

    refused = lockcore(url, "run", "--lock", "deploy", "--", "true")
    assert refused.returncode == 1 and f"held by {holder.owner}" in refused.stderr

    second_dir = tmp_path / "second"
    second_dir.mkdir()
    second = start(
        url, "run", "--lock", "deploy", "--wait", "60", "--", "sh", "-c", WAIT_FOR_GO,
        cwd=second_dir,
    )  # fmt: skip
    (tmp_path / "go").touch()
    assert finish(first)[0] == 0
    until(lambda: (second_dir / "started").exists() and (second_dir / "started").read_text())
    assert int((second_dir / "started").read_text()) > token
    (second_dir / "go").touch()
    assert finish(second)[0] == 0
    assert mgr.list("v1:cli").locks == ()


def test_a_lost_lock_stops_the_command(url: str, mgr: LockManager, tmp_path: Path) -> None:
    running = start(
        url, "run", "--lock", "deploy", "--ttl", "1", "--", "sh", "-c", WAIT_FOR_GO,
        cwd=tmp_path,
    )  # fmt: skip
    until(lambda: (tmp_path / "started").exists() and (tmp_path / "started").read_text())
    lock = mgr.list("v1:cli").locks[0]
    mgr.release(lock, lock.owner, force=True)  # taken away: the next renewal finds it gone
    status, err = finish(running)
    assert status == 1 and "lost" in err  # the command got SIGTERM; it never saw "go"
    assert not (tmp_path / "go").exists()


def test_elect_runs_the_command_while_leading_with_growing_terms(url: str, tmp_path: Path) -> None:
    script = "echo $LOCKCORE_TERM > started; while [ ! -e go ]; do sleep 0.02; done"
    first_dir, second_dir = tmp_path / "a", tmp_path / "b"
    first_dir.mkdir()
    second_dir.mkdir()
    first = start(url, "elect", "db", "--", "sh", "-c", script, cwd=first_dir)
    until(lambda: (first_dir / "started").exists() and (first_dir / "started").read_text())
    second = start(url, "elect", "db", "--", "sh", "-c", script, cwd=second_dir)
    refused = lockcore(url, "elect", "db", "--wait", "0.1", "--", "true")
    assert refused.returncode == 1 and "not elected" in refused.stderr
    assert not (second_dir / "started").exists()  # one leader at a time
    (first_dir / "go").touch()
    assert finish(first)[0] == 0
    until(lambda: (second_dir / "started").exists() and (second_dir / "started").read_text())
    assert int((second_dir / "started").read_text()) > int((first_dir / "started").read_text())
    (second_dir / "go").touch()
    assert finish(second)[0] == 0


def test_run_needs_a_command(url: str) -> None:
    missing = lockcore(url, "run", "--lock", "deploy")
    assert missing.returncode == 1 and "after --" in missing.stderr


def test_run_takes_read_locks_side_by_side(url: str, mgr: LockManager, tmp_path: Path) -> None:
    reader_dir = tmp_path / "r"
    reader_dir.mkdir()
    reader = start(
        url, "run", "--lock", "doc", "--type", "rw", "--shared", "--", "sh", "-c", WAIT_FOR_GO,
        cwd=reader_dir,
    )  # fmt: skip
    until(lambda: (reader_dir / "started").exists() and (reader_dir / "started").read_text())
    second = lockcore(url, "run", "--lock", "doc", "--type", "rw", "--shared", "--", "true")
    assert second.returncode == 0, second.stderr  # another reader gets in
    writer = lockcore(url, "run", "--lock", "doc", "--type", "rw", "--", "true")
    assert writer.returncode == 1 and "held by" in writer.stderr  # a writer does not
    (reader_dir / "go").touch()
    assert finish(reader)[0] == 0
    refused = lockcore(url, "run", "--lock", "doc", "--shared", "--", "true")
    assert refused.returncode == 1 and "--type rw" in refused.stderr


def test_several_locks_are_a_multi_lock(url: str, mgr: LockManager, tmp_path: Path) -> None:
    running = start(
        url, "run", "--lock", "a", "--lock", "b", "--", "sh", "-c",
        'echo "$LOCKCORE_LOCK_ID" > ids; ' + WAIT_FOR_GO,
        cwd=tmp_path,
    )  # fmt: skip
    until(lambda: (tmp_path / "started").exists() and (tmp_path / "started").read_text())
    ids = (tmp_path / "ids").read_text().split()
    assert len(ids) == 2 and len((tmp_path / "started").read_text().split()) == 2
    assert sorted(lock.resource for lock in mgr.list("v1:cli").locks) == ["a", "b"]
    refused = lockcore(url, "run", "--lock", "b", "--lock", "c", "--", "true")
    assert refused.returncode == 1 and "held by" in refused.stderr
    assert [lock.resource for lock in mgr.list("v1:cli").locks if lock.resource == "c"] == []
    (tmp_path / "go").touch()
    assert finish(running)[0] == 0
    assert mgr.list("v1:cli").locks == ()  # released together
    waiting = lockcore(url, "run", "--lock", "a", "--lock", "b", "--wait", "1", "--", "true")
    assert waiting.returncode == 1 and "no --wait" in waiting.stderr
