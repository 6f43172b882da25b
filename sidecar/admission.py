"""Admission control: a fixed number of verification slots, a bounded queue in front of them, and how
long each request waited for its slot.

A request beyond the queue is refused at once (:class:`QueueFull`), before anything is started; a
waiting request whose caller goes away (its task is cancelled) leaves the queue, and a slot is always
handed to the oldest request still waiting.
"""
from __future__ import annotations

import asyncio
import collections
import contextlib
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass


class QueueFull(Exception):
    """Every slot is busy and the queue holds as many requests as it may: try again later."""

    def __init__(self, running: int, waiting: int) -> None:
        super().__init__(f"the sidecar is busy: {running} verification(s) running and {waiting} waiting, "
                         f"the most its queue holds (max_queued); nothing was started, retry later")
        self.running = running
        self.waiting = waiting


@dataclass(frozen=True)
class Admitted:
    """A request holding a slot: how long it waited and how many requests were ahead when it came."""

    wait_ms: float
    ahead: int


class Admission:
    """`slots` requests at a time, at most `max_queued` more waiting (first come, first served).

    Used from one event loop only; no locks needed.
    """

    def __init__(self, slots: int, max_queued: int) -> None:
        if slots <= 0 or max_queued < 0:
            raise ValueError("slots must be positive and max_queued must not be negative")
        self.slots = slots
        self.max_queued = max_queued
        self._running = 0
        self._waiting: collections.deque[asyncio.Future[None]] = collections.deque()

    @property
    def running(self) -> int:
        return self._running

    @property
    def waiting(self) -> int:
        return sum(1 for waiter in self._waiting if not waiter.done())

    @contextlib.asynccontextmanager
    async def slot(self) -> AsyncIterator[Admitted]:
        """Hold a slot for the body; QueueFull at once when no slot is free and the queue is full."""
        started = time.monotonic()
        ahead = self._running + self.waiting
        if self._running < self.slots and not self.waiting:
            self._running += 1
        else:
            if self.waiting >= self.max_queued:
                raise QueueFull(self._running, self.waiting)
            waiter: asyncio.Future[None] = asyncio.get_running_loop().create_future()
            self._waiting.append(waiter)
            try:
                await waiter  # resolved by _release, which hands its slot over
            except asyncio.CancelledError:
                if waiter.done() and not waiter.cancelled():
                    self._release()  # a slot came just as the caller left: pass it on
                else:
                    self._forget(waiter)
                raise
        try:
            yield Admitted(wait_ms=(time.monotonic() - started) * 1000.0, ahead=ahead)
        finally:
            self._release()

    def _forget(self, waiter: asyncio.Future[None]) -> None:
        with contextlib.suppress(ValueError):
            self._waiting.remove(waiter)

    def _release(self) -> None:
        while self._waiting:
            waiter = self._waiting.popleft()
            if not waiter.done():
                waiter.set_result(None)  # the slot changes hands; the running count stays
                return
        self._running -= 1
