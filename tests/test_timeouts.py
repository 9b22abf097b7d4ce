"""A stalled Redis: calls fail within the configured timeout, a write is never sent twice,
and a repeat with the same Idempotency-Key returns the first outcome.

Each test starts its own redis-server and pauses it (SIGSTOP) while a script is on its
way, so the script runs only after the client has given up on its reply."""

from __future__ import annotations

import os
import signal
import time
from typing import Any

import pytest

from lockcore import EmbeddedRedis

from .conftest import CATALOG, KEYS
from .test_vidispine import ALICE, JSON, future

TIMEOUT = 1.0  # LOCKCORE_REDIS_TIMEOUT of the app under test


@pytest.fixture
def app(server: EmbeddedRedis) -> Any:
    from lockcore_service import create_app
    from lockcore_service.catalog import parse_document

    application = create_app({"REDIS_URL": server.url, "REDIS_TIMEOUT": TIMEOUT, "KEY_PREFIX": "t"})
    services = application.extensions["lockcore"]
    services.catalog.replace(parse_document(CATALOG), services.users)
    services.locks.load_scripts()
    yield application
    services.connection.close()


class Stall:
    """SIGSTOPs the server just before the acquire script is sent (the first ``times``
    acquires), so that script reaches Redis but its reply comes too late."""

    def __init__(
        self, app: Any, server: EmbeddedRedis, monkeypatch: pytest.MonkeyPatch, times: int = 1
    ) -> None:
        self.server = server
        self.left = times
        scripts = app.extensions["lockcore"].locks._scripts
        original = scripts.run

        def run(call: Any) -> Any:
            if call.script == "acquire" and self.left:
                self.left -= 1
                self.pause()
            return original(call)

        monkeypatch.setattr(scripts, "run", run)

    def pause(self) -> None:
        assert self.server.process is not None
        os.kill(self.server.process.pid, signal.SIGSTOP)

    def resume(self) -> None:
        """Let Redis run what it was sent, and return once it has."""
        assert self.server.process is not None
        os.kill(self.server.process.pid, signal.SIGCONT)
        # Commands already buffered on other connections are read in the same event-loop
        # pass as (or before) this new connection's PING.
        with self.server.client() as probe:
            probe.ping()


def timed(call: Any) -> tuple[Any, float]:
    started = time.monotonic()
    result = call()
    return result, time.monotonic() - started


def vidispine_locks(app: Any) -> int:
    return int(app.extensions["lockcore"].locks.count("vidispine"))


def test_a_late_reply_gives_one_503_within_the_timeout_and_the_script_runs_once(
    app: Any, server: EmbeddedRedis, monkeypatch: pytest.MonkeyPatch
) -> None:
    stall = Stall(app, server, monkeypatch)
    client = app.test_client()
    response, took = timed(
        lambda: client.post(
            "/API/item/VX-1/deletion-lock", json={"expiryTime": future()}, headers={**ALICE, **JSON}
        )
    )
    assert response.status_code == 503
    # One timeout, not one per retry (redis-py 6+ would retry it).
    assert TIMEOUT <= took < 2 * TIMEOUT
    stall.resume()
    assert vidispine_locks(app) == 1  # the script ran once, though its reply was lost


def test_an_idempotency_key_repeated_after_a_503_returns_the_first_lock(
    app: Any, server: EmbeddedRedis, monkeypatch: pytest.MonkeyPatch
) -> None:
    stall = Stall(app, server, monkeypatch)
    client = app.test_client()
    body = {"expiryTime": future()}
    headers = {**ALICE, **JSON, "Idempotency-Key": "create-1"}
    assert (
        client.post("/API/item/VX-1/deletion-lock", json=body, headers=headers).status_code == 503
    )
    stall.resume()
    again = client.post("/API/item/VX-1/deletion-lock", json=body, headers=headers)
    assert again.status_code == 200
    listed = client.get("/API/item/VX-1/deletion-lock", headers={**ALICE, **JSON}).get_json()
    assert [lock["id"] for lock in listed["lock"]] == [again.get_json()["id"]]
    replay = client.post("/API/item/VX-1/deletion-lock", json=body, headers=headers)
    assert replay.headers["Idempotent-Replayed"] == "true"
    assert replay.get_json() == again.get_json()
    assert vidispine_locks(app) == 1


def test_v1_acquire_repeated_after_a_503_returns_the_first_outcome(
    app: Any, server: EmbeddedRedis, monkeypatch: pytest.MonkeyPatch
) -> None:
    stall = Stall(app, server, monkeypatch)
    client = app.test_client()
    headers = {"Authorization": f"Bearer {KEYS['alice']}", "Idempotency-Key": "job-7"}
    body = {"scope": "batch", "resource": "invoice-7"}
    response, took = timed(lambda: client.post("/v1/locks", json=body, headers=headers))
    assert response.status_code == 503 and response.get_json()["error"]["code"] == "unavailable"
    assert took < 2 * TIMEOUT
    stall.resume()
    again = client.post("/v1/locks", json=body, headers=headers)
    assert again.status_code == 201  # the first outcome: created, not "already yours"
    locks = app.extensions["lockcore"].locks.list("v1:batch").locks
    assert [lock.id for lock in locks] == [again.get_json()["id"]]


@pytest.mark.parametrize(
    "method, path, headers",
    [
        ("GET", "/locks?subject.courseId=c1", {"SID": KEYS["alice"]}),
        ("POST", "/v1/locks", {"Authorization": f"Bearer {KEYS['alice']}"}),
        ("GET", "/API/deletion-lock", ALICE),
        ("GET", "/readyz", {}),
    ],
)
def test_a_stopped_redis_gives_503_within_the_timeout(
    app: Any, server: EmbeddedRedis, method: str, path: str, headers: dict[str, str]
) -> None:
    client = app.test_client()
    assert server.process is not None
    os.kill(server.process.pid, signal.SIGSTOP)
    try:
        response, took = timed(
            lambda: client.open(
                path,
                method=method,
                headers=headers,
                json={"scope": "s", "resource": "r"} if method == "POST" else None,
            )
        )
    finally:
        os.kill(server.process.pid, signal.SIGCONT)
    assert response.status_code == 503
    assert took < 2 * TIMEOUT
