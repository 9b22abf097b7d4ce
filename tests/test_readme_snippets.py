"""Every ```python block of the README runs as printed, on its own, against a real
redis-server (blocks that only show something use another fence: ```text, ```json)."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parents[1]
README = (ROOT / "README.md").read_text()


def python_blocks(text: str) -> list[tuple[int, str]]:
    """(line of the opening fence, code) of every ```python block."""
    return [
        (text.count("\n", 0, found.start()) + 1, found.group(1))
        for found in re.finditer(r"^```python\n(.*?)^```$", text, flags=re.S | re.M)
    ]


BLOCKS = python_blocks(README)


def run_block(code: str, folder: Path, redis_url: str) -> subprocess.CompletedProcess[str]:
    """The block as a script of its own, in a fresh interpreter, warnings as errors; the
    Redis it reaches is the one the README's readers set, LOCKCORE_REDIS_URL."""
    script = folder / "snippet.py"
    script.write_text(code)
    return subprocess.run(
        [sys.executable, "-W", "error", str(script)],
        cwd=folder,
        env={**os.environ, "LOCKCORE_REDIS_URL": redis_url},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def test_the_readme_has_the_library_and_workers_blocks() -> None:
    assert len(BLOCKS) >= 2
    assert all("LOCKCORE_REDIS_URL" in code for _, code in BLOCKS)


@pytest.mark.parametrize(("line", "code"), BLOCKS, ids=[f"line-{n}" for n, _ in BLOCKS])
def test_the_block_runs_as_printed(tmp_path: Path, server: Any, line: int, code: str) -> None:
    out = run_block(code, tmp_path, server.url)
    assert out.returncode == 0, f"README.md line {line}:\n{out.stderr}"
    # It used the server it was given, not an embedded one of its own.
    assert server.client().dbsize() > 0
    assert not (tmp_path / "lockcore-data").exists()


def test_a_broken_block_fails(tmp_path: Path) -> None:
    [(_, code)] = python_blocks("```python\nimport os\n\nlock_id\n```\n")
    out = run_block(code, tmp_path, "redis://127.0.0.1:1")
    assert out.returncode != 0 and "NameError" in out.stderr
