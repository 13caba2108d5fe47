"""Placement table: pods x in-memory nodes through the default profile, no server.

Each row names the nodes, the pods already bound, the pod to place, and either the set of nodes it
may land on or the exact FailedScheduling message kube-scheduler would print.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import pytest
from sched_testlib import cluster, node, pod, taint

from pocketkube.scheduler.framework.interface import CycleState
from pocketkube.scheduler.framework.runtime import FitError, num_feasible_nodes_to_find
from pocketkube.scheduler.types import PodInfo

Obj = dict[str, Any]
CP = "node-role.kubernetes.io/control-plane"
ZONE = "topology.kubernetes.io/zone"


def na(*terms: list[Obj], fields: list[Obj] | None = None) -> Obj:
    """Required node affinity: one term per argument (matchExpressions), optional matchFields term."""
    sel = [{"matchExpressions": t} for t in terms] + ([{"matchFields": fields}] if fields else [])
    return {"nodeAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": {"nodeSelectorTerms": sel}}}


def expr(key: str, op: str, *values: str) -> Obj:
    return {"key": key, "operator": op, **({"values": list(values)} if values else {})}


def term(labels: dict[str, str], key: str = "kubernetes.io/hostname", **extra: Any) -> Obj:
    return {"labelSelector": {"matchLabels": labels}, "topologyKey": key, **extra}


def msg(n: int, reasons: str, preemption: str) -> str:
    return f"0/{n} nodes are available: {reasons}. preemption: 0/{n} nodes are available: {preemption}."


@dataclass
class Row:
    id: str
    nodes: list[Obj]
    pod: Obj
    want: set[str] | str  # feasible node names, or the FailedScheduling message
    existing: list[Obj] = field(default_factory=list)
    namespaces: dict[str, dict[str, str]] = field(default_factory=dict)


AB = [node("a"), node("b")]
ZONED = [node("a1", labels={ZONE: "a"}), node("a2", labels={ZONE: "a"}), node("b1", labels={ZONE: "b"})]

ROWS = [
    # --- resources
    Row("fits-only-big-node", [node("a", cpu="500m"), node("b", cpu="2")], pod(cpu="1"), {"b"}),
    Row("least-allocated-prefers-empty", AB, pod(cpu="1"), {"b"},
        existing=[pod("x", cpu="2", memory="4Gi", node_name="a")]),
    Row("too-big-memory", [node("a", memory="1Gi"), node("b", memory="1Gi")], pod(memory="2Gi"),
        msg(2, "2 Insufficient memory", "2 Preemption is not helpful for scheduling")),
    Row("insufficient-cpu-used", [node("a", cpu="2")], pod(cpu="1"),
        msg(1, "1 Insufficient cpu", "1 No preemption victims found for incoming pod"),
        existing=[pod("x", cpu="1500m", node_name="a")]),
    Row("too-many-pods", [node("a", pods="1")], pod(),
        msg(1, "1 Too many pods", "1 No preemption victims found for incoming pod"),
        existing=[pod("x", node_name="a")]),
    Row("kube-example", [node("cp", taints=[taint(CP)]), node("w1", cpu="2"), node("w2", cpu="2")], pod(cpu="3"),
        msg(3, "1 node(s) had untolerated taint {node-role.kubernetes.io/control-plane: }, 2 Insufficient cpu",
            "3 Preemption is not helpful for scheduling")),
    Row("cpu-and-memory-both", [node("a", cpu="1", memory="1Gi")], pod(cpu="2", memory="2Gi"),
        msg(1, "1 Insufficient cpu, 1 Insufficient memory", "1 Preemption is not helpful for scheduling")),
    # --- nodeSelector / node affinity
    Row("node-selector", [node("a"), node("b", labels={"disk": "ssd"})], pod(nodeSelector={"disk": "ssd"}), {"b"}),
    Row("node-selector-none", AB, pod(nodeSelector={"disk": "ssd"}),
        msg(2, "2 node(s) didn't match Pod's node affinity/selector", "2 Preemption is not helpful for scheduling")),
    Row("affinity-in", ZONED, pod(affinity=na([expr(ZONE, "In", "b")])), {"b1"}),
    Row("affinity-notin", ZONED, pod(affinity=na([expr(ZONE, "NotIn", "b")])), {"a1", "a2"}),
    Row("affinity-exists", [node("a"), node("g", labels={"gpu": "1"})], pod(affinity=na([expr("gpu", "Exists")])),
        {"g"}),
    Row("affinity-doesnotexist", [node("a"), node("g", labels={"gpu": "1"})],
        pod(affinity=na([expr("gpu", "DoesNotExist")])), {"a"}),
    Row("affinity-gt-lt", [node("s", labels={"cores": "4"}), node("m", labels={"cores": "16"}),
                           node("l", labels={"cores": "64"})],
        pod(affinity=na([expr("cores", "Gt", "8"), expr("cores", "Lt", "32")])), {"m"}),
    Row("affinity-terms-ored", ZONED, pod(affinity=na([expr(ZONE, "In", "b")], [expr("x", "Exists")])), {"b1"}),
    Row("affinity-match-fields", AB, pod(affinity=na(fields=[expr("metadata.name", "In", "b")])), {"b"}),
    Row("preferred-node-affinity", ZONED, pod(affinity={"nodeAffinity": {
        "preferredDuringSchedulingIgnoredDuringExecution": [
            {"weight": 10, "preference": {"matchExpressions": [expr(ZONE, "In", "b")]}}]}}), {"b1"}),
    # --- taints and tolerations
    Row("untolerated-taint", [node("a", taints=[taint("dedicated", "gpu")]), node("b")], pod(), {"b"}),
    Row("taint-message", [node("a", taints=[taint("dedicated", "gpu")])], pod(),
        msg(1, "1 node(s) had untolerated taint {dedicated: gpu}", "1 Preemption is not helpful for scheduling")),
    Row("noexecute-untolerated", [node("a", taints=[taint("k", "v", "NoExecute")]), node("b")], pod(), {"b"}),
    Row("toleration-equal", [node("a", taints=[taint("dedicated", "gpu")])],
        pod(tolerations=[{"key": "dedicated", "operator": "Equal", "value": "gpu", "effect": "NoSchedule"}]), {"a"}),
    Row("toleration-wrong-value", [node("a", taints=[taint("dedicated", "gpu")])],
        pod(tolerations=[{"key": "dedicated", "value": "db"}]),
        msg(1, "1 node(s) had untolerated taint {dedicated: gpu}", "1 Preemption is not helpful for scheduling")),
    Row("toleration-exists-all", [node("a", taints=[taint("x", "1"), taint("y", "2", "NoExecute")])],
        pod(tolerations=[{"operator": "Exists"}]), {"a"}),
    Row("prefer-no-schedule-scored", [node("a", taints=[taint("soft", "", "PreferNoSchedule")]), node("b")],
        pod(), {"b"}),
    # --- cordon
    Row("cordoned-skipped", [node("a", unschedulable=True), node("b")], pod(), {"b"}),
    Row("cordoned-message", [node("a", unschedulable=True)], pod(),
        msg(1, "1 node(s) were unschedulable", "1 Preemption is not helpful for scheduling")),
    Row("cordon-tolerated", [node("a", unschedulable=True)],
        pod(tolerations=[{"key": "node.kubernetes.io/unschedulable", "operator": "Exists", "effect": "NoSchedule"}]),
        {"a"}),
    # --- host ports
    Row("host-port-conflict", AB, pod(host_ports=[8080]), {"b"}, existing=[pod("x", host_ports=[8080], node_name="a")]),
    Row("host-port-all-taken", [node("a")], pod(host_ports=[8080]),
        msg(1, "1 node(s) didn't have free ports for the requested pod ports",
            "1 No preemption victims found for incoming pod"),
        existing=[pod("x", host_ports=[8080], node_name="a")]),
    Row("host-port-other-ip", [node("a")], pod(host_ports=[(8080, "10.0.0.2")]), {"a"},
        existing=[pod("x", host_ports=[(8080, "10.0.0.1")], node_name="a")]),
    # --- inter-pod affinity
    Row("pod-affinity-zone", ZONED, pod(labels={"app": "web"}, affinity={"podAffinity": {
        "requiredDuringSchedulingIgnoredDuringExecution": [term({"app": "db"}, ZONE)]}}), {"a1", "a2"},
        existing=[pod("db", labels={"app": "db"}, node_name="a2")]),
    Row("pod-affinity-none", AB, pod(affinity={"podAffinity": {
        "requiredDuringSchedulingIgnoredDuringExecution": [term({"app": "db"})]}}),
        msg(2, "2 node(s) didn't match pod affinity rules", "2 Preemption is not helpful for scheduling")),
    Row("pod-affinity-first-of-group", AB, pod(labels={"app": "db"}, affinity={"podAffinity": {
        "requiredDuringSchedulingIgnoredDuringExecution": [term({"app": "db"})]}}), {"a", "b"}),
    Row("pod-anti-affinity", AB, pod(labels={"app": "web"}, affinity={"podAntiAffinity": {
        "requiredDuringSchedulingIgnoredDuringExecution": [term({"app": "web"})]}}), {"b"},
        existing=[pod("w0", labels={"app": "web"}, node_name="a")]),
    Row("pod-anti-affinity-full", [node("a")], pod(labels={"app": "web"}, affinity={"podAntiAffinity": {
        "requiredDuringSchedulingIgnoredDuringExecution": [term({"app": "web"})]}}),
        msg(1, "1 node(s) didn't match pod anti-affinity rules", "1 No preemption victims found for incoming pod"),
        existing=[pod("w0", labels={"app": "web"}, node_name="a")]),
    Row("existing-anti-affinity", [node("a")], pod(labels={"app": "web"}),
        msg(1, "1 node(s) didn't satisfy existing pods anti-affinity rules",
            "1 No preemption victims found for incoming pod"),
        existing=[pod("lonely", node_name="a", affinity={"podAntiAffinity": {
            "requiredDuringSchedulingIgnoredDuringExecution": [term({"app": "web"})]}})]),
    Row("pod-affinity-other-namespace", AB, pod(affinity={"podAffinity": {
        "requiredDuringSchedulingIgnoredDuringExecution": [term({"app": "db"}, namespaces=["data"])]}}), {"b"},
        existing=[pod("db", ns="data", labels={"app": "db"}, node_name="b"),
                  pod("db", labels={"app": "db"}, node_name="a")]),
    Row("pod-affinity-namespace-selector", AB, pod(affinity={"podAffinity": {
        "requiredDuringSchedulingIgnoredDuringExecution": [
            term({"app": "db"}, namespaceSelector={"matchLabels": {"team": "data"}})]}}), {"a"},
        existing=[pod("db", ns="prod", labels={"app": "db"}, node_name="a"),
                  pod("db", ns="dev", labels={"app": "db"}, node_name="b")],
        namespaces={"prod": {"team": "data"}, "dev": {"team": "web"}}),
    Row("preferred-pod-affinity", AB, pod(affinity={"podAffinity": {
        "preferredDuringSchedulingIgnoredDuringExecution": [{"weight": 50, "podAffinityTerm": term({"app": "c"})}]}}),
        {"b"}, existing=[pod("c", labels={"app": "c"}, node_name="b")]),
    Row("preferred-pod-anti-affinity", AB, pod(affinity={"podAntiAffinity": {
        "preferredDuringSchedulingIgnoredDuringExecution": [{"weight": 50, "podAffinityTerm": term({"app": "c"})}]}}),
        {"a"}, existing=[pod("c", labels={"app": "c"}, node_name="b")]),
    # --- topology spread
    Row("spread-do-not-schedule", ZONED, pod(labels={"app": "s"}, topologySpreadConstraints=[
        {"maxSkew": 1, "topologyKey": ZONE, "whenUnsatisfiable": "DoNotSchedule",
         "labelSelector": {"matchLabels": {"app": "s"}}}]), {"b1"},
        existing=[pod("s1", labels={"app": "s"}, node_name="a1"), pod("s2", labels={"app": "s"}, node_name="a2")]),
    Row("spread-skew-violated", [node("a1", labels={ZONE: "a"}), node("b1", labels={ZONE: "b"}, cpu="100m")],
        pod(cpu="200m", labels={"app": "s"}, topologySpreadConstraints=[
            {"maxSkew": 1, "topologyKey": ZONE, "whenUnsatisfiable": "DoNotSchedule",
             "labelSelector": {"matchLabels": {"app": "s"}}}]),
        msg(2, "1 Insufficient cpu, 1 node(s) didn't match pod topology spread constraints",
            "1 No preemption victims found for incoming pod, 1 Preemption is not helpful for scheduling"),
        existing=[pod("s1", labels={"app": "s"}, node_name="a1")]),
    Row("spread-missing-label", [node("a", labels={ZONE: "a"}), node("nolabel")],
        pod(labels={"app": "s"}, topologySpreadConstraints=[
            {"maxSkew": 1, "topologyKey": ZONE, "whenUnsatisfiable": "DoNotSchedule",
             "labelSelector": {"matchLabels": {"app": "s"}}}]), {"a"}),
    Row("spread-min-domains", [node("a1", labels={ZONE: "a"})],
        pod(labels={"app": "s"}, topologySpreadConstraints=[
            {"maxSkew": 1, "topologyKey": ZONE, "whenUnsatisfiable": "DoNotSchedule", "minDomains": 2,
             "labelSelector": {"matchLabels": {"app": "s"}}}]),
        msg(1, "1 node(s) didn't match pod topology spread constraints",
            "1 No preemption victims found for incoming pod"),
        existing=[pod("s1", labels={"app": "s"}, node_name="a1")]),
    Row("spread-schedule-anyway", ZONED, pod(labels={"app": "s"}, topologySpreadConstraints=[
        {"maxSkew": 1, "topologyKey": ZONE, "whenUnsatisfiable": "ScheduleAnyway",
         "labelSelector": {"matchLabels": {"app": "s"}}}]), {"b1"},
        existing=[pod("s1", labels={"app": "s"}, node_name="a1"), pod("s2", labels={"app": "s"}, node_name="a2")]),
    Row("default-spread-by-controller", [node("a"), node("b"), node("c")], pod(owner="rs1"), {"c"},
        existing=[pod("r1", owner="rs1", node_name="a"), pod("r2", owner="rs1", node_name="b"),
                  pod("other1", owner="rs2", node_name="c"), pod("other2", owner="rs2", node_name="c")]),
    # --- node name
    Row("mixed-reasons-sorted", [node("a", unschedulable=True), node("b", labels={"disk": "hdd"}),
                                 node("c", taints=[taint("t", "v")])], pod(nodeSelector={"disk": "ssd"}),
        msg(3, "1 node(s) didn't match Pod's node affinity/selector, 1 node(s) had untolerated taint {t: v}, "
               "1 node(s) were unschedulable", "3 Preemption is not helpful for scheduling")),
]


@pytest.mark.parametrize("row", ROWS, ids=[r.id for r in ROWS])
def test_placement(row: Row) -> None:
    cache, fw = cluster(row.nodes, row.existing, row.namespaces)
    info = PodInfo(row.pod)
    if isinstance(row.want, str):
        with pytest.raises(FitError) as exc:
            fw.schedule(info, cache.node_list())
        assert str(exc.value) == row.want
    else:
        for seed in range(4):  # ties are random: every pick must be allowed
            fw.rng.seed(seed)
            assert fw.schedule(info, cache.node_list()).name in row.want


def test_preemption_policy_never_message() -> None:
    cache, fw = cluster([node("a", cpu="1")])
    with pytest.raises(FitError) as exc:
        fw.schedule(PodInfo(pod(cpu="2", preemptionPolicy="Never")), cache.node_list())
    assert str(exc.value) == ("0/1 nodes are available: 1 Insufficient cpu. "
                              "preemption: not eligible due to preemptionPolicy=Never.")


def test_fit_error_names_rejecting_plugins() -> None:
    cache, fw = cluster([node("a", taints=[taint("x")]), node("b", cpu="1")])
    with pytest.raises(FitError) as exc:
        fw.schedule(PodInfo(pod(cpu="2")), cache.node_list())
    assert exc.value.unschedulable_plugins == {"TaintToleration", "NodeResourcesFit"}


def test_assumed_pods_count() -> None:
    cache, fw = cluster([node("a", cpu="1")])
    first = PodInfo(pod("one", cpu="600m"))
    cache.assume(first, fw.schedule(first, cache.node_list()).name)
    with pytest.raises(FitError):
        fw.schedule(PodInfo(pod("two", cpu="600m")), cache.node_list())
    cache.forget(first.key)
    assert fw.schedule(PodInfo(pod("two", cpu="600m")), cache.node_list()).name == "a"


def test_percentage_of_nodes_to_score_is_adaptive() -> None:
    assert num_feasible_nodes_to_find(50) == 50
    assert num_feasible_nodes_to_find(1000) == 420
    assert num_feasible_nodes_to_find(5000) == 500
    assert num_feasible_nodes_to_find(100_000) == 5000
    assert num_feasible_nodes_to_find(1000, 100) == 1000


def test_rotation_covers_all_nodes() -> None:
    """Each cycle starts where the last stopped, so every node gets considered in turn."""
    cache, fw = cluster([node(f"n{i:03d}") for i in range(300)])
    fw.percentage = 0
    seen: set[str] = set()
    for _ in range(3):
        feasible, _ = fw.find_nodes_that_fit(CycleState(), PodInfo(pod()), cache.node_list())
        assert len(feasible) == 144  # 300 nodes: 50% - 300/125 = 48%
        seen.update(n.name for n in feasible)
    assert len(seen) == 300
