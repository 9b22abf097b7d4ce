"""A consumer in another language needs only redis-cli and docs/redis-layout.md (the
scripts expanded as lua/_lib.lua's header says)."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from lockcore.embedded import find_binary

from .servers import Cluster

SCRIPT = Path(__file__).with_name("native_consumer.sh")


@pytest.mark.slow
def test_acquire_conflict_release_expiry_and_events_with_redis_cli_only(
    cluster: Cluster,
) -> None:
    client = cluster.client()
    client.flushall(target_nodes=client.PRIMARIES)
    client.close()
    out = subprocess.run(
        ["bash", str(SCRIPT), find_binary("redis-cli"), str(cluster.ports[0])],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert out.returncode == 0, out.stderr
    sections = dict(part.split("\n", 1) for part in out.stdout.split("== ")[1:])
    acquired = sections["acquire"].splitlines()
    # {OK, now, expired, token} (a new lock as asked), then its record read with HGET
    assert acquired[0] == "0" and len(acquired) == 6
    record = acquired[4].split(" ")  # the short form: flags expires owner field ttl
    assert record[2:] == ["alice", "job:order-7", "30000"]
    assert int(record[1]) - int(record[4]) == int(acquired[1])  # acquired now
    lock_id = sections["acquire"].split("id=")[1].strip()
    assert lock_id.isdigit() and int(lock_id[-14:]) == int(acquired[3])
    conflict = sections["conflict"].splitlines()
    assert conflict[0] == "1" and conflict[3:5] == acquired[3:5]  # names the holder
    released = sections["release"].splitlines()
    assert released[0] == "0" and released[3] == acquired[3] and released[5] == "orders"
    expiry = sections["expiry"].splitlines()
    assert expiry[0] == "0" and expiry[2] == "1"  # dave got it; one lock found expired
    assert sections["events"].split() == ["acquired", "released", "acquired", "expired", "acquired"]
