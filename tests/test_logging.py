"""What lockcore logs (a hold's renewal trouble, on the sync and the asyncio sibling), and
the package surface the application builds on: its version and its defaults."""

from __future__ import annotations

import asyncio
import importlib.metadata
import inspect
import logging
import time
from collections.abc import Callable
from typing import Any

import fakeredis
import pytest
import redis

import lockcore
from lockcore import AsyncLockManager, EmbeddedRedis, LockLost, LockManager
from lockcore.aio import drain

from .conftest import TYPES
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

        asyncio.run(main())
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
