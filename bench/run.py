"""lockcore against its peers, side by side, in one run: ``python -m bench.run``.

Every measurement runs each contender on the same Redis (a private redis-server started
here), interleaved round by round so that machine noise falls on all alike; the report
gives ratios, with absolute numbers as context. Writes ``BENCHMARKS.md`` and PNG charts in
``bench/charts/``. ``--quick`` shrinks every size (for a smoke run).
"""

from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import redis

from lockcore import EmbeddedRedis, LockConflict, LockManager, LockType

ROOT = Path(__file__).resolve().parents[1]
CHARTS = ROOT / "bench" / "charts"
TYPES = [LockType("job", default_ttl=60.0)]


@dataclass
class Section:
    title: str
    text: str
    table: list[list[str]]
    chart: str | None = None
    verdicts: list[str] = field(default_factory=list)


def median(values: list[float]) -> float:
    return statistics.median(values)


# -- 1. one client, uncontended ----------------------------------------------------------


def single_client(url: str, cycles: int, rounds: int) -> tuple[Section, dict[str, float]]:
    import redis_lock
    from pottery import Redlock

    client = redis.Redis.from_url(url)
    mgr = LockManager(client, TYPES, prefix="bench")

    def lockcore_cycle(i: int) -> None:
        lock = mgr.acquire("single", "job", "r", "me").lock
        mgr.release(lock, "me")

    def redis_py_cycle(i: int) -> None:
        lock = client.lock("bench:redis-py", timeout=60)
        lock.acquire(blocking=False)
        lock.release()

    def python_redis_lock_cycle(i: int) -> None:
        lock = redis_lock.Lock(client, "bench-prl", expire=60)
        lock.acquire(blocking=False)
        lock.release()

    def pottery_cycle(i: int) -> None:
        lock = Redlock(key="bench-pottery", masters={client}, auto_release_time=60)
        lock.acquire(blocking=False)
        lock.release()

    def ping(i: int) -> None:
        client.ping()

    contenders: dict[str, Callable[[int], None]] = {
        "lockcore": lockcore_cycle, "redis-py Lock": redis_py_cycle,
        "python-redis-lock": python_redis_lock_cycle, "pottery Redlock (1 master)":
            pottery_cycle, "PING (round-trip floor)": ping,
    }
    rates: dict[str, list[float]] = {name: [] for name in contenders}
    for run in contenders.values():  # warm up: scripts loaded, connections made
        for i in range(50):
            run(i)
    for _ in range(rounds):
        for name, run in contenders.items():
            started = time.perf_counter()
            for i in range(cycles):
                run(i)
            rates[name].append(cycles / (time.perf_counter() - started))
    best = {name: median(values) for name, values in rates.items()}
    base = best["redis-py Lock"]
    table = [["contender", "cycles/s (median)", "vs redis-py Lock"]]
    for name, rate in best.items():
        table.append([name, f"{rate:,.0f}", f"{rate / base:.2f}"])
    ratio = best["lockcore"] / base
    verdict = (f"Target lockcore ≥ 1.0 × redis-py Lock: **{'met' if ratio >= 1 else 'missed'}**"
               f" ({ratio:.2f}).")
    chart = bar_chart("single_client", "acquire+release cycles/s, one client",
                      list(best), list(best.values()))
    client.close()
    return Section(
        "1. One client, uncontended: acquire + release cycles per second",
        f"{rounds} interleaved rounds of {cycles} cycles each; medians.",
        table, chart, [verdict]), {"single_ratio": ratio}


# -- 2. server CPU per acquire ------------------------------------------------------------


def cpu_seconds(client: redis.Redis) -> float:
    info = client.info("cpu")
    return float(info["used_cpu_sys"]) + float(info["used_cpu_user"])


def server_cpu(url: str, count: int, rounds: int) -> tuple[Section, dict[str, float]]:
    client = redis.Redis.from_url(url)
    mgr = LockManager(client, TYPES, prefix="bench")
    script = mgr._scripts
    costs: dict[str, list[float]] = {"lockcore acquire": [], "SET NX PX": []}
    for rnd in range(rounds):
        client.flushall()
        pipe = client.pipeline(transaction=False)
        before = cpu_seconds(client)
        for i in range(count):
            request = mgr._acquire_request(f"cpu-{i % 1000}", "job", f"r{rnd}-{i}", "me",
                                           None, None, None)
            keys, args = request.pop("keys"), request
            script._scripts["acquire"](
                keys=keys.all, args=[args["scope"], 1000, 86_400_000, "job", args["resource"],
                                     "me", "exclusive", 0, 60_000, 0, "{}", keys.slot + 1,
                                     "", "", 0, 0],
                client=pipe)
            if len(pipe) >= 1000:
                pipe.execute()
        pipe.execute()
        costs["lockcore acquire"].append((cpu_seconds(client) - before) / count * 100_000)
        client.flushall()
        before = cpu_seconds(client)
        for i in range(count):
            pipe.set(f"bench:setnx:{rnd}:{i}", "token", nx=True, px=60_000)
            if len(pipe) >= 1000:
                pipe.execute()
        pipe.execute()
        costs["SET NX PX"].append((cpu_seconds(client) - before) / count * 100_000)
    lockcore, plain = median(costs["lockcore acquire"]), median(costs["SET NX PX"])
    table = [["operation", "Redis CPU s per 100k (median)", "vs SET NX PX"],
             ["lockcore acquire", f"{lockcore:.2f}", f"{lockcore / plain:.1f}"],
             ["SET NX PX", f"{plain:.2f}", "1.0"]]
    ratio = lockcore / plain
    verdict = (f"Target ≤ 2 × SET NX PX: **{'met' if ratio <= 2 else 'missed'}** "
               f"({ratio:.1f}×).")
    if ratio > 2:
        verdict += (" Each lockcore acquire is one Lua script doing ~15 commands (sweep, "
                    "conflict check, counter, record, three indexes, id directory, stream "
                    "entry, PUBLISH, key lifetimes); the script call itself costs more than a "
                    "SET.")
    client.close()
    return Section("2. Server cost: Redis CPU per 100k acquires",
                   f"{count} pipelined acquires per round (as many SETs for the baseline), "
                   f"{rounds} rounds, from `INFO cpu`.", table, None, [verdict]), {
        "cpu_ratio": ratio}


# -- 3. contention ------------------------------------------------------------------------


def _contender(kind: str, url: str, resources: int, duration: float, start: Any,
               out: Any, index: int) -> None:
    client = redis.Redis.from_url(url)
    count = 0
    rid = 0
    start.wait()
    stop = time.monotonic() + duration
    if kind == "lockcore":
        mgr = LockManager(client, TYPES, prefix="bench", heartbeat=0.5)
        while time.monotonic() < stop:
            rid = (rid + 1) % resources
            try:
                lock = mgr.acquire("contention", "job", f"r{rid}", f"w{index}", ttl=10,
                                   wait=max(0.01, stop - time.monotonic())).lock
            except LockConflict:
                continue
            count += 1
            mgr.release(lock, f"w{index}")
    elif kind == "redis-py Lock":
        while time.monotonic() < stop:
            rid = (rid + 1) % resources
            lock = client.lock(f"bench:c:{rid}", timeout=10,  # its default 0.1 s sleep
                               blocking_timeout=max(0.01, stop - time.monotonic()))
            if lock.acquire():
                count += 1
                lock.release()
    else:
        import redis_lock

        while time.monotonic() < stop:
            rid = (rid + 1) % resources
            lock = redis_lock.Lock(client, f"c{rid}", expire=10)
            if lock.acquire(timeout=max(1, int(stop - time.monotonic()) + 1)):
                count += 1
                lock.release()
    out.put((index, count))
    client.close()


def contention(url: str, workers_list: list[int], duration: float
               ) -> tuple[Section, dict[str, float]]:
    kinds = ["lockcore", "redis-py Lock", "python-redis-lock"]
    ctx = mp.get_context("fork")
    table = [["workers", "resources", "contender", "acquires/s", "min per worker",
              "max per worker"]]
    summary: dict[str, float] = {}
    starved: list[str] = []
    behind: list[str] = []
    for workers in workers_list:
        for resources in (1, 64):
            results: dict[str, tuple[float, int, int]] = {}
            for kind in kinds:
                redis.Redis.from_url(url).flushall()
                start, out = ctx.Event(), ctx.Queue()
                procs = [ctx.Process(target=_contender, args=(
                    kind, url, resources, duration, start, out, i)) for i in range(workers)]
                for p in procs:
                    p.start()
                time.sleep(0.5)
                start.set()
                counts = [out.get(timeout=duration + 60)[1] for _ in procs]
                for p in procs:
                    p.join(30)
                results[kind] = (sum(counts) / duration, min(counts), max(counts))
                table.append([str(workers), str(resources), kind,
                              f"{sum(counts) / duration:,.0f}", str(min(counts)),
                              str(max(counts))])
            best_peer = max(results[k][0] for k in kinds[1:])
            summary[f"contention_{workers}_{resources}"] = results["lockcore"][0] / best_peer
            if results["lockcore"][1] == 0:
                starved.append(f"{workers}×{resources}")
            if results["lockcore"][0] < best_peer:
                behind.append(f"{workers} workers on {resources} resource(s): "
                              f"{results['lockcore'][0] / best_peer:.2f}× the best peer")
    verdicts = [
        "No worker starves (lockcore's minimum per worker > 0): **"
        + ("met**." if not starved else f"missed** in {', '.join(starved)}."),
        "Throughput ≥ the best peer: **" + ("met**." if not behind else
                                            "missed** — " + "; ".join(behind) + "."),
    ]
    return Section("3. Contention: worker processes on 1 and on 64 resources",
                   f"Each run lasts {duration:g} s; lockcore waits in its FIFO line (woken by "
                   "BLPOP), redis-py sleeps between tries (its default, 0.1 s), "
                   "python-redis-lock waits on its BLPOP signal. Each worker cycles over the "
                   "resources, acquiring, then releasing at once.", table, None,
                   verdicts), summary


# -- 4. memory ----------------------------------------------------------------------------


def memory(url: str, count: int) -> tuple[Section, dict[str, float]]:
    client = redis.Redis.from_url(url)
    mgr = LockManager(client, TYPES, prefix="bench")
    script = mgr._scripts._scripts["acquire"]

    def used() -> int:
        return int(client.info("memory")["used_memory"])

    client.flushall()
    base = used()
    pipe = client.pipeline(transaction=False)
    for i in range(count):
        scope = f"m{i % 1000}"
        keys = mgr.keys(scope)
        script(keys=keys.all, args=[scope, 1000, 86_400_000, "job", f"r{i}", "owner",
                                    "exclusive", 0, 600_000, 0, "{}", keys.slot + 1,
                                    "", "", 0, 0], client=pipe)
        if len(pipe) >= 1000:
            pipe.execute()
    pipe.execute()
    lockcore = (used() - base) / count
    client.flushall()
    base = used()
    for i in range(count):
        pipe.set(f"bench:redis-py:{i}", uuid.uuid4().hex.encode(), nx=True, px=600_000)
        if len(pipe) >= 1000:
            pipe.execute()
    pipe.execute()
    plain = (used() - base) / count
    client.flushall()
    client.close()
    ratio = lockcore / plain
    table = [["contender", "bytes per held lock", "vs redis-py Lock"],
             ["lockcore (record, 3 indexes, id directory, events)", f"{lockcore:,.0f}",
              f"{ratio:.1f}"],
             ["redis-py Lock (one key)", f"{plain:,.0f}", "1.0"]]
    verdict = f"Target ≤ 2 × redis-py: **{'met' if ratio <= 2 else 'missed'}** ({ratio:.1f}×)."
    if ratio > 2:
        verdict += (" A lockcore lock is a JSON record plus entries in three sorted-set "
                    "indexes and the slot's id directory (what listing, one-per-owner "
                    "replacement and id lookup need), and its share of the event stream.")
    return Section(f"4. Memory: bytes per held lock at {count:,} locks",
                   "From `INFO memory` (`used_memory`) before and after.", table, None,
                   [verdict]), {"memory_ratio": ratio}


# -- 5. growth ----------------------------------------------------------------------------


def growth(url: str, sizes: list[int], samples: int) -> tuple[Section, dict[str, float]]:
    client = redis.Redis.from_url(url)
    mgr = LockManager(client, TYPES, prefix="bench")
    script = mgr._scripts._scripts["acquire"]
    client.flushall()
    held = 0
    table = [["locks held elsewhere", "acquire+release µs", "list µs", "PING µs",
              "acquire+release / PING", "list / PING"]]
    results: list[tuple[int, float, float]] = []
    pipe = client.pipeline(transaction=False)
    for i in range(20):
        mgr.acquire("probe", "job", f"fixed{i}", "me")
    for size in sizes:
        while held < size:
            scope = f"g{held % 5000}"
            keys = mgr.keys(scope)
            script(keys=keys.all, args=[scope, 1000, 86_400_000, "job", f"r{held}", "owner",
                                        "exclusive", 0, 3_600_000, 0, "{}", keys.slot + 1,
                                        "", "", 0, 0], client=pipe)
            held += 1
            if len(pipe) >= 2000:
                pipe.execute()
        pipe.execute()
        # Let Redis finish what the bulk load started (incremental rehashing of its tables
        # runs a step per command and in the background): measure the steady state.
        time.sleep(2)
        for i in range(500):
            mgr.release(mgr.acquire("probe", "job", f"warm{i % 50}", "me").lock, "me")
        # Blocks of samples, a PING between samples for context; each figure is the lowest
        # block median: noise on a shared machine only ever adds, growth would show in all.
        blocks: dict[str, list[float]] = {"acquire": [], "list": [], "ping": []}
        for _ in range(5):
            acquire_us, list_us, ping_us = [], [], []
            for i in range(samples // 5):
                started = time.perf_counter()
                lock = mgr.acquire("probe", "job", f"r{i % 50}", "me").lock
                mgr.release(lock, "me")
                acquire_us.append((time.perf_counter() - started) * 1e6)
                started = time.perf_counter()
                mgr.list("probe", limit=100)
                list_us.append((time.perf_counter() - started) * 1e6)
                started = time.perf_counter()
                client.ping()
                ping_us.append((time.perf_counter() - started) * 1e6)
            blocks["acquire"].append(median(acquire_us))
            blocks["list"].append(median(list_us))
            blocks["ping"].append(median(ping_us))
        acquire, listing, ping = (min(blocks[k]) for k in ("acquire", "list", "ping"))
        results.append((size, acquire, listing))
        table.append([f"{size:,}", f"{acquire:,.0f}", f"{listing:,.0f}", f"{ping:,.0f}",
                      f"{acquire / ping:.1f}", f"{listing / ping:.1f}"])
    client.flushall()
    client.close()
    # Growth: the largest cost relative to the smallest size (a drop is not growth).
    acquire_spread = max(r[1] for r in results) / results[0][1]
    list_spread = max(r[2] for r in results) / results[0][2]
    flat = {True: "met", False: "missed"}
    verdict = (f"Target flat within 1.2×: acquire **{flat[acquire_spread <= 1.2]}**"
               f" ({acquire_spread:.2f}×), list **{flat[list_spread <= 1.2]}**"
               f" ({list_spread:.2f}×), each as the largest latency over the one at "
               f"{sizes[0]:,}.")
    chart = line_chart("growth", "median latency (µs) vs locks held elsewhere",
                       [r[0] for r in results],
                       {"acquire+release": [r[1] for r in results],
                        "list": [r[2] for r in results]})
    return Section("5. Growth: one scope's latency with many locks held elsewhere",
                   f"{samples} samples per size in 5 blocks; the lowest block median; the probed "
                   "scope holds 20 locks; "
                   "the other locks are spread over 5,000 scopes.", table,
                   chart, [verdict]), {"growth_acquire": acquire_spread,
                                       "growth_list": list_spread}


# -- 6. HTTP ------------------------------------------------------------------------------

TRIVIAL_APP = '''
from flask import Flask, jsonify
app = Flask(__name__)

@app.route("/ping", methods=["POST", "DELETE"])
def ping():
    return jsonify({})
'''


def _load(base: str, mode: str, clients: int, duration: float, out: Any) -> None:
    import requests

    latencies: list[float] = []
    pairs = [0] * clients
    stop = time.monotonic() + duration

    def worker(n: int) -> None:
        session = requests.Session()
        headers = {"SID": f"bench-key-{n}"}
        body = {"type": "gadget", "subject": {"courseId": "bench", "gadgetId": f"g{n}"}}
        while time.monotonic() < stop:
            started = time.perf_counter()
            if mode == "lockcore":
                lock = session.post(f"{base}/locks", json=body, headers=headers)
                assert lock.status_code == 201, lock.text
                gone = session.delete(f"{base}/locks/{lock.json()['id']}", headers=headers)
                assert gone.status_code == 200, gone.text
            else:
                session.post(f"{base}/ping", json=body, headers=headers)
                session.delete(f"{base}/ping", headers=headers)
            latencies.append(time.perf_counter() - started)
            pairs[n] += 1

    threads = [threading.Thread(target=worker, args=(n,)) for n in range(clients)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    latencies.sort()
    out.put({"pairs_per_s": sum(pairs) / duration,
             "p50_ms": latencies[len(latencies) // 2] * 1000,
             "p99_ms": latencies[int(len(latencies) * 0.99)] * 1000})


def _serve(cmd: list[str], port: int, env: dict[str, str], cwd: str) -> subprocess.Popen[Any]:
    import requests

    proc = subprocess.Popen(cmd, env=env, cwd=cwd, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        try:
            requests.get(f"http://127.0.0.1:{port}/healthz", timeout=1)
            return proc
        except requests.RequestException:
            time.sleep(0.1)
    proc.kill()
    raise RuntimeError(f"{cmd} did not come up")


def http(url: str, duration: float, rounds: int, clients: int = 32, workers: int = 2
         ) -> tuple[Section, dict[str, float]]:
    import requests  # noqa: F401 - needed by the load generator

    from app.catalog import Catalog, parse_document
    from app.identity import Users

    client = redis.Redis.from_url(url)
    client.flushall()
    doc = {"users": [{"id": f"u{n}", "name": f"User {n}", "api_key": f"bench-key-{n}"}
                     for n in range(clients)],
           "courses": [{"key": "bench", "gadgets": [f"g{n}" for n in range(clients)],
                        "roles": {f"u{n}": "editor" for n in range(clients)}}]}
    Catalog(client, "lockcore").replace(parse_document(json.dumps(doc)), Users(client, "lockcore"))
    work = tempfile.mkdtemp()
    (Path(work) / "trivial.py").write_text(TRIVIAL_APP + "\n@app.get('/healthz')\n"
                                           "def healthz():\n    return jsonify({})\n")
    lockcore_bin = str(Path(sys.executable).parent / "lockcore")
    gunicorn_bin = str(Path(sys.executable).parent / "gunicorn")
    env = {**os.environ, "LOCKCORE_LOG_LEVEL": "WARNING"}
    ports = {"lockcore": 18431, "floor": 18432}
    servers = [
        _serve([lockcore_bin, "serve", "--port", str(ports["lockcore"]), "--workers",
                str(workers), "--redis-url", url, "--no-demo"], ports["lockcore"], env, work),
        _serve([gunicorn_bin, "-w", str(workers), "-b", f"127.0.0.1:{ports['floor']}",
                "trivial:app"], ports["floor"], env, work),
    ]
    ctx = mp.get_context("spawn")
    results: dict[str, list[dict[str, float]]] = {"lockcore": [], "floor": []}
    try:
        for _ in range(rounds):
            for mode in ("lockcore", "floor"):
                out = ctx.Queue()
                gen = ctx.Process(target=_load, args=(
                    f"http://127.0.0.1:{ports[mode]}", mode, clients, duration, out))
                gen.start()
                results[mode].append(out.get(timeout=duration + 120))
                gen.join(30)
    finally:
        for proc in servers:
            proc.terminate()
            proc.wait(10)
        client.close()
    med = {mode: {k: median([r[k] for r in rs]) for k in rs[0]} for mode, rs in results.items()}
    ratio = med["lockcore"]["pairs_per_s"] / med["floor"]["pairs_per_s"]
    table = [["server", "pairs/s", "p50 ms", "p99 ms"],
             ["lockcore serve: Versal POST /locks + DELETE /locks/{id}",
              f"{med['lockcore']['pairs_per_s']:,.0f}", f"{med['lockcore']['p50_ms']:.1f}",
              f"{med['lockcore']['p99_ms']:.1f}"],
             ["trivial Flask endpoint, two requests (the framework floor)",
              f"{med['floor']['pairs_per_s']:,.0f}", f"{med['floor']['p50_ms']:.1f}",
              f"{med['floor']['p99_ms']:.1f}"]]
    verdict = f"Target ≥ 0.6 × the floor: **{'met' if ratio >= 0.6 else 'missed'}** ({ratio:.2f})."
    return Section("6. HTTP: lock + unlock pairs per second through the Versal API",
                   f"gunicorn with {workers} workers each; a separate load-generating process "
                   f"with {clients} concurrent clients, {duration:g} s per run, {rounds} "
                   "interleaved rounds; medians.", table, None, [verdict]), {
        "http_ratio": ratio}


# -- 7. waiting costs no worker ------------------------------------------------------------


def _half_open(port: int) -> Any:
    """A connection that sent half a request and then nothing (a slow or stalled client)."""
    import socket

    sock = socket.create_connection(("127.0.0.1", port))
    sock.sendall(b"POST /v1/locks HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n")
    return sock


def _latencies(base: str, samples: int, key: str) -> dict[str, float]:
    """Sequential GET /healthz, and /v1 acquire + release pairs: p50 and p99 in ms."""
    import requests

    session = requests.Session()
    headers = {"Authorization": f"Bearer {key}"}
    health: list[float] = []
    pairs: list[float] = []
    for n in range(samples):
        started = time.perf_counter()
        assert session.get(f"{base}/healthz", timeout=30).status_code == 200
        health.append(time.perf_counter() - started)
        started = time.perf_counter()
        lock = session.post(f"{base}/v1/locks", headers=headers, timeout=30,
                            json={"scope": "bench", "resource": f"free-{n % 16}"})
        assert lock.status_code == 201, lock.text
        gone = session.delete(f"{base}/v1/locks/{lock.json()['id']}", headers=headers,
                              timeout=30)
        assert gone.status_code == 200, gone.text
        pairs.append(time.perf_counter() - started)
    health.sort()
    pairs.sort()

    def pct(values: list[float], q: float) -> float:
        return values[min(len(values) - 1, int(len(values) * q))] * 1000

    return {"health_p50": pct(health, 0.5), "health_p99": pct(health, 0.99),
            "pair_p50": pct(pairs, 0.5), "pair_p99": pct(pairs, 0.99)}


def waiting(url: str, samples: int, waiters: int = 50, half_open: int = 10,
            workers: int = 2) -> tuple[Section, dict[str, float]]:
    """/healthz and lock+unlock latency with no waiter, then with ``waiters`` pending long
    polls and ``half_open`` stalled connections; then the SIGTERM drain."""
    import requests

    from app.catalog import Catalog, parse_document
    from app.identity import Users

    client = redis.Redis.from_url(url)
    client.flushall()
    doc = {"users": [{"id": u, "name": u, "api_key": f"bench-{u}"} for u in ("w", "h", "x")]}
    Catalog(client, "lockcore").replace(parse_document(json.dumps(doc)), Users(client, "lockcore"))
    port = 18433
    base = f"http://127.0.0.1:{port}"
    env = {**os.environ, "LOCKCORE_LOG_LEVEL": "WARNING"}
    proc = _serve([str(Path(sys.executable).parent / "lockcore"), "serve", "--port", str(port),
                   "--workers", str(workers), "--redis-url", url, "--no-demo"], port, env,
                  tempfile.mkdtemp())
    results: list[tuple[int, float]] = []
    sockets: list[Any] = []
    try:
        _latencies(base, 20, "bench-x")  # warm up: connections, scripts
        idle = _latencies(base, samples, "bench-x")
        held = requests.post(f"{base}/v1/locks", json={"scope": "bench", "resource": "held"},
                             headers={"Authorization": "Bearer bench-h"}, timeout=30)
        assert held.status_code == 201, held.text

        def wait() -> None:
            try:
                status = requests.post(
                    f"{base}/v1/locks", headers={"Authorization": "Bearer bench-w"},
                    json={"scope": "bench", "resource": "held", "wait": 30},
                    timeout=120).status_code
            except requests.RequestException:
                status = 0
            results.append((status, time.monotonic()))

        threads = [threading.Thread(target=wait, daemon=True) for _ in range(waiters)]
        for thread in threads:
            thread.start()
        sockets = [_half_open(port) for _ in range(half_open)]
        queue = "lockcore:{v1%3Abench}:q:job:held"  # /v1 scopes are namespaced "v1:"
        deadline = time.monotonic() + 60
        while client.llen(queue) < waiters:
            assert time.monotonic() < deadline, "the waiters did not all get in line"
            time.sleep(0.05)
        busy = _latencies(base, samples, "bench-x")
        assert client.llen(queue) == waiters  # they were pending throughout
        started = time.monotonic()
        proc.terminate()
        proc.wait(60)
        drained = time.monotonic() - started
        for thread in threads:
            thread.join(30)
    finally:
        for sock in sockets:
            sock.close()
        if proc.poll() is None:
            proc.kill()
            proc.wait(10)
        client.close()
    answered_503 = sum(1 for status, _ in results if status == 503)
    answered_in = max((at for _, at in results), default=started) - started
    table = [["", "/healthz p50 ms", "/healthz p99 ms", "lock+unlock p50 ms",
              "lock+unlock p99 ms"],
             ["no waiter", f"{idle['health_p50']:.1f}", f"{idle['health_p99']:.1f}",
              f"{idle['pair_p50']:.1f}", f"{idle['pair_p99']:.1f}"],
             [f"{waiters} pending long polls + {half_open} half-open connections",
              f"{busy['health_p50']:.1f}", f"{busy['health_p99']:.1f}",
              f"{busy['pair_p50']:.1f}", f"{busy['pair_p99']:.1f}"]]
    ratio = busy["health_p99"] / idle["health_p99"]
    verdicts = [
        f"/healthz p99 with waiters: {busy['health_p99']:.1f} ms ({ratio:.1f}× the no-waiter "
        f"p99); lock+unlock p99 {busy['pair_p99']:.1f} ms vs {idle['pair_p99']:.1f} ms.",
        f"SIGTERM drain: {answered_503} of {waiters} waiters answered 503 in the /v1 "
        f"envelope, the last {answered_in:.1f} s after the signal; the service exited "
        f"{drained:.1f} s after it (the stalled connections hold a worker until its "
        "graceful timeout).",
    ]
    return Section("7. Waiting costs no worker: latency beside pending long polls",
                   f"`lockcore serve` (gthread, {workers} workers); {samples} sequential "
                   "samples of each call from one client, first with no waiter, then with "
                   f"{waiters} `/v1` long polls (wait=30 s) queued on one held lock and "
                   f"{half_open} connections that sent half a request.", table, None,
                   verdicts), {
        "healthz_p99_ms_idle": idle["health_p99"], "healthz_p99_ms_waiters": busy["health_p99"],
        "lock_unlock_p99_ms_idle": idle["pair_p99"],
        "lock_unlock_p99_ms_waiters": busy["pair_p99"], "drain_s": drained,
        "drain_answered_s": answered_in,
        "drained_503": float(answered_503)}


# -- charts and report --------------------------------------------------------------------


def bar_chart(name: str, title: str, labels: list[str], values: list[float]) -> str:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    CHARTS.mkdir(parents=True, exist_ok=True)
    fig, ax = plt.subplots(figsize=(8, 3.5))
    ax.barh(labels[::-1], values[::-1], color="#4a7ab5")
    ax.set_title(title)
    fig.tight_layout()
    path = CHARTS / f"{name}.png"
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return os.path.relpath(path, ROOT)


def line_chart(name: str, title: str, xs: list[int], series: dict[str, list[float]]) -> str:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    CHARTS.mkdir(parents=True, exist_ok=True)
    fig, ax = plt.subplots(figsize=(7, 3.5))
    for label, ys in series.items():
        ax.plot(xs, ys, marker="o", label=label)
    ax.set_xscale("log")
    ax.set_ylim(bottom=0)
    ax.set_title(title)
    ax.legend()
    fig.tight_layout()
    path = CHARTS / f"{name}.png"
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return os.path.relpath(path, ROOT)


def machine() -> str:
    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return f"{os.cpu_count()} × {cpu}, Python {platform.python_version()}, {platform.system()}"


def report(sections: list[Section], summary: dict[str, float], server: str,
           elapsed: float) -> str:
    lines = [
        "# Benchmarks",
        "",
        f"Run {datetime.now(timezone.utc):%Y-%m-%d %H:%M} UTC on {machine()}; Redis "
        f"{server} (a private redis-server on a unix socket, AOF off); {elapsed:.0f} s in "
        "all. Regenerate with `python -m bench.run` (see the README). Ratios matter; "
        "absolute numbers are this machine's.",
        "",
    ]
    for section in sections:
        lines += [f"## {section.title}", "", section.text, ""]
        head, *rows = section.table
        lines.append("| " + " | ".join(head) + " |")
        lines.append("|" + "---|" * len(head))
        lines += ["| " + " | ".join(row) + " |" for row in rows]
        lines.append("")
        if section.chart:
            lines += [f"![{section.title}]({section.chart})", ""]
        lines += [f"- {v}" for v in section.verdicts] + [""]
    lines += ["## Summary (machine-readable)", "", "```json",
              json.dumps({k: round(v, 3) for k, v in summary.items()}, indent=2), "```", ""]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    global CHARTS  # noqa: PLW0603 - chart helpers write where --charts says
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--quick", action="store_true", help="small sizes: a smoke run")
    parser.add_argument("--output", default=str(ROOT / "BENCHMARKS.md"))
    parser.add_argument("--only", nargs="*", help="run only these sections (1-7)")
    parser.add_argument("--charts", default=str(CHARTS), help="where the PNG charts go")
    args = parser.parse_args(argv)
    CHARTS = Path(args.charts).resolve()
    q = args.quick
    started = time.monotonic()
    with EmbeddedRedis(tempfile.mkdtemp(prefix="lc-bench-"), appendonly=False) as server:
        version = server.client().info("server")["redis_version"]
        plan: list[tuple[str, Callable[[], tuple[Section, dict[str, float]]]]] = [
            ("1", lambda: single_client(server.url, 300 if q else 2000, 3 if q else 5)),
            ("2", lambda: server_cpu(server.url, 5000 if q else 50_000, 2 if q else 3)),
            ("3", lambda: contention(server.url, [4] if q else [16, 32], 1.0 if q else 4.0)),
            ("4", lambda: memory(server.url, 10_000 if q else 100_000)),
            ("5", lambda: growth(server.url, [1000, 10_000] if q else
                                 [1000, 100_000, 1_000_000], 100 if q else 300)),
            ("6", lambda: http(server.url, 2.0 if q else 8.0, 1 if q else 3)),
            ("7", lambda: waiting(server.url, 50 if q else 400)),
        ]
        sections, summary = [], {}
        for key, run in plan:
            if args.only and key not in args.only:
                continue
            print(f"bench: section {key} ...", flush=True)
            section, values = run()
            sections.append(section)
            summary.update(values)
            print(f"bench: section {key} done: {values}", flush=True)
    Path(args.output).write_text(report(sections, summary, version, time.monotonic() - started))
    print(f"bench: wrote {args.output} in {time.monotonic() - started:.0f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
