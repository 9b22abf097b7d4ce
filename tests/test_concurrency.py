"""Many threads fighting over a few resources: never two holders, tokens only grow."""

from __future__ import annotations

import threading
import time
from collections import defaultdict

from lockcore import LockConflict, LockManager

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


def test_no_two_holders_ever_overlap_and_tokens_increase(mgr: LockManager) -> None:
    store = FencedStore()
    conflicts = [0] * THREADS
    errors: list[BaseException] = []

    def worker(n: int) -> None:
        who = f"worker-{n}"
        try:
            for attempt in range(ATTEMPTS):
                resource = RESOURCES[(attempt * 7 + n) % len(RESOURCES)]
                try:
                    lock = mgr.acquire("fight", "job", resource, who).lock
                except LockConflict:
                    conflicts[n] += 1
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

    assert errors == []
    assert store.overlaps == []
    assert store.stale == []
    for resource in RESOURCES:
        tokens = store.tokens[resource]
        assert len(tokens) > 50
        assert tokens == sorted(set(tokens))
    assert sum(conflicts) > 0  # they really did contend
    assert sum(len(t) for t in store.tokens.values()) + sum(conflicts) == THREADS * ATTEMPTS
    assert mgr.list("fight").locks == ()
