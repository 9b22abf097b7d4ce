"""The benchmark suite runs end to end (a quick pass of every section) and its report has
every row; its numbers are not asserted: speed is measured by `python -m bench.run`, never
by tests."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]

SECTIONS = (
    "## 1. Redis time per operation",
    "## 2. Round trips per operation",
    "## 3. Memory per held lock",
    "## 4. One client, uncontended",
    "## 5. Contention",
    "## 6. Growth",
    "## 7. HTTP under wrk",
    "## 8. Waiting costs no worker",
    "## 9. Durable locks",
    "## 10. The primitives' acquire cost",
    "## 11. Growth across masters and instances",
)

#: Every target's row, as the summary table at the top names it.
TARGETS = (
    "Redis time: acquire a new lock (scope holding 1,000), events off",
    "Redis time: acquire a new lock (scope holding 1,000), events on",
    "Redis time: refresh, events off",
    "Redis time: release, events off",
    "Round trips: acquire (a new lock)",
    "Round trips: release by bare id",
    "Round trips: refresh by bare id",
    "Round trips: get by bare id",
    "Memory per held lock, 1 × 3,000, vs redis-py Lock",
    "Memory per held lock, 30 × 100, vs redis-py Lock",
    "Memory per held lock, 3,000 × 1, vs redis-py Lock",
    "One client: lockcore cycles/s vs redis-py Lock",
    *(
        f"Contention, {w} workers on {r}: lockcore {what}"
        for w in (8, 16)
        for r in ("1 resource", "16 resources")
        for what in ("throughput vs best peer", "max/min acquisitions per worker")
    ),
    "Growth: acquire latency at 10,000 vs 1,000",
    "Growth: release latency at 10,000",
    "Growth: list latency at 10,000",
    "HTTP (wrk): acquire req/s vs the trivial Flask floor",
    "HTTP (wrk): list req/s vs the trivial Flask floor",
    "HTTP (wrk): release req/s vs the trivial Flask floor",
)

#: Rows of the sections' tables that carry no target.
ROWS = (
    "`SET key val NX PX 30000` (the baseline)",
    "redis-py Lock release (Lua), a peer",
    "| python-redis-lock |",
    "pottery",
    "PING (round-trip floor)",
    "trivial Flask `POST /ping` (the floor)",
    "switch gadget",
    "50 of 50 waiters answered 503",
    "durable (both changes wait for the replica)",
    "multi-lock of 3 resources (one call): acquire",
)

SUMMARY_KEYS = (
    '"redis_time_acquire"',
    '"redis_time_acquire_events"',
    '"round_trips_get"',
    '"memory_ratio_1x3000"',
    '"single_ratio"',
    '"contention_16_1"',
    '"contention_fairness_8_16"',
    '"growth_list"',
    '"http_release_ratio"',
    '"healthz_p99_ms_waiters"',
    '"durable_ratio"',
    '"primitives_exclusive_us"',
    '"masters_3_cpu_us_per_op"',
)


#: The smoke run in two halves run side by side (the sections are independent, each on its
#: own servers; together in one process they took 85 s of the suite's 10-minute budget).
HALVES = (("1", "2", "3", "4", "5", "6", "7"), ("8", "9", "10", "11"))


@pytest.mark.slow
def test_the_bench_writes_its_report(tmp_path: Path) -> None:
    if shutil.which("wrk") is None and not os.environ.get("CI"):
        pytest.skip("section 7 drives the service with wrk: apt-get install wrk")
    runs = []
    for n, half in enumerate(HALVES):
        out = tmp_path / f"half{n}" / "BENCHMARKS.md"
        out.parent.mkdir()
        command = [
            sys.executable,
            "-m",
            "bench.run",
            "--quick",
            "--only",
            *half,
            "--output",
            str(out),
            "--charts",
            str(out.parent / "charts"),
        ]
        proc = subprocess.Popen(
            command, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
        )
        runs.append((out, proc))
    reports = []
    for out, proc in runs:
        try:
            output, _ = proc.communicate(timeout=600)
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.communicate()
        assert proc.returncode == 0, output
        reports.append(out.read_text())
    first = runs[0][0].parent
    assert (first / "charts" / "single_client.png").is_file()
    assert (first / "charts" / "growth.png").is_file()
    assert "](charts/growth.png)" in reports[0]  # linked relative to the report
    for half, report in zip(HALVES, reports, strict=True):
        for section in SECTIONS:
            number = section.split(".")[0].removeprefix("## ")
            assert (section in report) == (number in half), section
    report = "\n".join(reports)
    for needle in SECTIONS + ROWS + SUMMARY_KEYS:
        assert needle in report, needle
    rows = []
    for part in reports:
        summary = part.split("## Targets", 1)[1].split("\n## ", 1)[0]
        mine = [line for line in summary.splitlines() if line.startswith("| ")][1:]
        assert re.search(rf"\d+ of {len(mine)} met\.", summary)
        rows += mine
    for target in TARGETS:
        row = next((r for r in rows if target in r), None)
        assert row is not None, target
        assert re.search(r"\*\*(MET|MISSED)\*\*", row), row
    assert len(rows) == len(TARGETS)
    # section 11 in its smoke size: Clusters of 1 and 3 masters, every API with the cache
    # on and off, 1 and 2 service instances; every table and figure present
    for needle in (
        "### 11a. The same lock load on Clusters of 1, 3 masters",
        "### 11b. Every API, one mixed load, on a 3-master Cluster",
        "### 11c. Service instances on one Redis",
        "| on (1 s) |",
        "| off (0) |",
        "(holds `{users}`)",
        "(holds `{catalog}`)",
        '"masters_1_cpu_us_per_op"',
        '"masters_3_calls_max_min"',
        '"masters_3_bytes_per_held_lock"',
        '"apis_cache_on_users_catalog_share"',
        '"apis_cache_off_users_catalog_share"',
        '"instances_2_rps"',
    ):
        assert needle in report, needle
    # every API request of the mixed load succeeded, with the cache on and off
    for row in ("| on (1 s) |", "| off (0) |"):
        line = next(x for x in report.splitlines() if x.startswith(row))
        assert "(0 failed)" in line, line


@pytest.mark.slow
def test_only_runs_the_sections_named(tmp_path: Path) -> None:
    out = tmp_path / "BENCHMARKS.md"
    command = [
        sys.executable,
        "-m",
        "bench.run",
        "--quick",
        "--only",
        "2",
        "--output",
        str(out),
        "--charts",
        str(tmp_path / "charts"),
    ]
    run = subprocess.run(
        command, cwd=ROOT, capture_output=True, text=True, timeout=120, check=False
    )
    assert run.returncode == 0, run.stdout + run.stderr
    report = out.read_text()
    assert "## 2. Round trips per operation" in report
    assert "## 1." not in report and "## 3." not in report
    assert "Round trips: release by bare id" in report
