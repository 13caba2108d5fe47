"""Register this node and keep its status true: addresses, capacity, conditions, node info.

Like the kubelet's node status manager: create the Node (or adopt an existing one), then every
`status_interval` (or when something changes) PATCH its status with fresh heartbeats. Liveness
itself is the Lease (lease.py); status updates can be rarer.
"""

from __future__ import annotations

import asyncio
import copy
import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from pocketkube.api import errors, meta
from pocketkube.client.rest import APIClient
from pocketkube.kubelet.node_info import NodeFacts

log = logging.getLogger(__name__)
Obj = dict[str, Any]

CONTROL_PLANE_ROLE = "node-role.kubernetes.io/control-plane"
CONTROL_PLANE_TAINT = {"key": CONTROL_PLANE_ROLE, "effect": "NoSchedule"}


@dataclass
class NodeConfig:
    name: str
    internal_ip: str
    facts: NodeFacts = field(default_factory=NodeFacts)
    labels: dict[str, str] = field(default_factory=dict)
    taints: list[Obj] = field(default_factory=list)
    control_plane: bool = False
    runtime_version: str = "runc://unknown"
    kubelet_port: int = 10250
    status_interval: float = 10.0


def _condition(ctype: str, status: str, reason: str, message: str, now: str) -> Obj:
    return {"type": ctype, "status": status, "lastHeartbeatTime": now, "lastTransitionTime": now,
            "reason": reason, "message": message}


class NodeStatus:
    def __init__(self, client: APIClient, config: NodeConfig, *,
                 ready_check: Callable[[], tuple[bool, str]] | None = None) -> None:
        self.client = client
        self.config = config
        self.nodes = client.core("nodes")
        self.ready_check = ready_check or (lambda: (True, "kubelet is posting ready status"))
        self.node: Obj | None = None

    def desired_labels(self) -> dict[str, str]:
        c = self.config
        labels = {
            "kubernetes.io/hostname": c.name,
            "kubernetes.io/os": "linux",
            "kubernetes.io/arch": c.facts.node_info(c.runtime_version)["architecture"],
            "beta.kubernetes.io/os": "linux",
            "beta.kubernetes.io/arch": c.facts.node_info(c.runtime_version)["architecture"],
        }
        if c.control_plane:
            labels[CONTROL_PLANE_ROLE] = ""
        labels.update(c.labels)
        return labels

    def status(self, previous: Obj | None) -> Obj:
        c = self.config
        now = meta.now_rfc3339()
        ready, message = self.ready_check()
        conds = [
            _condition("MemoryPressure", "False", "KubeletHasSufficientMemory", "kubelet has sufficient memory available", now),
            _condition("DiskPressure", "False", "KubeletHasNoDiskPressure", "kubelet has no disk pressure", now),
            _condition("PIDPressure", "False", "KubeletHasSufficientPID", "kubelet has sufficient PID available", now),
            _condition("Ready", "True" if ready else "False", "KubeletReady" if ready else "KubeletNotReady", message, now),
        ]
        old = {x.get("type"): x for x in ((previous or {}).get("conditions") or [])}
        for cond in conds:
            prev = old.get(cond["type"])
            if prev is not None and prev.get("status") == cond["status"]:
                cond["lastTransitionTime"] = prev.get("lastTransitionTime", now)
        cap = c.facts.capacity()
        return {
            "addresses": [{"type": "InternalIP", "address": c.internal_ip}, {"type": "Hostname", "address": c.name}],
            "capacity": cap,
            "allocatable": dict(cap),
            "conditions": conds,
            "daemonEndpoints": {"kubeletEndpoint": {"Port": c.kubelet_port}},
            "nodeInfo": c.facts.node_info(c.runtime_version),
        }

    async def register(self) -> Obj:
        c = self.config
        body = {"apiVersion": "v1", "kind": "Node",
                "metadata": {"name": c.name, "labels": self.desired_labels()},
                "spec": {"taints": copy.deepcopy(c.taints)} if c.taints else {}}
        try:
            node = await self.nodes.create(body, field_manager="pocketkube-kubelet")
        except errors.AlreadyExists:
            node = await self.nodes.get(c.name)
            labels = {**(node["metadata"].get("labels") or {}), **self.desired_labels()}
            node = await self.nodes.patch(c.name, {"metadata": {"labels": labels}},
                                          field_manager="pocketkube-kubelet")
            if c.taints:
                have = node.get("spec", {}).get("taints") or []
                missing = [t for t in c.taints if not any(t.get("key") == h.get("key") and
                                                           t.get("effect") == h.get("effect") for h in have)]
                if missing:
                    node = await self.nodes.patch(c.name, {"spec": {"taints": have + missing}},
                                                  field_manager="pocketkube-kubelet")
        self.node = await self.update_status(node)
        return self.node

    async def update_status(self, node: Obj | None = None) -> Obj:
        node = node or self.node or await self.nodes.get(self.config.name)
        status = self.status(node.get("status"))
        updated = await self.nodes.patch(self.config.name, {"status": status}, subresource="status",
                                         field_manager="pocketkube-kubelet")
        self.node = updated
        return updated

    async def run(self) -> None:
        while True:
            await asyncio.sleep(self.config.status_interval)
            try:
                await self.update_status()
            except errors.NotFound:
                log.warning("node %s was deleted; registering again", self.config.name)
                await self.register()
            except Exception as e:
                log.warning("node status update failed: %s", e)
