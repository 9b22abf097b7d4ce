"""What lockcore logs (a hold's renewal trouble, on the sync and the asyncio sibling), the
service's log lines (every one a JSON object with an ISO-8601 UTC time, gunicorn's own
included; a request's line with its user, API, scope and lock id), and the package
surface the application builds on: its version and its defaults."""

from __future__ import annotations

import asyncio
import importlib.metadata
import inspect
import json
import logging
import re
import subprocess
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any
from unittest import mock

import fakeredis
import pytest
import redis

import lockcore
from lockcore import AsyncLockManager, EmbeddedRedis, LockLost, LockManager
from lockcore.aio import drain

from . import live
from .conftest import KEYS, TYPES
from .test_hold import finishes, forever_client, paused, wait_for

SCOPE = "jobs"
FLAVOURS = ["sync", "async"]
LOGGER = {"sync": "lockcore.hold", "async": "lockcore.aio"}


@pytest.fixture
def logs(caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch) -> Any:
    """caplog seeing lockcore's records at every level, even once the app's
    ``setup_logging`` (which stops them at the ``lockcore`` logger) ran in this process."""
    monkeypatch.setattr(logging.getLogger("lockcore"), "propagate", True)
    caplog.set_level(logging.DEBUG, logger="lockcore")
    return caplog


def records(logs: Any, name: str, text: str = "") -> list[logging.LogRecord]:
    return [r for r in logs.records if r.name == name and text in r.getMessage()]


async def until(condition: Callable[[], Any], timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "condition not met in time"
        await asyncio.sleep(0.005)


def lose_to_an_unreachable_redis(flavour: str, logs: Any) -> Any:
    """Hold a lock whose renewals all raise ConnectionError until its lease is lost and a
    failed try was logged; returns the lock as it was held."""
    name = LOGGER[flavour]

    def tried() -> bool:
        return bool(records(logs, name, "renewal failed"))

    if flavour == "sync":
        mgr = LockManager(fakeredis.FakeRedis(), TYPES, prefix="t")

        def unreachable(*args: Any, **kwargs: Any) -> Any:
            raise redis.ConnectionError("Redis went away")

        with pytest.raises(LockLost):
            with mgr.hold(SCOPE, "job", "r", "worker", ttl=0.3) as held:
                mgr.refresh = unreachable  # type: ignore[method-assign]
                assert held.lost.wait(10)
                wait_for(tried, 10)
        return held.lock

    async def main() -> Any:
        client = fakeredis.FakeAsyncRedis()
        amgr = AsyncLockManager(client, TYPES, prefix="t")

        async def unreachable(*args: Any, **kwargs: Any) -> Any:
            raise redis.ConnectionError("Redis went away")

        try:
            with pytest.raises(LockLost):
                async with amgr.hold(SCOPE, "job", "r", "worker", ttl=0.3) as held:
                    amgr.refresh = unreachable  # type: ignore[method-assign]
                    await asyncio.wait_for(held.lost.wait(), 10)
                    await until(tried)
            return held.lock
        finally:
            await drain()
            await client.aclose()

    return asyncio.run(main())


@pytest.mark.parametrize("flavour", FLAVOURS)
def test_a_failed_renewal_is_logged_as_a_warning_naming_the_lock_and_the_error(
    flavour: str, logs: Any
) -> None:
    lock = lose_to_an_unreachable_redis(flavour, logs)
    failed = records(logs, LOGGER[flavour], "renewal failed")
    assert failed and all(r.levelno == logging.WARNING for r in failed)
    message = failed[0].getMessage()
    assert lock.id in message and "'r'" in message
    assert "ConnectionError: Redis went away" in message


@pytest.mark.parametrize("flavour", FLAVOURS)
def test_the_lease_at_risk_is_logged_once_as_a_warning(flavour: str, logs: Any) -> None:
    lock = lose_to_an_unreachable_redis(flavour, logs)
    [risk] = records(logs, LOGGER[flavour], "at risk")
    assert risk.levelno == logging.WARNING and lock.id in risk.getMessage()


@pytest.mark.parametrize("flavour", FLAVOURS)
def test_the_loss_is_logged_once_as_an_error(flavour: str, logs: Any) -> None:
    lock = lose_to_an_unreachable_redis(flavour, logs)
    [lost] = [r for r in records(logs, LOGGER[flavour]) if r.levelno >= logging.ERROR]
    assert lost.levelno == logging.ERROR
    assert lost.getMessage() == f"lock {lock.id} on 'r' was lost: the lease ran out"


@pytest.mark.parametrize("flavour", FLAVOURS)
def test_renewals_that_work_log_nothing_above_debug(flavour: str, logs: Any) -> None:
    # A lease of 1.2 s renewed every 0.4 s: room for a loaded machine before "at risk".
    renewed: list[Any] = []
    if flavour == "sync":
        mgr = LockManager(fakeredis.FakeRedis(), TYPES, prefix="t")
        original = mgr.refresh

        def counting(*args: Any, **kwargs: Any) -> Any:
            renewed.append(original(*args, **kwargs))
            return renewed[-1]

        mgr.refresh = counting  # type: ignore[method-assign]
        with mgr.hold(SCOPE, "job", "r", "worker", ttl=1.2) as held:
            wait_for(lambda: len(renewed) >= 2, 10)
        assert held.released is True
    else:

        async def main() -> None:
            client = fakeredis.FakeAsyncRedis()
            amgr = AsyncLockManager(client, TYPES, prefix="t")
            original = amgr.refresh

            async def counting(*args: Any, **kwargs: Any) -> Any:
                renewed.append(await original(*args, **kwargs))
                return renewed[-1]

            amgr.refresh = counting  # type: ignore[method-assign]
            try:
                async with amgr.hold(SCOPE, "job", "r", "worker", ttl=1.2) as held:
                    await until(lambda: len(renewed) >= 2)
                assert held.released is True
            finally:
                await drain()
                await client.aclose()

        # bounded: a hang seen once in CI (the block left as a renewal landed, the stop's
        # cancel lost in 3.11's wait_for: test_leaving_as_a_renewal_lands_stops_the_renewals)
        asyncio.run(asyncio.wait_for(main(), 60))
    assert [r.getMessage() for r in logs.records if r.levelno > logging.DEBUG] == []


@pytest.mark.parametrize("flavour", FLAVOURS)
def test_a_release_redis_does_not_answer_is_logged_as_a_warning(
    flavour: str, server: EmbeddedRedis, logs: Any
) -> None:
    if flavour == "sync":
        mgr = LockManager(forever_client(server), TYPES, prefix="t")
        hold = mgr.hold(SCOPE, "job", "r", "worker", ttl=3)
        held: Any = hold.__enter__()
        with paused(server):
            [left] = finishes(lambda: hold.__exit__(None, None, None))
        assert left is None
    else:
        import redis.asyncio

        async def main() -> Any:
            client = redis.asyncio.Redis(
                unix_socket_path=str(server.socket_path), socket_timeout=None
            )
            amgr = AsyncLockManager(client, TYPES, prefix="t")
            try:
                hold = amgr.hold(SCOPE, "job", "r", "worker", ttl=3)
                held = await hold.__aenter__()
                with paused(server):
                    await asyncio.wait_for(hold.__aexit__(None, None, None), 30)
                return held
            finally:
                await drain()
                await client.aclose()

        held = asyncio.run(main())
    assert held.released is False
    [unanswered] = records(logs, LOGGER[flavour], "release was not answered")
    assert unanswered.levelno == logging.WARNING and held.lock.id in unanswered.getMessage()


def test_each_sibling_logs_on_its_modules_logger_and_adds_no_handler() -> None:
    from lockcore import aio, hold

    assert (hold.logger.name, aio.logger.name) == ("lockcore.hold", "lockcore.aio")
    assert hold.logger.handlers == [] and aio.logger.handlers == []


def test_the_version_is_the_installed_distributions() -> None:
    assert lockcore.__version__ == importlib.metadata.version("lockcore")


def test_the_defaults_are_exported_from_the_package() -> None:
    from lockcore.connect import DEFAULT_DATA_DIR
    from lockcore.manager import DEFAULT_PREFIX

    assert {"DEFAULT_DATA_DIR", "DEFAULT_PREFIX"} <= set(lockcore.__all__)
    assert (lockcore.DEFAULT_DATA_DIR, lockcore.DEFAULT_PREFIX) == (
        DEFAULT_DATA_DIR,
        DEFAULT_PREFIX,
    )
    assert inspect.signature(LockManager).parameters["prefix"].default == DEFAULT_PREFIX


# --- the service's log lines ---------------------------------------------------------------

#: ISO-8601, UTC, to the millisecond: 2026-11-24T10:01:05.123Z
ISO_MS = re.compile(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z")


def json_lines(text: str) -> list[dict[str, Any]]:
    """Every line of ``text`` as a JSON object (fails on any other line)."""
    entries = []
    for line in text.splitlines():
        if not line.strip():
            continue
        try:
            entry = json.loads(line)
        except ValueError:
            pytest.fail(f"not a JSON line: {line!r}")
        assert isinstance(entry, dict), line
        entries.append(entry)
    return entries


def test_the_time_is_iso_8601_utc_to_the_millisecond() -> None:
    from lockcore_service.observability import JsonFormatter, iso_time

    assert iso_time(0.1239) == "1970-01-01T00:00:00.123Z"
    assert iso_time(1795515097.9) == "2026-11-24T10:11:37.900Z"
    record = logging.LogRecord("x", logging.INFO, __file__, 1, "hello %s", ("you",), None)
    entry = json.loads(JsonFormatter().format(record))
    assert ISO_MS.fullmatch(entry["time"]) and "ts" not in entry
    assert (entry["level"], entry["logger"], entry["message"]) == ("INFO", "x", "hello you")


def request_lines(capfd: Any) -> list[dict[str, Any]]:
    return [e for e in json_lines(capfd.readouterr().err) if e.get("logger") == "lockcore.app"]


def test_a_request_line_has_the_user_api_scope_and_lock_id(client: Any, capfd: Any) -> None:
    v1 = {"Authorization": f"Bearer {KEYS['alice']}"}
    capfd.readouterr()
    made = client.post("/v1/locks", json={"scope": "s", "resource": "r"}, headers=v1)
    assert made.status_code == 201
    lock_id = made.get_json()["id"]
    assert client.get(f"/v1/locks/{lock_id}", headers=v1).status_code == 200
    assert client.delete(f"/v1/locks/{lock_id}", headers=v1).status_code == 200
    acquired, got, released = request_lines(capfd)
    for entry, method, route in (
        (acquired, "POST", "/v1/locks"),
        (got, "GET", "/v1/locks/<lock_id>"),
        (released, "DELETE", "/v1/locks/<lock_id>"),
    ):
        assert ISO_MS.fullmatch(entry["time"]) and "ts" not in entry
        assert (entry["method"], entry["route"], entry["api"]) == (method, route, "native")
        assert (entry["user"], entry["scope"], entry["lock_id"]) == ("alice", "v1:s", lock_id)
        assert entry["request_id"] and entry["status"] in (200, 201)


def test_a_conflict_line_has_the_scope_but_no_lock_id_and_an_anonymous_one_no_user(
    client: Any, capfd: Any
) -> None:
    gadget = {"type": "gadget", "subject": {"courseId": "c1", "gadgetId": "g1"}}
    assert client.post("/locks", json=gadget, headers={"SID": KEYS["alice"]}).status_code == 201
    capfd.readouterr()
    assert client.post("/locks", json=gadget, headers={"SID": KEYS["bob"]}).status_code == 403
    assert client.post("/locks", json=gadget).status_code == 401
    refused, anonymous = request_lines(capfd)
    assert (refused["user"], refused["api"], refused["scope"]) == (
        "bob",
        "versal",
        "versal:course:c1",
    )
    assert "lock_id" not in refused
    assert anonymous["api"] == "versal" and "user" not in anonymous and "scope" not in anonymous


def test_a_release_by_id_line_names_the_lock(client: Any, capfd: Any) -> None:
    gadget = {"type": "gadget", "subject": {"courseId": "c1", "gadgetId": "g1"}}
    made = client.post("/locks", json=gadget, headers={"SID": KEYS["alice"]}).get_json()
    capfd.readouterr()
    released = client.delete(f"/locks/{made['id']}", headers={"SID": KEYS["alice"]})
    assert released.status_code == 200
    [entry] = request_lines(capfd)
    assert (entry["user"], entry["lock_id"], entry["scope"]) == (
        "alice",
        made["id"],
        "versal:course:c1",
    )


class LoggedService(live.LiveService):
    """``lockcore serve`` whose stderr is kept in a file (read once it stopped)."""

    def start(self, timeout: float = 30.0) -> live.LiveService:
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.stderr_file = self.workdir / "stderr.log"
        real = subprocess.Popen

        with open(self.stderr_file, "w") as sink:

            def popen(*args: Any, **kwargs: Any) -> Any:
                return real(*args, **{**kwargs, "stderr": sink})

            with mock.patch.object(live.subprocess, "Popen", popen):
                return super().start(timeout)

    def stderr(self) -> str:
        return self.stderr_file.read_text()


@pytest.mark.slow
def test_a_served_process_writes_only_json_lines_gunicorns_included(tmp_path: Path) -> None:
    service = LoggedService(tmp_path, workers=2)
    with service:
        v1 = {"Authorization": "Bearer demo-alice-key"}
        made = service.request(
            "POST", "/v1/locks", json={"scope": "s", "resource": "r"}, headers=v1
        )
        assert made.status_code == 201
        assert service.request("GET", "/no/such/page").status_code == 404
    entries = json_lines(service.stderr())
    assert entries and all(ISO_MS.fullmatch(e["time"]) and "ts" not in e for e in entries)
    assert all({"level", "logger", "message", "pid"} <= set(e) for e in entries)
    gunicorn = [e["message"] for e in entries if e["logger"] == "gunicorn.error"]
    assert any(m.startswith("Listening at: ") for m in gunicorn)
    assert sum(m.startswith("Booting worker") for m in gunicorn) == 2
    assert any(m.startswith("Shutting down") for m in gunicorn)
    # the service's request lines, no access log of gunicorn's beside them
    assert not [e for e in entries if e["logger"] == "gunicorn.access"]
    [acquired] = [e for e in entries if e.get("route") == "/v1/locks"]
    assert (acquired["user"], acquired["api"], acquired["scope"], acquired["lock_id"]) == (
        "alice",
        "native",
        "v1:s",
        made.json()["id"],
    )
    [unknown] = [e for e in entries if e.get("path") == "/no/such/page"]
    assert unknown["route"] == "unmatched" and unknown["status"] == 404
