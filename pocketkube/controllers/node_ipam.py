"""Node IPAM: give every node a /24 pod subnet (spec.podCIDR) from the cluster CIDR.

kube-controller-manager's range allocator does the same: subnets already on nodes are marked
used (so restarts never hand one out twice), a new node gets the next free one after a cursor,
and a deleted node's subnet is free again. The used set is kept from node events, so registering
N nodes costs O(N), not O(N²). The kubelet waits for its podCIDR before running pods.
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
        self.size = 1 << (mask - self.cluster.prefixlen) if mask >= self.cluster.prefixlen else 0
        self.nodes = Informer(client.core("nodes"))
        self.nodes.add_handler(self._changed)
        self.informers = [self.nodes]
        self._owner: dict[str, str] = {}  # subnet -> node name (on the node, or being written)
        self._cursor = 0

    def _changed(self, old: Obj | None, new: Obj | None) -> None:
        if new is None and old is not None:
            name = old["metadata"]["name"]
            for subnet in [s for s, n in self._owner.items() if n == name]:
                del self._owner[subnet]
            return
        assert new is not None
        cidr = (new.get("spec") or {}).get("podCIDR")
        if cidr:
            self._owner[str(cidr)] = new["metadata"]["name"]
        self.enqueue(new)

    def _subnet(self, index: int) -> str:
        base = int(self.cluster.network_address) + (index << (32 - self.mask))
        return f"{ipaddress.ip_address(base)}/{self.mask}"

    def next_free(self) -> str:
        for i in range(self.size):
            index = (self._cursor + i) % self.size
            subnet = self._subnet(index)
            if subnet not in self._owner:
                self._cursor = index + 1
                return subnet
        raise errors.ServiceUnavailable(f"no free /{self.mask} left in {self.cluster}")

    async def sync(self, key: str) -> None:
        node = self.nodes.get(key)
        if node is None or node.get("metadata", {}).get("deletionTimestamp"):
            return
        if (node.get("spec") or {}).get("podCIDR"):
            return
        mine = [s for s, n in self._owner.items() if n == key]
        subnet = mine[0] if mine else self.next_free()
        self._owner[subnet] = key
        await self.client.core("nodes").patch(key, {"spec": {"podCIDR": subnet, "podCIDRs": [subnet]}},
                                               field_manager="node-ipam-controller")
