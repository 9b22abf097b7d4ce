"""Leader election on leases.

The leader of an election holds the exclusive lock of an election lock type (``LEADER``,
or any exclusive type with events) on resource ``<name>`` in a scope; its **term** is that
lock's fencing token, so terms strictly increase from one leader to the next (tokens never
repeat, even when the scope's keys are lost: docs/fencing.md). A leader keeps its lease
renewed by ``hold()``; whoever writes on its behalf passes the term, and the guarded
resource refuses a term lower than the last it saw.

    election = Election(mgr, "scheduler")
    with election.campaign("node-1") as held:   # waits until this candidate leads
        run_as_leader(term=held.fencing_token)  # renewed until the block exits
    # leaving the block resigns (the lock released; the next candidate is woken at once)

    leader = election.observe()                      # the leader now, or None
    leader = election.observe(after=term, timeout=30)  # wait for the next change

Observers follow the scope's event stream (a change wakes them at once) and the current
leader's lease (a leader that died without resigning is gone when its lease ends, whether
or not anyone noticed): no polling.
"""

from __future__ import annotations

import math
import time
from collections.abc import AsyncIterator, Callable, Iterator, Mapping
from contextlib import asynccontextmanager, contextmanager
from typing import TYPE_CHECKING, Any

from .models import Lock, LockType, Mode

if TYPE_CHECKING:
    from .aio import AsyncHeld, AsyncLockManager
    from .hold import Held
    from .manager import LockManager

#: A lock type for elections: exclusive, with events (observers follow them), a 15 s lease.
LEADER = LockType("leader", default_ttl=15.0, events=True)


def _check_type(lock_type: LockType) -> None:
    if lock_type.mode is not Mode.EXCLUSIVE or not lock_type.events:
        raise ValueError(
            f"lock type {lock_type.name!r}: an election needs an exclusive type with "
            "events=True (observers follow its events)"
        )


def _term(lock: Lock | None) -> int | None:
    return None if lock is None else lock.fencing_token


def _block_ms(current: Lock | None, deadline: float, heartbeat: float) -> int:
    """How long to wait for an event: until the deadline, or until the current leader's
    lease ends (plus a little: the server's clock decides), whichever comes first, and at
    most the manager's ``heartbeat`` (as a waiter's BLPOP: a socket timeout never cuts a
    read short); an event ends the read at once."""
    wait = min(deadline - time.monotonic(), heartbeat)
    if current is not None and current.remaining is not None:
        wait = min(wait, current.remaining + 0.01)
    return max(1, math.ceil(wait * 1000))


class _Election:
    """What the sync and asyncio elections share: the names and the checks."""

    def __init__(self, manager: Any, name: str, scope: str, type: str, ttl: float) -> None:
        _check_type(manager.lock_type(type))
        self.manager = manager
        self.name = name
        self.scope = scope
        self.type = type
        self.ttl = ttl
        self.stream = manager.keys(scope).events

    def _hold_args(self, candidate: str, wait: float | None) -> tuple[tuple[str, ...], float]:
        return (self.scope, self.type, self.name, candidate), math.inf if wait is None else wait


class Election(_Election):
    """Leader election ``name`` in ``scope`` on ``manager``'s lock type ``type`` (which
    must be exclusive with events: ``LEADER`` is one)."""

    def __init__(
        self,
        manager: LockManager,
        name: str,
        *,
        scope: str = "elections",
        type: str = LEADER.name,
        ttl: float = 15.0,
    ) -> None:
        super().__init__(manager, name, scope, type, ttl)

    @contextmanager
    def campaign(
        self,
        candidate: str,
        *,
        wait: float | None = None,
        metadata: Mapping[str, str] | None = None,
        on_lost: Callable[[Held], Any] | None = None,
    ) -> Iterator[Held]:
        """Lead: wait (``wait`` seconds; None: as long as it takes) until ``candidate``
        holds the election, then keep it, renewed, until the block exits, which resigns.
        ``held.fencing_token`` is the term; ``held.lost`` is set at once if the lease is
        lost (stop acting as leader). LockConflict if ``wait`` runs out first."""
        args, wait_for = self._hold_args(candidate, wait)
        hold = self.manager.hold(
            *args, ttl=self.ttl, wait=wait_for, metadata=metadata, on_lost=on_lost
        )
        with hold as held:
            yield held

    def leader(self) -> Lock | None:
        """The current leader's lock (owner: the candidate; fencing token: the term), or
        None."""
        page = self.manager.list(self.scope, type=self.type, resource=self.name, limit=1)
        return page.locks[0] if page.locks else None

    def observe(self, after: int | None = None, *, timeout: float | None = None) -> Lock | None:
        """The current leader, or None. With ``after`` (a term): wait until the election
        is no longer in that term (a new leader, or none), at most ``timeout`` seconds
        (None: as long as it takes), and return what it is then."""
        deadline = math.inf if timeout is None else time.monotonic() + timeout
        client = self.manager.client
        # From the newest entry before the read: a change between the two is not missed.
        newest = client.xrevrange(self.stream, count=1)
        last = newest[0][0] if newest else "0-0"
        while True:
            current = self.leader()
            if after is None or _term(current) != after or time.monotonic() >= deadline:
                return current
            read = client.xread(
                {self.stream: last}, block=_block_ms(current, deadline, self.manager.heartbeat)
            )
            for _, entries in read or []:
                last = entries[-1][0]


class AsyncElection(_Election):
    """As ``Election``, on an ``AsyncLockManager``."""

    def __init__(
        self,
        manager: AsyncLockManager,
        name: str,
        *,
        scope: str = "elections",
        type: str = LEADER.name,
        ttl: float = 15.0,
    ) -> None:
        super().__init__(manager, name, scope, type, ttl)

    @asynccontextmanager
    async def campaign(
        self,
        candidate: str,
        *,
        wait: float | None = None,
        metadata: Mapping[str, str] | None = None,
        on_lost: Callable[[AsyncHeld], Any] | None = None,
    ) -> AsyncIterator[AsyncHeld]:
        """As ``Election.campaign``: ``async with election.campaign(...) as held``."""
        args, wait_for = self._hold_args(candidate, wait)
        hold = self.manager.hold(
            *args, ttl=self.ttl, wait=wait_for, metadata=metadata, on_lost=on_lost
        )
        async with hold as held:
            yield held

    async def leader(self) -> Lock | None:
        page = await self.manager.list(self.scope, type=self.type, resource=self.name, limit=1)
        return page.locks[0] if page.locks else None

    async def observe(
        self, after: int | None = None, *, timeout: float | None = None
    ) -> Lock | None:
        """As ``Election.observe``."""
        deadline = math.inf if timeout is None else time.monotonic() + timeout
        client = self.manager.client
        newest = await client.xrevrange(self.stream, count=1)
        last = newest[0][0] if newest else "0-0"
        while True:
            current = await self.leader()
            if after is None or _term(current) != after or time.monotonic() >= deadline:
                return current
            read = await client.xread(
                {self.stream: last}, block=_block_ms(current, deadline, self.manager.heartbeat)
            )
            for _, entries in read or []:
                last = entries[-1][0]
