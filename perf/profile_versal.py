"""Where a Versal request's time goes, in one process: the Redis commands each request
sends (``INFO commandstats`` before and after), the CPU time per request of this process
and of redis-server (what bounds throughput on a small machine: a round trip's wait is
hidden by the other threads, its CPU is not) and a cProfile of the Flask app serving it
through its test client, on the same data as ``perf/wrk_versal.py``.

    python perf/profile_versal.py [--op acquire|list|release] [--count 2000] [--top 40]
"""

from __future__ import annotations

import argparse
import cProfile
import pstats
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from wrk_versal import populate, release_pool  # noqa: E402

from lockcore.embedded import EmbeddedRedis  # noqa: E402


def commandstats(client: Any) -> dict[str, tuple[int, int]]:
    return {
        name: (stats["calls"], stats["usec"]) for name, stats in client.info("commandstats").items()
    }


def _redis_cpu(client: Any) -> float:
    info = client.info("cpu")
    return float(info["used_cpu_sys"]) + float(info["used_cpu_user"])


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--op", default="acquire", choices=("acquire", "list", "release"))
    parser.add_argument("--count", type=int, default=2000)
    parser.add_argument("--top", type=int, default=40)
    parser.add_argument("--sort", default="tottime")
    parser.add_argument("--log-level", default="INFO")
    parser.add_argument(
        "--plain",
        action="store_true",
        help="no profiler: only the time per request and the commands",
    )
    args = parser.parse_args(argv)

    with EmbeddedRedis(Path(tempfile.mkdtemp(prefix="lc-prof-")), appendonly=False) as server:
        client = server.client()
        populate(client, 32, 10)
        pool = Path(tempfile.mkdtemp()) / "pool.txt"
        if args.op == "release":
            release_pool(client, 32, args.count + 64, pool)
            releases = [line.split() for line in pool.read_text().split("\n") if line]
        from lockcore_service import create_app

        app = create_app({"REDIS_URL": server.url, "LOG_LEVEL": args.log_level})
        http = app.test_client()

        def one(n: int) -> Any:
            k = n % 32
            if args.op == "acquire":
                return http.post(
                    "/locks",
                    headers={"SID": f"bench-key-{k}"},
                    json={"type": "gadget", "subject": {"courseId": "bench", "gadgetId": f"g{k}"}},
                )
            if args.op == "list":
                return http.get("/locks?subject.courseId=listed", headers={"SID": f"bench-key-{k}"})
            lock_id, sid = releases[n]
            return http.delete(f"/locks/{lock_id}", headers={"SID": sid})

        for n in range(32):  # warm up (and, for release, use up the first locks)
            assert one(n).status_code < 300
        before = commandstats(client)
        profile = cProfile.Profile()
        redis_cpu = _redis_cpu(client)
        cpu = time.process_time()
        started = time.perf_counter()
        if not args.plain:
            profile.enable()
        for n in range(32, 32 + args.count):
            one(n)
        profile.disable()
        elapsed = time.perf_counter() - started
        cpu = time.process_time() - cpu
        redis_cpu = _redis_cpu(client) - redis_cpu
        after = commandstats(client)
        print(
            f"{args.op}: {args.count} requests, {elapsed / args.count * 1e6:.0f} µs each"
            + ("" if args.plain else " (under cProfile)")
        )
        print(
            f"CPU per request: this process {cpu / args.count * 1e6:.0f} µs, redis-server "
            f"{redis_cpu / args.count * 1e6:.0f} µs"
        )
        print("Redis commands per request (calls, server µs):")
        for name in sorted(after):
            calls = after[name][0] - before.get(name, (0, 0))[0]
            usec = after[name][1] - before.get(name, (0, 0))[1]
            if calls and name not in ("cmdstat_info",):
                print(f"  {name[8:]:12} {calls / args.count:6.2f}  {usec / args.count:7.1f}")
        if not args.plain:
            pstats.Stats(profile, stream=sys.stdout).sort_stats(args.sort).print_stats(args.top)
        client.close()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
