"""Many threads fighting over a few resources: never two holders, tokens only grow."""

from __future__ import annotations

import threading
import time
from collections import defaultdict
from collections.abc import Callable

from lockcore import Lock, LockConflict, LockManager

THREADS = 8
ATTEMPTS = 500
RESOURCES = [f"res-{n}" for n in range(4)]


class FencedStore:
    """A guarded resource: refuses a write whose token is not above the last one seen,
    and notices when two holders are inside at once."""

    def __init__(self) -> None:
        self._mutex = threading.Lock()
        self.inside: dict[str, str | None] = dict.fromkeys(RESOURCES)
        self.last_token: dict[str, int] = defaultdict(int)
        self.tokens: dict[str, list[int]] = defaultdict(list)
        self.overlaps: list[tuple[str, str, str]] = []
        self.stale: list[tuple[str, int, int]] = []

    def enter(self, resource: str, who: str, token: int) -> None:
        with self._mutex:
            if self.inside[resource] is not None:
                self.overlaps.append((resource, self.inside[resource] or "", who))
            if token <= self.last_token[resource]:
                self.stale.append((resource, token, self.last_token[resource]))
            self.inside[resource] = who
            self.last_token[resource] = token
            self.tokens[resource].append(token)

    def leave(self, resource: str, who: str) -> None:
        with self._mutex:
            if self.inside[resource] == who:
                self.inside[resource] = None


def fight(
    mgr: LockManager,
    store: FencedStore,
    take: Callable[[int, str, str], Lock | None],
    attempts: int,
    resources: int,
) -> list[BaseException]:
    """THREADS workers, each ``attempts`` times: take a lock on one of the first
    ``resources`` (``take`` returns None when it did not get it), hold it a moment inside
    the store, release it. Returns the workers' errors."""
    errors: list[BaseException] = []

    def worker(n: int) -> None:
        who = f"worker-{n}"
        try:
            for attempt in range(attempts):
                resource = RESOURCES[(attempt * 7 + n) % resources]
                lock = take(n, resource, who)
                if lock is None:
                    continue
                store.enter(resource, who, lock.fencing_token)
                time.sleep(0.0002)  # hold it a moment, so an overlap would show
                store.leave(resource, who)
                mgr.release(lock, who)
        except BaseException as exc:  # noqa: BLE001 - reported by the main thread
            errors.append(exc)

    threads = [threading.Thread(target=worker, args=(n,)) for n in range(THREADS)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return errors


def test_no_two_holders_ever_overlap_and_tokens_increase(mgr: LockManager) -> None:
    store = FencedStore()
    conflicts = [0] * THREADS

    def take(n: int, resource: str, who: str) -> Lock | None:
        try:
            return mgr.acquire("fight", "job", resource, who).lock
        except LockConflict:
            conflicts[n] += 1
            return None

    assert fight(mgr, store, take, ATTEMPTS, len(RESOURCES)) == []
    assert store.overlaps == []
    assert store.stale == []
    for resource in RESOURCES:
        tokens = store.tokens[resource]
        assert len(tokens) > 50
        assert tokens == sorted(set(tokens))
    assert sum(conflicts) > 0  # they really did contend
    assert sum(len(t) for t in store.tokens.values()) + sum(conflicts) == THREADS * ATTEMPTS
    assert mgr.list("fight").locks == ()


def test_waiters_handed_the_lock_never_overlap_either(redis_client: object) -> None:
    """The same fight with every worker waiting in line: most acquisitions are grants made
    by the release before (hand-off time 0), so the grant path is what is checked here."""
    from .conftest import TYPES

    mgr = LockManager(redis_client, TYPES, prefix="t", handoff=0.0, heartbeat=0.2)
    store = FencedStore()
    granted = [0]
    plain_granted = mgr.core.granted

    def counting(signal: object, call: object) -> object:
        result = plain_granted(signal, call)  # type: ignore[arg-type]
        if result is not None:
            granted[0] += 1
        return result

    mgr.core.granted = counting  # type: ignore[method-assign]

    def take(n: int, resource: str, who: str) -> Lock | None:
        return mgr.acquire("fight", "job", resource, who, wait=30).lock

    assert fight(mgr, store, take, ATTEMPTS // 5, 2) == []
    assert store.overlaps == []
    assert store.stale == []
    for resource in RESOURCES[:2]:
        tokens = store.tokens[resource]
        assert tokens == sorted(set(tokens))
    assert sum(len(t) for t in store.tokens.values()) == THREADS * (ATTEMPTS // 5)
    assert granted[0] > 0  # the releases did hand the lock on
    assert mgr.list("fight").locks == ()
