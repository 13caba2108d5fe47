"""Entry point: `run(SchedulerConfig(...))` wires informers, cache, queue, profile and binder.

Everything goes through the API (nodes, pods and namespaces are watched; bindings, events and pod
conditions are written), so the scheduler runs in-process with the server or as its own process.
"""

from __future__ import annotations

import asyncio
import logging
import random
from dataclasses import dataclass, field

from pocketkube.client.informer import Informer
from pocketkube.client.rest import APIClient, ClientConfig
from pocketkube.scheduler.cache import SchedulerCache
from pocketkube.scheduler.events import EventRecorder, now_rfc3339
from pocketkube.scheduler.framework.registry import DEFAULT_SCHEDULER_NAME, Profile, new_framework
from pocketkube.scheduler.queue import SchedulingQueue
from pocketkube.scheduler.scheduler import Scheduler
from pocketkube.scheduler.types import PodInfo
from pocketkube.util.gc_tuning import tune_gc

log = logging.getLogger(__name__)


@dataclass
class SchedulerConfig:
    kubeconfig: str = ""
    scheduler_name: str = DEFAULT_SCHEDULER_NAME
    client_config: ClientConfig | None = None  # instead of a kubeconfig path (in-process use, tests)
    bind_concurrency: int = 16
    percentage_of_nodes_to_score: int = 0  # 0: kube's adaptive default
    profile: Profile | None = field(default=None)

    def validate(self) -> None:
        if not self.kubeconfig and self.client_config is None:
            raise ValueError("scheduler: a kubeconfig is required")
        if not self.scheduler_name:
            raise ValueError("scheduler: scheduler_name must not be empty")
        if self.bind_concurrency < 1:
            raise ValueError("scheduler: bind_concurrency must be at least 1")
        if not 0 <= self.percentage_of_nodes_to_score <= 100:
            raise ValueError("scheduler: percentage_of_nodes_to_score must be within 0..100")


def build(config: SchedulerConfig, client: APIClient) -> tuple[Scheduler, list[Informer]]:
    """The scheduler and its informers, not started (tests and the bench drive them directly)."""
    profile = config.profile or Profile(scheduler_name=config.scheduler_name,
                                        percentage_of_nodes_to_score=config.percentage_of_nodes_to_score)
    cache = SchedulerCache()
    framework = new_framework(profile, cache, rng=random.Random())
    queue = SchedulingQueue(events=framework.events)
    pods = client.core("pods")

    async def bind(pod: PodInfo, node_name: str) -> object:
        body = {"apiVersion": "v1", "kind": "Binding", "metadata": {"name": pod.name, "uid": pod.uid},
                "target": {"apiVersion": "v1", "kind": "Node", "name": node_name}}
        return await pods.create_subresource(pod.name, "binding", body, pod.namespace)

    async def set_condition(pod: PodInfo, message: str) -> object:
        cond = {"type": "PodScheduled", "status": "False", "reason": "Unschedulable", "message": message,
                "lastProbeTime": None, "lastTransitionTime": now_rfc3339()}
        return await pods.patch(pod.name, {"status": {"conditions": [cond]}}, pod.namespace,
                                patch_type="strategic", subresource="status")

    recorder = EventRecorder(client.core("events"), component=profile.scheduler_name)
    sched = Scheduler(framework=framework, cache=cache, queue=queue, binder=bind, recorder=recorder,
                      status_updater=set_condition, bind_concurrency=config.bind_concurrency)
    nodes_inf = Informer(client.core("nodes"))
    nodes_inf.add_handler(sched.on_node)
    ns_inf = Informer(client.core("namespaces"))
    ns_inf.add_handler(sched.on_namespace)
    pods_inf = Informer(pods)
    pods_inf.add_handler(sched.on_pod)
    return sched, [nodes_inf, ns_inf, pods_inf]


async def run(config: SchedulerConfig) -> None:
    """Run the scheduler until cancelled."""
    config.validate()
    tune_gc()  # the informers hold every pod and node: keep full collections out of the cycles
    client_config = config.client_config or ClientConfig.from_kubeconfig(
        config.kubeconfig, user_agent=f"pocketkube-scheduler/{config.scheduler_name}")
    client = APIClient(client_config)
    try:
        sched, informers = build(config, client)
        async with asyncio.TaskGroup() as tg:
            # nodes and namespaces first, so the first pods are not judged against an empty cluster
            for inf in informers[:2]:
                inf.start(tg)
            await asyncio.gather(*(inf.synced.wait() for inf in informers[:2]))
            informers[2].start(tg)
            await informers[2].synced.wait()
            log.info("scheduler %s: caches synced, %d nodes", config.scheduler_name, len(sched.cache.node_list()))
            assert sched.recorder is not None
            tg.create_task(sched.recorder.run(), name="scheduler-events")
            tg.create_task(sched.run(), name="scheduler-loop")
    finally:
        await client.close()  # returns once every socket is closed (client/connections.py)
