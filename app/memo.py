"""What a process remembers of its Redis reads for a short while (see ``AUTH_CACHE_TTL``):
the users of accepted keys, catalog entries. A change made through the same object
forgets everything at once, and a read that started before such a change is never
remembered after it; changes made elsewhere take effect within the time given."""

from __future__ import annotations

import threading
from collections.abc import Callable, Hashable
from typing import Generic, TypeVar

K = TypeVar("K", bound=Hashable)
V = TypeVar("V")


class Memo(Generic[K, V]):
    #: Entries remembered at most (then the memory starts again).
    MAX_REMEMBERED = 10_000

    def __init__(self) -> None:
        #: key -> (value, clock time until which it may be used)
        self._known: dict[K, tuple[V, float]] = {}
        # Bumped by every forget(), so that a read from before it is never remembered.
        self._generation = 0
        self._lock = threading.Lock()

    def forget(self) -> None:
        with self._lock:
            self._generation += 1
            self._known = {}

    def fetch(
        self, key: K, read: Callable[[], V | None], ttl: float, clock: Callable[[], float]
    ) -> V | None:
        """``read()``, or what it returned for ``key`` within ``ttl`` seconds of ``clock``;
        None (not found) is never remembered."""
        known = self._known.get(key)
        if known is not None and clock() < known[1]:
            return known[0]
        generation = self._generation
        value = read()
        if value is not None and ttl > 0:
            with self._lock:
                if generation == self._generation:  # nothing forgotten meanwhile
                    if len(self._known) >= self.MAX_REMEMBERED:
                        self._known = {}
                    self._known[key] = (value, clock() + ttl)
        return value
