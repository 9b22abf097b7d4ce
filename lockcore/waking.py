"""Multiplexed waiting: one subscriber connection serves all of a process's waiters.

A waiter blocks on its own signal list with ``BLPOP`` (see docs/redis-layout.md,
"Waiting"): that holds a Redis connection for as long as it waits. A process keeps that
direct way for its first ``direct`` concurrent waiters (the common case, with no extra
hop), and serves every waiter beyond them through its ``Waker``: such a waiter's ticket
names the waker (``m<waker id><random>``), so the scripts that signal it also ``PUBLISH``
its ticket on the waker's channel ``<p>:w:<waker id>``; the waker's one subscriber
connection (a thread, or an asyncio task) hears it and wakes that waiter, which then takes
its signal with one ``LPOP`` (a grant is its lock). A waiter also looks at its signal
every heartbeat, when it shows it is alive, so a message lost (a reconnection) costs at
most one heartbeat; after a reconnection every waiter looks at once. Those calls go
through a small fixed number of slots (``calls``), so that however many wait, a process
uses at most ``direct`` + ``calls`` + 1 connections for its waiters.
"""

from __future__ import annotations

import asyncio
import os
import random
import threading
from typing import Any

#: Waiters per process that block on their own signal (a connection each).
DIRECT_WAITERS = 2
#: Concurrent calls (signs of life, taking a signal) of the other waiters of a process.
WAITER_CALLS = 2


def _data(message: Any) -> str | None:
    if not message or message.get("type") != "message":
        return None
    data = message.get("data")
    return data.decode() if isinstance(data, bytes) else str(data)


class _Base:
    def __init__(
        self, client: Any, prefix: str, direct: int = DIRECT_WAITERS, calls: int = WAITER_CALLS
    ) -> None:
        self.client = client
        self.id = f"{random.getrandbits(48):012x}"
        self.channel = f"{prefix}:w:{self.id}"
        self.direct_max = direct
        self.calls_max = calls
        self.direct_used = 0
        self._reset()

    def _reset(self) -> None:
        self._pid = os.getpid()
        self.direct_used = 0

    def ticket(self) -> str:
        """A multiplexed waiter's ticket: ``m``, this waker's id, 96 random bits."""
        return f"m{self.id}{random.getrandbits(96):024x}"


class Waker(_Base):
    """The sync waker of one manager (threads)."""

    def _reset(self) -> None:
        super()._reset()
        self._lock = threading.Lock()
        self.calls = threading.BoundedSemaphore(self.calls_max)
        self._events: dict[str, threading.Event] = {}
        self._thread: threading.Thread | None = None
        self._ready = threading.Event()
        self._stopped = threading.Event()

    def _forked(self) -> None:
        if self._pid != os.getpid():  # a forked child: nothing of the parent's runs here
            self._reset()

    def claim_direct(self) -> bool:
        """A direct slot for a new waiter, if one is free (release it with ``done``)."""
        self._forked()
        with self._lock:
            if self.direct_used < self.direct_max:
                self.direct_used += 1
                return True
            return False

    def release_direct(self) -> None:
        with self._lock:
            self.direct_used = max(0, self.direct_used - 1)

    def enlist(self, ticket: str) -> threading.Event:
        """The event set when ``ticket``'s signal is announced; starts the subscriber."""
        event = threading.Event()
        with self._lock:
            self._events[ticket] = event
            if self._thread is None or not self._thread.is_alive():
                self._stopped.clear()
                self._thread = threading.Thread(
                    target=self._listen, name=f"lockcore-waker-{self.id}", daemon=True
                )
                self._thread.start()
        # Subscribed before the waiter joins the line, so no wake-up is lost; a slow
        # subscription only costs a heartbeat (the waiter looks at its signal anyway).
        self._ready.wait(1.0)
        return event

    def discharge(self, ticket: str) -> None:
        with self._lock:
            self._events.pop(ticket, None)

    def close(self) -> None:
        self._stopped.set()
        thread = self._thread
        if thread is not None and thread is not threading.current_thread():
            thread.join(2.0)

    def _wake_all(self) -> None:
        with self._lock:
            events = list(self._events.values())
        for event in events:
            event.set()

    def _listen(self) -> None:
        pause = 0.05
        while not self._stopped.is_set():
            pubsub = None
            try:
                pubsub = self.client.pubsub()
                pubsub.subscribe(self.channel)
                while not self._stopped.is_set():
                    message = pubsub.get_message(timeout=0.5)
                    if message and message.get("type") == "subscribe":
                        self._ready.set()
                        self._wake_all()  # whatever was announced before: look now
                        pause = 0.05
                        continue
                    ticket = _data(message)
                    if ticket is not None:
                        with self._lock:
                            event = self._events.get(ticket)
                        if event is not None:
                            event.set()
                    elif not self._events:
                        with self._lock:  # nobody waits: let the connection go
                            if not self._events:
                                self._thread = None
                                self._ready.clear()
                                return
            except Exception:  # noqa: BLE001 - Redis gone: waiters fall back on heartbeats
                self._ready.clear()
                self._wake_all()
                self._stopped.wait(pause)
                pause = min(1.0, pause * 2)
            finally:
                if pubsub is not None:
                    try:
                        pubsub.close()
                    except Exception:  # noqa: BLE001, S110 - closing a broken connection
                        pass


class AsyncWaker(_Base):
    """The asyncio waker of one manager (tasks of one event loop)."""

    def _reset(self) -> None:
        super()._reset()
        self._calls: asyncio.Semaphore | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._events: dict[str, asyncio.Event] = {}
        self._task: asyncio.Task[None] | None = None
        self._ready: asyncio.Event | None = None

    def _here(self) -> None:
        loop = asyncio.get_running_loop()
        if self._pid != os.getpid() or self._loop is not loop:
            if self._loop is not loop and self._task is not None and not self._task.done():
                self._task.cancel()
            self._reset()
            self._loop = loop
            self._calls = asyncio.Semaphore(self.calls_max)
            self._ready = asyncio.Event()

    @property
    def calls(self) -> asyncio.Semaphore:
        self._here()
        assert self._calls is not None
        return self._calls

    def claim_direct(self) -> bool:
        self._here()
        if self.direct_used < self.direct_max:
            self.direct_used += 1
            return True
        return False

    def release_direct(self) -> None:
        self.direct_used = max(0, self.direct_used - 1)

    async def enlist(self, ticket: str) -> asyncio.Event:
        self._here()
        assert self._ready is not None
        event = asyncio.Event()
        self._events[ticket] = event
        if self._task is None or self._task.done():
            self._task = asyncio.get_running_loop().create_task(self._listen())
        try:
            await asyncio.wait_for(self._ready.wait(), 1.0)
        except asyncio.TimeoutError:
            pass  # a heartbeat's delay at worst
        return event

    def discharge(self, ticket: str) -> None:
        self._events.pop(ticket, None)

    async def close(self) -> None:
        task, self._task = self._task, None
        if task is not None and not task.done():
            task.cancel()
            await asyncio.wait([task])  # (a cancel of the caller propagates)
            if not task.cancelled():
                task.exception()  # retrieved: it ended the listener, nothing to report

    def _wake_all(self) -> None:
        for event in self._events.values():
            event.set()

    async def _listen(self) -> None:
        assert self._ready is not None
        ready = self._ready
        pause = 0.05
        while True:
            pubsub = None
            try:
                pubsub = self.client.pubsub()
                await pubsub.subscribe(self.channel)
                while True:
                    message = await pubsub.get_message(timeout=0.5)
                    if message and message.get("type") == "subscribe":
                        ready.set()
                        self._wake_all()
                        pause = 0.05
                        continue
                    ticket = _data(message)
                    if ticket is not None:
                        event = self._events.get(ticket)
                        if event is not None:
                            event.set()
                    elif not self._events:
                        ready.clear()
                        self._task = None
                        return
            except asyncio.CancelledError:
                raise
            except Exception:  # noqa: BLE001 - Redis gone: waiters fall back on heartbeats
                ready.clear()
                self._wake_all()
                await asyncio.sleep(pause)
                pause = min(1.0, pause * 2)
            finally:
                if pubsub is not None:
                    try:
                        await asyncio.shield(pubsub.aclose())
                    except (asyncio.CancelledError, Exception):  # noqa: BLE001
                        pass
