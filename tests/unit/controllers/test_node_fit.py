"""Which nodes a DaemonSet pod fits: selectors, affinity terms, taints and default tolerations."""

from __future__ import annotations

from typing import Any

from pocketkube.controllers import node_fit

Obj = dict[str, Any]


def node(name: str, labels: dict[str, str] | None = None, taints: list[Obj] | None = None) -> Obj:
    return {"metadata": {"name": name, "labels": labels or {}}, "spec": {"taints": taints or []}}


def test_node_selector_and_required_affinity() -> None:
    spec: Obj = {"nodeSelector": {"disk": "ssd"}}
    assert node_fit.should_run(spec, node("a", {"disk": "ssd"})) == (True, True)
    assert node_fit.should_run(spec, node("b", {"disk": "hdd"})) == (False, False)
    spec = {"affinity": {"nodeAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": {"nodeSelectorTerms": [
        {"matchExpressions": [{"key": "zone", "operator": "In", "values": ["a", "b"]},
                              {"key": "cpus", "operator": "Gt", "values": ["4"]}]},
        {"matchFields": [{"key": "metadata.name", "operator": "In", "values": ["special"]}]}]}}}}
    assert node_fit.should_run(spec, node("x", {"zone": "a", "cpus": "8"}))[0]
    assert not node_fit.should_run(spec, node("x", {"zone": "a", "cpus": "2"}))[0]
    assert not node_fit.should_run(spec, node("x", {"zone": "c", "cpus": "8"}))[0]
    assert node_fit.should_run(spec, node("special"))[0]
    assert not node_fit.term_matches({}, node("x"))


def test_taints_with_daemon_tolerations() -> None:
    spec: Obj = {}
    unschedulable = {"key": "node.kubernetes.io/unschedulable", "effect": "NoSchedule"}
    assert node_fit.should_run(spec, node("a", taints=[unschedulable])) == (True, True)
    not_ready_exec = {"key": node_fit.NOT_READY, "effect": "NoExecute"}
    assert node_fit.should_run(spec, node("a", taints=[not_ready_exec])) == (True, True)
    custom = {"key": "dedicated", "value": "gpu", "effect": "NoSchedule"}
    assert node_fit.should_run(spec, node("a", taints=[custom])) == (False, True)  # keeps running pods
    evict = {"key": "dedicated", "value": "gpu", "effect": "NoExecute"}
    assert node_fit.should_run(spec, node("a", taints=[evict])) == (False, False)
    tolerant: Obj = {"tolerations": [{"key": "dedicated", "operator": "Equal", "value": "gpu"}]}
    assert node_fit.should_run(tolerant, node("a", taints=[custom, evict])) == (True, True)
    assert node_fit.should_run({"tolerations": [{"operator": "Exists"}]}, node("a", taints=[evict]))[0]
    prefer = {"key": "dedicated", "effect": "PreferNoSchedule"}
    assert node_fit.should_run(spec, node("a", taints=[prefer]))[0]


def test_pin_to_node_round_trips_and_adds_tolerations() -> None:
    spec = node_fit.pin_to_node({"tolerations": [{"key": "x", "operator": "Exists"}],
                                 "affinity": {"nodeAffinity": {"preferredDuringSchedulingIgnoredDuringExecution": []}}},
                                "n1")
    assert node_fit.target_node({"spec": spec}) == "n1"
    assert node_fit.target_node({"spec": {**spec, "nodeName": "n2"}}) == "n2"
    assert spec["affinity"]["nodeAffinity"]["preferredDuringSchedulingIgnoredDuringExecution"] == []
    keys = {(t.get("key"), t.get("effect")) for t in spec["tolerations"]}
    assert ("x", None) in keys and (node_fit.UNREACHABLE, "NoExecute") in keys
    assert ("node.kubernetes.io/pid-pressure", "NoSchedule") in keys
    assert node_fit.should_run(spec, node("n1"))[0] and not node_fit.should_run(spec, node("n2"))[0]
