"""The controller manager: runs every control loop against one API server until cancelled."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field

from pocketkube.client.rest import APIClient, ClientConfig, wait_until_ready
from pocketkube.controllers.base import Controller
from pocketkube.controllers.cronjob import CronJobController
from pocketkube.controllers.daemonset import DaemonSetController
from pocketkube.controllers.deployment import DeploymentController
from pocketkube.controllers.disruption import DisruptionController
from pocketkube.controllers.endpoints import EndpointsController
from pocketkube.controllers.endpointslice import EndpointSliceController
from pocketkube.controllers.endpointslice_mirroring import EndpointSliceMirroringController
from pocketkube.controllers.garbage_collector import GarbageCollector
from pocketkube.controllers.job import JobController
from pocketkube.controllers.namespace import NamespaceController
from pocketkube.controllers.node_ipam import NodeIPAMController
from pocketkube.controllers.node_lifecycle import NodeLifecycleController
from pocketkube.controllers.pod_gc import PodGCController
from pocketkube.controllers.replicaset import ReplicaSetController
from pocketkube.controllers.resourcequota import ResourceQuotaController
from pocketkube.controllers.service_lb import ServiceLBController
from pocketkube.controllers.service_lb_pool import parse_pool
from pocketkube.controllers.serviceaccount import ServiceAccountController
from pocketkube.controllers.statefulset import StatefulSetController
from pocketkube.controllers.ttl_after_finished import TTLAfterFinishedController


@dataclass
class ControllerManagerConfig:
    kubeconfig: str
    node_monitor_grace_period: float = 40.0
    cluster_cidr: str = "10.42.0.0/16"
    service_lb_pool: list[str] = field(default_factory=list)  # empty: LoadBalancers get node IPs

    def validate(self) -> None:
        if not self.kubeconfig:
            raise ValueError("--kubeconfig is required")
        parse_pool(self.service_lb_pool)


def build_controllers(client: APIClient, config: ControllerManagerConfig, *,
                      workloads: APIClient | None = None) -> list[Controller]:
    """Every loop; `workloads` (default: `client`) serves the ServiceLB/DaemonSet/StatefulSet/Job/CronJob/TTL
    loops, whose watches would not fit in one client's connection pool next to the others'."""
    w = workloads or client
    return [NamespaceController(client), NodeIPAMController(client, cluster_cidr=config.cluster_cidr), ServiceAccountController(client),
            ReplicaSetController(client), DeploymentController(client), GarbageCollector(client),
            NodeLifecycleController(client, grace_seconds=config.node_monitor_grace_period), PodGCController(client),
            ResourceQuotaController(client), EndpointSliceController(client), EndpointsController(client),
            EndpointSliceMirroringController(client), ServiceLBController(w, pool=config.service_lb_pool),
            DaemonSetController(w), StatefulSetController(w), JobController(w), CronJobController(w),
            TTLAfterFinishedController(w), DisruptionController(w)]


async def run(config: ControllerManagerConfig) -> None:
    config.validate()
    client = APIClient(ClientConfig.from_kubeconfig(config.kubeconfig, user_agent="pocketkube-controller-manager"))
    # Every informer's watch holds one pooled connection for minutes and a client pools 64: past
    # that, lists and writes wait forever. The workload loops get a pool of their own.
    workloads = APIClient(ClientConfig.from_kubeconfig(config.kubeconfig,
                                                       user_agent="pocketkube-controller-manager"))
    try:
        await wait_until_ready(client)
        controllers = build_controllers(client, config, workloads=workloads)
        async with asyncio.TaskGroup() as tg:
            for c in controllers:
                tg.create_task(c.run(), name=f"controller-{c.name}")
    finally:
        try:
            await client.close()
        finally:  # even if the first close is interrupted
            await workloads.close()
