"""A rate-limited work queue of keys, as client-go's workqueue does it.

Event handlers only add keys; workers `get()` a key, sync it, then `done()` it. A key is never
handed to two workers at once: adding a key that is being processed marks it dirty, and it comes
back once `done()` is called. Failed keys return after an exponential per-key backoff
(5 ms doubling to 1000 s, as client-go's default controller rate limiter) until `forget()`.
"""

from __future__ import annotations

import asyncio
import heapq
import itertools

from pocketkube.util.clock import Clock, RealClock


class ShutDown(Exception):
    """The queue was shut down; workers should return."""


class WorkQueue:
    def __init__(self, *, clock: Clock | None = None, base_delay: float = 0.005, max_delay: float = 1000.0) -> None:
        self.clock = clock or RealClock()
        self._queue: list[str] = []
        self._dirty: set[str] = set()
        self._processing: set[str] = set()
        self._failures: dict[str, int] = {}
        self._waiting: list[tuple[float, int, str]] = []
        self._counter = itertools.count()
        self._ready = asyncio.Event()
        self._shutdown = False
        self.base_delay = base_delay
        self.max_delay = max_delay
        self._timer: asyncio.TimerHandle | None = None

    def __len__(self) -> int:
        return len(self._queue)

    def add(self, key: str) -> None:
        if self._shutdown or key in self._dirty:
            return
        self._dirty.add(key)
        if key in self._processing:
            return
        self._queue.append(key)
        self._wake()

    def add_after(self, key: str, delay: float) -> None:
        if self._shutdown:
            return
        if delay <= 0:
            self.add(key)
            return
        heapq.heappush(self._waiting, (self.clock.now() + delay, next(self._counter), key))
        self._arm_timer()

    def add_rate_limited(self, key: str) -> None:
        n = self._failures.get(key, 0)
        self._failures[key] = n + 1
        self.add_after(key, min(self.base_delay * (2 ** n), self.max_delay))

    def forget(self, key: str) -> None:
        self._failures.pop(key, None)

    def failures(self, key: str) -> int:
        return self._failures.get(key, 0)

    def _arm_timer(self) -> None:
        if not self._waiting:
            return
        loop = asyncio.get_running_loop()
        if self._timer is not None:
            self._timer.cancel()
        delay = max(self._waiting[0][0] - self.clock.now(), 0)
        self._timer = loop.call_later(delay, self._release_due)

    def _release_due(self) -> None:
        self._timer = None
        now = self.clock.now()
        while self._waiting and self._waiting[0][0] <= now:
            _, _, key = heapq.heappop(self._waiting)
            self.add(key)
        self._arm_timer()

    def _wake(self) -> None:
        self._ready.set()

    async def get(self) -> str:
        while True:
            if self._queue:
                key = self._queue.pop(0)
                self._processing.add(key)
                self._dirty.discard(key)
                return key
            if self._shutdown:
                raise ShutDown
            self._ready.clear()
            await self._ready.wait()

    def done(self, key: str) -> None:
        self._processing.discard(key)
        if key in self._dirty:
            self._queue.append(key)
            self._wake()

    async def shutdown(self) -> None:
        self._shutdown = True
        if self._timer is not None:
            self._timer.cancel()
        self._ready.set()
