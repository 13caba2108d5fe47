"""The scheduling loop: pop a pod, filter and score the nodes, assume, bind asynchronously.

Informer handlers keep the cache and queue current (they never await). `run()` takes pods one at a
time — a cycle is synchronous CPU work over the live cache — assumes the chosen node at once and
hands the binding to a task, at most `bind_concurrency` in flight, so API round trips overlap with
the next cycles. A failed binding forgets the assumption and sends the pod back through backoffQ.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from typing import Any

from pocketkube.api import errors
from pocketkube.scheduler.cache import SchedulerCache
from pocketkube.scheduler.events import EventRecorder
from pocketkube.scheduler.framework.interface import (
    ASSIGNED_POD_ADD,
    ASSIGNED_POD_DELETE,
    ASSIGNED_POD_UPDATE,
    NAMESPACE_CHANGE,
    NODE_ADD,
    NODE_UPDATE,
)
from pocketkube.scheduler.framework.runtime import FitError, Framework, NoNodesAvailable
from pocketkube.scheduler.queue import QueuedPodInfo, SchedulingQueue
from pocketkube.scheduler.types import PodInfo, same_scheduling_inputs

log = logging.getLogger(__name__)

Obj = dict[str, Any]
Binder = Callable[[PodInfo, str], Awaitable[object]]
StatusUpdater = Callable[[PodInfo, str], Awaitable[object]]


def _key(obj: Obj) -> str:
    md = obj.get("metadata") or {}
    return f"{md.get('namespace') or ''}/{md.get('name') or ''}"


def _sched_relevant(obj: Obj) -> tuple[Any, ...]:
    md = obj.get("metadata") or {}
    return (obj.get("spec"), md.get("labels"), md.get("deletionTimestamp"))


def _node_relevant(obj: Obj) -> tuple[Any, ...]:
    return ((obj.get("metadata") or {}).get("labels"), obj.get("spec"),
            (obj.get("status") or {}).get("allocatable"))


class Scheduler:
    def __init__(self, *, framework: Framework, cache: SchedulerCache, queue: SchedulingQueue, binder: Binder,
                 recorder: EventRecorder | None = None, status_updater: StatusUpdater | None = None,
                 bind_concurrency: int = 16) -> None:
        self.framework = framework
        self.cache = cache
        self.queue = queue
        self.binder = binder
        self.recorder = recorder or EventRecorder(None, component=framework.profile_name)
        self.status_updater = status_updater
        self.bind_concurrency = bind_concurrency
        self.scheduled = 0
        self.bound = 0
        self.failed = 0
        self._tg: asyncio.TaskGroup | None = None
        self._status_slots = asyncio.Semaphore(8)  # pod-condition writes are best effort, keep them few

    @property
    def name(self) -> str:
        return self.framework.profile_name

    # informer handlers -----------------------------------------------------------------------------

    def on_pod(self, old: Obj | None, new: Obj | None) -> None:
        if new is None:
            if old is None:
                return
            key = _key(old)
            if self.cache.node_of(key) is not None:
                self.cache.remove_pod(key)
                self.queue.move_all_to_active_or_backoff(ASSIGNED_POD_DELETE)
            self.queue.delete(key)
            return
        node_name = (new.get("spec") or {}).get("nodeName")
        if node_name and self._confirm(new, node_name):
            return
        pod = PodInfo(new)
        if pod.node_name:
            if pod.terminal:  # finished pods hold no resources
                self.on_pod(new, None)
                return
            known = self.cache.node_of(pod.key) is not None and not self.cache.is_assumed(pod.key)
            self.cache.add_pod(pod)
            self.queue.delete(pod.key)
            if not self.queue.unschedulable:
                return
            if not known:
                self.queue.move_all_to_active_or_backoff(ASSIGNED_POD_ADD)
            elif old is not None and _sched_relevant(old) != _sched_relevant(new):
                # kubelet status reports are the bulk of pod updates and cannot help a pending pod
                self.queue.move_all_to_active_or_backoff(ASSIGNED_POD_UPDATE)
            return
        if pod.scheduler_name != self.name:
            return
        if pod.deleting or pod.terminal or pod.gated:
            self.queue.delete(pod.key)
            return
        if self.cache.is_assumed(pod.key):
            return  # bound by us a moment ago; the informer has not seen the binding yet
        if old is None or _key(old) not in self.queue:
            self.queue.add(pod)
        elif _sched_relevant(old) != _sched_relevant(new):
            self.queue.update(pod)

    def _confirm(self, new: Obj, node_name: str) -> bool:
        """Fast path for the two updates every bound pod gets: the binding of a pod we assumed, and
        the kubelet's status reports. Neither changes what the scheduler counts, so the cached
        PodInfo is reused (no re-parse, no NodeInfo refresh). False: take the full path."""
        key = _key(new)
        cached = self.cache.pods.get(key)
        # compared with the object the cached PodInfo was parsed from, so the copy is exact
        if cached is None or self.cache.node_of(key) != node_name or not same_scheduling_inputs(cached.obj, new):
            return False
        was_assumed = self.cache.is_assumed(key)
        if not self.cache.replace_pod(cached.bound_copy(new)):
            return False
        self.queue.delete(key)
        if was_assumed and self.queue.unschedulable:
            self.queue.move_all_to_active_or_backoff(ASSIGNED_POD_ADD)
        return True

    def on_node(self, old: Obj | None, new: Obj | None) -> None:
        if new is None:
            if old is not None:
                self.cache.remove_node(str((old.get("metadata") or {}).get("name") or ""))
            return
        self.cache.add_node(new)
        if old is None:
            self.queue.move_all_to_active_or_backoff(NODE_ADD)
        elif _node_relevant(old) != _node_relevant(new):
            self.queue.move_all_to_active_or_backoff(NODE_UPDATE)

    def on_namespace(self, old: Obj | None, new: Obj | None) -> None:
        obj = new if new is not None else old
        if obj is None:
            return
        name = str((obj.get("metadata") or {}).get("name") or "")
        self.cache.set_namespace(name, ((new.get("metadata") or {}).get("labels") or {}) if new is not None else None)
        if new is not None and self.cache.affinity_pods + len(self.queue.unschedulable) > 0:
            self.queue.move_all_to_active_or_backoff(NAMESPACE_CHANGE)

    # one cycle -------------------------------------------------------------------------------------

    def schedule_one(self, qpi: QueuedPodInfo) -> str | None:
        """The synchronous part: pick a node and assume it; None when the pod was parked or dropped."""
        pod = qpi.pod
        if pod.deleting or self.cache.node_of(pod.key) is not None:
            self.queue.done(pod.key)
            return None
        cycle = self.queue.scheduling_cycle
        try:
            node = self.framework.schedule(pod, self.cache.node_list())
        except (FitError, NoNodesAvailable) as e:
            qpi.unschedulable_plugins = e.unschedulable_plugins if isinstance(e, FitError) else set()
            self.queue.add_unschedulable(qpi, cycle)
            self._failed(pod, str(e))
            return None
        except Exception as e:  # a plugin bug must not kill the loop
            log.exception("scheduling %s failed", pod.key)
            self.queue.add_unschedulable(qpi, cycle, error=True)
            self._failed(pod, f"running scheduling plugins: {e}")
            return None
        self.cache.assume(pod, node.name)
        self.scheduled += 1
        return node.name

    def _failed(self, pod: PodInfo, message: str) -> None:
        self.failed += 1
        self.recorder.record(pod, "Warning", "FailedScheduling", message)
        if self.status_updater is not None and self._tg is not None and _condition_message(pod) != message:
            self._tg.create_task(self._update_status(pod, message))

    async def _update_status(self, pod: PodInfo, message: str) -> None:
        assert self.status_updater is not None
        try:
            async with self._status_slots:
                await self.status_updater(pod, message)
        except Exception as e:
            log.debug("pod condition for %s not written: %s", pod.key, e)

    async def _bind(self, qpi: QueuedPodInfo, node_name: str, slots: asyncio.Semaphore) -> None:
        pod = qpi.pod
        try:
            await self.binder(pod, node_name)
        except asyncio.CancelledError:
            raise
        except Exception as e:
            self.cache.forget(pod.key)
            self.queue.move_all_to_active_or_backoff(ASSIGNED_POD_DELETE)
            if isinstance(e, errors.NotFound):
                self.queue.done(pod.key)  # the pod is gone
            elif isinstance(e, errors.Conflict):
                self.queue.done(pod.key)  # bound by someone else: the informer will tell the cache
            else:
                log.info("binding %s to %s failed: %s", pod.key, node_name, e)
                self.queue.requeue_after_error(qpi)
                self.recorder.record(pod, "Warning", "FailedScheduling", f"Binding rejected: {e}")
        else:
            self.bound += 1
            self.queue.done(pod.key)
            self.recorder.record(pod, "Normal", "Scheduled",
                                 f"Successfully assigned {pod.namespace}/{pod.name} to {node_name}")
        finally:
            slots.release()

    async def run(self) -> None:
        slots = asyncio.Semaphore(self.bind_concurrency)
        async with asyncio.TaskGroup() as tg:
            self._tg = tg
            while True:
                qpi = await self.queue.pop()
                node_name = self.schedule_one(qpi)
                if node_name is not None:
                    await slots.acquire()
                    tg.create_task(self._bind(qpi, node_name, slots))
                await asyncio.sleep(0)  # let informer events and bindings through between cycles


def _condition_message(pod: PodInfo) -> str | None:
    for c in (pod.obj.get("status") or {}).get("conditions") or ():
        if c.get("type") == "PodScheduled" and c.get("status") == "False":
            return str(c.get("message") or "")
    return None
