"""The built-in LoadBalancer: pool allocation without duplicates (requested, exhausted, released,
restart), node addresses as k3s ServiceLB picks them, and the controller's status writes against
the in-memory API (type changes, deletes, node changes, port clashes, Local policy)."""

from __future__ import annotations

from typing import Any

import pytest

from pocketkube.controllers.service_lb import ServiceLBController, node_addresses
from pocketkube.controllers.service_lb_pool import AddressPool, NoAddress, parse_pool
from tests.unit.controllers.fake_api import FakeAPI

Obj = dict[str, Any]


# ---- the pool -------------------------------------------------------------------------------


def test_pool_hands_out_each_address_once_and_skips_network_and_broadcast() -> None:
    pool = AddressPool(["198.51.100.0/30", "198.51.100.8/31"])
    assert len(pool) == 4  # .1 .2 of the /30, both of the /31
    got = [pool.allocate(f"ns/s{i}") for i in range(4)]
    assert got == ["198.51.100.1", "198.51.100.2", "198.51.100.8", "198.51.100.9"]
    assert pool.allocate("ns/s0") == "198.51.100.1"  # asking again gives the same one
    with pytest.raises(NoAddress, match="no free address"):
        pool.allocate("ns/s4")
    assert pool.release("ns/s1") == "198.51.100.2"
    assert pool.allocate("ns/s4") == "198.51.100.2"
    assert not pool.contains("198.51.100.0") and not pool.contains("198.51.100.3")


def test_released_addresses_are_reused_last() -> None:
    pool = AddressPool(["10.200.0.0/29"])
    a = pool.allocate("ns/a")
    pool.release("ns/a")
    assert pool.allocate("ns/b") != a  # the cursor moves on: a freed address is not handed out at once


def test_requested_address_in_the_pool_free_or_taken() -> None:
    pool = AddressPool(["10.200.0.0/24"])
    assert pool.allocate("ns/a", "10.200.0.77") == "10.200.0.77"
    with pytest.raises(NoAddress, match="already allocated to ns/a"):
        pool.allocate("ns/b", "10.200.0.77")
    with pytest.raises(NoAddress, match="not in the pool"):
        pool.allocate("ns/b", "10.201.0.5")
    with pytest.raises(NoAddress, match="not in the pool"):
        pool.allocate("ns/b", "not-an-ip")
    assert pool.allocate("ns/a", "10.200.0.78") == "10.200.0.78"  # changing the request moves it
    assert pool.holder("10.200.0.77") is None
    assert pool.allocate("ns/b") == "10.200.0.1"


def test_observed_addresses_are_never_handed_out_again() -> None:
    pool = AddressPool(["10.200.0.0/29"])
    assert pool.observe("ns/old", "10.200.0.1")
    assert not pool.observe("ns/dup", "10.200.0.1")  # the first holder keeps it
    assert not pool.observe("ns/out", "192.0.2.1")
    assert [pool.allocate(f"ns/n{i}") for i in range(5)] == [f"10.200.0.{i}" for i in range(2, 7)]


@pytest.mark.parametrize("bad", ["nonsense", "fd00::/64", "10.0.0.0/24,10.0.0.128/25"])
def test_bad_pools_are_refused(bad: str) -> None:
    with pytest.raises(ValueError, match="--service-lb-pool"):
        parse_pool([bad])


# ---- node addresses -------------------------------------------------------------------------


def node(name: str, ip: str, *, ready: bool = True, taints: list[Obj] | None = None, external: str = "",
         unschedulable: bool = False, labels: dict[str, str] | None = None) -> Obj:
    addresses = [{"type": "InternalIP", "address": ip}, {"type": "Hostname", "address": name}]
    if external:
        addresses.append({"type": "ExternalIP", "address": external})
    return {"metadata": {"name": name, "labels": labels or {}},
            "spec": {"taints": taints or [], "unschedulable": unschedulable},
            "status": {"addresses": addresses,
                       "conditions": [{"type": "Ready", "status": "True" if ready else "False"}]}}


CP_TAINT = {"key": "node-role.kubernetes.io/control-plane", "effect": "NoSchedule"}


def test_node_addresses_follow_servicelb_eligibility() -> None:
    nodes = [node("master", "172.31.9.10", taints=[CP_TAINT]), node("w1", "172.31.9.12"),
             node("w2", "172.31.9.11"), node("down", "172.31.9.13", ready=False),
             node("cordoned", "172.31.9.14", unschedulable=True),
             node("gpu", "172.31.9.15", taints=[{"key": "gpu", "effect": "NoSchedule"}]),
             node("local", "127.0.0.1"),
             node("excluded", "172.31.9.16", labels={"node.kubernetes.io/exclude-from-external-load-balancers": ""})]
    assert node_addresses(nodes) == ["172.31.9.10", "172.31.9.11", "172.31.9.12"]
    assert node_addresses(nodes, only={"w1", "down"}) == ["172.31.9.12"]
    nodes[1] = node("w1", "172.31.9.12", external="203.0.113.7")
    assert node_addresses(nodes) == ["203.0.113.7"]  # any ExternalIP: only ExternalIPs (k3s podIPs)
    labelled = [node("a", "10.0.0.1", labels={"svccontroller.pocketkube.io/enablelb": "true"}), node("b", "10.0.0.2")]
    assert node_addresses(labelled) == ["10.0.0.1"]


# ---- the controller -------------------------------------------------------------------------


def lb(name: str, port: int = 80, *, created: str = "2026-01-01T12:00:00Z", **spec: Any) -> Obj:
    return {"apiVersion": "v1", "kind": "Service",
            "metadata": {"name": name, "namespace": "ns", "creationTimestamp": created},
            "spec": {"type": "LoadBalancer", "clusterIP": "10.43.0.9",
                     "ports": [{"port": port, "protocol": "TCP", "nodePort": 30000 + port}], **spec}}


def make(pool: list[str] | None = None) -> tuple[FakeAPI, ServiceLBController]:
    api = FakeAPI()
    ctl = ServiceLBController(api, pool=pool)
    api.attach(ctl)
    return api, ctl


def ingress(api: FakeAPI, key: str) -> list[Obj]:
    return list(((api.get("services", key).get("status") or {}).get("loadBalancer") or {}).get("ingress") or [])


def add(api: FakeAPI, ctl: ServiceLBController, svc: Obj) -> None:
    stored = api.put("services", svc)
    ctl._service_changed(None, stored)


async def drain(ctl: ServiceLBController) -> None:
    while len(ctl.queue):
        key = await ctl.queue.get()
        await ctl.sync(key)
        ctl.queue.done(key)


async def test_pool_mode_status_type_change_and_delete_release() -> None:
    api, ctl = make(["198.51.100.0/30"])  # two usable addresses
    for name in ("a", "b", "c"):
        add(api, ctl, lb(name))
    add(api, ctl, lb("other", loadBalancerClass="example.com/other"))
    await drain(ctl)
    assert ingress(api, "ns/a") == [{"ip": "198.51.100.1", "ipMode": "VIP"}]
    assert ingress(api, "ns/b") == [{"ip": "198.51.100.2", "ipMode": "VIP"}]
    assert ingress(api, "ns/c") == [] and ingress(api, "ns/other") == []
    events = api.items("events")
    assert any(e["reason"] == "AllocationFailed" and e["involvedObject"]["name"] == "c" for e in events)
    # a stops being a LoadBalancer: its status is cleared and c, pending, gets its address
    await api.resource("", "v1", "services").patch("a", {"spec": {"type": "ClusterIP"}}, "ns")
    await drain(ctl)
    assert ingress(api, "ns/a") == []
    assert ingress(api, "ns/c") == [{"ip": "198.51.100.1", "ipMode": "VIP"}]
    await api.remove("services", "ns/b")  # deleting b frees .2
    await drain(ctl)
    add(api, ctl, lb("d", loadBalancerIP="198.51.100.2"))
    await drain(ctl)
    assert ingress(api, "ns/d") == [{"ip": "198.51.100.2", "ipMode": "VIP"}]


async def test_pool_mode_restart_keeps_what_statuses_show() -> None:
    api, ctl = make(["198.51.100.0/29"])
    held = lb("held")
    held["status"] = {"loadBalancer": {"ingress": [{"ip": "198.51.100.1", "ipMode": "VIP"}]}}
    add(api, ctl, held)
    add(api, ctl, lb("new"))
    await drain(ctl)
    assert ingress(api, "ns/held") == [{"ip": "198.51.100.1", "ipMode": "VIP"}]
    assert ingress(api, "ns/new") == [{"ip": "198.51.100.2", "ipMode": "VIP"}]


async def test_node_mode_tracks_nodes_port_clashes_and_local_policy() -> None:
    api, ctl = make()
    for n in (node("master", "172.31.9.10", taints=[CP_TAINT]), node("w1", "172.31.9.11"), node("w2", "172.31.9.12")):
        stored = api.put("nodes", n)
        ctl._node_changed(None, stored)
    add(api, ctl, lb("web"))
    add(api, ctl, lb("late", created="2026-01-01T12:00:05Z"))  # same port 80, younger: pending
    add(api, ctl, lb("local", 8080, externalTrafficPolicy="Local"))
    api.put("endpointslices", {"metadata": {"name": "local-x", "namespace": "ns",
                                            "labels": {"kubernetes.io/service-name": "local"}},
                               "endpoints": [{"addresses": ["10.42.1.5"], "nodeName": "w1",
                                              "conditions": {"ready": True}, "targetRef": {"kind": "Pod"}},
                                             {"addresses": ["10.42.2.5"], "nodeName": "w2",
                                              "conditions": {"ready": False}, "targetRef": {"kind": "Pod"}}]})
    await drain(ctl)
    ips = [i["ip"] for i in ingress(api, "ns/web")]
    assert ips == ["172.31.9.10", "172.31.9.11", "172.31.9.12"]
    assert ingress(api, "ns/late") == []
    assert [i["ip"] for i in ingress(api, "ns/local")] == ["172.31.9.11"]
    assert any(e["reason"] == "UnAvailableLoadBalancer" and "already used by LoadBalancer ns/web" in e["message"]
               for e in api.items("events"))
    # a worker goes NotReady: it leaves every LoadBalancer
    old = api.get("nodes", "w2")
    api.put("nodes", node("w2", "172.31.9.12", ready=False))
    ctl._node_changed(old, api.get("nodes", "w2"))
    await drain(ctl)
    assert [i["ip"] for i in ingress(api, "ns/web")] == ["172.31.9.10", "172.31.9.11"]
    # the older Service goes: the younger one takes the port
    await api.remove("services", "ns/web")
    await drain(ctl)
    assert [i["ip"] for i in ingress(api, "ns/late")] == ["172.31.9.10", "172.31.9.11"]
