"""End to end: ``lockcore serve`` as real processes over real HTTP."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from lockcore import EmbeddedRedis

from .live import LiveService

pytestmark = pytest.mark.slow

ALICE = {"SID": "demo-alice-key"}
BOB = {"SID": "demo-bob-key"}
G1 = {"type": "gadget", "subject": {"courseId": "course-1", "gadgetId": "g1"}}
LIST = "/locks?subject.courseId=course-1"


def test_serve_persists_locks_across_a_restart(tmp_path: Path) -> None:
    with LiveService(tmp_path, workers=2) as service:
        made = service.request("POST", "/locks", json=G1, headers=ALICE)
        assert made.status_code == 201
        lock = made.json()
        # every worker answers the same: state lives in Redis
        for _ in range(6):
            assert [lk["id"] for lk in service.request("GET", LIST, headers=BOB).json()] == [
                lock["id"]
            ]
    assert "demo-alice-key" in service.output  # the demo users' keys were printed
    assert not (tmp_path / "lockcore-data" / "redis.sock").exists()  # embedded Redis stopped

    with LiveService(tmp_path, workers=2) as again:
        listed = again.request("GET", LIST, headers=BOB).json()
        assert [lk["id"] for lk in listed] == [lock["id"]]
        assert again.request("POST", "/locks", json=G1, headers=BOB).status_code == 403
        metrics = again.request("GET", "/metrics").text
        assert 'lockcore_http_requests_total{api="versal",status="403"}' in metrics
    assert "demo-alice-key" not in again.output  # not an empty store: no demo reload


def test_two_instances_share_one_redis(tmp_path: Path) -> None:
    with EmbeddedRedis(tmp_path / "redis") as redis_server:
        url = ["--redis-url", redis_server.url, "--demo"]  # an external Redis: asked for
        with (
            LiveService(tmp_path / "a", *url, workers=1) as a,
            LiveService(tmp_path / "b", *url, workers=1) as b,
        ):
            lock = a.request("POST", "/locks", json=G1, headers=ALICE).json()
            assert [lk["id"] for lk in b.request("GET", LIST, headers=BOB).json()] == [lock["id"]]
            refused = b.request("POST", "/locks", json=G1, headers=BOB)
            assert refused.status_code == 403
            assert refused.json() == {"error": 403, "message": "Resource locked"}
            assert b.request("DELETE", f"/locks/{lock['id']}", headers=ALICE).status_code == 200
            assert a.request("GET", LIST, headers=BOB).json() == []


def test_redis_outage_gives_503s_and_service_recovers_by_itself(tmp_path: Path) -> None:
    redis_server = EmbeddedRedis(tmp_path / "redis").start()
    try:
        with LiveService(
            tmp_path / "svc", "--redis-url", redis_server.url, "--demo", workers=2
        ) as svc:
            lock = svc.request("POST", "/locks", json=G1, headers=ALICE).json()
            redis_server.stop()
            for _ in range(3):
                down = svc.request("GET", LIST, headers=BOB)
                assert down.status_code == 503
                assert down.json()["error"] == 503 and "unavailable" in down.json()["message"]
            assert svc.request("GET", "/readyz").status_code == 503
            assert svc.request("GET", "/healthz").status_code == 200

            redis_server.start()
            deadline = time.monotonic() + 10
            while True:
                back = svc.request("GET", LIST, headers=BOB)
                if back.status_code == 200 or time.monotonic() > deadline:
                    break
                time.sleep(0.2)
            assert back.status_code == 200
            assert [lk["id"] for lk in back.json()] == [lock["id"]]
            assert svc.request("GET", "/readyz").status_code == 200
    finally:
        redis_server.stop()
