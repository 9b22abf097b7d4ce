"""The slot tags: the shipped table is the generator's output, a real Redis Cluster hashes
every tag to its slot and no smaller n there, and the algorithm docs/redis-layout.md gives
other languages computes the same table."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import redis
from redis.crc import key_slot

from lockcore import keys, slottags

from .servers import Cluster

ROOT = Path(__file__).resolve().parents[1]
LAYOUT = ROOT / "docs" / "redis-layout.md"


def command(*args: str) -> bytes:
    return subprocess.run(
        [sys.executable, "-m", "lockcore.slottags", *args],
        cwd=ROOT,
        capture_output=True,
        check=True,
        timeout=60,
    ).stdout


def shipped() -> list[int]:
    return [int(n) for n in slottags.parse(slottags.SHIPPED.read_text())]


def documented_algorithm() -> dict[str, Any]:
    """The Python block of docs/redis-layout.md's section *The tag of a slot*, run."""
    section = LAYOUT.read_text().split("### The tag of a slot\n", 1)[1].split("\n## ", 1)[0]
    found = re.search(r"```python\n(.*?)```", section, flags=re.S)
    assert found is not None
    namespace: dict[str, Any] = {}
    exec(compile(found.group(1), "redis-layout.md", "exec"), namespace)
    return namespace


def test_the_shipped_table_is_what_the_generator_prints_byte_for_byte() -> None:
    assert command() == slottags.SHIPPED.read_bytes()
    assert slottags.render(slottags.compute()) == slottags.SHIPPED.read_text()


def test_the_table_for_other_languages_is_one_slot_and_tag_a_line() -> None:
    lines = [line for line in command("--table").decode().splitlines() if line[0] != "#"]
    assert lines == [f"{slot} #{n}" for slot, n in enumerate(shipped())]


def test_each_slots_tag_is_the_first_n_in_the_slot_by_redis_py() -> None:
    numbers = shipped()
    first: dict[int, int] = {}
    for n in range(max(numbers) + 1):
        first.setdefault(key_slot(b"#%d" % n), n)
    assert [first[slot] for slot in range(slottags.SLOTS)] == numbers


def test_each_slots_tag_is_the_first_n_in_the_slot_by_a_real_redis_cluster(
    cluster: Cluster,
) -> None:
    """CLUSTER KEYSLOT of every "#<n>" up to the largest tag, and of a directory key."""
    numbers = shipped()
    node = redis.Redis(port=cluster.ports[0])
    try:
        pipe = node.pipeline(transaction=False)
        for n in range(max(numbers) + 1):
            pipe.execute_command("CLUSTER", "KEYSLOT", b"#%d" % n)
        slots = pipe.execute()
        directory = node.execute_command("CLUSTER", "KEYSLOT", keys.directory_key("p", 4321))
    finally:
        node.close()
    first: dict[int, int] = {}
    for n, slot in enumerate(slots):
        first.setdefault(slot, n)
    assert [first[slot] for slot in range(slottags.SLOTS)] == numbers
    assert directory == 4321


def test_the_documented_algorithm_computes_the_shipped_table() -> None:
    algorithm = documented_algorithm()
    assert algorithm["crc16"](b"123456789") == 0x31C3  # the check value the doc gives
    numbers = shipped()
    assert algorithm["slot_tags"]() == [f"#{n}" for n in numbers]
    assert max(numbers) == 167975  # "every slot has its tag by n = 167975"


def test_the_documented_way_to_a_scopes_directory_is_lockcores(cluster: Cluster) -> None:
    algorithm = documented_algorithm()
    slot = algorithm["crc16"](b"course%3A42") % 16384
    scope = keys.ScopeKeys.for_scope("p", "course:42")
    assert slot == scope.slot
    assert scope.directory == f"p:{{#{shipped()[slot]}}}:D"  # the table: slot_tags() above
    node = redis.Redis(port=cluster.ports[0])
    try:
        assert node.execute_command("CLUSTER", "KEYSLOT", "p:{course%3A42}:L") == slot
    finally:
        node.close()


def test_lockcore_reads_the_shipped_table_without_computing_it(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    def compute() -> tuple[int, ...]:
        raise AssertionError("computed")

    monkeypatch.setattr(slottags, "compute", compute)
    assert keys._slot_tags.__wrapped__() == tuple(f"#{n}" for n in shipped())


@pytest.mark.parametrize("damage", ["missing", "truncated", "not numbers"])
def test_a_missing_or_damaged_table_is_computed_instead(
    damage: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    expected = tuple(f"#{n}" for n in shipped())
    table = tmp_path / "slot-tags.txt"
    text = slottags.SHIPPED.read_text()
    if damage == "truncated":
        table.write_text(text[: len(text) // 2] + "\n")
    elif damage == "not numbers":
        table.write_text(text.replace(" 42802 ", " x "))
    monkeypatch.setattr(slottags, "SHIPPED", table)
    with pytest.raises((OSError, ValueError)):
        slottags.parse(table.read_text())
    assert keys._slot_tags.__wrapped__() == expected
