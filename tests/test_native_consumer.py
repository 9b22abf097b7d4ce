"""A consumer in another language needs only redis-cli and docs/redis-layout.md."""

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
    out = subprocess.run(["bash", str(SCRIPT), find_binary("redis-cli"), str(cluster.ports[0])],
                         capture_output=True, text=True, timeout=60, check=False)
    assert out.returncode == 0, out.stderr
    sections = dict(part.split("\n", 1) for part in out.stdout.split("== ")[1:])
    acquired = sections["acquire"].splitlines()
    assert acquired[0] == "0" and '"owner":"alice"' in acquired[3]
    lock_id = sections["acquire"].split("id=")[1].strip()
    assert lock_id.isdigit()
    conflict = sections["conflict"].splitlines()
    assert conflict[0] == "1" and f'"id":"{lock_id}"' in conflict[3]
    assert sections["release"].splitlines()[0] == "0"
    expiry = sections["expiry"].splitlines()
    assert expiry[0] == "0" and expiry[2] == "1"  # dave got it; one lock found expired
    assert sections["events"].split() == ["acquired", "released", "acquired", "expired",
                                          "acquired"]
