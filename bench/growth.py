"""Section 11: growth across masters and instances, from Redis's own accounting.

(a) The same lock load on Redis Clusters of 1, 3 and 6 masters (fresh bundled servers on
loopback, slots split evenly): Redis CPU per operation (``INFO cpu``), script time per
operation (``INFO commandstats``), and how calls, CPU, keys and memory divide over the
masters (max/min). (b) Every API of the service in one mixed load on a 3-master Cluster,
with the per-process cache of keys and catalog entries on (``AUTH_CACHE_TTL`` 1 s) and off
(0): each master's share of Redis time, and what of it the ``{users}`` and ``{catalog}``
slots take (``SLOWLOG`` at threshold 0 times every command a client sent, with its keys).
(c) 1, 2 and 4 ``lockcore serve`` instances (one gunicorn worker each) on one Redis under
the same wrk load: req/s, Redis CPU and the instances' CPU per request.

On one machine of a few cores the throughput of (a) and (c) cannot grow with masters or
instances; CPU accounting still shows how the work divides and what each request costs.
"""

from __future__ import annotations

import json
import multiprocessing as mp
import os
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import redis
from redis.cluster import ClusterNode, RedisCluster

from lockcore import LockManager
from lockcore.embedded import SLOTS, EmbeddedCluster
from lockcore.embedded import wait_until as _wait

from . import common
from .common import (
    ADMIN_COMMANDS,
    SCRIPT_COMMANDS,
    Section,
    commandstats,
    lock_type,
    stop_all,
)

PREFIX = "bench"
#: commands a Cluster client sends for itself, never part of a measured operation
CLUSTER_ADMIN = (*ADMIN_COMMANDS, "cluster", "command", "readonly", "slowlog", "dbsize")


def _table(head: list[str], rows: list[list[str]]) -> str:
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    return "\n".join(lines + ["| " + " | ".join(row) + " |" for row in rows])


def _ratio(values: list[float]) -> str:
    low, high = min(values), max(values)
    if len(values) == 1:
        return "—"
    return f"{high / low:.2f}" if low > 0 else "∞"


# -- a Cluster of n masters ---------------------------------------------------------------


#: n masters (1 included), no replicas, slots split evenly: lockcore's EmbeddedCluster
Masters = EmbeddedCluster


@contextmanager
def masters(n: int, executable: str | None) -> Iterator[Masters]:
    folder = Path(tempfile.mkdtemp(prefix=f"lc-growth-{n}-"))
    try:
        with Masters(folder, n, executable) as cluster:
            yield cluster
    finally:
        shutil.rmtree(folder, ignore_errors=True)


# -- each master's own accounting ---------------------------------------------------------


@dataclass
class Snap:
    """One master's counters at an instant."""

    cpu_us: float  #: used_cpu_user + used_cpu_sys
    calls: int  #: script calls (else every command but the bench's own)
    usec: int  #: their time (a script's includes the commands it ran)
    keys: int
    memory: int


def snap(node: redis.Redis) -> Snap:
    cpu = node.info("cpu")
    stats = commandstats(node)
    scripts = {k: v for k, v in stats.items() if k in SCRIPT_COMMANDS}
    counted = scripts or {k: v for k, v in stats.items() if k not in CLUSTER_ADMIN}
    return Snap(
        (float(cpu["used_cpu_user"]) + float(cpu["used_cpu_sys"])) * 1e6,
        sum(c for c, _ in counted.values()),
        sum(u for _, u in counted.values()),
        int(node.dbsize()),
        int(node.info("memory")["used_memory"]),
    )


def delta(before: list[Snap], after: list[Snap]) -> list[Snap]:
    return [
        Snap(a.cpu_us - b.cpu_us, a.calls - b.calls, a.usec - b.usec, a.keys, a.memory - b.memory)
        for b, a in zip(before, after, strict=True)
    ]


# -- (a) the lock load --------------------------------------------------------------------


def _worker(ports: list[int], phase: str, w: int, count: int, scopes: int) -> None:
    client = RedisCluster(startup_nodes=[ClusterNode("127.0.0.1", p) for p in ports])
    mgr = LockManager(
        client, [lock_type("job", default_ttl=60.0)], prefix=PREFIX, functions=common.FUNCTIONS
    )
    if phase == "hold":  # new locks, kept (an hour): the held set whose memory is measured
        for i in range(count):
            n = w * count + i
            mgr.acquire(f"s{n % scopes}", "job", f"h{n}", f"o{w}", ttl=3600)
    else:  # acquire + release cycles over the scopes
        for i in range(count):
            lock = mgr.acquire(f"s{(i * 7 + w) % scopes}", "job", f"c{w}-{i % 50}", f"o{w}").lock
            mgr.release(lock, f"o{w}")
    client.close()


def _phase(cluster: Masters, phase: str, workers: int, count: int, scopes: int) -> float:
    ctx = mp.get_context("fork")
    procs = [
        ctx.Process(target=_worker, args=(cluster.ports, phase, w, count, scopes))
        for w in range(workers)
    ]
    started = time.monotonic()
    for proc in procs:
        proc.start()
    for proc in procs:
        proc.join(600)
        if proc.exitcode != 0:
            raise RuntimeError(f"a {phase} worker failed (exit {proc.exitcode})")
    return time.monotonic() - started


@dataclass
class MastersResult:
    n: int
    hold: list[Snap]  #: per master, over the hold phase
    cycle: list[Snap]  #: per master, over the cycle phase
    held: int  #: locks held after the hold phase
    hold_ops: int
    cycle_ops: int
    idle_cpu_ms_s: float  #: all masters' CPU per second, idle (cron, cluster bus)
    seconds: float


def lock_load(
    n: int, executable: str | None, workers: int, hold: int, cycles: int, scopes: int
) -> MastersResult:
    with masters(n, executable) as cluster:
        nodes = cluster.nodes()
        warm = cluster.client()  # scripts loaded on every master before anything is timed
        mgr = LockManager(
            warm, [lock_type("job", default_ttl=60.0)], prefix=PREFIX, functions=common.FUNCTIONS
        )
        for i in range(max(scopes, 3 * n)):
            mgr.release(mgr.acquire(f"warm{i}", "job", "r", "me").lock, "me")
        warm.close()
        for node in nodes:
            node.config_resetstat()
        before = [snap(node) for node in nodes]
        time.sleep(1.0)
        idle = delta(before, [snap(node) for node in nodes])
        idle_cpu = sum(s.cpu_us for s in idle) / 1000
        for node in nodes:
            node.config_resetstat()
        s0 = [snap(node) for node in nodes]
        took = _phase(cluster, "hold", workers, hold, scopes)
        s1 = [snap(node) for node in nodes]
        took += _phase(cluster, "cycle", workers, cycles, scopes)
        s2 = [snap(node) for node in nodes]
        for node in nodes:
            node.close()
    return MastersResult(
        n,
        delta(s0, s1),
        delta(s1, s2),
        workers * hold,
        workers * hold,
        2 * workers * cycles,
        idle_cpu,
        took,
    )


def _cpu_per_op(r: MastersResult) -> float:
    return sum(s.cpu_us for s in (*r.hold, *r.cycle)) / (r.hold_ops + r.cycle_ops)


def _masters_rows(results: list[MastersResult]) -> tuple[list[list[str]], dict[str, float]]:
    rows = []
    summary: dict[str, float] = {}
    for r in results:
        ops = r.hold_ops + r.cycle_ops
        both = [
            Snap(h.cpu_us + c.cpu_us, h.calls + c.calls, h.usec + c.usec, c.keys, h.memory)
            for h, c in zip(r.hold, r.cycle, strict=True)
        ]
        cpu_op = sum(s.cpu_us for s in both) / ops
        net_op = cpu_op - r.idle_cpu_ms_s * 1000 * r.seconds / ops
        usec_op = sum(s.usec for s in both) / ops
        acquire_cpu = sum(s.cpu_us for s in r.hold) / r.hold_ops
        cycle_cpu = sum(s.cpu_us for s in r.cycle) / r.cycle_ops
        bytes_lock = sum(s.memory for s in r.hold) / r.held
        rows.append(
            [
                str(r.n),
                f"{ops:,}",
                f"{acquire_cpu:.1f}",
                f"{cycle_cpu:.1f}",
                f"{cpu_op:.1f}",
                f"{net_op:.1f}",
                f"{usec_op:.1f}",
                f"{1e6 / cpu_op:,.0f}",
                f"{bytes_lock:.0f}",
                " / ".join(
                    f"{100 * s.calls / max(1, sum(x.calls for x in both)):.0f}" for s in both
                ),
                _ratio([float(s.calls) for s in both]),
                _ratio([s.cpu_us for s in both]),
                _ratio([float(s.keys) for s in both]),
                _ratio([float(s.memory) for s in r.hold]),
                f"{r.idle_cpu_ms_s:.1f}",
            ]
        )
        summary[f"masters_{r.n}_cpu_us_per_op"] = cpu_op
        summary[f"masters_{r.n}_cpu_us_per_op_net_of_idle"] = net_op
        summary[f"masters_{r.n}_acquire_cpu_us"] = acquire_cpu
        summary[f"masters_{r.n}_script_us_per_op"] = usec_op
        summary[f"masters_{r.n}_bytes_per_held_lock"] = bytes_lock
        summary[f"masters_{r.n}_calls_max_min"] = max(s.calls for s in both) / max(
            1, min(s.calls for s in both)
        )
        summary[f"masters_{r.n}_cpu_max_min"] = max(s.cpu_us for s in both) / max(
            1.0, min(s.cpu_us for s in both)
        )
    return rows, summary


# -- (b) every API, cache on and off ------------------------------------------------------


def api_catalog(users: int, entities: int) -> dict[str, Any]:
    """Users ``u<n>`` (key ``growth-key-<n>``) who may lock everything of every API."""
    ids = [f"u{n}" for n in range(users)]
    return {
        "users": [
            {
                "id": u,
                "name": f"User {u}",
                "email": f"{u}@example.com",
                "api_key": f"growth-key-{u[1:]}",
                "roles": ["_deletion_lock_write", "_deletion_lock_read"],
            }
            for u in ids
        ],
        "courses": [
            {
                "key": f"c{k}",
                "gadgets": [f"g{n}" for n in range(users)],
                "roles": dict.fromkeys(ids, "editor"),
            }
            for k in range(entities)
        ],
        "workspaces": [{"id": f"ws-{k}", "name": f"W {k}", "admins": ids} for k in range(entities)],
        "rooms": [
            {
                "id": f"room-{k}",
                "access": dict.fromkeys(ids, "RoomManager"),
                "files": [
                    {"id": str(100000 + k * 100 + n), "title": f"f{n}.docx"} for n in range(users)
                ],
            }
            for k in range(entities)
        ],
        "vidispine": {"items": [f"VX-{1000 + k}" for k in range(entities)]},
    }


def _class_of(key: str) -> str:
    if "{users}" in key:
        return "users"
    if "{catalog}" in key:
        return "catalog"
    if "LIMITER" in key:
        return "limiter"
    if "{#" in key:
        return "directory"
    return "locks"


def _keys_of(args: list[str]) -> list[str]:
    if not args:
        return []
    name = args[0].lower()
    if name in ("evalsha", "eval", "fcall", "fcall_ro", "evalsha_ro", "eval_ro"):
        try:
            return args[3 : 3 + int(args[2])]
        except (IndexError, ValueError):
            return []
    return args[1:2]


def _mixed_requests(app: Any, rounds: int, users: int, entities: int) -> tuple[int, int]:
    """Every API's calls, round after round, each user on its own resources: Versal
    (acquire, list, release), EDX (lock, check, unlock), DocSpace (lock, view, unlock),
    Vidispine (create, get, delete) and /v1 (acquire, release). (requests, failures)"""
    import base64

    client = app.test_client()
    sent = failed = 0

    def ok(response: Any) -> Any:
        nonlocal sent, failed
        sent += 1
        if response.status_code >= 300:
            failed += 1
        return response

    for r in range(rounds):
        for n in range(users):
            u, key = f"u{n}", f"growth-key-{n}"
            k = (r * users + n) % entities
            sid = {"SID": key}
            bearer = {"Authorization": f"Bearer {key}"}
            basic = {
                "Authorization": "Basic " + base64.b64encode(f"{u}:{key}".encode()).decode(),
                "Accept": "application/json",
            }
            edx = {"EDX-API-Key": key, "User-Agent": "EDX-USER"}
            body = {"type": "gadget", "subject": {"courseId": f"c{k}", "gadgetId": f"g{n}"}}
            made = ok(client.post("/locks", json=body, headers=sid)).get_json() or {}
            ok(client.get(f"/locks?subject.courseId=c{k}", headers=sid))
            ok(client.delete(f"/locks/{made.get('id')}", headers=sid))
            ws = {"workspace_id": f"ws-{k}"}
            ok(client.post("/api/3/action/lock_workspace", json=ws, headers=edx))
            ok(client.post("/api/3/action/check_workspace_lock", json=ws, headers=edx))
            ok(client.post("/api/3/action/lock_workspace", json=ws, headers=edx))
            file = f"/api/2.0/files/file/{100000 + k * 100 + n}"
            ok(client.put(f"{file}/lock", json={"lockFile": True}, headers=bearer))
            ok(client.get(file, headers=bearer))
            ok(client.put(f"{file}/lock", json={"lockFile": False}, headers=bearer))
            doc = (
                ok(
                    client.post(
                        f"/API/item/VX-{1000 + k}/deletion-lock",
                        json={"expiryTime": "2099-01-01T00:00:00Z"},
                        headers=basic,
                    )
                ).get_json()
                or {}
            )
            ok(client.get(f"/API/deletion-lock/{doc.get('id')}", headers=basic))
            ok(client.delete(f"/API/deletion-lock/{doc.get('id')}", headers=basic))
            lock = (
                ok(
                    client.post(
                        "/v1/locks", json={"scope": f"batch-{k}", "resource": u}, headers=bearer
                    )
                ).get_json()
                or {}
            )
            ok(client.delete(f"/v1/locks/{lock.get('id')}", headers=bearer))
    return sent, failed


@dataclass
class ApiResult:
    ttl: float
    requests: int
    failed: int
    cpu_us: list[float]  #: per master
    sent_us: list[dict[str, float]]  #: per master: class -> µs of the commands sent
    sent_calls: list[dict[str, int]]
    seconds: float


CLASSES = ("users", "catalog", "limiter", "locks", "directory")


def api_load(
    executable: str | None, ttls: tuple[float, ...], rounds: int, users: int, entities: int
) -> tuple[list[ApiResult], list[str]]:
    from lockcore_service import create_app
    from lockcore_service.catalog import parse_document

    results = []
    with masters(3, executable) as cluster:
        nodes = cluster.nodes()
        client = cluster.client()
        homes = []
        for tag in ("users", "catalog"):
            slot = int(nodes[0].execute_command("CLUSTER", "KEYSLOT", f"x{{{tag}}}"))
            homes.append(next(i for i in range(3) if i * SLOTS // 3 <= slot < (i + 1) * SLOTS // 3))
        for ttl in ttls:
            app = create_app(
                {
                    "REDIS_CLIENT": client,
                    "KEY_PREFIX": PREFIX,
                    "AUTH_CACHE_TTL": ttl,
                    "LOG_LEVEL": "WARNING",
                }
            )
            if not results:
                services = app.extensions["lockcore"]
                services.catalog.replace(
                    parse_document(json.dumps(api_catalog(users, entities))), services.users
                )
            _mixed_requests(app, 1, users, entities)  # warm: scripts, connections
            for node in nodes:
                node.config_set("slowlog-log-slower-than", 0)
                node.config_set("slowlog-max-len", 1_000_000)
                node.slowlog_reset()
                node.config_resetstat()
            before = [snap(node) for node in nodes]
            started = time.monotonic()
            sent, failed = _mixed_requests(app, rounds, users, entities)
            took = time.monotonic() - started
            after = [snap(node) for node in nodes]
            sent_us: list[dict[str, float]] = []
            sent_calls: list[dict[str, int]] = []
            for node in nodes:
                node.config_set("slowlog-log-slower-than", 10_000)
                us = dict.fromkeys(CLASSES, 0.0)
                calls = dict.fromkeys(CLASSES, 0)
                for entry in node.slowlog_get(1_000_000):
                    command = entry["command"]
                    if isinstance(command, bytes):
                        command = command.decode(errors="replace")
                    args = str(command).split(" ")
                    if not args or args[0].lower() in CLUSTER_ADMIN:
                        continue
                    if entry.get("client_address") in (b"?:0", "?:0"):
                        continue  # run by a script (6.2 logs those too): in its time
                    keys = _keys_of(args)
                    kind = _class_of(keys[0]) if keys else "locks"
                    us[kind] += float(entry["duration"])
                    calls[kind] += 1
                node.slowlog_reset()
                sent_us.append(us)
                sent_calls.append(calls)
            results.append(
                ApiResult(
                    ttl,
                    sent,
                    failed,
                    [s.cpu_us for s in delta(before, after)],
                    sent_us,
                    sent_calls,
                    took,
                )
            )
        client.close()
        for node in nodes:
            node.close()
    notes = [f"master {i + 1}" for i in range(3)]
    for i, tag in zip(homes, ("`{users}`", "`{catalog}`"), strict=True):
        notes[i] += f" (holds {tag})"
    return results, notes


def _api_rows(
    results: list[ApiResult], names: list[str]
) -> tuple[list[list[str]], dict[str, float]]:
    rows = []
    summary: dict[str, float] = {}
    for r in results:
        total_cpu = sum(r.cpu_us)
        total_us = sum(sum(m.values()) for m in r.sent_us)
        auth_us = sum(m["users"] + m["catalog"] + m["limiter"] for m in r.sent_us)
        auth_calls = sum(m["users"] + m["catalog"] + m["limiter"] for m in r.sent_calls)
        all_calls = sum(sum(m.values()) for m in r.sent_calls)
        shares_cpu = [100 * c / total_cpu for c in r.cpu_us]
        shares_us = [100 * sum(m.values()) / max(1.0, total_us) for m in r.sent_us]
        label = "on (1 s)" if r.ttl > 0 else "off (0)"
        rows.append(
            [
                label,
                f"{r.requests:,} ({r.failed} failed)",
                f"{total_cpu / r.requests:.1f}",
                f"{all_calls / r.requests:.2f}",
                " / ".join(f"{s:.0f}" for s in shares_cpu),
                " / ".join(f"{s:.0f}" for s in shares_us),
                f"{100 * auth_us / max(1.0, total_us):.1f}",
                f"{auth_calls / r.requests:.2f}",
                _ratio(r.cpu_us),
            ]
        )
        key = "cache_on" if r.ttl > 0 else "cache_off"
        summary[f"apis_{key}_redis_cpu_us_per_request"] = total_cpu / r.requests
        summary[f"apis_{key}_users_catalog_share"] = auth_us / max(1.0, total_us)
        summary[f"apis_{key}_max_master_cpu_share"] = max(shares_cpu) / 100
        summary[f"apis_{key}_auth_commands"] = auth_calls / r.requests
    return rows, summary


# -- (c) service instances on one Redis ---------------------------------------------------

WRK_SWITCH = r"""
function init(args)
  first, per = tonumber(args[1]), tonumber(args[2])
  n = 0
  sent = {}
end

function request()
  local u = first + (n % per)
  n = n + 1
  local j = sent[u] or 0
  sent[u] = j + 1
  local gadget = (j % 2 == 0 and "a" or "b") .. u
  local body = '{"type": "gadget", "subject": {"courseId": "bench", "gadgetId": "' ..
    gadget .. '"}}'
  return wrk.format("POST", "/locks", {["Content-Type"] = "application/json",
                                       ["SID"] = "bench-key-" .. u}, body)
end
"""


def _tree_cpu(pid: int) -> float:
    """CPU seconds (user + system) of a process and its children."""
    import psutil

    try:
        proc = psutil.Process(pid)
        total = 0.0
        for p in [proc, *proc.children(recursive=True)]:
            t = p.cpu_times()
            total += t.user + t.system
        return total
    except psutil.Error:
        return 0.0


def _wrk_each(
    wrk: str, script: Path, ports: list[int], connections: int, users: int, seconds: int
) -> list[subprocess.Popen[str]]:
    """One ``wrk -t1`` per instance, started at once: the connections and users split."""
    per = users // len(ports)
    return [
        subprocess.Popen(
            [
                wrk,
                "-t1",
                f"-c{max(1, connections // len(ports))}",
                f"-d{seconds}s",
                "--timeout",
                "10s",
                "-s",
                str(script),
                f"http://127.0.0.1:{port}",
                "--",
                str(i * per),
                str(per),
            ],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for i, port in enumerate(ports)
    ]


def instances(
    url: str,
    counts: tuple[int, ...],
    duration: int,
    connections: int,
    threads: int,
    waiters: int = 0,
) -> list[dict[str, float]]:
    import psutil

    from .http import WRK_COMMON, _serve, free_port, load_catalog, switch_course, wrk_binary

    wrk = wrk_binary()
    users = 2 * connections
    client = redis.Redis.from_url(url)
    client.flushall()
    load_catalog(client, users, [switch_course(users)])
    work = Path(tempfile.mkdtemp(prefix="lc-growth-serve-"))
    script = work / "switch.lua"
    script.write_text(WRK_COMMON + WRK_SWITCH)
    env = {**os.environ, "LOCKCORE_LOG_LEVEL": "WARNING"}
    out = []
    try:
        for count in counts:
            ports = [free_port() for _ in range(count)]
            servers = [
                _serve(
                    [
                        str(Path(sys.executable).parent / "lockcore"),
                        "serve",
                        "--port",
                        str(port),
                        "--workers",
                        "1",
                        "--threads",
                        str(threads),
                        "--redis-url",
                        url,
                        "--no-demo",
                    ],
                    port,
                    env,
                    str(work),
                )
                for port in ports
            ]
            try:
                for proc in _wrk_each(
                    wrk, script, ports, connections, users, 1
                ):  # warm up: workers, connections, scripts
                    proc.communicate(timeout=60)
                redis_before = client.info("cpu")
                app_before = sum(_tree_cpu(s.pid) for s in servers)
                machine_before = psutil.cpu_times()
                procs = _wrk_each(wrk, script, ports, connections, users, duration)
                results = []
                for proc in procs:
                    stdout, _ = proc.communicate(timeout=duration + 60)
                    line = next(x for x in stdout.splitlines() if x.startswith("BENCH_JSON "))
                    results.append(json.loads(line.split(" ", 1)[1]))
                machine_after = psutil.cpu_times()
                app_after = sum(_tree_cpu(s.pid) for s in servers)
                redis_after = client.info("cpu")
                connected = int(client.info("clients")["connected_clients"]) - 1  # not ours
            finally:
                stop_all(servers)
            requests = sum(r["requests"] for r in results)
            seconds = max(r["duration_us"] for r in results) / 1e6
            redis_s = sum(
                float(redis_after[k]) - float(redis_before[k])
                for k in ("used_cpu_user", "used_cpu_sys")
            )
            app_s = app_after - app_before
            busy = (sum(machine_after) - machine_after.idle) - (
                sum(machine_before) - machine_before.idle
            )
            out.append(
                {
                    "instances": float(count),
                    "rps": requests / seconds,
                    "p99_ms": max(r["p99_us"] for r in results) / 1000,
                    "errors": float(sum(r["status"] + r["socket"] for r in results)),
                    "redis_us": 1e6 * redis_s / max(1, requests),
                    "app_us": 1e6 * app_s / max(1, requests),
                    "redis_cores": redis_s / seconds,
                    "app_cores": app_s / seconds,
                    "machine_cores": busy / seconds,
                    "connections": connected / count,
                }
            )
        if waiters:
            out.append(_waiter_connections(client, url, work, env, threads, waiters))
    finally:
        client.flushall()
        client.close()
        shutil.rmtree(work, ignore_errors=True)
    return out


def _waiter_connections(
    client: redis.Redis, url: str, work: Path, env: dict[str, str], threads: int, waiters: int
) -> dict[str, float]:
    """Redis connections of one instance (default threads: its waiter cap is theirs less
    a reserve) with ``waiters`` ``/v1`` long polls pending on one
    held lock, less its connections before them: what a waiter costs in connections."""
    import threading

    import requests

    from .http import _in_line, _serve, free_port

    port = free_port()
    base = f"http://127.0.0.1:{port}"
    server = _serve(
        [
            str(Path(sys.executable).parent / "lockcore"),
            "serve",
            "--port",
            str(port),
            "--workers",
            "1",
            "--redis-url",
            url,
            "--no-demo",
        ],
        port,
        env,
        str(work),
    )

    def take(n: int, wait: float = 0) -> int:
        body: dict[str, Any] = {"scope": "growth-wait", "resource": "held"}
        if wait:
            body["wait"] = wait
        try:
            return requests.post(
                f"{base}/v1/locks",
                json=body,
                headers={"Authorization": f"Bearer bench-key-{n}"},
                timeout=60,
            ).status_code
        except requests.RequestException:
            return 0

    pending = [threading.Thread(target=take, args=(1 + i, 4.0)) for i in range(waiters)]
    try:
        assert take(0) == 201, "the held lock"
        time.sleep(0.5)
        before = int(client.info("clients")["connected_clients"])
        for thread in pending:
            thread.start()
        _wait(
            lambda: _in_line(client) >= waiters,
            "the waiters to get in line",
        )
        during = int(client.info("clients")["connected_clients"])
    finally:
        for thread in pending:
            if thread.is_alive() or thread.ident:
                thread.join(30)
        stop_all([server])
    # Multiplexed waiting: an instance's first waiters block on their own connection, the
    # others share its one subscriber connection: per waiter, the figure tends to 0 as
    # waiters outnumber them.
    return {"waiters": float(waiters), "per_waiter": (during - before) / waiters}


# -- the section --------------------------------------------------------------------------


def growth_section(
    url: str,
    executable: str | None,
    *,
    sizes: tuple[int, ...] = (1, 3, 6),
    workers: int = 4,
    hold: int = 5000,
    cycles: int = 2500,
    scopes: int = 1000,
    api_rounds: int = 30,
    api_users: int = 10,
    api_entities: int = 30,
    counts: tuple[int, ...] = (1, 2, 4),
    duration: int = 5,
    connections: int = 16,
    threads: int = 16,
    waiters: int = 20,
    rounds: int = 2,
) -> Section:
    """Section 11 (see the module's docstring); every size a parameter (``--quick``
    shrinks them)."""
    cores = os.cpu_count() or 1
    # Rounds interleaved over the sizes; per size the round of least CPU per operation
    # (noise on a shared machine only ever adds).
    runs: dict[int, list[MastersResult]] = {n: [] for n in sizes}
    for _ in range(rounds):
        for n in sizes:
            runs[n].append(lock_load(n, executable, workers, hold, cycles, scopes))
    by_masters = [min(runs[n], key=_cpu_per_op) for n in sizes]
    rows_a, summary = _masters_rows(by_masters)
    api, names = api_load(executable, (1.0, 0.0), api_rounds, api_users, api_entities)
    rows_b, summary_b = _api_rows(api, names)
    summary.update(summary_b)
    served = instances(url, counts, duration, connections, threads, waiters)
    waited = served.pop() if waiters else None
    rows_c = []
    for s in served:
        rows_c.append(
            [
                f"{s['instances']:.0f}",
                f"{s['rps']:,.0f}",
                f"{s['p99_ms']:.1f}",
                f"{s['errors']:,.0f}",
                f"{s['app_us']:,.0f}",
                f"{s['redis_us']:.1f}",
                f"{s['app_us'] / s['redis_us']:.1f}",
                f"{s['app_cores']:.2f}",
                f"{s['redis_cores']:.2f}",
                f"{s['machine_cores']:.2f} of {cores}",
                f"{s['connections']:.0f}",
            ]
        )
        k = int(s["instances"])
        summary[f"instances_{k}_rps"] = s["rps"]
        summary[f"instances_{k}_app_cpu_us_per_request"] = s["app_us"]
        summary[f"instances_{k}_redis_cpu_us_per_request"] = s["redis_us"]
        summary[f"instances_{k}_connections_per_instance"] = s["connections"]
    if waited:
        summary["connections_per_waiter"] = waited["per_waiter"]
    per_master = " / ".join(f"m{i + 1}" for i in range(max(sizes)))
    head_a = [
        "masters",
        "operations",
        "Redis CPU µs per acquire (new lock, held)",
        "Redis CPU µs per op (acquire or release, cycling)",
        "Redis CPU µs per op (all)",
        "… net of idle CPU",
        "script µs per op (commandstats)",
        "ops/s per Redis core (from CPU µs/op)",
        "bytes per held lock (Δused_memory)",
        "calls per master, %",
        "max/min calls",
        "max/min CPU",
        "max/min keys",
        "max/min memory",
        "idle CPU, all masters, ms/s",
    ]
    head_b = [
        "key & catalog cache (`AUTH_CACHE_TTL`)",
        "requests",
        "Redis CPU µs per request (all masters)",
        "commands sent per request",
        "Redis CPU per master, % (" + " / ".join(names) + ")",
        "Redis time of commands sent, per master, %",
        "`{users}` + `{catalog}` + failure-limit reads, % of Redis time",
        "… commands per request",
        "max/min CPU over masters",
    ]
    head_c = [
        "instances (`lockcore serve --workers 1`)",
        "req/s (all)",
        "p99 ms (worst)",
        "non-2xx / socket errors",
        "app CPU µs per request",
        "Redis CPU µs per request",
        "app CPU / Redis CPU",
        "app cores busy",
        "Redis cores busy",
        "machine cores busy",
        "Redis connections per instance",
    ]
    a0 = by_masters[0]
    text = "\n\n".join(
        [
            "Every figure is Redis's own accounting, read from each master: `INFO cpu` "
            "(`used_cpu_user + used_cpu_sys`, the whole process: network I/O, parsing, "
            "scripts, cron), `INFO commandstats` (scripts' time), `DBSIZE`, `used_memory`, "
            "and `SLOWLOG` at threshold 0 (each command a client sent, its keys and time). "
            "Fresh bundled servers (the version above) on loopback TCP, AOF off; lockcore by "
            f"{'FCALL' if common.FUNCTIONS else 'EVALSHA'}, events off. This machine has "
            f"{cores} cores: load generators, services and masters share them, so "
            "throughput cannot grow with masters or instances here; CPU per operation and "
            "its division can be read all the same.",
            "### 11a. The same lock load on Clusters of " + ", ".join(map(str, sizes)) + " masters",
            f"Each Cluster: {a0.n if len(sizes) == 1 else 'n'} masters made by `CLUSTER "
            "ADDSLOTS` (slots split evenly) and `MEET`, scripts loaded, then `CONFIG "
            f"RESETSTAT`. {workers} worker processes, each a `RedisCluster` client and a "
            f"`LockManager`: first {hold:,} new locks each over {scopes:,} scopes (kept, ttl "
            f"1 h: {workers * hold:,} held), then {cycles:,} acquire + release cycles each "
            "over the same scopes. Per master: calls (script calls), CPU, keys and memory; "
            f"max/min over masters (per master, in order: {per_master}). {rounds} "
            "round(s), the sizes interleaved; per size the round of least CPU per "
            "operation (noise only adds). Idle CPU: all "
            "masters' CPU per second over 1 s with no load (server cron, cluster bus), "
            "included in the CPU columns.",
            _table(head_a, rows_a),
            "### 11b. Every API, one mixed load, on a 3-master Cluster",
            f"One app (`create_app`, in-process test client) on a `RedisCluster` client; "
            f"{api_users} users, each round every user makes 14 requests: Versal acquire, "
            "list, release; EDX lock, check, unlock; DocSpace lock, view, unlock; Vidispine "
            "create, get, delete of a deletion lock; `/v1` acquire, release "
            f"({api_rounds} rounds, each user on its own resources, spread over "
            f"{api_entities} courses, workspaces, rooms and items). Run with the "
            "per-process key and catalog cache on (1 s, the default) and off (0). Redis "
            "time of commands sent: `SLOWLOG` durations (top-level commands; a script's "
            "includes what it ran), by the hash tag of the first key. `INFO cpu` here "
            "includes the SLOWLOG's own bookkeeping (every command logged), so CPU per "
            "request reads higher than 11c's.",
            _table(head_b, rows_b),
            "### 11c. Service instances on one Redis",
            f"1, 2 and 4 `lockcore serve --workers 1 --threads {threads}` instances on the "
            f"bench's standalone Redis; {connections} connections in all, split over the "
            "instances (one `wrk -t1` each, its own users); every request a Versal switch "
            "(`POST /locks`: a new lock, releasing the user's previous one). "
            f"{duration} s after a 1 s warm-up. App CPU: each instance's process tree "
            "(psutil); Redis CPU: `INFO cpu`; connections: `connected_clients` at the end "
            "of the load, per instance."
            + (
                f" Then one instance (default threads) with {waiters} `/v1` long polls "
                "(wait 4 s) pending on one held lock: Redis connections with them (once "
                "the lock's line holds them all) less before them, per waiter: "
                f"**{waited['per_waiter']:.2f}**."
                if waited
                else ""
            ),
            _table(head_c, rows_c),
            "### Summary",
        ]
    )
    s1 = summary.get(f"masters_{sizes[0]}_cpu_us_per_op", 0.0)
    last = sizes[-1]
    table = [
        ["figure", "value"],
        *[
            [
                f"Redis CPU µs per lock op, {n} master{'s' if n > 1 else ''} (all masters)",
                f"{summary[f'masters_{n}_cpu_us_per_op']:.1f}",
            ]
            for n in sizes
        ],
        [
            f"max/min calls over {last} masters",
            f"{summary[f'masters_{last}_calls_max_min']:.2f}",
        ],
        [
            f"max/min Redis CPU over {last} masters",
            f"{summary[f'masters_{last}_cpu_max_min']:.2f}",
        ],
        *[
            [
                f"all APIs, cache {'on' if r.ttl > 0 else 'off'}: busiest master's share of "
                "Redis CPU; `{users}`+`{catalog}`+limit share of Redis time",
                f"{100 * summary_b[f'apis_{k}_max_master_cpu_share']:.0f} %; "
                f"{100 * summary_b[f'apis_{k}_users_catalog_share']:.1f} %",
            ]
            for r, k in zip(api, ("cache_on", "cache_off"), strict=True)
        ],
        *(
            [["Redis connections per waiter (one instance)", f"{waited['per_waiter']:.2f}"]]
            if waited
            else []
        ),
        *[
            [
                f"{s['instances']:.0f} instance(s): req/s; app / Redis CPU µs per request",
                f"{s['rps']:,.0f}; {s['app_us']:,.0f} / {s['redis_us']:.1f}",
            ]
            for s in served
        ],
    ]
    notes = [
        f"Redis CPU per operation, all masters together, from {sizes[0]} to {last} masters: "
        f"{s1:.1f} → {summary[f'masters_{last}_cpu_us_per_op']:.1f} µs (net of idle: "
        f"{summary[f'masters_{sizes[0]}_cpu_us_per_op_net_of_idle']:.1f} → "
        f"{summary[f'masters_{last}_cpu_us_per_op_net_of_idle']:.1f}); the scripts' own "
        "time (commandstats, no I/O): "
        f"{summary[f'masters_{sizes[0]}_script_us_per_op']:.1f} → "
        f"{summary[f'masters_{last}_script_us_per_op']:.1f} µs. Each operation is one "
        "script call on one master at every size and the script does the same work, so "
        "a Cluster sends no more work per operation, only each master's fixed cron and "
        "bus traffic (the idle column). Where the rows still differ we take it for this "
        "machine's core sharing (every master shares the same cores with the others and "
        "with the workers, and a master with a smaller share of the load finds fewer "
        "commands per wake-up and colder caches; section 1 shows the like: one at a time "
        "costs more than pipelined), which one machine cannot rule in or out: the "
        "capacity model (docs/capacity.md) takes the highest figure, the safe side.",
        "Each scope is one slot, so a master's share of calls, CPU, keys and memory "
        "follows the scopes it owns: max/min over the masters is how evenly "
        f"{scopes:,} scopes fell on them.",
        "11b: with the cache on, the `{users}` and `{catalog}` slots (and the failure "
        "limit's key) take a small share of Redis time; with it off, every request reads "
        f"them ({summary_b['apis_cache_off_auth_commands']:.1f} commands per request "
        "here) and the master that holds `{catalog}` or "
        "`{users}` carries more than its share. The cache's share grows with the number "
        "of distinct keys and catalog entries one process sees per second "
        "(`AUTH_CACHE_TTL`): one read of each per process per second.",
        "11c: the instances' CPU per request is "
        + " / ".join(f"{x['app_us']:,.0f}" for x in served)
        + " µs against Redis's "
        + " / ".join(f"{x['redis_us']:.0f}" for x in served)
        + " µs: one instance's worker is bound by its own core (Python, one GIL) long "
        "before Redis, which stays under a fifth of a core here. Redis becomes the bound "
        "only when the instances have about (app CPU / Redis CPU) times the cores Redis "
        "has; on two cores the instances cannot add throughput beyond the machine.",
        "A scope is the unit of spreading: all of one scope's locks are on one master. "
        "Load that falls on a few scopes (one course, one tenant) stays on their masters "
        "however many there are.",
        "Capacity figures derived from these rows: docs/capacity.md.",
    ]
    return Section(
        "11. Growth across masters and instances",
        text,
        table,
        None,
        notes,
        [],
        summary,
    )


# -- refreshing section 11 alone in BENCHMARKS.md -----------------------------------------

SUMMARY_HEADING = "## Summary (machine-readable)"


def splice(report: str, into: str) -> str:
    """``into`` (a full report) with its section 11 and section 11's keys of the summary
    replaced by those of ``report`` (a ``--only 11`` run), the rest untouched: the way to
    refresh this section's figures without re-running every section."""
    title = "## 11. "
    start = report.index(title)
    end = report.index(SUMMARY_HEADING, start)
    run_line = next(line for line in report.splitlines() if line.startswith("Run "))
    when = run_line.split(" on ", 1)[0].removeprefix("Run ")
    section = report[start:end].rstrip("\n").split("\n", 1)
    fresh = (
        f"{section[0]}\n\n*Run on its own ({when}, `python -m bench.run --only 11`, then "
        "`python -m bench.growth --splice`); every other section is from the full run "
        "above.*\n" + section[1] + "\n\n"
    )
    if title in into:
        old_start = into.index(title)
        old_end = into.index("\n## ", old_start + len(title)) + 1  # ### stays inside
        into = into[:old_start] + into[old_end:]
    at = into.index(SUMMARY_HEADING)
    into = into[:at] + fresh + into[at:]

    def summary(text: str) -> dict[str, float]:
        block = text.split(SUMMARY_HEADING, 1)[1].split("```json", 1)[1].split("```", 1)[0]
        return dict(json.loads(block))

    ours = summary(report)
    merged = {k: v for k, v in summary(into).items() if k not in ours} | ours
    head, tail = into.split(SUMMARY_HEADING, 1)
    after = tail.split("```json", 1)[1].split("```", 1)[1]
    return head + SUMMARY_HEADING + "\n\n```json\n" + json.dumps(merged, indent=2) + "\n```" + after


def main(argv: list[str] | None = None) -> int:
    import argparse

    parser = argparse.ArgumentParser(
        description="Put a `python -m bench.run --only 11 --output F` report's section 11 "
        "into BENCHMARKS.md, the other sections untouched."
    )
    parser.add_argument("--splice", required=True, metavar="F", help="the --only 11 report")
    parser.add_argument("--into", default=str(common.ROOT / "BENCHMARKS.md"))
    args = parser.parse_args(argv)
    target = Path(args.into)
    target.write_text(splice(Path(args.splice).read_text(), target.read_text()))
    print(f"section 11 of {args.splice} put into {args.into}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
