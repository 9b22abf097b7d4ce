"""Leader election: one leader at a time, terms (fencing tokens) that only grow, observers
woken by a change (or by a dead leader's lease ending), sync and asyncio, on every
backend."""

from __future__ import annotations

import asyncio
import threading
import time
from typing import Any

import pytest

from lockcore import (
    LEADER,
    AsyncElection,
    AsyncLockManager,
    Election,
    LockConflict,
    LockManager,
    LockType,
)

from .conftest import TYPES

ELECTION_TYPES = [*TYPES, LEADER, LockType("quiet", default_ttl=15.0)]


@pytest.fixture
def emgr(make_client: Any) -> LockManager:
    return LockManager(make_client(), ELECTION_TYPES, prefix="t", heartbeat=0.5)


def test_an_election_needs_an_exclusive_type_with_events(emgr: LockManager) -> None:
    with pytest.raises(ValueError, match="events"):
        Election(emgr, "db", type="quiet")
    with pytest.raises(ValueError, match="exclusive"):
        Election(emgr, "db", type="deletion")


def test_the_leader_is_seen_with_its_term_and_resigning_ends_it(emgr: LockManager) -> None:
    election = Election(emgr, "scheduler")
    assert election.observe() is None
    with election.campaign("node-1") as held:
        leader = election.observe()
        assert leader is not None and leader.owner == "node-1"
        assert leader.fencing_token == held.fencing_token  # the term
        with pytest.raises(LockConflict):
            with election.campaign("node-2", wait=0.05):
                pass
    assert election.observe() is None


def test_the_next_leader_has_a_larger_term(emgr: LockManager) -> None:
    election = Election(emgr, "scheduler")
    with election.campaign("node-1") as first:
        term = first.fencing_token
        taken = threading.Event()
        terms: list[int] = []

        def second() -> None:
            with election.campaign("node-2", wait=30) as held:
                terms.append(held.fencing_token)
                taken.set()

        thread = threading.Thread(target=second)
        thread.start()
        assert not taken.is_set()
    assert taken.wait(30)  # woken by the resignation
    thread.join(30)
    assert terms and terms[0] > term


def test_an_observer_is_woken_by_the_change(emgr: LockManager) -> None:
    election = Election(emgr, "scheduler")
    seen: list[Any] = []
    with election.campaign("node-1") as held:
        term = held.fencing_token
        watcher = threading.Thread(target=lambda: seen.append(election.observe(after=term)))
        watcher.start()
    # resigned: the observer wakes, and sees no leader
    watcher.join(30)
    assert not watcher.is_alive() and seen == [None]
    # a timeout with no change gives the leader as it is
    with election.campaign("node-2") as held:
        now = election.observe(after=held.fencing_token, timeout=0.05)
        assert now is not None and now.fencing_token == held.fencing_token


def test_an_observer_sees_a_dead_leader_go_when_its_lease_ends(emgr: LockManager) -> None:
    election = Election(emgr, "scheduler", ttl=0.3)
    # a leader that died without resigning: its lock is never renewed nor released
    dead = emgr.acquire("elections", "leader", "scheduler", "node-1", ttl=0.3).lock
    assert election.observe(after=dead.fencing_token, timeout=30) is None


def test_terms_only_grow_and_leaders_never_overlap(make_client: Any) -> None:
    """8 candidates on their own clients, each leading 3 times: one leader at a time, in
    the order of strictly growing terms."""
    leading = 0
    guard = threading.Lock()
    log: list[tuple[int, str]] = []
    problems: list[str] = []

    def candidate(name: str) -> None:
        mgr = LockManager(make_client(), ELECTION_TYPES, prefix="t", heartbeat=0.5)
        election = Election(mgr, "db", ttl=5.0)
        for _ in range(3):
            with election.campaign(name, wait=60) as held:
                nonlocal leading
                with guard:
                    leading += 1
                    if leading != 1:
                        problems.append(f"{leading} leaders at once")
                    log.append((held.fencing_token, name))
                time.sleep(0.002)  # lead a little
                with guard:
                    leading -= 1

    threads = [threading.Thread(target=candidate, args=(f"c{i}",)) for i in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(120)
    assert not problems
    terms = [term for term, _ in log]
    assert len(log) == 24 and terms == sorted(terms) and len(set(terms)) == 24


def test_asyncio_election(make_async_client: Any) -> None:
    async def scenario() -> None:
        amgr = AsyncLockManager(make_async_client(), ELECTION_TYPES, prefix="t", heartbeat=0.5)
        election = AsyncElection(amgr, "scheduler")
        assert await election.observe() is None
        async with election.campaign("node-1") as held:
            term = held.fencing_token
            leader = await election.observe()
            assert leader is not None and leader.owner == "node-1"
            watcher = asyncio.ensure_future(election.observe(after=term))
            await asyncio.sleep(0)
            assert not watcher.done()
        assert await asyncio.wait_for(watcher, 30) is None
        async with election.campaign("node-2") as held:
            assert held.fencing_token > term
        await amgr.client.aclose()

    asyncio.run(scenario())
