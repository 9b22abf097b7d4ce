"""The README stays true: its curl tour works as printed, its tables match the code."""

from __future__ import annotations

import json
import re
import subprocess
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest

from lockcore_service.config import settings

from .live import LiveService

ROOT = Path(__file__).resolve().parents[1]
README = (ROOT / "README.md").read_text()


def tour(name: str) -> list[tuple[str, Any]]:
    """(shell block, expected JSON) pairs between <!-- name ... --> and <!-- /name -->."""
    section = README.split(f"<!-- {name}", 1)[1].split(f"<!-- /{name} -->", 1)[0]
    blocks = re.findall(r"```(sh|json)\n(.*?)```", section, flags=re.S)
    pairs = []
    for (kind, text), following in zip(blocks, blocks[1:] + [("", "")], strict=True):
        if kind == "sh":
            pairs.append((text, json.loads(following[1]) if following[0] == "json" else None))
    return pairs


def matches(got: Any, expected: Any, key: str = "") -> bool:
    """Equal, except values that change every run: ids (digits), expiresIn (counting down)
    and dates (same format)."""
    if key == "id" and isinstance(expected, str) and expected.isdigit():  # a lock id
        return isinstance(got, str) and got.isdigit()
    if key == "id" and isinstance(expected, str) and re.fullmatch(r"VX-\d{10,}", expected):
        return isinstance(got, str) and re.fullmatch(r"VX-\d+", got) is not None
    if key == "modified":
        return isinstance(got, str) and bool(datetime.fromisoformat(got))
    if key == "date_locked":
        return isinstance(got, str) and re.fullmatch(r"\d{4}-\d\d-\d\d \d\d:\d\d", got) is not None
    if key == "expiresIn":
        return isinstance(got, int) and 0 < got <= expected
    if isinstance(expected, dict):
        return (
            isinstance(got, dict)
            and got.keys() == expected.keys()
            and all(matches(got[k], v, k) for k, v in expected.items())
        )
    if isinstance(expected, list):
        return (
            isinstance(got, list)
            and len(got) == len(expected)
            and all(matches(g, e) for g, e in zip(got, expected, strict=True))
        )
    return bool(got == expected)


@pytest.mark.slow
@pytest.mark.parametrize(
    "name", ["versal-tour", "edx-tour", "docspace-tour", "vidispine-tour", "v1-tour"]
)
def test_the_tour_works_as_printed(tmp_path: Path, name: str) -> None:
    pairs = tour(name)
    assert len(pairs) >= 2
    with LiveService(tmp_path, workers=2) as service:
        script = "set -e\n" + "".join(
            block.replace("localhost:8000", f"127.0.0.1:{service.port}") + "echo '@@@'\n"
            for block, _ in pairs
        )
        out = subprocess.run(
            ["bash", "-c", script], capture_output=True, text=True, timeout=60, check=False
        )
    assert out.returncode == 0, out.stderr
    outputs = out.stdout.split("@@@\n")[:-1]
    assert len(outputs) == len(pairs)
    for (block, expected), output in zip(pairs, outputs, strict=True):
        if expected is not None:
            got = output.replace(f"127.0.0.1:{service.port}", "localhost:8000")
            assert matches(json.loads(got), expected), (block, got)


def test_every_setting_is_in_the_configuration_table() -> None:
    for name in settings():
        assert re.search(rf"\| `LOCKCORE_{name}` \|", README), name


def test_ci_runs_the_readmes_test_command() -> None:
    command = "pip install -e '.[test]' && python -m pytest"
    assert command in README
    ci = (ROOT / ".ci" / "run").read_text()
    assert "python -m pip install -q -e '.[test]'" in ci
    assert "\npython -m pytest\n" in ci
