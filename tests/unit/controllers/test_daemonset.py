"""DaemonSet sync against the in-memory API: one pinned pod per eligible node, revisions,
duplicates and strays removed, RollingUpdate within maxUnavailable, OnDelete, status."""

from __future__ import annotations

import copy
from typing import Any

from pocketkube.controllers import daemonset_update
from pocketkube.controllers.daemonset import DaemonSetController
from pocketkube.controllers.node_fit import target_node
from pocketkube.controllers.revisions import HASH_LABEL
from tests.unit.controllers.fake_api import FakeAPI

Obj = dict[str, Any]


def make(nodes: int = 3, **spec: Any) -> tuple[FakeAPI, DaemonSetController, Obj]:
    api = FakeAPI()
    ctl = DaemonSetController(api)
    api.attach(ctl)
    for i in range(nodes):
        api.put("nodes", {"metadata": {"name": f"n{i}", "labels": {"role": "gpu" if i == 0 else "cpu"}}})
    ds = api.put("daemonsets", {"apiVersion": "apps/v1", "kind": "DaemonSet",
                                "metadata": {"name": "agent", "namespace": "ns"},
                                "spec": {"selector": {"matchLabels": {"app": "agent"}},
                                         "template": {"metadata": {"labels": {"app": "agent"}},
                                                      "spec": {"containers": [{"name": "c", "image": "v1"}]}},
                                         "updateStrategy": {"type": "RollingUpdate",
                                                            "rollingUpdate": {"maxUnavailable": 1}},
                                         "revisionHistoryLimit": 10, **spec}})
    return api, ctl, ds


def set_image(api: FakeAPI, image: str) -> None:
    api.get("daemonsets", "ns/agent")["spec"]["template"]["spec"]["containers"][0]["image"] = image


def run_all(api: FakeAPI) -> None:
    for pod in api.items("pods"):
        api.set_pod_phase(f"ns/{pod['metadata']['name']}", "Running")


async def test_one_pinned_pod_per_node_with_revision_and_status() -> None:
    api, ctl, _ = make()
    await ctl.sync("ns/agent")
    pods = api.items("pods")
    assert sorted(target_node(p) or "" for p in pods) == ["n0", "n1", "n2"]
    revs = api.items("controllerrevisions")
    assert len(revs) == 1 and revs[0]["revision"] == 1
    h = revs[0]["metadata"]["labels"][HASH_LABEL]
    for p in pods:
        assert p["metadata"]["labels"][HASH_LABEL] == h
        assert p["metadata"]["ownerReferences"][0]["kind"] == "DaemonSet"
        assert not p["spec"].get("nodeName")  # the scheduler binds it
        assert any(t["key"] == "node.kubernetes.io/unreachable" for t in p["spec"]["tolerations"])
    run_all(api)
    await ctl.sync("ns/agent")
    status = api.get("daemonsets", "ns/agent")["status"]
    assert status == {"desiredNumberScheduled": 3, "currentNumberScheduled": 3, "numberMisscheduled": 0,
                      "numberReady": 3, "numberAvailable": 3, "numberUnavailable": 0,
                      "updatedNumberScheduled": 3, "observedGeneration": 1}
    await ctl.sync("ns/agent")
    assert len(api.items("pods")) == 3  # steady state


async def test_node_selector_taints_and_strays() -> None:
    api, ctl, _ = make(nodes=3)
    api.objects["nodes"]["n2"]["spec"] = {"taints": [{"key": "k", "value": "v", "effect": "NoSchedule"}]}
    await ctl.sync("ns/agent")
    assert sorted(target_node(p) or "" for p in api.items("pods")) == ["n0", "n1"]
    # a node leaving the selection (label change with nodeSelector) loses its pod
    ds = api.get("daemonsets", "ns/agent")
    ds["spec"]["template"]["spec"]["nodeSelector"] = {"role": "cpu"}
    await ctl.sync("ns/agent")  # template changed: new revision; n0 pod is misscheduled
    assert [target_node(p) for p in api.items("pods")] == ["n1"]
    await api.remove("nodes", "n1")
    await ctl.sync("ns/agent")
    assert api.items("pods") == []


async def test_duplicates_and_failed_pods_are_replaced() -> None:
    api, ctl, _ = make(nodes=1)
    await ctl.sync("ns/agent")
    first = api.items("pods")[0]
    dup = copy.deepcopy(first)
    dup["metadata"]["name"] = "agent-dup"
    dup["metadata"]["creationTimestamp"] = "2026-01-01T12:00:05Z"
    api.put("pods", dup)
    await ctl.sync("ns/agent")
    assert [p["metadata"]["name"] for p in api.items("pods")] == [first["metadata"]["name"]]
    api.set_pod_phase(f"ns/{first['metadata']['name']}", "Failed")
    await ctl.sync("ns/agent")  # deletes the failed pod and creates a fresh one
    pods = api.items("pods")
    assert len(pods) == 1 and pods[0]["metadata"]["name"] != first["metadata"]["name"]


async def test_rolling_update_respects_max_unavailable() -> None:
    api, ctl, _ = make(nodes=3)
    await ctl.sync("ns/agent")
    run_all(api)
    set_image(api, "v2")
    await ctl.sync("ns/agent")
    assert len(api.items("pods")) == 2  # one old pod deleted (maxUnavailable 1)
    assert len(api.items("controllerrevisions")) == 2
    for _ in range(6):
        await ctl.sync("ns/agent")  # creates the replacement
        run_all(api)
    await ctl.sync("ns/agent")
    revs = api.items("controllerrevisions")
    new_hash = max(revs, key=lambda r: r["revision"])["metadata"]["labels"][HASH_LABEL]
    pods = api.items("pods")
    assert len(pods) == 3 and all(p["metadata"]["labels"][HASH_LABEL] == new_hash for p in pods)
    assert api.get("daemonsets", "ns/agent")["status"]["updatedNumberScheduled"] == 3


async def test_max_surge_starts_new_pods_before_stopping_old_ones() -> None:
    api, ctl, _ = make(nodes=3, updateStrategy={"type": "RollingUpdate",
                                                "rollingUpdate": {"maxSurge": 1, "maxUnavailable": 0}})
    await ctl.sync("ns/agent")
    run_all(api)
    set_image(api, "v2")
    await ctl.sync("ns/agent")
    pods = api.items("pods")
    assert len(pods) == 4  # one surge pod next to its old one, nothing deleted
    surge = next(p for p in pods if p["spec"]["containers"][0]["image"] == "v2")
    await ctl.sync("ns/agent")
    assert len(api.items("pods")) == 4  # waits for the surge pod to be available
    api.set_pod_phase(f"ns/{surge['metadata']['name']}", "Running")
    await ctl.sync("ns/agent")
    on_node = [p for p in api.items("pods") if target_node(p) == target_node(surge)]
    assert [p["metadata"]["name"] for p in on_node] == [surge["metadata"]["name"]]  # old one gone
    for _ in range(8):
        await ctl.sync("ns/agent")
        run_all(api)
        assert len(api.items("pods")) <= 4
    pods = api.items("pods")
    assert len(pods) == 3 and all(p["spec"]["containers"][0]["image"] == "v2" for p in pods)


async def test_rolling_back_reuses_the_old_revision() -> None:
    api, ctl, _ = make(nodes=1)
    await ctl.sync("ns/agent")
    set_image(api, "v2")
    await ctl.sync("ns/agent")
    set_image(api, "v1")
    await ctl.sync("ns/agent")
    revs = sorted(api.items("controllerrevisions"), key=lambda r: r["revision"])
    assert len(revs) == 2 and revs[-1]["revision"] == 3
    assert revs[-1]["data"]["spec"]["template"]["spec"]["containers"][0]["image"] == "v1"


async def test_on_delete_waits_for_the_user() -> None:
    api, ctl, _ = make(nodes=2, updateStrategy={"type": "OnDelete"})
    await ctl.sync("ns/agent")
    run_all(api)
    set_image(api, "v2")
    await ctl.sync("ns/agent")
    assert len(api.items("pods")) == 2
    assert api.get("daemonsets", "ns/agent")["status"]["updatedNumberScheduled"] == 0
    victim = api.items("pods")[0]
    await api.remove("pods", f"ns/{victim['metadata']['name']}")
    await ctl.sync("ns/agent")
    images = sorted(p["spec"]["containers"][0]["image"] for p in api.items("pods"))
    assert images == ["v1", "v2"]


def test_update_budgets() -> None:
    def ds(rolling: Obj) -> Obj:
        return {"spec": {"updateStrategy": {"type": "RollingUpdate", "rollingUpdate": rolling}}}
    assert daemonset_update.budgets(ds({"maxUnavailable": "50%"}), 3) == (0, 2)  # rounds up
    assert daemonset_update.budgets(ds({"maxUnavailable": 0, "maxSurge": "10%"}), 25) == (3, 0)
    assert daemonset_update.budgets(ds({"maxUnavailable": 0, "maxSurge": 0}), 5) == (0, 1)
    assert not daemonset_update.surging({"spec": {"updateStrategy": {"type": "OnDelete"}}})
