"""Faults on real processes, bounded in time, every process cleaned up: lock holders
killed -9 while they hold (mutual exclusion and tokens checked from what each worker
wrote), and the Redis server itself killed -9 under lock traffic and restarted on its AOF
(no acknowledged lock lost with ``appendfsync always``)."""

from __future__ import annotations

import multiprocessing as mp
import os
import random
import signal
import time
from pathlib import Path
from typing import Any

from lockcore import EmbeddedRedis, LockConflict, LockManager, LockNotFound, LockType

TYPES = [LockType("job", default_ttl=0.5)]
RESOURCES = ("a", "b")


def _holder(url: str, log: str, stop_at: float) -> None:
    """Acquire (waiting in line), note the entry, hold a few ms, note the exit, release;
    again. Each note is one small O_APPEND write: whole, even when killed between two."""
    import redis

    mgr = LockManager(redis.Redis.from_url(url), TYPES, prefix="f", heartbeat=0.2)
    fd = os.open(log, os.O_WRONLY | os.O_APPEND | os.O_CREAT)
    rng = random.Random(os.getpid())
    while time.monotonic() < stop_at:
        resource = rng.choice(RESOURCES)
        try:
            lock = mgr.acquire(
                "s", "job", resource, f"p{os.getpid()}", wait=max(0.01, stop_at - time.monotonic())
            ).lock
        except LockConflict:
            continue
        os.write(fd, f"enter {resource} {lock.fencing_token} {time.monotonic()!r}\n".encode())
        time.sleep(rng.uniform(0.005, 0.05))
        os.write(fd, f"exit {resource} {lock.fencing_token} {time.monotonic()!r}\n".encode())
        mgr.release(lock, f"p{os.getpid()}")


def test_holders_killed_while_holding_never_overlap_and_tokens_only_grow(tmp_path: Path) -> None:
    server = EmbeddedRedis(tmp_path / "redis", appendonly=False).start()
    ctx = mp.get_context("spawn")  # nothing of this process's state in the workers
    procs: dict[int, Any] = {}
    killed_at: dict[str, float] = {}  # log file -> when its writer was killed
    try:
        stop_at = time.monotonic() + 7.0
        logs = iter(tmp_path / f"w{n}.log" for n in range(1000))

        def spawn() -> None:
            log = str(next(logs))
            proc = ctx.Process(target=_holder, args=(server.url, log, stop_at), daemon=True)
            proc.start()
            procs[proc.pid] = (proc, log)

        for _ in range(6):
            spawn()
        rng = random.Random(7)
        kills = 0

        def inside() -> list[int]:
            """Workers whose last note is an entry: holding now, or a moment ago."""
            found = []
            for pid, (proc, log) in procs.items():
                if proc.is_alive() and os.path.exists(log):
                    with open(log, "rb") as notes:
                        lines = notes.read().splitlines()
                    if lines and lines[-1].startswith(b"enter"):
                        found.append(pid)
            return found

        while time.monotonic() < stop_at - 1.0:
            time.sleep(rng.uniform(0.2, 0.5))
            # most kills land inside a critical section, the others anywhere
            candidates = inside() if kills % 3 else []
            pid = rng.choice(candidates or [p for p, (proc, _) in procs.items() if proc.is_alive()])
            proc, log = procs[pid]
            os.kill(pid, signal.SIGKILL)
            proc.join(10)
            killed_at[log] = time.monotonic()  # it wrote nothing after this
            kills += 1
            spawn()
        for proc, _ in procs.values():
            proc.join(30)
            assert not proc.is_alive(), "a worker outlived the run"
    finally:
        for proc, _ in procs.values():
            if proc.is_alive():
                proc.kill()
                proc.join(10)
        server.stop()
    assert kills >= 5
    # Every critical section, from what its worker wrote: a killed worker's last one, left
    # open, lasted at most until the kill (a dead process does nothing).
    sections: dict[str, list[tuple[float, float, int]]] = {r: [] for r in RESOURCES}
    died_inside = 0
    for log, end in [(log, killed_at.get(log)) for _, log in procs.values()]:
        if not Path(log).exists():
            continue
        opened: tuple[str, int, float] | None = None
        for line in Path(log).read_text().splitlines():
            kind, resource, token, at = line.split()
            if kind == "enter":
                opened = (resource, int(token), float(at))
            else:
                assert opened is not None and opened[1] == int(token)
                sections[resource].append((opened[2], float(at), opened[1]))
                opened = None
        if opened is not None:
            assert end is not None, "a worker that was not killed left a section open"
            sections[opened[0]].append((opened[2], end, opened[1]))
            died_inside += 1
    assert died_inside >= 1, "no worker was killed while holding: the run tested too little"
    for resource, spans in sections.items():
        spans.sort()
        assert len(spans) >= 10  # (a killed holder blocks its resource for its lease)
        for left, right in zip(spans, spans[1:], strict=False):
            assert left[1] <= right[0], f"two holders of {resource} at once"
            assert right[2] > left[2], f"a token of {resource} did not grow"


def _writer(url: str, log: str, stop: Any) -> None:
    """New locks as fast as they come; each one acknowledged is noted (its id)."""
    import redis

    mgr = LockManager(redis.Redis.from_url(url, socket_timeout=2), TYPES, prefix="f")
    fd = os.open(log, os.O_WRONLY | os.O_APPEND | os.O_CREAT)
    n = 0
    while not stop.is_set():
        n += 1
        try:
            lock = mgr.acquire("s", "job", f"r{os.getpid()}-{n}", "writer", ttl=300).lock
        except Exception:  # noqa: BLE001 - the server is down for a moment: try again
            time.sleep(0.01)
            continue
        os.write(fd, f"{lock.id}\n".encode())


def test_a_server_killed_under_traffic_keeps_every_acknowledged_lock(tmp_path: Path) -> None:
    """appendfsync always: a lock is acknowledged only once it is on disk, so a kill -9
    and a restart on the same AOF lose none of them."""
    data = tmp_path / "redis"
    server = EmbeddedRedis(data, appendfsync="always").start()
    socket_path = server.socket_path
    ctx = mp.get_context("spawn")
    log = tmp_path / "acknowledged.log"
    stop = ctx.Event()
    workers = [
        ctx.Process(target=_writer, args=(server.url, str(log), stop), daemon=True)
        for _ in range(3)
    ]
    restarted: EmbeddedRedis | None = None

    def acknowledged() -> int:
        return len(log.read_text().split()) if log.exists() else 0

    def until(condition: Any) -> None:
        deadline = time.monotonic() + 60
        while not condition():
            assert time.monotonic() < deadline, "no lock was acknowledged"
            time.sleep(0.01)

    try:
        for worker in workers:
            worker.start()
        until(lambda: acknowledged() >= 30)  # traffic is flowing
        assert server.process is not None
        os.kill(server.process.pid, signal.SIGKILL)
        server.process.wait(10)
        server.process = None
        acknowledged_before = acknowledged()
        restarted = EmbeddedRedis(data, appendfsync="always").start()
        assert restarted.socket_path == socket_path  # the writers find it again
        until(lambda: acknowledged() >= acknowledged_before + 30)  # and go on
        stop.set()
        for worker in workers:
            worker.join(30)
            assert not worker.is_alive()
    finally:
        for worker in workers:
            if worker.is_alive():
                worker.kill()
                worker.join(10)
        server.stop()
    assert restarted is not None
    try:
        mgr = LockManager(restarted.client(), TYPES, prefix="f")
        ids = log.read_text().split()
        assert len(ids) > acknowledged_before > 0
        lost = []
        for lock_id in ids:
            try:
                mgr.get(lock_id)
            except LockNotFound:
                lost.append(lock_id)
        assert lost == []
    finally:
        restarted.stop()
