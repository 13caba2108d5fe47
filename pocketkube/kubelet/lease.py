"""The node's heartbeat: a Lease in kube-node-lease renewed every 10 s (kubelet's nodelease).

The node lifecycle controller reads renewTime: no renewal for 40 s and the node turns NotReady.
"""

from __future__ import annotations

import asyncio
import logging
from datetime import UTC, datetime
from typing import Any

from pocketkube.api import errors, meta
from pocketkube.client.rest import APIClient

log = logging.getLogger(__name__)
NODE_LEASE_NAMESPACE = "kube-node-lease"


class NodeLease:
    def __init__(self, client: APIClient, node_name: str, *, duration: int = 40, interval: float = 10.0) -> None:
        self.leases = client.resource("coordination.k8s.io", "v1", "leases")
        self.node_name = node_name
        self.duration = duration
        self.interval = interval
        self.owner_uid: str | None = None

    def _body(self) -> dict[str, Any]:
        body: dict[str, Any] = {
            "apiVersion": "coordination.k8s.io/v1", "kind": "Lease",
            "metadata": {"name": self.node_name, "namespace": NODE_LEASE_NAMESPACE},
            "spec": {"holderIdentity": self.node_name, "leaseDurationSeconds": self.duration,
                     "renewTime": meta.format_micro_time(datetime.now(UTC))},
        }
        if self.owner_uid:
            body["metadata"]["ownerReferences"] = [{"apiVersion": "v1", "kind": "Node", "name": self.node_name,
                                                    "uid": self.owner_uid}]
        return body

    async def renew(self) -> None:
        try:
            await self.leases.patch(self.node_name, {"spec": self._body()["spec"]}, NODE_LEASE_NAMESPACE,
                                    field_manager="pocketkube-kubelet")
        except errors.NotFound:
            await self.leases.create(self._body(), NODE_LEASE_NAMESPACE, field_manager="pocketkube-kubelet")

    async def run(self) -> None:
        while True:
            try:
                await self.renew()
            except Exception as e:
                log.warning("lease renewal failed: %s", e)
            await asyncio.sleep(self.interval)
