"""The scheduling loop with a stub binder: informer handlers, assume/bind, failures, events."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from typing import Any

import pytest
from sched_testlib import node, pod

from pocketkube.api import errors
from pocketkube.scheduler.cache import SchedulerCache
from pocketkube.scheduler.framework.registry import Profile, new_framework
from pocketkube.scheduler.queue import SchedulingQueue
from pocketkube.scheduler.scheduler import Scheduler
from pocketkube.scheduler.types import PodInfo


class StubBinder:
    def __init__(self) -> None:
        self.bound: dict[str, str] = {}
        self.fail: dict[str, Exception] = {}

    async def __call__(self, p: PodInfo, node_name: str) -> None:
        await asyncio.sleep(0)
        err = self.fail.pop(p.key, None)
        if err is not None:
            raise err
        self.bound[p.key] = node_name


def make(binder: StubBinder, name: str = "default-scheduler") -> Scheduler:
    cache = SchedulerCache()
    fw = new_framework(Profile(scheduler_name=name), cache)
    queue = SchedulingQueue(events=fw.events, initial_backoff=0.01, max_backoff=0.05)
    return Scheduler(framework=fw, cache=cache, queue=queue, binder=binder)


@contextlib.asynccontextmanager
async def running(s: Scheduler) -> AsyncIterator[None]:
    task = asyncio.create_task(s.run())
    try:
        yield
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task


async def until(cond: Any, timeout: float = 2.0) -> None:
    deadline = asyncio.get_running_loop().time() + timeout
    while not cond():
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError("condition not reached")
        await asyncio.sleep(0.005)


async def test_binds_and_records_scheduled_event() -> None:
    binder = StubBinder()
    s = make(binder)
    s.on_node(None, node("a"))
    async with running(s):
        s.on_pod(None, pod("web"))
        await until(lambda: "default/web" in binder.bound)
    assert binder.bound["default/web"] == "a"
    assert ("default/web", "Normal", "Scheduled", "Successfully assigned default/web to a") in s.recorder.recorded
    assert s.cache.is_assumed("default/web")
    s.on_pod(None, pod("web", node_name="a"))  # the informer confirms the binding
    assert not s.cache.is_assumed("default/web") and s.cache.node_of("default/web") == "a"


async def test_other_scheduler_and_bound_pods_ignored() -> None:
    binder = StubBinder()
    s = make(binder)
    s.on_node(None, node("a"))
    s.on_pod(None, pod("mine", schedulerName="other"))
    s.on_pod(None, pod("already", node_name="a"))
    deleting = pod("gone")
    deleting["metadata"]["deletionTimestamp"] = "2026-01-01T00:00:00Z"
    s.on_pod(None, deleting)
    assert len(s.queue) == 0
    assert s.cache.node_of("default/already") == "a"


async def test_unschedulable_until_node_added() -> None:
    binder = StubBinder()
    s = make(binder)
    s.on_node(None, node("small", cpu="1"))
    async with running(s):
        s.on_pod(None, pod("big", cpu="2"))
        await until(lambda: "default/big" in s.queue.unschedulable)
        failed = [r for r in s.recorder.recorded if r[2] == "FailedScheduling"]
        assert failed[0][3] == ("0/1 nodes are available: 1 Insufficient cpu. preemption: 0/1 nodes are available: "
                                "1 Preemption is not helpful for scheduling.")
        s.on_node(None, node("large", cpu="4"))
        await until(lambda: "default/big" in binder.bound)
    assert binder.bound["default/big"] == "large"


async def test_pod_deleted_frees_room() -> None:
    binder = StubBinder()
    s = make(binder)
    s.on_node(None, node("a", cpu="1"))
    hog = pod("hog", cpu="800m", node_name="a")
    s.on_pod(None, hog)
    async with running(s):
        s.on_pod(None, pod("next", cpu="800m"))
        await until(lambda: "default/next" in s.queue.unschedulable)
        s.on_pod(hog, None)
        await until(lambda: "default/next" in binder.bound)


@pytest.mark.parametrize("error,requeued", [(errors.InternalError("boom"), True), (errors.NotFound("gone"), False)])
async def test_binding_failure_forgets(error: Exception, requeued: bool) -> None:
    binder = StubBinder()
    binder.fail["default/p"] = error
    s = make(binder)
    s.on_node(None, node("a"))
    async with running(s):
        s.on_pod(None, pod("p"))
        if requeued:
            await until(lambda: "default/p" in binder.bound)  # retried after backoff
            assert any(r[3].startswith("Binding rejected") for r in s.recorder.recorded)
        else:
            await until(lambda: not s.cache.pods and "default/p" not in s.queue)
            assert "default/p" not in binder.bound


async def test_many_pods_spread_over_nodes() -> None:
    binder = StubBinder()
    s = make(binder)
    for i in range(4):
        s.on_node(None, node(f"n{i}", cpu="2"))
    async with running(s):
        for i in range(8):
            s.on_pod(None, pod(f"r{i}", cpu="1", owner="rs"))
        await until(lambda: len(binder.bound) == 8)
    per_node: dict[str, int] = {}
    for n in binder.bound.values():
        per_node[n] = per_node.get(n, 0) + 1
    assert per_node == {"n0": 2, "n1": 2, "n2": 2, "n3": 2}


async def test_scheduling_gates_hold_the_pod() -> None:
    binder = StubBinder()
    s = make(binder)
    s.on_node(None, node("a"))
    gated = pod("g", schedulingGates=[{"name": "example.com/wait"}])
    s.on_pod(None, gated)
    assert "default/g" not in s.queue
    s.on_pod(gated, pod("g"))  # gates removed
    async with running(s):
        await until(lambda: "default/g" in binder.bound)


async def test_status_only_update_does_not_requeue() -> None:
    binder = StubBinder()
    s = make(binder)
    s.on_node(None, node("small", cpu="1"))
    async with running(s):
        big = pod("big", cpu="2")
        s.on_pod(None, big)
        await until(lambda: "default/big" in s.queue.unschedulable)
        with_condition = {**big, "status": {"conditions": [{"type": "PodScheduled", "status": "False"}]}}
        s.on_pod(big, with_condition)
        assert "default/big" in s.queue.unschedulable
        relabelled = {**big, "metadata": {**big["metadata"], "labels": {"x": "y"}}}
        s.on_pod(with_condition, relabelled)
        assert "default/big" not in s.queue.unschedulable


def test_assigned_pod_status_report_does_not_move_pending_pods() -> None:
    s = make(StubBinder())
    s.on_node(None, node("a", cpu="1"))
    running_pod = pod("run", cpu="1", node_name="a")
    s.on_pod(None, running_pod)
    s.on_pod(None, pod("wait", cpu="1"))
    qpi = s.queue.try_pop()
    assert qpi is not None and s.schedule_one(qpi) is None
    assert "default/wait" in s.queue.unschedulable
    s.on_pod(running_pod, {**running_pod, "status": {"phase": "Running"}})
    assert "default/wait" in s.queue.unschedulable
    s.on_pod(running_pod, None)
    assert "default/wait" not in s.queue.unschedulable
