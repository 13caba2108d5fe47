"""The controller manager: runs every control loop against one API server until cancelled."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass

from pocketkube.client.rest import APIClient, ClientConfig, wait_until_ready
from pocketkube.controllers.base import Controller
from pocketkube.controllers.cronjob import CronJobController
from pocketkube.controllers.daemonset import DaemonSetController
from pocketkube.controllers.deployment import DeploymentController
from pocketkube.controllers.endpoints import EndpointsController
from pocketkube.controllers.endpointslice import EndpointSliceController
from pocketkube.controllers.endpointslice_mirroring import EndpointSliceMirroringController
from pocketkube.controllers.garbage_collector import GarbageCollector
from pocketkube.controllers.job import JobController
from pocketkube.controllers.namespace import NamespaceController
from pocketkube.controllers.node_ipam import NodeIPAMController
from pocketkube.controllers.node_lifecycle import NodeLifecycleController
from pocketkube.controllers.replicaset import ReplicaSetController
from pocketkube.controllers.resourcequota import ResourceQuotaController
from pocketkube.controllers.serviceaccount import ServiceAccountController
from pocketkube.controllers.statefulset import StatefulSetController
from pocketkube.controllers.ttl_after_finished import TTLAfterFinishedController


@dataclass
class ControllerManagerConfig:
    kubeconfig: str
    node_monitor_grace_period: float = 40.0
    cluster_cidr: str = "10.42.0.0/16"

    def validate(self) -> None:
        if not self.kubeconfig:
            raise ValueError("--kubeconfig is required")


def build_controllers(client: APIClient, config: ControllerManagerConfig) -> list[Controller]:
    return [NamespaceController(client), NodeIPAMController(client, cluster_cidr=config.cluster_cidr), ServiceAccountController(client),
            ReplicaSetController(client), DeploymentController(client), GarbageCollector(client),
            NodeLifecycleController(client, grace_seconds=config.node_monitor_grace_period),
            ResourceQuotaController(client), EndpointSliceController(client), EndpointsController(client),
            EndpointSliceMirroringController(client),
            DaemonSetController(client), StatefulSetController(client), JobController(client),
            CronJobController(client), TTLAfterFinishedController(client)]


async def run(config: ControllerManagerConfig) -> None:
    config.validate()
    client = APIClient(ClientConfig.from_kubeconfig(config.kubeconfig, user_agent="pocketkube-controller-manager"))
    try:
        await wait_until_ready(client)
        controllers = build_controllers(client, config)
        async with asyncio.TaskGroup() as tg:
            for c in controllers:
                tg.create_task(c.run(), name=f"controller-{c.name}")
    finally:
        await client.close()
