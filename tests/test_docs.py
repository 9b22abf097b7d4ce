"""The documentation's code runs as written."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]


def code_block(path: Path) -> str:
    return re.findall(r"```python\n(.*?)```", path.read_text(), flags=re.S)[0]


def test_the_fencing_example_refuses_the_stale_writer(real_server: Any) -> None:
    client = real_server.client()
    client.flushall()
    namespace: dict[str, Any] = {}
    exec(compile(code_block(ROOT / "docs" / "fencing.md"), "fencing.md", "exec"), namespace)
    assert namespace["demo"](client) == "fenced"
    client.close()
