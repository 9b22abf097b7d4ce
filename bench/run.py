"""lockcore against its peers, side by side, in one run: ``python -m bench.run``.

Every measurement runs each contender on the same Redis (a private redis-server started
here), interleaved round by round so that machine noise falls on all alike; the report
gives ratios, with absolute numbers as context, and judges each of the performance
targets (MET or MISSED) in a table at its top. Writes ``BENCHMARKS.md`` and PNG charts in
``bench/charts/``.

Sections (``--only`` takes their numbers):

1. Redis time per operation, from Redis's own accounting (``INFO commandstats``), vs SET NX PX
2. Round trips (commands sent) per operation
3. Memory per held lock in three layouts, vs redis-py Lock keys
4. One client, uncontended: acquire + release cycles/s vs redis-py Lock and others
5. Contention: 8 and 16 processes on 1 and 16 resources, vs redis-py Lock and
   python-redis-lock
6. Growth: latency with 1k vs 1M locks held in other scopes
7. HTTP under wrk: acquire, list, release vs a trivial Flask app
8. Waiting costs no worker: latency beside pending long polls, and the SIGTERM drain
9. Durable locks: the cost of waiting for a replica
10. The primitives' acquire cost
11. Growth across masters and instances: Clusters of 1, 3 and 6 masters, every API on a
    3-master Cluster with the key and catalog cache on and off, 1, 2 and 4 service
    instances (each master's INFO cpu and commandstats)

``--quick`` shrinks every size and duration (a smoke run, ~1 minute).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from collections.abc import Callable
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from lockcore import EmbeddedRedis

from . import common
from .clients import contention, single_client
from .common import ROOT, Paths, Section, Target, machine
from .durable import durable
from .growth import growth_section
from .http import KINDS, http, waiting
from .primitives import primitives
from .server_side import growth, memory, redis_time, round_trips

SECTIONS = ("1", "2", "3", "4", "5", "6", "7", "8", "9", "10", "11")


#: section 11's sizes under --quick (a smoke run of a few seconds)
GROWTH_QUICK: dict[str, Any] = {
    "sizes": (1, 3),
    "counts": (1, 2),
    "workers": 2,
    "hold": 200,
    "cycles": 200,
    "scopes": 50,
    "api_rounds": 2,
    "api_users": 3,
    "api_entities": 3,
    "duration": 1,
    "connections": 4,
    "threads": 4,
    "waiters": 4,
    "rounds": 1,
}


def _table(head: list[str], rows: list[list[str]]) -> list[str]:
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    return lines + ["| " + " | ".join(row) + " |" for row in rows]


def report(
    sections: list[Section], server: str, elapsed: float, quick: bool, where: Path = ROOT
) -> str:
    """The report's text; ``where``: the folder it goes in (chart links are relative)."""
    targets: list[Target] = [t for s in sections for t in s.targets]
    met = sum(1 for t in targets if t.met)
    summary: dict[str, float] = {}
    for section in sections:
        summary.update(section.summary)
    lines = [
        "# Benchmarks",
        "",
        f"Run {datetime.now(timezone.utc):%Y-%m-%d %H:%M} UTC on {machine()}; Redis "
        f"{server} (a private redis-server on a unix socket, AOF off); {elapsed:.0f} s in "
        "all"
        + (
            " (**--quick**: small sizes, short runs; a smoke run, not figures to quote)"
            if quick
            else ""
        )
        + ". Regenerate with `python -m bench.run` (see "
        "`python -m bench.run --help`). Ratios matter, measured in one run against peers "
        "on the same server; absolute numbers are this machine's.",
        "",
        "## Targets",
        "",
        f"{met} of {len(targets)} met.",
        "",
    ]
    lines += _table(
        ["section", "target", "goal", "measured", "verdict"],
        [[t.section, t.label, t.goal, t.shown, t.cell] for t in targets],
    )
    lines.append("")
    for section in sections:
        lines += [f"## {section.title}", "", section.text, ""]
        head, *rows = section.table
        lines += _table(head, rows)
        lines.append("")
        if section.targets and not section.targets_in_table:
            lines += _table(
                ["target", "goal", "measured", "verdict"],
                [[t.label, t.goal, t.shown, t.cell] for t in section.targets],
            )
            lines.append("")
        if section.chart:
            link = Path(os.path.relpath(section.chart, where)).as_posix()
            lines += [f"![{section.title}]({link})", ""]
        lines += [f"- {note}" for note in section.notes]
        if section.notes:
            lines.append("")
    lines += [
        "## Summary (machine-readable)",
        "",
        "```json",
        json.dumps({k: round(v, 3) for k, v in summary.items()}, indent=2),
        "```",
        "",
    ]
    return "\n".join(lines)


def plan(url: str, args: argparse.Namespace) -> list[tuple[str, Callable[[], Section]]]:
    q = args.quick
    memory_count = args.memory_count or (3000 if q else 100_000)
    growth_max = args.growth_max or (10_000 if q else 1_000_000)
    return [
        ("1", lambda: redis_time(url, 300 if q else 2000, 1 if q else 3, 200 if q else 1000)),
        ("2", lambda: round_trips(url)),
        ("3", lambda: memory(url, memory_count)),
        ("4", lambda: single_client(url, 300 if q else 2000, 2 if q else 5)),
        ("5", lambda: contention(url, [8, 16], [1, 16], 0.5 if q else 2.0, 1 if q else 3)),
        ("6", lambda: growth([1000, growth_max], 60 if q else 300, args.redis_server)),
        (
            "7",
            lambda: http(
                url,
                1 if q else 5,
                1 if q else 3,
                warm_up=("floor", "acquire") if q else KINDS,
                warm_up_s=1 if q else 2,
            ),
        ),
        ("8", lambda: waiting(url, 50 if q else 400)),
        ("9", lambda: durable(args.redis_server, 100 if q else 500, 1 if q else 3)),
        ("10", lambda: primitives(url, 100 if q else 1000, 1 if q else 3)),
        (
            "11",
            lambda: growth_section(url, args.redis_server, **(GROWTH_QUICK if q else {})),
        ),
    ]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--quick", action="store_true", help="small sizes and short runs: a smoke run (~1 minute)"
    )
    parser.add_argument(
        "--output", default=str(ROOT / "BENCHMARKS.md"), help="the report (default: BENCHMARKS.md)"
    )
    parser.add_argument(
        "--only", nargs="*", choices=SECTIONS, metavar="N", help="run only these sections (1-11)"
    )
    parser.add_argument("--charts", default=str(Paths.charts), help="where the PNG charts go")
    parser.add_argument(
        "--memory-count",
        type=int,
        default=None,
        help="locks per layout in section 3 (default 100,000; quick 3,000)",
    )
    parser.add_argument(
        "--growth-max",
        type=int,
        default=None,
        help="the largest store in section 6 (default 1,000,000; quick 10,000)",
    )
    parser.add_argument(
        "--redis-server",
        default=None,
        metavar="PATH",
        help="the redis-server binary to run (default: lockcore's own choice, "
        "PATH else the bundled 6.2); e.g. a Redis 7 to measure FCALL",
    )
    parser.add_argument(
        "--functions",
        choices=("auto", "on", "off"),
        default="auto",
        help="lockcore's scripts by FCALL of a FUNCTION library (auto: on Redis 7+) or by EVALSHA",
    )
    args = parser.parse_args(argv)
    Paths.charts = Path(args.charts).resolve()
    started = time.monotonic()
    with EmbeddedRedis(
        tempfile.mkdtemp(prefix="lc-bench-"), appendonly=False, executable=args.redis_server
    ) as server:
        version = server.client().info("server")["redis_version"]
        common.FUNCTIONS = (
            args.functions == "on" or args.functions == "auto" and int(version.split(".")[0]) >= 7
        )
        sections: list[Section] = []
        for key, run in plan(server.url, args):
            if args.only and key not in args.only:
                continue
            print(f"bench: section {key} ...", flush=True)
            began = time.monotonic()
            section = run()
            for target in section.targets:
                target.section = key
            sections.append(section)
            verdicts = ", ".join(f"{t.verdict} {t.shown}" for t in section.targets)
            print(
                f"bench: section {key} done in {time.monotonic() - began:.0f} s"
                + (f": {verdicts}" if verdicts else ""),
                flush=True,
            )
    output = Path(args.output).resolve()
    output.write_text(
        report(sections, version, time.monotonic() - started, args.quick, output.parent)
    )
    print(f"bench: wrote {args.output} in {time.monotonic() - started:.0f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
