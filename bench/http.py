"""Sections through the HTTP service: requests per second under wrk against a trivial
Flask app as the floor (7), and latency beside pending long polls (8)."""

from __future__ import annotations

import json
import math
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import redis

from lockcore import LockManager

from . import bulk, common
from .common import Section, at_least, median, stop_all
from .server_side import FLOORS

TRIVIAL_APP = """
import itertools
import os

import redis
from flask import Flask, jsonify
from lockcore.wire import Wire

app = Flask(__name__)
store = redis.Redis.from_url(os.environ["BENCH_REDIS_URL"])
wire = Wire(store)
# The least a lock with server-clock expiry and fencing tokens can do (bench section 1's
# floor-acquire: TIME, HMGET, HSET, no checks), called the way lockcore calls its scripts.
FLOOR_LOCK = store.script_load(os.environ["BENCH_FLOOR_LOCK"])
made = itertools.count()

@app.post("/ping")
def ping():
    return jsonify({"ok": True})

@app.post("/ping-redis")
def ping_redis():
    store.ping()  # one round trip to the service's Redis, as a lock call makes
    return jsonify({"ok": True})

@app.post("/ping-lock")
def ping_lock():
    # a new lock each time (its own resource), in one hash slot
    wire.execute("EVALSHA", FLOOR_LOCK, 1, "bench:floor:{s}:L",
                 f"job:r{os.getpid()}-{next(made)}", "owner", 30000, "x")
    return jsonify({"ok": True})

@app.get("/healthz")
def healthz():
    return jsonify({})
"""


# Each wrk thread takes its share of the users (``tid``) and goes round them.
WRK_COMMON = r"""
local threads = {}
local counter = 0
function setup(thread)
  thread:set("tid", counter)
  counter = counter + 1
  table.insert(threads, thread)
end

function done(summary, latency, requests)
  local exhausted = 0
  for _, t in ipairs(threads) do exhausted = exhausted + (t:get("exhausted") or 0) end
  local e = summary.errors
  io.write(string.format('BENCH_JSON {"requests": %d, "duration_us": %d, "status": %d, ' ..
    '"socket": %d, "p50_us": %d, "p99_us": %d, "exhausted": %d}\n',
    summary.requests, summary.duration, e.status, e.connect + e.read + e.write + e.timeout,
    latency:percentile(50), latency:percentile(99), exhausted))
end
"""

# POST a Versal lock request: args = path, mode, users, wrk threads, first course, courses
# per run. Each wrk thread goes round its share of the users.
# mode "new": user u's j-th request locks gadget g<u> of course c<first + j>, a course where
# it holds nothing: every request takes a new lock and releases none. Past the run's
# courses it would re-lock (counted as ``exhausted``: the run is void).
# mode "switch": each user goes back and forth between its two gadgets of course "bench":
# every request takes a new lock and (gadget locks are one per owner) releases the user's
# previous one, Versal's "a new lock releases your last".
WRK_POST = (
    WRK_COMMON
    + r"""
function init(args)
  path, mode = args[1], args[2]
  local users, nthreads = tonumber(args[3]), tonumber(args[4])
  first_course, courses = tonumber(args[5]), tonumber(args[6])
  per = math.floor(users / nthreads)
  first = tid * per
  n = 0
  sent = {}
  exhausted = 0
end

function request()
  local u = first + (n % per)
  n = n + 1
  local j = sent[u] or 0
  sent[u] = j + 1
  local course, gadget
  if mode == "new" then
    if j >= courses then exhausted = exhausted + 1 end
    course, gadget = "c" .. (first_course + j % courses), "g" .. u
  else
    course, gadget = "bench", (j % 2 == 0 and "a" or "b") .. u
  end
  local body = '{"type": "gadget", "subject": {"courseId": "' .. course ..
    '", "gadgetId": "' .. gadget .. '"}}'
  return wrk.format("POST", path, {["Content-Type"] = "application/json",
                                   ["SID"] = "bench-key-" .. u}, body)
end
"""
)

# GET a course's locks: args = course, users, wrk threads.
WRK_LIST = (
    WRK_COMMON
    + r"""
function init(args)
  course = args[1]
  local users, nthreads = tonumber(args[2]), tonumber(args[3])
  per = math.floor(users / nthreads)
  first = tid * per
  n = 0
end

function request()
  local u = first + (n % per)
  n = n + 1
  return wrk.format("GET", "/locks?subject.courseId=" .. course,
                    {["SID"] = "bench-key-" .. u})
end
"""
)

# DELETE pre-made locks: args = file of "<id> <owner's key>" lines, wrk threads. Each
# thread takes every n-th line; past its last one it counts ``exhausted`` (the run is
# then void: its requests would be 404s).
WRK_DELETE = (
    WRK_COMMON
    + r"""
function init(args)
  local nthreads = tonumber(args[2])
  ids = {}
  local i = 0
  for line in io.lines(args[1]) do
    if i % nthreads == tid then table.insert(ids, line) end
    i = i + 1
  end
  pos = 0
  exhausted = 0
end

function request()
  pos = pos + 1
  local entry = ids[pos]
  if entry == nil then
    exhausted = exhausted + 1
    entry = ids[#ids]
  end
  local id, key = entry:match("^(%S+) (%S+)$")
  return wrk.format("DELETE", "/locks/" .. id, {["SID"] = key})
end
"""
)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _serve(
    cmd: list[str], port: int, env: dict[str, str], cwd: str, log: Path | None = None
) -> subprocess.Popen[Any]:
    """``cmd`` started (its output to ``log``, else dropped), once its /healthz answers."""
    import requests

    if log is None:
        proc = subprocess.Popen(
            cmd, env=env, cwd=cwd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
        )
    else:
        with log.open("ab") as out:
            proc = subprocess.Popen(cmd, env=env, cwd=cwd, stdout=out, stderr=out)
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        try:
            requests.get(f"http://127.0.0.1:{port}/healthz", timeout=1)
            return proc
        except requests.RequestException:
            time.sleep(0.1)
    proc.kill()
    raise RuntimeError(f"{cmd} did not come up" + (f"; see {log}" if log else ""))


def load_catalog(client: Any, users: int, courses: list[tuple[str, list[str]]]) -> None:
    """The HTTP runs' catalog: users ``u<n>`` (``SID`` ``bench-key-<n>``), each an editor
    of every course (key, gadgets)."""
    from lockcore_service.catalog import Catalog, parse_document
    from lockcore_service.identity import Users

    everyone = {f"u{n}": "editor" for n in range(users)}
    doc = {
        "users": [
            {"id": f"u{n}", "name": f"User {n}", "api_key": f"bench-key-{n}"} for n in range(users)
        ],
        "courses": [{"key": k, "gadgets": g, "roles": everyone} for k, g in courses],
    }
    Catalog(client, "lockcore").replace(parse_document(json.dumps(doc)), Users(client, "lockcore"))


def switch_course(users: int) -> tuple[str, list[str]]:
    """Course ``bench``, where each user switches between its two gadgets a<n> and b<n>."""
    return "bench", [f"{s}{n}" for n in range(users) for s in "ab"]


def wrk_binary() -> str:
    found = shutil.which("wrk")
    if not found:
        raise RuntimeError("section 7 needs wrk: apt-get install -y wrk")
    return found


def _wrk(
    base: str, script: Path, args: list[str], duration: int, threads: int, connections: int
) -> dict[str, float]:
    command = [
        wrk_binary(),
        "-t",
        str(threads),
        "-c",
        str(connections),
        "-d",
        f"{duration}s",
        "--timeout",
        "10s",
        "-s",
        str(script),
        base,
        "--",
        *args,
    ]
    run = subprocess.run(
        command, capture_output=True, text=True, timeout=duration + 120, check=False
    )
    for line in run.stdout.splitlines():
        if line.startswith("BENCH_JSON "):
            raw = json.loads(line.split(" ", 1)[1])
            return {
                "rps": raw["requests"] / (raw["duration_us"] / 1e6),
                "p50_ms": raw["p50_us"] / 1000,
                "p99_ms": raw["p99_us"] / 1000,
                "errors": float(raw["status"] + raw["socket"]),
                "exhausted": float(raw["exhausted"]),
            }
    raise RuntimeError(f"wrk gave no result: {run.stdout}\n{run.stderr}")


KINDS = ("floor", "floor1", "floor2", "acquire", "switch", "list", "release")


def http(
    url: str,
    duration: int,
    rounds: int,
    connections: int = 32,
    threads: int = 2,
    workers: int = 2,
    gthreads: int = 128,
    warm_up: tuple[str, ...] = KINDS,
    warm_up_s: int = 2,
    capacity: int = 6000,
) -> Section:
    """req/s of Versal acquire, list and release under wrk, each against a trivial Flask
    POST under the same gunicorn settings (the framework floor). ``warm_up``: the kinds
    of request run for ``warm_up_s`` seconds first; ``capacity``: the acquire rate (req/s)
    the catalog has room for without re-locking."""
    from lockcore_service.config import load
    from lockcore_service.services import lock_types

    wrk_binary()
    users = 2 * connections  # two per connection: rarely two requests of one user at once
    runs = rounds + (1 if "acquire" in warm_up else 0)
    per_run = math.ceil(capacity * duration / users)  # courses per run of "new" acquires
    client = redis.Redis.from_url(url)
    client.flushall()
    load_catalog(
        client,
        users,
        [(f"c{k}", [f"g{n}" for n in range(users)]) for k in range(runs * per_run)]
        + [switch_course(users), ("bench-list", [f"l{n}" for n in range(20)])],
    )
    config = load()
    prefix = config["KEY_PREFIX"]

    def make_manager(c: Any) -> LockManager:
        return LockManager(c, lock_types(config), prefix=prefix, functions=common.FUNCTIONS)

    mgr = make_manager(client)
    for n in range(20):  # the listed course holds 20 locks
        mgr.acquire(
            "versal:course:bench-list", "gadget", f"l{n}", f"u{n}", metadata={"name": f"User {n}"}
        )

    work = Path(tempfile.mkdtemp(prefix="lc-bench-http-"))
    (work / "trivial.py").write_text(TRIVIAL_APP)
    scripts = {}
    for name, text in (("post", WRK_POST), ("list", WRK_LIST), ("delete", WRK_DELETE)):
        scripts[name] = work / f"{name}.lua"
        scripts[name].write_text(text)
    bin_dir = Path(sys.executable).parent
    env = {
        **os.environ,
        "LOCKCORE_LOG_LEVEL": "WARNING",
        "BENCH_REDIS_URL": url,
        "BENCH_FLOOR_LOCK": FLOORS["floor-acquire"][1],
    }
    ports = {"lockcore": free_port(), "floor": free_port()}
    servers = [
        _serve(
            [
                str(bin_dir / "lockcore"),
                "serve",
                "--port",
                str(ports["lockcore"]),
                "--workers",
                str(workers),
                "--threads",
                str(gthreads),
                "--redis-url",
                url,
                "--no-demo",
            ],
            ports["lockcore"],
            env,
            str(work),
        ),
        _serve(
            [
                str(bin_dir / "gunicorn"),
                "-k",
                "gthread",
                "-w",
                str(workers),
                "--threads",
                str(gthreads),
                "-b",
                f"127.0.0.1:{ports['floor']}",
                "trivial:app",
            ],
            ports["floor"],
            env,
            str(work),
        ),
    ]
    base = {k: f"http://127.0.0.1:{p}" for k, p in ports.items()}
    made = 0
    run_number = 0
    how = "none"

    def ids_file(count: int) -> Path:
        """``count`` live Versal locks, as "<id> <owner's key>" lines."""
        nonlocal made, how
        first = made
        how = bulk.create(
            url,
            make_manager,
            lambda m, i: m.acquire(
                f"versal:course:rel{i // users}",
                "gadget",
                f"g{i % users}",
                f"u{i % users}",
                metadata={"name": f"User {i % users}"},
            ),
            count,
            start=first,
            type_name="gadget",
        )
        made += count
        lines = []
        for k in range(first // users, (first + count - 1) // users + 1):
            for lock in mgr.list(f"versal:course:rel{k}", limit=1000).locks:
                lines.append(f"{lock.id} bench-key-{lock.owner[1:]}")
        path = work / f"ids-{first}.txt"
        path.write_text("\n".join(lines) + "\n")
        return path

    def post(target: str, path: str, mode: str, seconds: int) -> dict[str, float]:
        first_course = run_number * per_run
        return _wrk(
            base[target],
            scripts["post"],
            [path, mode, str(users), str(threads), str(first_course), str(per_run)],
            seconds,
            threads,
            connections,
        )

    def run(kind: str, seconds: int) -> dict[str, float]:
        nonlocal run_number
        if kind == "floor":
            return post("floor", "/ping", "new", seconds)
        if kind == "floor1":
            return post("floor", "/ping-redis", "new", seconds)
        if kind == "floor2":
            return post("floor", "/ping-lock", "new", seconds)
        if kind == "acquire":
            result = post("lockcore", "/locks", "new", seconds)
            run_number += 1
            return result
        if kind == "switch":
            return post("lockcore", "/locks", "switch", seconds)
        if kind == "list":
            return _wrk(
                base["lockcore"],
                scripts["list"],
                ["bench-list", str(users), str(threads)],
                seconds,
                threads,
                connections,
            )
        # Enough ids for the release run: it cannot outrun the trivial app by half.
        floor = results["floor"][-1]["rps"] if results["floor"] else 1000.0
        ids = ids_file(math.ceil(1.5 * floor * seconds) + 500)
        return _wrk(
            base["lockcore"],
            scripts["delete"],
            [str(ids), str(threads)],
            seconds,
            threads,
            connections,
        )

    results: dict[str, list[dict[str, float]]] = {k: [] for k in KINDS}
    try:
        # A cold service answers its first requests slowly (a first 1 s run may complete
        # none): warm up the workers, their connections and scripts.
        for kind in warm_up:
            run(kind, warm_up_s)
        for _ in range(rounds):
            for kind in KINDS:
                results[kind].append(run(kind, duration))
    finally:
        stop_all(servers)
        client.flushall()
        client.close()
        shutil.rmtree(work, ignore_errors=True)
    med = {kind: {k: median([r[k] for r in rs]) for k in rs[0]} for kind, rs in results.items()}
    errors = {kind: sum(r["errors"] for r in rs) for kind, rs in results.items()}
    exhausted = {kind: sum(r["exhausted"] for r in rs) for kind, rs in results.items()}
    floor = med["floor"]["rps"]
    labels = {
        "floor": "trivial Flask `POST /ping` (the floor)",
        "floor1": "the same app, `POST /ping-redis`: one Redis `PING` (redis-py) before it "
        "answers (a floor for any view with one round trip)",
        "floor2": "the same app, `POST /ping-lock`: one call of the least lock script "
        "(section 1's floor-acquire: `TIME`, `HMGET`, `HSET`; a new lock each "
        "time, by lockcore's lean client path) before it answers",
        "acquire": "Versal `POST /locks`: acquire a new lock",
        "switch": "Versal `POST /locks`: switch gadget (new lock, releases the previous)",
        "list": "Versal `GET /locks?subject.courseId=` (list 20 locks)",
        "release": "Versal `DELETE /locks/{id}`: release",
    }
    floor1, floor2 = med["floor1"]["rps"], med["floor2"]["rps"]
    table = [
        [
            "request",
            "req/s (median)",
            "vs floor",
            "vs floor + 1 PING",
            "vs floor + 1 lock script",
            "p50 ms",
            "p99 ms",
            "non-2xx / socket errors",
            "target",
            "verdict",
        ]
    ]
    targets = []
    summary = {
        "http_floor_rps": floor,
        "http_floor1_ratio": floor1 / floor,
        "http_floor2_ratio": floor2 / floor,
    }
    for kind, label in labels.items():
        ratio = med[kind]["rps"] / floor
        row = [
            label,
            f"{med[kind]['rps']:,.0f}",
            f"{ratio:.2f}",
            f"{med[kind]['rps'] / floor1:.2f}",
            f"{med[kind]['rps'] / floor2:.2f}",
            f"{med[kind]['p50_ms']:.1f}",
            f"{med[kind]['p99_ms']:.1f}",
            f"{errors[kind]:,.0f}",
        ]
        if kind not in ("acquire", "list", "release"):
            table.append(row + (["", ""] if kind == "floor" else ["(context)", ""]))
            continue
        target = at_least(f"HTTP (wrk): {kind} req/s vs the trivial Flask floor", ratio, 0.6)
        if errors[kind] or exhausted[kind]:
            target.met = False
            target.shown += " (void: errors)" if errors[kind] else " (void: ran out)"
        targets.append(target)
        table.append(row + [target.goal, target.cell])
        summary[f"http_{kind}_ratio"] = ratio
        summary[f"http_{kind}_rps"] = med[kind]["rps"]
        summary[f"http_{kind}_vs_floor2"] = med[kind]["rps"] / floor2
    notes = [
        f"A view that makes one Redis round trip cannot do better than the second row: "
        f"the trivial app with one `PING` reads {floor1 / floor:.2f}× the floor. A "
        "gthread worker lets go of the GIL around every socket call and another of its "
        "threads takes it (futex wake-ups, context switches), so one round trip costs "
        "the worker far more CPU than the command's own work. Every lock operation "
        "sends at least one command (lockcore's acquire, list and release are one "
        "each; Versal's catalog and key reads are cached per process), so "
        "where that row is under 0.6× the 0.6× targets are below this floor; the "
        "column *vs floor + 1 PING* is how close each request comes to it.",
        f"The third row is the least any lock service can do per acquire: the trivial "
        f"app (no authentication, no body, no validation) making one new lock with "
        f"server-clock expiry and a fencing token, by the leanest client path we have: "
        f"{floor2 / floor:.2f}× the floor. What the Versal requests cost beyond it "
        "(the last column) is the service's own work per request: Flask's request "
        "context and hooks, the `SID` check, the body's parsing and validation, the "
        "answer's JSON, metrics and security headers, and lockcore's script doing "
        "more than three commands (the one-per-owner check, events).",
    ]
    if any(errors.values()):
        notes.append(
            "Some requests failed (non-2xx or socket errors, counted over all "
            "rounds): a rate with errors is not a valid figure."
        )
    if exhausted["release"]:
        notes.append(
            f"The release runs ran out of lock ids ({exhausted['release']:,.0f} "
            "requests past the last): their rate is void."
        )
    if exhausted["acquire"]:
        notes.append(
            f"The acquire runs ran out of fresh courses ({exhausted['acquire']:,.0f} "
            "requests re-locked): raise `capacity`."
        )
    return Section(
        "7. HTTP under wrk: acquire, list and release through the Versal API",
        f"`lockcore serve` and a trivial Flask app, both gunicorn gthread with {workers} "
        f"workers × {gthreads} threads, on the same Redis; `wrk -t{threads} "
        f"-c{connections} -d{duration}s` with a Lua script per kind of request, {users} "
        "users (`SID`), each wrk thread going round its share. Acquire: a user's every "
        "request locks its gadget in another course, one where it holds nothing, so each "
        "takes a new lock and releases none. Switch (context): each user goes back and "
        "forth between two gadgets of one course, so each request takes a new lock and "
        "releases the user's previous one (gadget locks are one per owner). List: a "
        "course holding 20 locks. Release: locks made beforehand "
        f"({bulk.HOW[how]}), their ids fed to wrk from a file, each deleted by its owner. "
        "The floor is the trivial app's `POST`, with the acquire's body and headers; the "
        "second floor is the same app sending one Redis `PING` (redis-py, same Redis) "
        "before it answers, the third the same app making one lock with the least "
        "script. "
        f"{rounds} rounds of floor → floor + PING → floor + lock script → acquire → "
        "switch → list → release"
        + (
            f", after a {warm_up_s} s warm-up run of each of {', '.join(warm_up)}"
            if warm_up
            else ""
        )
        + "; medians.",
        table,
        None,
        notes,
        targets,
        summary,
        targets_in_table=True,
    )


# -- 8. waiting costs no worker ------------------------------------------------------------


def _half_open(port: int) -> Any:
    """A connection that sent half a request and then nothing (a slow or stalled client)."""
    sock = socket.create_connection(("127.0.0.1", port))
    sock.sendall(b"POST /v1/locks HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n")
    return sock


def _in_line(client: redis.Redis) -> int:
    """How many waiters are in line (the tickets of every resource's line): a waiting
    request's thread parks between its heartbeats, in a blocking read of its own or woken
    through its process's waker (multiplexed waiting), so Redis's ``blocked_clients``
    counts only the first few of each process."""
    return sum(int(client.llen(key)) for key in client.scan_iter(match="*:q:*", count=1000))


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
        lock = session.post(
            f"{base}/v1/locks",
            headers=headers,
            timeout=30,
            json={"scope": "bench", "resource": f"free-{n % 16}"},
        )
        assert lock.status_code == 201, lock.text
        gone = session.delete(f"{base}/v1/locks/{lock.json()['id']}", headers=headers, timeout=30)
        assert gone.status_code == 200, gone.text
        pairs.append(time.perf_counter() - started)
    health.sort()
    pairs.sort()

    def pct(values: list[float], q: float) -> float:
        return values[min(len(values) - 1, int(len(values) * q))] * 1000

    return {
        "health_p50": pct(health, 0.5),
        "health_p99": pct(health, 0.99),
        "pair_p50": pct(pairs, 0.5),
        "pair_p99": pct(pairs, 0.99),
    }


def waiting(
    url: str, samples: int, waiters: int = 50, half_open: int = 10, workers: int = 2
) -> Section:
    """/healthz and lock+unlock latency with no waiter, then with ``waiters`` pending long
    polls and ``half_open`` stalled connections; then the SIGTERM drain."""
    import requests

    from lockcore_service.catalog import Catalog, parse_document
    from lockcore_service.identity import Users

    client = redis.Redis.from_url(url)
    client.flushall()
    doc = {"users": [{"id": u, "name": u, "api_key": f"bench-{u}"} for u in ("w", "h", "x")]}
    Catalog(client, "lockcore").replace(parse_document(json.dumps(doc)), Users(client, "lockcore"))
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    env = {
        **os.environ,
        "LOCKCORE_LOG_LEVEL": "WARNING",
        "BENCH_REDIS_URL": url,
        "BENCH_FLOOR_LOCK": FLOORS["floor-acquire"][1],
    }
    proc = _serve(
        [
            str(Path(sys.executable).parent / "lockcore"),
            "serve",
            "--port",
            str(port),
            "--workers",
            str(workers),
            "--redis-url",
            url,
            "--no-demo",
        ],
        port,
        env,
        tempfile.mkdtemp(),
    )
    results: list[tuple[int, float]] = []
    sockets: list[Any] = []
    try:
        _latencies(base, 20, "bench-x")  # warm up: connections, scripts
        idle = _latencies(base, samples, "bench-x")
        held = requests.post(
            f"{base}/v1/locks",
            json={"scope": "bench", "resource": "held"},
            headers={"Authorization": "Bearer bench-h"},
            timeout=30,
        )
        assert held.status_code == 201, held.text

        def wait() -> None:
            try:
                status = requests.post(
                    f"{base}/v1/locks",
                    headers={"Authorization": "Bearer bench-w"},
                    json={"scope": "bench", "resource": "held", "wait": 30},
                    timeout=120,
                ).status_code
            except requests.RequestException:
                status = 0
            results.append((status, time.monotonic()))

        threads = [threading.Thread(target=wait, daemon=True) for _ in range(waiters)]
        for thread in threads:
            thread.start()
        sockets = [_half_open(port) for _ in range(half_open)]
        deadline = time.monotonic() + 60
        while _in_line(client) < waiters:
            assert time.monotonic() < deadline, "the waiters did not all get in line"
            time.sleep(0.05)
        busy = _latencies(base, samples, "bench-x")
        pending = _in_line(client)
        assert pending >= waiters, f"only {pending} of {waiters} were still waiting"
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
    table = [
        ["", "/healthz p50 ms", "/healthz p99 ms", "lock+unlock p50 ms", "lock+unlock p99 ms"],
        [
            "no waiter",
            f"{idle['health_p50']:.1f}",
            f"{idle['health_p99']:.1f}",
            f"{idle['pair_p50']:.1f}",
            f"{idle['pair_p99']:.1f}",
        ],
        [
            f"{waiters} pending long polls + {half_open} half-open connections",
            f"{busy['health_p50']:.1f}",
            f"{busy['health_p99']:.1f}",
            f"{busy['pair_p50']:.1f}",
            f"{busy['pair_p99']:.1f}",
        ],
    ]
    ratio = busy["health_p99"] / idle["health_p99"]
    notes = [
        f"/healthz p99 with waiters: {busy['health_p99']:.1f} ms ({ratio:.1f}× the no-waiter "
        f"p99); lock+unlock p99 {busy['pair_p99']:.1f} ms vs {idle['pair_p99']:.1f} ms.",
        f"SIGTERM drain: {answered_503} of {waiters} waiters answered 503 in the /v1 "
        f"envelope, the last {answered_in:.1f} s after the signal; the service exited "
        f"{drained:.1f} s after it (the stalled connections hold a worker until its "
        "graceful timeout).",
    ]
    return Section(
        "8. Waiting costs no worker: latency beside pending long polls",
        f"`lockcore serve` (gthread, {workers} workers); {samples} sequential samples of "
        "each call from one client, first with no waiter, then with "
        f"{waiters} `/v1` long polls (wait=30 s) queued on one held lock and "
        f"{half_open} connections that sent half a request.",
        table,
        None,
        notes,
        [],
        {
            "healthz_p99_ms_idle": idle["health_p99"],
            "healthz_p99_ms_waiters": busy["health_p99"],
            "lock_unlock_p99_ms_idle": idle["pair_p99"],
            "lock_unlock_p99_ms_waiters": busy["pair_p99"],
            "drain_s": drained,
            "drain_answered_s": answered_in,
            "drained_503": float(answered_503),
        },
    )
