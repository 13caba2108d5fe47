"""node_routes: which routes a node wants (every other node's podCIDR via its InternalIP)."""

from __future__ import annotations

from typing import Any

from pocketkube.cluster import network
from pocketkube.kubelet.node_routes import desired_routes


def _node(name: str, cidr: str | None, ip: str | None) -> dict[str, Any]:
    return {"metadata": {"name": name}, "spec": {"podCIDR": cidr} if cidr else {},
            "status": {"addresses": [{"type": "Hostname", "address": name},
                                     *([{"type": "InternalIP", "address": ip}] if ip else [])]}}


def test_other_nodes_pod_cidrs_via_their_internal_ip() -> None:
    nodes = [_node("a", "10.42.0.0/24", "172.31.9.10"), _node("b", "10.42.1.0/24", "172.31.9.11"),
             _node("c", "10.42.2.0/24", "172.31.9.12")]
    assert desired_routes(nodes, "a") == {"10.42.1.0/24": "172.31.9.11", "10.42.2.0/24": "172.31.9.12"}


def test_nodes_without_cidr_or_address_or_ipv4_are_skipped() -> None:
    nodes = [_node("a", "10.42.0.0/24", "172.31.9.10"), _node("b", None, "172.31.9.11"),
             _node("c", "10.42.2.0/24", None), _node("d", "fd00::/64", "fd00::1"), _node("e", "bogus", "1.2.3.4")]
    assert desired_routes(nodes, "a") == {}


def test_cluster_names_fit_interface_names() -> None:
    assert network.NAME_RE.match("abcdefghi") and not network.NAME_RE.match("abcdefghij")
    assert not network.NAME_RE.match("1abc") and not network.NAME_RE.match("a-b")
    longest = "abcdefghi"
    for link in (network.bridge_name(longest), network.veth_name(longest, 200)):
        assert len(link) <= 15
    assert network.netns_name("demo", 0) == "pkdemo-node0"
