"""Scheduler events (Scheduled / FailedScheduling) as core/v1 Event objects, written off the hot path.

`record()` only appends to a bounded buffer; a few workers post the Events. A repeat of the same
(pod, reason, message) bumps `count` and `lastTimestamp` on the existing Event, as client-go's
event correlator does, so a pod retried every 10 s does not mint a new object each time. When the
buffer is full, events are dropped (like client-go) rather than slowing scheduling down.
"""

from __future__ import annotations

import asyncio
import collections
import datetime
import logging
import socket
import time
from typing import Any

from pocketkube.client.rest import ResourceClient
from pocketkube.scheduler.types import PodInfo

log = logging.getLogger(__name__)

Obj = dict[str, Any]


def now_rfc3339() -> str:
    return datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def event_object(pod: PodInfo, *, type_: str, reason: str, message: str, component: str, instance: str,
                 count: int = 1, first: str | None = None) -> Obj:
    ts = now_rfc3339()
    return {
        "apiVersion": "v1", "kind": "Event",
        "metadata": {"name": f"{pod.name}.{time.time_ns():x}", "namespace": pod.namespace},
        "involvedObject": {"apiVersion": "v1", "kind": "Pod", "namespace": pod.namespace, "name": pod.name,
                           "uid": pod.uid,
                           "resourceVersion": str((pod.obj.get("metadata") or {}).get("resourceVersion") or "")},
        "reason": reason, "message": message, "type": type_,
        "source": {"component": component}, "reportingComponent": component, "reportingInstance": instance,
        "firstTimestamp": first or ts, "lastTimestamp": ts, "count": count, "action": "Binding"
        if reason == "Scheduled" else "Scheduling",
    }


class EventRecorder:
    def __init__(self, events: ResourceClient | None, *, component: str = "default-scheduler",
                 workers: int = 4, buffer: int = 10_000) -> None:
        self.events = events
        self.component = component
        self.instance = f"{component}-{socket.gethostname()}"
        self.workers = workers
        self._buffer: collections.deque[tuple[PodInfo, str, str, str]] = collections.deque(maxlen=buffer)
        self._ready = asyncio.Event()
        self._seen: dict[tuple[str, str, str], tuple[str, int, str]] = {}  # -> (event name, count, first)
        self.recorded: list[tuple[str, str, str, str]] = []  # (pod key, type, reason, message), for tests

    def record(self, pod: PodInfo, type_: str, reason: str, message: str) -> None:
        self.recorded.append((pod.key, type_, reason, message))
        if len(self.recorded) > 1000:
            del self.recorded[:500]
        if self.events is not None:
            self._buffer.append((pod, type_, reason, message))
            self._ready.set()

    async def _post(self, pod: PodInfo, type_: str, reason: str, message: str) -> None:
        assert self.events is not None
        key = (pod.uid or pod.key, reason, message)
        seen = self._seen.get(key)
        if seen is not None:
            name, count, first = seen
            try:
                await self.events.patch(name, {"count": count + 1, "lastTimestamp": now_rfc3339()}, pod.namespace)
                self._seen[key] = (name, count + 1, first)
                return
            except Exception:  # the event expired or was deleted: write a new one
                self._seen.pop(key, None)
        obj = event_object(pod, type_=type_, reason=reason, message=message, component=self.component,
                           instance=self.instance)
        await self.events.create(obj, pod.namespace)
        if reason != "Scheduled":
            if len(self._seen) > 10_000:
                self._seen.clear()
            self._seen[key] = (obj["metadata"]["name"], 1, obj["firstTimestamp"])

    async def _worker(self) -> None:
        while True:
            while not self._buffer:
                self._ready.clear()
                await self._ready.wait()
            pod, type_, reason, message = self._buffer.popleft()
            try:
                await self._post(pod, type_, reason, message)
            except asyncio.CancelledError:
                raise
            except Exception as e:
                log.debug("event for %s not written: %s", pod.key, e)

    async def run(self) -> None:
        if self.events is None:
            return
        async with asyncio.TaskGroup() as tg:
            for i in range(self.workers):
                tg.create_task(self._worker(), name=f"scheduler-events-{i}")
