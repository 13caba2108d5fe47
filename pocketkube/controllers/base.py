"""The shape every control loop shares (kubernetes pkg/controller/*): informers feed a work queue
of keys; N workers call `sync(key)`, which rebuilds what to do from the informer caches; a failed
sync is retried with per-key backoff; a key is never synced by two workers at once.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

from pocketkube.client.informer import Informer, object_key
from pocketkube.client.workqueue import ShutDown, WorkQueue

log = logging.getLogger(__name__)

Obj = dict[str, Any]


class Controller:
    name = "controller"
    workers = 2
    max_retries = 15

    def __init__(self) -> None:
        self.queue = WorkQueue()
        self.informers: list[Informer] = []

    def enqueue(self, obj: Obj | None) -> None:
        if obj is not None:
            self.queue.add(object_key(obj))

    def enqueue_handler(self, old: Obj | None, new: Obj | None) -> None:
        self.enqueue(new if new is not None else old)

    async def sync(self, key: str) -> None:
        raise NotImplementedError

    async def _worker(self) -> None:
        while True:
            try:
                key = await self.queue.get()
            except ShutDown:
                return
            try:
                await self.sync(key)
                self.queue.forget(key)
            except asyncio.CancelledError:
                raise
            except Exception as e:
                if self.queue.failures(key) < self.max_retries:
                    log.debug("%s: sync %s failed: %s; retrying", self.name, key, e)
                    self.queue.add_rate_limited(key)
                else:
                    log.warning("%s: dropping %s after %d failures: %s", self.name, key, self.max_retries, e)
                    self.queue.forget(key)
            finally:
                self.queue.done(key)

    async def run(self) -> None:
        async with asyncio.TaskGroup() as tg:
            for inf in self.informers:
                inf.start(tg)
            await asyncio.gather(*(inf.synced.wait() for inf in self.informers))
            for i in range(self.workers):
                tg.create_task(self._worker(), name=f"{self.name}-worker-{i}")
