"""One shared delay queue drained by N workers: the whole fleet costs a few tasks, not one per node."""

from __future__ import annotations

import asyncio
import heapq
import itertools
from collections.abc import Awaitable, Callable
from typing import Generic, TypeVar

T = TypeVar("T")


class DelayQueue(Generic[T]):
    def __init__(self) -> None:
        self._heap: list[tuple[float, int, T]] = []
        self._counter = itertools.count()
        self._changed = asyncio.Event()

    def put(self, item: T, delay: float = 0.0) -> None:
        due = asyncio.get_running_loop().time() + max(delay, 0.0)
        heapq.heappush(self._heap, (due, next(self._counter), item))
        self._changed.set()

    def __len__(self) -> int:
        return len(self._heap)

    async def get(self) -> T:
        loop = asyncio.get_running_loop()
        while True:
            if self._heap:
                due = self._heap[0][0]
                now = loop.time()
                if due <= now:
                    return heapq.heappop(self._heap)[2]
                wait: float | None = due - now
            else:
                wait = None
            self._changed.clear()
            try:
                await asyncio.wait_for(self._changed.wait(), wait)
            except TimeoutError:
                pass


async def drain(queue: DelayQueue[T], handle: Callable[[T], Awaitable[None]], workers: int) -> None:
    async def worker() -> None:
        while True:
            item = await queue.get()
            await handle(item)

    async with asyncio.TaskGroup() as tg:
        for i in range(workers):
            tg.create_task(worker(), name=f"delay-worker-{i}")
