"""Node IPAM: give every node a /24 pod subnet (spec.podCIDR) from the cluster CIDR.

kube-controller-manager's range allocator does the same: subnets already on nodes are marked
used at start (so restarts never hand one out twice), new nodes get the lowest free one, and a
deleted node's subnet is free again. The kubelet waits for its podCIDR before running pods.
"""

from __future__ import annotations

import ipaddress
from typing import Any

from pocketkube.api import errors
from pocketkube.client.informer import Informer
from pocketkube.client.rest import APIClient
from pocketkube.controllers.base import Controller

Obj = dict[str, Any]


class NodeIPAMController(Controller):
    name = "node-ipam"
    workers = 1  # allocation must be serial

    def __init__(self, client: APIClient, *, cluster_cidr: str = "10.42.0.0/16", mask: int = 24) -> None:
        super().__init__()
        self.client = client
        self.cluster = ipaddress.ip_network(cluster_cidr)
        self.mask = mask
        self.nodes = Informer(client.core("nodes"))
        self.nodes.add_handler(self.enqueue_handler)
        self.informers = [self.nodes]
        self._assigned: dict[str, str] = {}  # node name -> subnet, incl. ones being written

    def _used(self) -> set[str]:
        used = {str((n.get("spec") or {}).get("podCIDR")) for n in self.nodes.list() if (n.get("spec") or {}).get("podCIDR")}
        live = {n["metadata"]["name"] for n in self.nodes.list()}
        self._assigned = {k: v for k, v in self._assigned.items() if k in live}
        return used | set(self._assigned.values())

    def next_free(self) -> str:
        used = self._used()
        for subnet in self.cluster.subnets(new_prefix=self.mask):
            if str(subnet) not in used:
                return str(subnet)
        raise errors.ServiceUnavailable(f"no free /{self.mask} left in {self.cluster}")

    async def sync(self, key: str) -> None:
        node = self.nodes.get(key)
        if node is None or node.get("metadata", {}).get("deletionTimestamp"):
            return
        spec = node.get("spec") or {}
        if spec.get("podCIDR"):
            self._assigned[key] = spec["podCIDR"]
            return
        subnet = self._assigned.get(key) or self.next_free()
        self._assigned[key] = subnet
        await self.client.core("nodes").patch(key, {"spec": {"podCIDR": subnet, "podCIDRs": [subnet]}},
                                               field_manager="node-ipam-controller")
