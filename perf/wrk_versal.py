"""Versal API throughput under wrk, against a trivial Flask app on the same gunicorn
settings (the framework floor): a quick check while working on the service's request
path. The benchmark of record is ``python -m bench.run --only 7`` (bench/http.py: new
locks per acquire, a 20-lock list, WARNING logs); this one runs the service as shipped
(INFO logs, one JSON line per request), one operation at a time if asked.

    python perf/wrk_versal.py [--duration 10] [--connections 32] [--rounds 3]
                              [--ops acquire,list,release] [--log-level INFO]

What runs:

- a private redis-server on a unix socket (``lockcore.embedded``, AOF off, as bench/run.py);
- ``lockcore serve --workers 2 --redis-url <it> --no-demo`` (gthread, 128 threads: what
  production runs), with the service's log level (INFO by default, as in production;
  its log lines go to a file);
- the floor: a Flask app whose ``/ping`` answers ``{}`` to POST, GET and DELETE, under
  gunicorn with the same worker class, workers and threads;
- wrk (``apt-get install wrk``) with ``perf/versal.lua``, ``-t2 -c32`` by default, each
  operation and its floor interleaved, ``--rounds`` times; the medians are reported.

The data: 32 users ``u<k>`` with SIDs ``bench-key-<k>``, editors of course ``bench``
(gadgets ``g<k>``) and of course ``listed``.

- acquire: ``POST /locks`` by user k on gadget g<k> of ``bench``, k cycling (after the
  first, each is the owner's lock again: the Versal refresh);
- list: ``GET /locks?subject.courseId=listed`` by user k; ``listed`` holds
  ``--list-locks`` locks (10);
- release: ``DELETE /locks/<id>`` by its owner, over a pool of locks made beforehand
  (enough for the floor's rate; a run that runs out reports non-2xx answers and fails).

Each run also prints the CPU time per request of the server's processes (gunicorn's master
and workers, from /proc), of redis-server and of wrk: on a small machine they share the
cores, so that, not the wait, bounds req/s.

Nothing here asserts a speed; it prints req/s and the ratio to the floor.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import redis

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.http import _serve  # noqa: E402
from lockcore import LockManager  # noqa: E402
from lockcore.embedded import EmbeddedRedis  # noqa: E402
from lockcore_service import config as app_config  # noqa: E402
from lockcore_service.catalog import Catalog, parse_document  # noqa: E402
from lockcore_service.identity import Users  # noqa: E402
from lockcore_service.services import lock_types  # noqa: E402

LUA = Path(__file__).with_name("versal.lua")
PREFIX = "lockcore"

FLOOR_APP = """
from flask import Flask, jsonify
app = Flask(__name__)

@app.route("/ping", methods=["POST", "GET", "DELETE"])
def ping():
    return jsonify({})

@app.get("/healthz")
def healthz():
    return jsonify({})
"""

#: operation -> (its floor's wrk op, the status every answer must have)
OPS = {"acquire": ("floor-post", 201), "list": ("floor-get", 200), "release": ("floor-delete", 200)}


def populate(client: redis.Redis, users: int, list_locks: int) -> None:
    client.flushall()
    doc = {
        "users": [
            {
                "id": f"u{k}",
                "name": f"User {k}",
                "email": f"u{k}@example.com",
                "api_key": f"bench-key-{k}",
            }
            for k in range(users)
        ],
        "courses": [
            {
                "key": key,
                "gadgets": [f"g{k}" for k in range(users)],
                "roles": {f"u{k}": "editor" for k in range(users)},
            }
            for key in ("bench", "listed")
        ],
    }
    Catalog(client, PREFIX).replace(parse_document(json.dumps(doc)), Users(client, PREFIX))
    manager = LockManager(client, lock_types(app_config.load()), prefix=PREFIX)
    for k in range(list_locks):
        manager.acquire(
            "versal:course:listed",
            "gadget",
            f"g{k}",
            f"u{k}",
            metadata={"name": f"User {k}", "email": f"u{k}@example.com"},
        )


def release_pool(client: redis.Redis, users: int, count: int, path: Path) -> None:
    """``count`` locks, each in its own (user, course) pair, written as ``<id> <SID>``
    lines, users interleaved."""
    manager = LockManager(client, lock_types(app_config.load()), prefix=PREFIX)
    courses = -(-count // users)

    def make(course: int) -> list[str]:
        out = []
        for k in range(users):
            lock = manager.acquire(
                f"versal:course:r{course}",
                "gadget",
                f"g{k}",
                f"u{k}",
                ttl=3600,
                metadata={"name": f"User {k}", "email": f"u{k}@example.com"},
            )
            out.append(f"{lock.lock.id} bench-key-{k}")
        return out

    with ThreadPoolExecutor(8) as pool:
        lines = [line for chunk in pool.map(make, range(courses)) for line in chunk]
    path.write_text("\n".join(lines[:count]) + "\n")


def serve(
    cmd: list[str], port: int, env: dict[str, str], cwd: str, log: Path
) -> subprocess.Popen[Any]:
    return _serve(cmd, port, env, cwd, log)  # the benchmark's own


_TICK = os.sysconf("SC_CLK_TCK")


def tree_cpu(pid: int) -> float:
    """CPU seconds (user + system) of a process and its live descendants (gunicorn's master
    and workers), from /proc."""
    total, todo = 0.0, [pid]
    while todo:
        current = todo.pop()
        try:
            stat = Path(f"/proc/{current}/stat").read_text()
            children = Path(f"/proc/{current}/task/{current}/children").read_text().split()
        except OSError:
            continue
        fields = stat[stat.rindex(")") + 2 :].split()
        total += (int(fields[11]) + int(fields[12])) / _TICK  # utime, stime
        todo += [int(child) for child in children]
    return total


def redis_cpu(client: redis.Redis) -> float:
    info = client.info("cpu")
    return float(info["used_cpu_sys"]) + float(info["used_cpu_user"])


def wrk(
    url: str,
    op: str,
    args: argparse.Namespace,
    extra_env: dict[str, str],
    server: subprocess.Popen[Any] | None = None,
    client: redis.Redis | None = None,
) -> dict[str, Any]:
    """One wrk run; with ``server`` and ``client``, also the CPU time per request of the
    server's processes, of redis-server and of wrk itself (what bounds req/s when they
    share a small machine)."""
    env = {**os.environ, "BENCH_OP": op, "BENCH_WRK_THREADS": str(args.threads), **extra_env}
    cpu_before = (
        tree_cpu(server.pid) if server else 0.0,
        redis_cpu(client) if client else 0.0,
        resource.getrusage(resource.RUSAGE_CHILDREN),
    )
    out = subprocess.run(
        [
            "wrk",
            f"-t{args.threads}",
            f"-c{args.connections}",
            f"-d{args.duration}s",
            "--latency",
            "-s",
            str(LUA),
            url,
        ],
        env=env,
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    children = resource.getrusage(resource.RUSAGE_CHILDREN)
    wrk_cpu = (
        children.ru_utime + children.ru_stime - cpu_before[2].ru_utime - cpu_before[2].ru_stime
    )
    server_cpu = tree_cpu(server.pid) - cpu_before[0] if server else 0.0
    store_cpu = redis_cpu(client) - cpu_before[1] if client else 0.0
    rate = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))  # type: ignore[union-attr]
    bad = re.search(r"Non-2xx or 3xx responses:\s+(\d+)", out)
    errors = re.search(r"Socket errors:(.*)", out)
    p50 = re.search(r"^\s+50%\s+(\S+)", out, re.M)
    p99 = re.search(r"^\s+99%\s+(\S+)", out, re.M)
    done = rate * args.duration or 1.0
    return {
        "rps": rate,
        "non2xx": int(bad.group(1)) if bad else 0,
        "cpu_us": {
            "server": server_cpu / done * 1e6,
            "redis": store_cpu / done * 1e6,
            "wrk": wrk_cpu / done * 1e6,
        },
        "socket_errors": errors.group(1).strip() if errors else "",
        "p50": p50.group(1) if p50 else "?",
        "p99": p99.group(1) if p99 else "?",
        "raw": out,
    }


def check_answers(base: str, args: argparse.Namespace) -> None:
    """One of each request, by hand: the load runs measure what they should."""
    import requests

    body = {"type": "gadget", "subject": {"courseId": "bench", "gadgetId": "g0"}}
    got = requests.post(f"{base}/locks", json=body, headers={"SID": "bench-key-0"})
    assert got.status_code == 201, got.text
    got = requests.get(
        f"{base}/locks", params={"subject.courseId": "listed"}, headers={"SID": "bench-key-1"}
    )
    assert got.status_code == 200 and len(got.json()) == args.list_locks, got.text


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--duration", type=int, default=10, help="seconds per wrk run")
    parser.add_argument("--connections", type=int, default=32)
    parser.add_argument("--threads", type=int, default=2, help="wrk threads")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--workers", type=int, default=2, help="gunicorn workers")
    parser.add_argument("--gunicorn-threads", type=int, default=128)
    parser.add_argument("--users", type=int, default=32)
    parser.add_argument("--list-locks", type=int, default=10)
    parser.add_argument("--ops", default="acquire,list,release")
    parser.add_argument("--log-level", default="INFO", help="the service's LOCKCORE_LOG_LEVEL")
    parser.add_argument("--keep", action="store_true", help="keep the work directory")
    args = parser.parse_args(argv)
    ops = [op for op in args.ops.split(",") if op]
    if shutil.which("wrk") is None:
        parser.error("wrk is not installed (apt-get install wrk)")

    work = Path(tempfile.mkdtemp(prefix="lc-wrk-"))
    (work / "floor.py").write_text(FLOOR_APP)
    bin_dir = Path(sys.executable).parent
    env = {**os.environ, "LOCKCORE_LOG_LEVEL": args.log_level}
    ports = {"lockcore": 18531, "floor": 18532}
    results: dict[str, list[dict[str, Any]]] = {}
    lua_env = {"BENCH_USERS": str(args.users)}
    with EmbeddedRedis(work / "redis", appendonly=False) as server:
        client = server.client()
        populate(client, args.users, args.list_locks)
        servers = [
            serve(
                [
                    str(bin_dir / "lockcore"),
                    "serve",
                    "--port",
                    str(ports["lockcore"]),
                    "--workers",
                    str(args.workers),
                    "--threads",
                    str(args.gunicorn_threads),
                    "--redis-url",
                    server.url,
                    "--no-demo",
                ],
                ports["lockcore"],
                env,
                str(work),
                work / "lockcore.log",
            ),
            serve(
                [
                    str(bin_dir / "gunicorn"),
                    "-k",
                    "gthread",
                    "-w",
                    str(args.workers),
                    "--threads",
                    str(args.gunicorn_threads),
                    "-b",
                    f"127.0.0.1:{ports['floor']}",
                    "floor:app",
                ],
                ports["floor"],
                env,
                str(work),
                work / "floor.log",
            ),
        ]
        try:
            lockcore_url = f"http://127.0.0.1:{ports['lockcore']}"
            floor_url = f"http://127.0.0.1:{ports['floor']}"
            check_answers(lockcore_url, args)
            for n in range(args.rounds):
                for op in ops:
                    floor_op = OPS[op][0]
                    floor = wrk(floor_url, floor_op, args, lua_env, servers[1], client)
                    results.setdefault(floor_op, []).append(floor)
                    extra = dict(lua_env)
                    if op == "release":
                        pool = work / "release.txt"
                        release_pool(
                            client, args.users, int(floor["rps"] * args.duration * 1.3) + 1000, pool
                        )
                        extra["BENCH_RELEASE_FILE"] = str(pool)
                    got = wrk(lockcore_url, op, args, extra, servers[0], client)
                    results.setdefault(op, []).append(got)
                    print(
                        f"round {n + 1}: {op:8} {got['rps']:8.0f} req/s "
                        f"(p50 {got['p50']}, p99 {got['p99']}, non-2xx {got['non2xx']})"
                        f"   {floor_op:12} {floor['rps']:8.0f} req/s",
                        flush=True,
                    )
                    for name, run in ((op, got), (floor_op, floor)):
                        cpu = run["cpu_us"]
                        print(
                            f"         CPU µs per request, {name:12}: server "
                            f"{cpu['server']:5.0f}, redis-server {cpu['redis']:4.0f}, "
                            f"wrk {cpu['wrk']:4.0f}",
                            flush=True,
                        )
                    if got["non2xx"] or got["socket_errors"]:
                        print(got["raw"], file=sys.stderr)
                        raise SystemExit(f"{op}: answers other than 2xx or socket errors")
                    if op == "release":
                        client.flushdb()
                        populate(client, args.users, args.list_locks)
        finally:
            for proc in servers:
                proc.terminate()
                proc.wait(10)
            client.close()

    print()
    print(
        f"wrk -t{args.threads} -c{args.connections} -d{args.duration}s, {args.rounds} "
        f"rounds, medians; gunicorn gthread {args.workers} workers x "
        f"{args.gunicorn_threads} threads; LOCKCORE_LOG_LEVEL={args.log_level}"
    )
    print(f"{'operation':10} {'req/s':>8} {'floor':>8} {'ratio':>6}")
    summary = {}
    for op in ops:
        rps = statistics.median(r["rps"] for r in results[op])
        floor = statistics.median(r["rps"] for r in results[OPS[op][0]])
        summary[op] = {"rps": round(rps), "floor": round(floor), "ratio": round(rps / floor, 3)}
        print(f"{op:10} {rps:8.0f} {floor:8.0f} {rps / floor:6.2f}")
    print(json.dumps(summary))
    if args.keep:
        print(f"work directory: {work}")
    else:
        shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
