"""The tooling the repo configures runs: CI checks lint, format and types before the
tests, with the repo's own settings, and pre-commit runs the same checks."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parent.parent
CHECKS = ("ruff check .", "ruff format --check .", "mypy")


def test_ci_runs_lint_format_and_types_before_the_tests() -> None:
    ci = (ROOT / ".ci" / "run").read_text()
    assert "set -euo pipefail" in ci  # a failing check stops the run
    lines = [line.strip() for line in ci.splitlines()]
    tests_at = lines.index("python -m pytest")
    for check in CHECKS:
        assert lines.index(check) < tests_at, check
    assert "python -m pip install -q -e '.[dev]'" in lines


def test_pre_commit_runs_the_same_checks() -> None:
    config = yaml.safe_load((ROOT / ".pre-commit-config.yaml").read_text())
    entries = {hook["entry"] for repo in config["repos"] for hook in repo["hooks"]}
    assert entries == {"ruff check", "ruff format --check", "mypy"}


def tool(name: str) -> str:
    found = shutil.which(name, path=str(Path(sys.executable).parent))
    assert found, f"{name} is installed with the dev extra"
    return found


def test_ruff_refuses_what_the_repo_configuration_forbids(tmp_path: Path) -> None:
    bad = tmp_path / "bad.py"
    bad.write_text("import os\n\n\ndef f(x):\n    return [x for x in range(3)]  \n")
    config = str(ROOT / "pyproject.toml")
    lint = subprocess.run(
        [tool("ruff"), "check", "--config", config, str(bad)], check=False, capture_output=True
    )
    assert lint.returncode == 1 and b"F401" in lint.stdout  # the unused import
    fmt = subprocess.run(
        [tool("ruff"), "format", "--check", "--config", config, str(bad)],
        check=False,
        capture_output=True,
    )
    assert fmt.returncode == 1  # trailing whitespace: would be reformatted


def test_mypy_is_strict_on_the_library_and_the_service(tmp_path: Path) -> None:
    bad = tmp_path / "untyped.py"
    bad.write_text("def f(x):\n    return x\n")
    config = str(ROOT / "pyproject.toml")
    run = subprocess.run(
        [tool("mypy"), "--config-file", config, "--no-incremental", str(bad)],
        check=False,
        capture_output=True,
        cwd=tmp_path,
    )
    assert run.returncode == 1 and b"no-untyped-def" in run.stdout
    settings = (ROOT / "pyproject.toml").read_text()
    assert 'packages = ["lockcore", "app"]' in settings
