"""Node lifecycle against the in-memory API: a node whose Lease went stale turns Ready=Unknown,
gets the unreachable taints and its pods Ready=False; a pod whose toleration ran out gets the
DisruptionTarget condition and is deleted, one tolerating forever stays."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from pocketkube.api import meta
from pocketkube.controllers.node_lifecycle import UNREACHABLE, NodeLifecycleController, tolerates
from tests.unit.controllers.fake_api import FakeAPI

Obj = dict[str, Any]


def _pod(name: str, tolerations: list[Obj]) -> Obj:
    return {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": name, "namespace": "ns", "uid": f"uid-{name}"},
            "spec": {"nodeName": "n1", "tolerations": tolerations, "containers": [{"name": "c", "image": "i"}]},
            "status": {"phase": "Running", "conditions": [{"type": "Ready", "status": "True"}]}}


def test_tolerations_match_like_kube() -> None:
    taint = {"key": UNREACHABLE, "effect": "NoExecute"}
    assert tolerates({"spec": {}}, taint) == (False, None)
    assert tolerates({"spec": {"tolerations": [{"operator": "Exists"}]}}, taint) == (True, None)
    assert tolerates({"spec": {"tolerations": [{"key": UNREACHABLE, "operator": "Exists", "effect": "NoExecute",
                                                "tolerationSeconds": 5}]}}, taint) == (True, 5.0)
    assert tolerates({"spec": {"tolerations": [{"key": UNREACHABLE, "effect": "NoSchedule",
                                                "operator": "Exists"}]}}, taint) == (False, None)


async def test_stale_node_is_marked_unknown_tainted_and_its_pods_evicted() -> None:
    api = FakeAPI()
    ctl = NodeLifecycleController(api, grace_seconds=40)
    api.attach(ctl)
    now = meta.now()
    ctl.started = now - timedelta(minutes=5)
    old = meta.format_time(now - timedelta(seconds=100))
    api.put("nodes", {"metadata": {"name": "n1"}, "spec": {}, "status": {"conditions": [
        {"type": "Ready", "status": "True", "lastHeartbeatTime": old, "lastTransitionTime": old}]}})
    api.put("leases", {"metadata": {"name": "n1", "namespace": "kube-node-lease"}, "spec": {"renewTime": old}})
    pods = api.resource("", "v1", "pods")
    await pods.create(_pod("brief", [{"key": UNREACHABLE, "operator": "Exists", "effect": "NoExecute",
                                      "tolerationSeconds": 0}]))
    await pods.create(_pod("forever", [{"key": UNREACHABLE, "operator": "Exists", "effect": "NoExecute"}]))

    await ctl.sync("node:n1")
    ready = next(c for c in api.get("nodes", "n1")["status"]["conditions"] if c["type"] == "Ready")
    assert (ready["status"], ready["reason"]) == ("Unknown", "NodeStatusUnknown")
    await ctl.sync("node:n1")
    taints = {(t["key"], t["effect"]) for t in api.get("nodes", "n1")["spec"]["taints"]}
    assert taints == {(UNREACHABLE, "NoSchedule"), (UNREACHABLE, "NoExecute")}
    for name in ("brief", "forever"):
        conds = {c["type"]: c["status"] for c in api.get("pods", f"ns/{name}")["status"]["conditions"]}
        assert conds["Ready"] == "False"

    await ctl.sync("pod:ns/forever")
    await ctl.sync("pod:ns/brief")
    assert "ns/forever" in api.objects["pods"] and "ns/brief" not in api.objects["pods"]
    calls = [c for c in api.calls if c[1] == "pods" and c[2] == "brief"]
    assert calls[-2:] == [("patch/status", "pods", "brief"), ("delete", "pods", "brief")]
    reasons = {e["reason"] for e in api.items("events")}
    assert {"NodeNotReady", "TaintManagerEviction"} <= reasons
