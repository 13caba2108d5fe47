"""EndpointSlice building and reconciling, and the legacy Endpoints subsets, without a server."""

from __future__ import annotations

from typing import Any

from pocketkube.controllers.endpoints import build_subsets, truncate
from pocketkube.controllers.endpointslice import CONTROLLER_NAME, desired_endpoints, slice_labels
from pocketkube.controllers.endpointslice_mirroring import mirror_labels, mirrored_endpoints
from pocketkube.controllers.endpointslice_reconcile import MANAGED_BY_LABEL, Desired, Plan
from pocketkube.controllers.endpointslice_reconcile import reconcile as reconcile_slices


def reconcile(svc: dict[str, Any], existing: list[dict[str, Any]], desired: Desired, max_per: int) -> Plan:
    return reconcile_slices(svc, existing, desired, max_per, labels=slice_labels(svc))


def service(ports: list[dict[str, Any]] | None = None, **spec: Any) -> dict[str, Any]:
    return {"metadata": {"name": "web", "namespace": "ns", "uid": "svc-uid", "labels": {"tier": "fe"}},
            "spec": {"selector": {"app": "web"}, "ports": ports if ports is not None else
                     [{"name": "http", "port": 80, "targetPort": "http", "protocol": "TCP"}], **spec}}


def pod(name: str, ip: str | None, *, ready: bool = True, named_port: bool = True, deleting: bool = False,
        phase: str = "Running") -> dict[str, Any]:
    ports = [{"name": "http", "containerPort": 8080}] if named_port else []
    md: dict[str, Any] = {"name": name, "namespace": "ns", "uid": f"uid-{name}", "labels": {"app": "web"}}
    if deleting:
        md["deletionTimestamp"] = "2026-11-25T18:00:00Z"
    status: dict[str, Any] = {"phase": phase, "conditions": [{"type": "Ready", "status": "True" if ready else "False"}]}
    if ip:
        status["podIP"] = ip
        status["podIPs"] = [{"ip": ip}]
    return {"metadata": md, "spec": {"nodeName": "n1", "containers": [{"name": "c", "ports": ports}]}, "status": status}


def test_endpoint_fields_and_named_ports() -> None:
    desired = desired_endpoints(service(), [pod("a", "10.0.0.1"), pod("b", "10.0.0.2", ready=False),
                                            pod("c", None), pod("d", "10.0.0.4", named_port=False),
                                            pod("e", "10.0.0.5", deleting=True), pod("f", "10.0.0.6", phase="Failed")])
    groups = desired["IPv4"]
    assert len(groups) == 2  # pods with the named port, and d without it
    (ports, eps), (no_ports, d_eps) = sorted(groups.values(), key=lambda g: -len(g[0]))
    assert ports == [{"name": "http", "port": 8080, "protocol": "TCP"}] and no_ports == []
    assert [e["addresses"] for e in eps] == [["10.0.0.1"], ["10.0.0.2"], ["10.0.0.5"]]
    assert eps[0] == {"addresses": ["10.0.0.1"], "conditions": {"ready": True, "serving": True, "terminating": False},
                      "nodeName": "n1", "targetRef": {"kind": "Pod", "namespace": "ns", "name": "a", "uid": "uid-a"}}
    assert eps[1]["conditions"] == {"ready": False, "serving": False, "terminating": False}
    assert eps[2]["conditions"] == {"ready": False, "serving": True, "terminating": True}
    assert [e["addresses"] for e in d_eps] == [["10.0.0.4"]]


def test_slices_hold_at_most_max_and_keep_placement() -> None:
    svc = service()
    pods = [pod(f"p{i:03}", f"10.0.{i // 200}.{i % 200 + 1}") for i in range(250)]
    plan = reconcile(svc, [], desired_endpoints(svc, pods), 100)
    assert [len(s["endpoints"]) for s in plan.create] == [100, 100, 50]
    first = plan.create[0]
    assert first["metadata"]["generateName"] == "web-"
    assert first["metadata"]["labels"] == {"tier": "fe", "kubernetes.io/service-name": "web",
                                           MANAGED_BY_LABEL: CONTROLLER_NAME}
    assert first["metadata"]["ownerReferences"][0]["uid"] == "svc-uid" and first["addressType"] == "IPv4"
    existing = [{**s, "metadata": {**s["metadata"], "name": f"web-{i}", "resourceVersion": "1"}}
                for i, s in enumerate(plan.create)]
    # one pod gone from the first slice, one new pod: the new one fills the slice with room, nothing moves
    pods = [p for p in pods if p["metadata"]["name"] != "p000"] + [pod("zzz", "10.9.9.9")]
    plan = reconcile(svc, existing, desired_endpoints(svc, pods), 100)
    assert not plan.create and not plan.delete
    assert [s["metadata"]["name"] for s in plan.update] == ["web-0"]
    after = {s["metadata"]["name"]: s for s in existing} | {s["metadata"]["name"]: s for s in plan.update}
    assert sum(len(s["endpoints"]) for s in after.values()) == 250
    assert all(len(s["endpoints"]) <= 100 for s in after.values())
    assert reconcile(svc, list(after.values()), desired_endpoints(svc, pods), 100).update == []


def test_no_endpoints_keeps_one_placeholder() -> None:
    svc = service()
    plan = reconcile(svc, [], desired_endpoints(svc, []), 100)
    assert len(plan.create) == 1 and plan.create[0]["endpoints"] == [] and plan.create[0]["ports"] == []
    full = reconcile(svc, [], desired_endpoints(svc, [pod("a", "10.0.0.1")]), 100).create[0]
    full["metadata"]["name"] = "web-x"
    plan = reconcile(svc, [full], desired_endpoints(svc, []), 100)
    assert not plan.create and not plan.delete and plan.update[0]["endpoints"] == []


def test_endpoints_subsets_repack_by_port_set() -> None:
    svc = service([{"name": "http", "port": 80, "targetPort": "http", "protocol": "TCP"},
                   {"name": "raw", "port": 9000, "targetPort": 9000, "protocol": "TCP"}])
    subsets = build_subsets(svc, [pod("a", "10.0.0.1"), pod("b", "10.0.0.2", ready=False, named_port=False),
                                  pod("e", "10.0.0.5", deleting=True)])
    assert subsets == [
        {"addresses": [{"ip": "10.0.0.1", "nodeName": "n1",
                        "targetRef": {"kind": "Pod", "namespace": "ns", "name": "a", "uid": "uid-a"}}],
         "ports": [{"port": 8080, "protocol": "TCP", "name": "http"}]},
        {"addresses": [{"ip": "10.0.0.1", "nodeName": "n1",
                        "targetRef": {"kind": "Pod", "namespace": "ns", "name": "a", "uid": "uid-a"}}],
         "notReadyAddresses": [{"ip": "10.0.0.2", "nodeName": "n1",
                                "targetRef": {"kind": "Pod", "namespace": "ns", "name": "b", "uid": "uid-b"}}],
         "ports": [{"port": 9000, "protocol": "TCP", "name": "raw"}]},
    ]


def test_headless_without_ports_lists_addresses() -> None:
    svc = service([], clusterIP="None")
    subsets = build_subsets(svc, [pod("a", "10.0.0.1")])
    assert subsets == [{"addresses": [{"ip": "10.0.0.1", "nodeName": "n1", "targetRef": {
        "kind": "Pod", "namespace": "ns", "name": "a", "uid": "uid-a"}}]}]
    plan = reconcile(svc, [], desired_endpoints(svc, [pod("a", "10.0.0.1")]), 100)
    assert plan.create[0]["metadata"]["labels"]["service.kubernetes.io/headless"] == ""
    assert plan.create[0]["ports"] == [] and len(plan.create[0]["endpoints"]) == 1


def test_mirroring_user_endpoints() -> None:
    endpoints = {"metadata": {"name": "manual", "namespace": "ns", "labels": {"team": "a"}},
                 "subsets": [{"addresses": [{"ip": "192.0.2.1"}, {"ip": "192.0.2.1"}],
                              "notReadyAddresses": [{"ip": "2001:db8::1", "nodeName": "n1"}],
                              "ports": [{"name": "http", "port": 80}]}]}
    desired = mirrored_endpoints(endpoints)
    svc = {"metadata": {"name": "manual", "namespace": "ns", "uid": "u"}, "spec": {"ports": [{"port": 80}]}}
    plan = reconcile_slices(svc, [], desired, labels=mirror_labels(endpoints, "manual"), placeholder=False)
    by_type = {s["addressType"]: s for s in plan.create}
    assert by_type["IPv4"]["endpoints"] == [{"addresses": ["192.0.2.1"], "conditions": {"ready": True}}]
    assert by_type["IPv6"]["endpoints"] == [{"addresses": ["2001:db8::1"], "conditions": {"ready": False},
                                             "nodeName": "n1"}]
    assert by_type["IPv4"]["ports"] == [{"name": "http", "port": 80, "protocol": "TCP"}]
    assert by_type["IPv4"]["metadata"]["labels"] == {
        "team": "a", "kubernetes.io/service-name": "manual",
        "endpointslice.kubernetes.io/managed-by": "endpointslicemirroring-controller.k8s.io"}
    assert reconcile_slices(svc, [], {}, labels={}, placeholder=False).create == []


def test_endpoints_truncate_keeps_ready_first_in_proportion() -> None:
    def addrs(prefix: str, n: int) -> list[dict[str, Any]]:
        return [{"ip": f"{prefix}.{i}"} for i in range(n)]

    subsets = [{"addresses": addrs("10.0.0", 6), "notReadyAddresses": addrs("10.0.1", 4)},
               {"addresses": addrs("10.1.0", 2), "notReadyAddresses": addrs("10.1.1", 4)}]
    assert truncate(subsets, capacity=12)
    assert [(len(s.get("addresses", [])), len(s.get("notReadyAddresses", []))) for s in subsets] == [(6, 2), (2, 2)]
    subsets = [{"addresses": addrs("10.0.0", 9)}, {"addresses": addrs("10.1.0", 3), "notReadyAddresses": addrs("x", 2)}]
    assert truncate(subsets, capacity=8)
    assert [(len(s.get("addresses", [])), len(s.get("notReadyAddresses", []))) for s in subsets] == [(6, 0), (2, 0)]
    assert not truncate(subsets, capacity=8)
