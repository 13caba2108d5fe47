"""Node IPAM hands out each /24 once, in order, and reuses a deleted node's subnet."""

from __future__ import annotations

from pocketkube.client.rest import APIClient, ClientConfig
from pocketkube.controllers.node_ipam import NodeIPAMController


def node(name: str, cidr: str | None = None) -> dict[str, object]:
    return {"metadata": {"name": name}, "spec": {"podCIDR": cidr} if cidr else {}}


def test_allocation_order_and_reuse() -> None:
    c = NodeIPAMController(APIClient(ClientConfig(server="http://127.0.0.1:9")), cluster_cidr="10.42.0.0/22")
    c._changed(None, node("a", "10.42.0.0/24"))
    first = c.next_free()
    assert first == "10.42.1.0/24"
    c._owner[first] = "b"
    assert c.next_free() == "10.42.2.0/24"
    c._owner["10.42.2.0/24"] = "c"
    assert c.next_free() == "10.42.3.0/24"
    c._owner["10.42.3.0/24"] = "d"
    c._changed(node("a", "10.42.0.0/24"), None)  # node a deleted: its subnet is free again
    assert c.next_free() == "10.42.0.0/24"
