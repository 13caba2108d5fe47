"""The scheduling queue: activeQ, backoffQ and the unschedulable pods, as kube-scheduler keeps them.

- activeQ: pods ready to be tried, highest priority first, then first-come (FIFO by arrival).
- backoffQ: pods that failed recently, waiting 1 s doubling per attempt up to 10 s.
- unschedulable: pods no node fits; they stay until a cluster event that one of the plugins that
  rejected them registered for (`events_to_register()`) could help — a node added or changed, an
  assigned pod deleted — or until they have waited 5 minutes (the leftover flush).
If such an event arrives while a pod is being tried, a failed attempt goes to backoffQ, not to the
unschedulable pods (kube's moveRequestCycle), so the event is not lost.
"""

from __future__ import annotations

import asyncio
import heapq
import itertools

from pocketkube.scheduler.framework.interface import ClusterEvent
from pocketkube.scheduler.types import PodInfo
from pocketkube.util.clock import Clock, RealClock

INITIAL_BACKOFF = 1.0
MAX_BACKOFF = 10.0
MAX_UNSCHEDULABLE_DURATION = 300.0
LEFTOVER_FLUSH_INTERVAL = 30.0


class QueuedPodInfo:
    __slots__ = ("attempts", "initial_attempt", "pod", "seq", "timestamp", "unschedulable_plugins")

    def __init__(self, pod: PodInfo, now: float) -> None:
        self.pod = pod
        self.attempts = 0
        self.timestamp = now  # when it last entered a queue
        self.initial_attempt: float | None = None
        self.unschedulable_plugins: set[str] = set()
        self.seq = 0


class SchedulingQueue:
    def __init__(self, *, events: dict[str, list[ClusterEvent]] | None = None, clock: Clock | None = None,
                 initial_backoff: float = INITIAL_BACKOFF, max_backoff: float = MAX_BACKOFF,
                 max_unschedulable_duration: float = MAX_UNSCHEDULABLE_DURATION) -> None:
        self.clock = clock or RealClock()
        self.events = events or {}
        self.initial_backoff, self.max_backoff = initial_backoff, max_backoff
        self.max_unschedulable_duration = max_unschedulable_duration
        self._seq = itertools.count()
        self._active_heap: list[tuple[int, int, str]] = []
        self._active: dict[str, QueuedPodInfo] = {}
        self._backoff_heap: list[tuple[float, int, str]] = []
        self._backoff: dict[str, QueuedPodInfo] = {}
        self.unschedulable: dict[str, QueuedPodInfo] = {}
        self.in_flight: dict[str, QueuedPodInfo] = {}
        self.scheduling_cycle = 0
        self.move_request_cycle = -1
        self._ready = asyncio.Event()
        self._closed = False
        self._last_leftover_flush = self.clock.now()

    def __len__(self) -> int:
        return len(self._active) + len(self._backoff) + len(self.unschedulable)

    def active_keys(self) -> list[str]:
        return list(self._active)

    def backoff_keys(self) -> list[str]:
        return list(self._backoff)

    def __contains__(self, key: str) -> bool:
        return key in self._active or key in self._backoff or key in self.unschedulable or key in self.in_flight

    # entering --------------------------------------------------------------------------------------

    def _push_active(self, qpi: QueuedPodInfo) -> None:
        qpi.seq = next(self._seq)
        self._active[qpi.pod.key] = qpi
        heapq.heappush(self._active_heap, (-qpi.pod.priority, qpi.seq, qpi.pod.key))
        self._ready.set()

    def _push_backoff(self, qpi: QueuedPodInfo) -> None:
        qpi.seq = next(self._seq)
        self._backoff[qpi.pod.key] = qpi
        heapq.heappush(self._backoff_heap, (self.backoff_expiry(qpi), qpi.seq, qpi.pod.key))
        self._ready.set()  # pop() recomputes how long to sleep

    def add(self, pod: PodInfo) -> None:
        """A new pending pod (informer add)."""
        if pod.key in self:
            self.update(pod)
            return
        self._push_active(QueuedPodInfo(pod, self.clock.now()))

    def update(self, pod: PodInfo) -> None:
        """A pending pod changed (spec, labels...): it may fit now, so unschedulable → active/backoff."""
        key = pod.key
        for where in (self._active, self._backoff, self.in_flight):
            if key in where:
                qpi = where[key]
                if where is self._active and qpi.pod.priority != pod.priority:
                    qpi.pod = pod
                    self._push_active(qpi)  # the old heap entry goes stale
                qpi.pod = pod
                return
        parked = self.unschedulable.pop(key, None)
        if parked is None:
            self._push_active(QueuedPodInfo(pod, self.clock.now()))
            return
        parked.pod = pod
        self._requeue(parked)

    def delete(self, key: str) -> None:
        self._active.pop(key, None)
        self._backoff.pop(key, None)
        self.unschedulable.pop(key, None)
        self.in_flight.pop(key, None)

    def _requeue(self, qpi: QueuedPodInfo) -> None:
        """Back to backoffQ if the backoff since its last failure is still running, else activeQ."""
        if self.backoff_expiry(qpi) > self.clock.now():
            self._push_backoff(qpi)
        else:
            self._push_active(qpi)

    # after a failed attempt ------------------------------------------------------------------------

    def backoff_duration(self, qpi: QueuedPodInfo) -> float:
        if qpi.attempts <= 0:
            return 0.0
        return min(self.initial_backoff * float(2 ** (qpi.attempts - 1)), self.max_backoff)

    def backoff_expiry(self, qpi: QueuedPodInfo) -> float:
        return qpi.timestamp + self.backoff_duration(qpi)

    def add_unschedulable(self, qpi: QueuedPodInfo, cycle: int, *, error: bool = False) -> None:
        """Park a pod that failed in scheduling cycle `cycle` (error: our fault → always backoffQ)."""
        key = qpi.pod.key
        if self.in_flight.pop(key, None) is None and key not in self._active:
            return  # deleted while it was being tried
        if key in self._active or key in self._backoff:
            return
        qpi.timestamp = self.clock.now()
        if error or self.move_request_cycle >= cycle:
            self._push_backoff(qpi)
        else:
            self.unschedulable[key] = qpi

    def requeue_after_error(self, qpi: QueuedPodInfo) -> None:
        """Binding failed: retry through backoffQ."""
        self.in_flight.pop(qpi.pod.key, None)
        if qpi.pod.key not in self:
            qpi.timestamp = self.clock.now()
            self._push_backoff(qpi)

    def done(self, key: str) -> None:
        self.in_flight.pop(key, None)

    # cluster events --------------------------------------------------------------------------------

    def _interested(self, qpi: QueuedPodInfo, event: ClusterEvent) -> bool:
        if not qpi.unschedulable_plugins:
            return True
        return any(ev.matches(event) for p in qpi.unschedulable_plugins for ev in self.events.get(p, ()))

    def move_all_to_active_or_backoff(self, event: ClusterEvent) -> int:
        """An event that may help: move the unschedulable pods whose rejecting plugins care about it."""
        moved = [k for k, q in self.unschedulable.items() if self._interested(q, event)]
        for key in moved:
            self._requeue(self.unschedulable.pop(key))
        self.move_request_cycle = self.scheduling_cycle
        return len(moved)

    def flush_backoff_completed(self) -> None:
        now = self.clock.now()
        while self._backoff_heap and self._backoff_heap[0][0] <= now:
            _, seq, key = heapq.heappop(self._backoff_heap)
            qpi = self._backoff.get(key)
            if qpi is not None and qpi.seq == seq:
                del self._backoff[key]
                self._push_active(qpi)

    def flush_unschedulable_leftover(self) -> None:
        now = self.clock.now()
        old = [k for k, q in self.unschedulable.items() if now - q.timestamp > self.max_unschedulable_duration]
        for key in old:
            self._requeue(self.unschedulable.pop(key))

    # leaving ---------------------------------------------------------------------------------------

    def try_pop(self) -> QueuedPodInfo | None:
        now = self.clock.now()
        if now - self._last_leftover_flush >= LEFTOVER_FLUSH_INTERVAL:
            self._last_leftover_flush = now
            self.flush_unschedulable_leftover()
        self.flush_backoff_completed()
        while self._active_heap:
            _, seq, key = heapq.heappop(self._active_heap)
            qpi = self._active.get(key)
            if qpi is None or qpi.seq != seq:
                continue  # stale entry (deleted or re-prioritised)
            del self._active[key]
            qpi.attempts += 1
            if qpi.initial_attempt is None:
                qpi.initial_attempt = self.clock.now()
            self.scheduling_cycle += 1
            self.in_flight[key] = qpi
            return qpi
        return None

    async def pop(self) -> QueuedPodInfo:
        """The next pod to try, waiting for one (and for backoffs to expire)."""
        while True:
            qpi = self.try_pop()
            if qpi is not None:
                return qpi
            if self._closed:
                raise asyncio.CancelledError
            self._ready.clear()
            timeout = LEFTOVER_FLUSH_INTERVAL if self.unschedulable else None
            if self._backoff_heap:
                timeout = min(max(self._backoff_heap[0][0] - self.clock.now(), 0.01), timeout or MAX_BACKOFF)
            # a timer that sets the event, rather than wait_for: 3.11's wait_for can swallow a
            # cancellation that races with the event being set, and the loop would never stop
            timer = asyncio.get_running_loop().call_later(timeout, self._ready.set) if timeout else None
            try:
                await self._ready.wait()
            finally:
                if timer is not None:
                    timer.cancel()

    def close(self) -> None:
        self._closed = True
        self._ready.set()
