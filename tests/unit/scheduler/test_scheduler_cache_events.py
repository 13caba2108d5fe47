"""Cache bookkeeping (assume / confirm / forget, ghosts, owner counts) and the event recorder."""

from __future__ import annotations

import asyncio
from typing import Any, cast

import pytest
from sched_testlib import node, pod

from pocketkube.client.rest import ResourceClient
from pocketkube.scheduler.cache import SchedulerCache
from pocketkube.scheduler.events import EventRecorder
from pocketkube.scheduler.run import SchedulerConfig
from pocketkube.scheduler.types import PodInfo

Obj = dict[str, Any]


def test_assume_confirm_forget() -> None:
    cache = SchedulerCache()
    cache.add_node(node("a", cpu="2"))
    p = PodInfo(pod("x", cpu="500m", owner="rs"))
    cache.assume(p, "a")
    a = cache.nodes["a"]
    assert (a.req_cpu, a.pod_count, cache.owner_counts["rs-rs"]) == (500, 1, {"a": 1})
    cache.add_pod(PodInfo(pod("x", cpu="500m", owner="rs", node_name="a")))  # informer confirms
    assert not cache.is_assumed("default/x") and a.req_cpu == 500 and a.pod_count == 1
    cache.forget("default/x")  # a late failure report must not undo a confirmed pod
    assert a.pod_count == 1
    cache.remove_pod("default/x")
    assert (a.req_cpu, a.pod_count, cache.owner_counts) == (0, 0, {})


def test_forget_assumed() -> None:
    cache = SchedulerCache()
    cache.add_node(node("a"))
    cache.assume(PodInfo(pod("x", cpu="1", host_ports=[80])), "a")
    cache.forget("default/x")
    a = cache.nodes["a"]
    assert (a.req_cpu, a.pod_count, a.used_ports) == (0, 0, {})


def test_ghost_node_keeps_pods_until_node_arrives() -> None:
    cache = SchedulerCache()
    cache.add_pod(PodInfo(pod("x", cpu="1", node_name="late")))
    assert cache.node_list() == []
    cache.add_node(node("late", cpu="4"))
    assert [n.name for n in cache.node_list()] == ["late"] and cache.nodes["late"].req_cpu == 1000
    cache.remove_node("late")
    assert cache.node_list() == [] and "late" in cache.nodes  # pods still there
    cache.remove_pod("default/x")
    assert "late" not in cache.nodes


def test_node_flags_tracked() -> None:
    cache = SchedulerCache()
    cache.add_node(node("a", unschedulable=True, taints=[{"key": "k", "effect": "NoSchedule"}]))
    assert cache.cordoned_nodes == {"a"} and cache.tainted_nodes == {"a"}
    cache.update_node(node("a"))
    assert not cache.cordoned_nodes and not cache.tainted_nodes


def test_requests_include_init_and_overhead() -> None:
    p = PodInfo({"metadata": {"name": "p", "namespace": "d"}, "spec": {
        "containers": [{"name": "a", "resources": {"requests": {"cpu": "100m", "memory": "64Mi"}}},
                       {"name": "b", "resources": {}}],
        "initContainers": [{"name": "i", "resources": {"requests": {"cpu": "1"}}},
                           {"name": "s", "restartPolicy": "Always", "resources": {"requests": {"cpu": "50m"}}}],
        "overhead": {"cpu": "10m"}}})
    assert (p.req_cpu, p.req_mem) == (1010, 64 * 2**20)
    # the non-zero defaults (200Mi) apply to every container without a request, sidecars included
    assert p.nz_cpu == 1010 and p.nz_mem == (64 + 200 + 200) * 2**20


class FakeEvents:
    def __init__(self) -> None:
        self.created: list[Obj] = []
        self.patched: list[tuple[str, Obj]] = []

    async def create(self, obj: Obj, namespace: str | None = None) -> Obj:
        self.created.append(obj)
        return obj

    async def patch(self, name: str, body: Obj, namespace: str | None = None) -> Obj:
        self.patched.append((name, body))
        return body


async def test_recorder_aggregates_repeats() -> None:
    fake = FakeEvents()
    rec = EventRecorder(cast(ResourceClient, fake))
    task = asyncio.create_task(rec.run())
    p = PodInfo(pod("x"))
    try:
        rec.record(p, "Warning", "FailedScheduling", "0/1 nodes are available: 1 Too many pods.")
        for _ in range(50):
            await asyncio.sleep(0)
        rec.record(p, "Warning", "FailedScheduling", "0/1 nodes are available: 1 Too many pods.")
        rec.record(p, "Normal", "Scheduled", "Successfully assigned default/x to a")
        for _ in range(50):
            await asyncio.sleep(0)
    finally:
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
    assert [e["reason"] for e in fake.created] == ["FailedScheduling", "Scheduled"]
    ev = fake.created[0]
    assert ev["involvedObject"] == {"apiVersion": "v1", "kind": "Pod", "namespace": "default", "name": "x",
                                    "uid": "uid-default-x", "resourceVersion": ""}
    assert ev["source"] == {"component": "default-scheduler"} and ev["reportingComponent"] == "default-scheduler"
    assert ev["type"] == "Warning" and ev["count"] == 1 and ev["metadata"]["name"].startswith("x.")
    assert fake.patched[0][0] == ev["metadata"]["name"] and fake.patched[0][1]["count"] == 2


def test_config_validate() -> None:
    with pytest.raises(ValueError):
        SchedulerConfig().validate()
    with pytest.raises(ValueError):
        SchedulerConfig(kubeconfig="k", bind_concurrency=0).validate()
    SchedulerConfig(kubeconfig="k").validate()
