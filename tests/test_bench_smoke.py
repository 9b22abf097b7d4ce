"""The benchmark suite runs (a quick pass of three sections); its numbers are not asserted:
speed is measured by `python -m bench.run`, never by tests."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.slow
def test_the_bench_writes_its_report(tmp_path: Path) -> None:
    out = tmp_path / "BENCHMARKS.md"
    command = [sys.executable, "-m", "bench.run", "--quick", "--only", "1", "4", "7",
               "--output", str(out), "--charts", str(tmp_path / "charts")]
    run = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, timeout=300,
                         check=False)
    assert run.returncode == 0, run.stderr
    report = out.read_text()
    assert (tmp_path / "charts" / "single_client.png").is_file()
    for needle in ("## 1. One client", "redis-py Lock", "python-redis-lock", "pottery",
                   "## 4. Memory", "vs redis-py Lock", '"single_ratio"', '"memory_ratio"',
                   "## 7. Waiting costs no worker", '"healthz_p99_ms_waiters"',
                   "50 of 50 waiters answered 503"):
        assert needle in report
