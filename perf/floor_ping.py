"""What one Redis round trip per request costs under the benchmark's gunicorn settings: the
trivial Flask app of ``perf/wrk_versal.py`` (the floor), and the same app sending 1, 2...
Redis PINGs (redis-py, a unix socket) before it answers, each under wrk, interleaved.

On a small machine this bounds what any view making that many round trips can reach
against the floor: a gthread worker lets go of the GIL around every socket call, and each
time another of its threads takes it (futex wake-ups, context switches), so a round trip
costs far more CPU than the command's own work.

    python perf/floor_ping.py [--pings 0,1,2] [--duration 2] [--rounds 3]
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from wrk_versal import serve, wrk  # noqa: E402

from lockcore.embedded import EmbeddedRedis  # noqa: E402

PING_APP = """
import os

import redis
from flask import Flask, jsonify

app = Flask(__name__)
client = redis.Redis.from_url(os.environ["PING_URL"])
PINGS = int(os.environ["PINGS"])


@app.route("/ping", methods=["POST", "GET", "DELETE"])
def ping():
    for _ in range(PINGS):
        client.ping()
    return jsonify({})


@app.get("/healthz")
def healthz():
    return jsonify({})
"""


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--pings", default="0,1,2", help="round trips per request, each a run")
    parser.add_argument("--duration", type=int, default=2, help="seconds per wrk run")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--connections", type=int, default=32)
    parser.add_argument("--threads", type=int, default=2, help="wrk threads")
    parser.add_argument("--workers", type=int, default=2, help="gunicorn workers")
    parser.add_argument("--gunicorn-threads", type=int, default=128)
    args = parser.parse_args(argv)
    counts = [int(n) for n in args.pings.split(",") if n]

    work = Path(tempfile.mkdtemp(prefix="lc-ping-"))
    (work / "pingapp.py").write_text(PING_APP)
    bin_dir = Path(sys.executable).parent
    results: dict[int, list[dict[str, Any]]] = {n: [] for n in counts}
    with EmbeddedRedis(work / "redis", appendonly=False) as server:
        client = server.client()
        servers = {}
        try:
            for i, pings in enumerate(counts):
                port = 18550 + i
                env = {**os.environ, "PING_URL": server.url, "PINGS": str(pings)}
                servers[pings] = (
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
                            f"127.0.0.1:{port}",
                            "pingapp:app",
                        ],
                        port,
                        env,
                        str(work),
                        work / f"ping{pings}.log",
                    ),
                    port,
                )
            for _ in range(args.rounds):
                for pings, (proc, port) in servers.items():
                    results[pings].append(
                        wrk(
                            f"http://127.0.0.1:{port}",
                            "floor-post",
                            args,
                            {"BENCH_USERS": "32"},
                            proc,
                            client,
                        )
                    )
        finally:
            for proc, _ in servers.values():
                proc.terminate()
                proc.wait(10)
            client.close()

    base = statistics.median(r["rps"] for r in results[counts[0]])
    print(
        f"gunicorn gthread {args.workers} workers x {args.gunicorn_threads} threads, wrk "
        f"-t{args.threads} -c{args.connections} -d{args.duration}s, {args.rounds} rounds, "
        "medians"
    )
    for pings in counts:
        rps = statistics.median(r["rps"] for r in results[pings])
        cpu = statistics.median(r["cpu_us"]["server"] for r in results[pings])
        print(
            f"{pings} Redis round trips per request: {rps:7.0f} req/s  "
            f"x{rps / base:4.2f} of the first  server CPU {cpu:5.0f} µs/request"
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
