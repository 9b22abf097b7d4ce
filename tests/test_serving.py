"""Waiting never starves the service: waiters are capped below the threads, a SIGTERM
drains them with a clean answer, and gunicorn's timeout outlasts the longest wait."""

from __future__ import annotations

import json
import signal
import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import requests

from lockcore import EmbeddedRedis
from lockcore_service.server import draining, max_waiters, settings

from .conftest import CATALOG, KEYS
from .live import LiveService

WAIT = {"scope": "batch", "resource": "r", "wait": 20}


def auth(user: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {KEYS[user]}"}


def queue_length(app: Any) -> int:
    mgr = app.extensions["lockcore"].locks
    return int(mgr.client.llen(f"{mgr.keys('v1:batch').base}q:job:r"))


def wait_until(condition: Any, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "condition not met in time"
        time.sleep(0.01)


class Waiter(threading.Thread):
    """A /v1 long poll through the app's test client, in a thread."""

    def __init__(self, app: Any) -> None:
        super().__init__(daemon=True)
        self.app = app
        self.response: Any = None

    def run(self) -> None:
        self.response = self.app.test_client().post("/v1/locks", json=WAIT, headers=auth("alice"))


@pytest.fixture
def held(client: Any) -> Iterator[dict[str, Any]]:
    lock = client.post(
        "/v1/locks", json={"scope": "batch", "resource": "r"}, headers=auth("bob")
    ).get_json()
    yield lock
    draining().clear()


def test_a_wait_beyond_the_cap_is_refused_at_once(
    app: Any, client: Any, held: dict[str, Any]
) -> None:
    app.config["V1_MAX_WAITERS"] = 1
    first = Waiter(app)
    first.start()
    wait_until(lambda: queue_length(app) == 1)
    refused = client.post("/v1/locks", json=WAIT, headers=auth("carol"))
    assert refused.status_code == 503
    assert refused.get_json()["error"]["code"] == "unavailable"
    assert queue_length(app) == 1  # the refused one never joined the line
    # a call that does not wait is not capped
    assert (
        client.post("/v1/locks", json={**WAIT, "wait": None}, headers=auth("carol")).status_code
        == 409
    )
    client.delete(f"/v1/locks/{held['id']}", headers=auth("bob"))
    first.join(10)
    assert first.response.status_code == 201
    # the slot is free again
    assert (
        client.post("/v1/locks", json={**WAIT, "wait": 0.05}, headers=auth("carol")).status_code
        == 409
    )


def test_the_drain_answers_waiters_503_and_leaves_no_line(
    app: Any, client: Any, held: dict[str, Any]
) -> None:
    waiters = [Waiter(app) for _ in range(3)]
    for waiter in waiters:
        waiter.start()
    wait_until(lambda: queue_length(app) == 3)
    draining().set()
    for waiter in waiters:
        waiter.join(10)
        assert waiter.response.status_code == 503
        assert waiter.response.get_json()["error"]["code"] == "unavailable"
    assert queue_length(app) == 0


@pytest.mark.parametrize("max_wait, redis_timeout", [("30", "5"), ("300", "5"), ("5", "60")])
def test_the_worker_timeout_outlasts_the_longest_wait(
    monkeypatch: pytest.MonkeyPatch, max_wait: str, redis_timeout: str
) -> None:
    monkeypatch.setenv("LOCKCORE_V1_MAX_WAIT", max_wait)
    monkeypatch.setenv("LOCKCORE_REDIS_TIMEOUT", redis_timeout)
    conf = settings(workers=2, threads=64)
    assert conf["worker_class"] == "gthread"
    assert conf["timeout"] > float(max_wait) + 2 * float(redis_timeout)
    assert conf["graceful_timeout"] > float(redis_timeout) + 1  # a heartbeat + one call
    assert max_waiters(64) < 64


# --- the real server ------------------------------------------------------------------


def half_open(port: int) -> socket.socket:
    """A connection that sent half a request and then nothing."""
    sock = socket.create_connection(("127.0.0.1", port))
    sock.sendall(b"POST /v1/locks HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n")
    return sock


@pytest.mark.slow
def test_fifty_waiters_and_ten_half_open_connections_do_not_starve_the_service(
    tmp_path: Path,
) -> None:
    redis_server = EmbeddedRedis(tmp_path / "redis", appendonly=False).start()
    redis_client = redis_server.client()
    catalog_and_users(redis_client)
    service = LiveService(tmp_path / "app", "--redis-url", redis_server.url, workers=2).start()
    sockets: list[socket.socket] = []
    results: list[requests.Response | BaseException] = []
    try:
        bob, alice = auth("bob"), auth("alice")
        lock = service.request(
            "POST", "/v1/locks", json={"scope": "batch", "resource": "r"}, headers=bob
        )
        assert lock.status_code == 201

        def wait() -> None:
            try:
                results.append(
                    requests.post(service.url + "/v1/locks", json=WAIT, headers=alice, timeout=60)
                )
            except BaseException as exc:  # noqa: BLE001 - reported by the assertion below
                results.append(exc)

        threads = [threading.Thread(target=wait, daemon=True) for _ in range(50)]
        for thread in threads:
            thread.start()
        sockets = [half_open(service.port) for _ in range(10)]
        queue = "lockcore:{v1%3Abatch}:q:job:r"
        wait_until(lambda: redis_client.llen(queue) == 50, timeout=30)

        # Everything else is still served, with 50 waiters and 10 stalled clients.
        assert requests.get(service.url + "/healthz", timeout=5).status_code == 200
        other = requests.post(
            service.url + "/v1/locks",
            headers=bob,
            timeout=5,
            json={"scope": "batch", "resource": "other"},
        )
        assert other.status_code == 201
        assert (
            requests.delete(
                f"{service.url}/v1/locks/{other.json()['id']}", headers=bob, timeout=5
            ).status_code
            == 200
        )

        # SIGTERM: every waiter gets a clean answer in the envelope before the exit.
        assert service.process is not None
        service.process.send_signal(signal.SIGTERM)
        for thread in threads:
            thread.join(30)
        service.process.wait(30)
        assert len(results) == 50
        for result in results:
            assert isinstance(result, requests.Response), result
            assert result.status_code == 503
            assert json.loads(result.text)["error"]["code"] == "unavailable"
        assert redis_client.llen(queue) == 0  # the drained waiters left the line
    finally:
        for sock in sockets:
            sock.close()
        service.stop()
        redis_client.close()
        redis_server.stop()


def catalog_and_users(redis_client: Any) -> None:
    from lockcore_service.catalog import Catalog, parse_document
    from lockcore_service.identity import Users

    Catalog(redis_client, "lockcore").replace(
        parse_document(CATALOG), Users(redis_client, "lockcore")
    )
