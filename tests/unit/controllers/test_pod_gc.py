"""Pod GC against the in-memory API: pods of a deleted node go after the quarantine (Failed,
DisruptionTarget, grace 0), terminating pods of an out-of-service NotReady node and unscheduled
terminating pods are force-deleted, and terminated pods beyond the threshold go oldest first."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

from pocketkube.api import meta
from pocketkube.controllers.pod_gc import GC_KEY, OUT_OF_SERVICE, PodGCController
from tests.unit.controllers.fake_api import FakeAPI

Obj = dict[str, Any]


class Clock:
    def __init__(self, start: datetime) -> None:
        self.t = start

    def __call__(self) -> datetime:
        return self.t


def setup(**kwargs: Any) -> tuple[FakeAPI, PodGCController, Clock]:
    api = FakeAPI()
    clock = Clock(api.clock)
    ctl = PodGCController(api, now=clock, **kwargs)
    api.attach(ctl)
    return api, ctl, clock


def node(name: str, *, ready: bool, taints: list[Obj] | None = None) -> Obj:
    return {"metadata": {"name": name}, "spec": {"taints": taints or []},
            "status": {"conditions": [{"type": "Ready", "status": "True" if ready else "Unknown"}]}}


def pod(name: str, node_name: str = "", *, deleting: bool = False, phase: str = "Running",
        created: int = 0) -> Obj:
    md: Obj = {"name": name, "namespace": "ns", "uid": f"uid-{name}",
               "creationTimestamp": meta.format_time(datetime(2026, 1, 1) + timedelta(minutes=created))}
    if deleting:
        md["deletionTimestamp"] = "2026-01-01T12:00:30Z"
        md["deletionGracePeriodSeconds"] = 30
    return {"metadata": md, "spec": {"nodeName": node_name, "containers": [{"name": "c", "image": "i"}]},
            "status": {"phase": phase, "conditions": [{"type": "Ready", "status": "True"}]}}


def names(api: FakeAPI) -> set[str]:
    return {p["metadata"]["name"] for p in api.items("pods")}


async def test_pods_of_a_deleted_node_go_after_the_quarantine() -> None:
    api, ctl, clock = setup()
    api.put("nodes", node("alive", ready=True))
    api.put("pods", pod("kept", "alive"))
    api.put("pods", pod("orphan", "gone"))
    patches: list[Obj] = []
    original = api.resource("", "v1", "pods").patch

    async def spy(name: str, patch: Any, namespace: str | None = None, **kw: Any) -> Obj:
        patches.append(patch)
        return await original(name, patch, namespace, **kw)

    ctl.pods_client.patch = spy  # type: ignore[method-assign]
    await ctl.sync(GC_KEY)
    assert names(api) == {"kept", "orphan"}, "deleted before the quarantine ran out"
    clock.t += timedelta(seconds=41)
    await ctl.sync(GC_KEY)
    assert names(api) == {"kept"}
    status = patches[0]["status"]
    assert status["phase"] == "Failed"
    assert [(c["type"], c["reason"], c["message"]) for c in status["conditions"] if c["type"] == "DisruptionTarget"] == [
        ("DisruptionTarget", "DeletionByPodGC", "PodGC: node no longer exists")]


async def test_terminating_pods_of_an_out_of_service_node_are_force_deleted() -> None:
    api, ctl, _ = setup()
    api.put("nodes", node("dead", ready=False))
    api.put("nodes", node("fenced", ready=False, taints=[{"key": OUT_OF_SERVICE, "value": "nodeshutdown",
                                                          "effect": "NoExecute"}]))
    api.put("nodes", node("fine", ready=True, taints=[{"key": OUT_OF_SERVICE, "effect": "NoExecute"}]))
    for n in ("dead", "fenced", "fine"):
        api.put("pods", pod(f"{n}-terminating", n, deleting=True))
        api.put("pods", pod(f"{n}-running", n))
    api.put("pods", pod("unscheduled-terminating", deleting=True, phase="Pending"))
    await ctl.sync(GC_KEY)
    assert names(api) == {"dead-terminating", "dead-running", "fenced-running", "fine-terminating", "fine-running"}
    assert ("patch/status", "pods", "fenced-terminating") in api.calls  # marked Failed first


async def test_terminated_pods_beyond_the_threshold_go_oldest_first() -> None:
    api, ctl, _ = setup(terminated_threshold=2)
    api.put("nodes", node("n", ready=True))
    for i, phase in enumerate(["Succeeded", "Failed", "Running", "Succeeded", "Failed"]):
        api.put("pods", pod(f"p{i}", "n", phase=phase, created=i))
    await ctl.sync(GC_KEY)
    assert names(api) == {"p2", "p3", "p4"}
