"""A fleet of hollow nodes: register N Nodes, renew their Leases, drive the pods bound to them.

Leases are renewed from one delay queue by a few workers; pods come from one informer on pods
bound to any node, filtered to the fleet's names; status writes go through the same API as a real
kubelet's, so the control plane cannot tell the difference.
"""

from __future__ import annotations

import asyncio
import ipaddress
import logging
from dataclasses import dataclass, field
from typing import Any

from pocketkube.api import errors, meta
from pocketkube.client.informer import Informer, object_key
from pocketkube.client.rest import APIClient
from pocketkube.hollow.delay_queue import DelayQueue, drain
from pocketkube.hollow.stages import next_stage
from pocketkube.kubelet.lease import NodeLease
from pocketkube.kubelet.node_info import NodeFacts
from pocketkube.kubelet.node_status import NodeConfig, NodeStatus

log = logging.getLogger(__name__)
Obj = dict[str, Any]


@dataclass
class FleetConfig:
    count: int
    name_prefix: str = "hollow-"
    cpus: int = 32
    memory_gib: int = 256
    max_pods: int = 110
    lease_interval: float = 10.0
    workers: int = 8
    # False: bound pods stay as the scheduler left them (no status PATCH), like scheduler_perf's nodes,
    # which are bare Node objects with no kubelet; benchmarks use it to separate the two costs
    drive_pods: bool = True
    labels: dict[str, str] = field(default_factory=lambda: {"pocketkube.io/hollow": "true"})

    def validate(self) -> None:
        if self.count < 1:
            raise ValueError("--count must be at least 1")


class Fleet:
    def __init__(self, client: APIClient, config: FleetConfig) -> None:
        config.validate()
        self.client = client
        self.config = config
        self.names = [f"{config.name_prefix}{i}" for i in range(config.count)]
        self._names = set(self.names)
        self.leases = DelayQueue[str]()
        self.pod_work = DelayQueue[tuple[str, str]]()  # (pod key, stage name)
        self.pods = Informer(client.core("pods"), field_selector="spec.nodeName!=")
        self.pods.add_handler(self._pod_changed)
        self.pod_client = client.core("pods")
        self._ips: dict[str, str] = {}
        self._next_ip: dict[str, int] = {}
        self.renewals = 0

    def _facts(self) -> NodeFacts:
        c = self.config
        return NodeFacts(hostname="", cpus=c.cpus, memory=c.memory_gib << 30, max_pods=c.max_pods)

    async def register_all(self, concurrency: int = 32) -> None:
        sem = asyncio.Semaphore(concurrency)

        async def one(name: str) -> None:
            async with sem:
                facts = self._facts()
                facts.hostname = name
                cfg = NodeConfig(name=name, internal_ip="127.0.0.1", facts=facts, labels=dict(self.config.labels),
                                 runtime_version="hollow://0.1")
                await NodeStatus(self.client, cfg).register()

        await asyncio.gather(*(one(n) for n in self.names))

    async def _renew(self, name: str) -> None:
        lease = NodeLease(self.client, name)
        try:
            await lease.renew()
            self.renewals += 1
        except Exception as e:
            log.debug("hollow lease %s: %s", name, e)
        self.leases.put(name, self.config.lease_interval)

    def _pod_changed(self, old: Obj | None, new: Obj | None) -> None:
        if new is None:
            return
        if (new.get("spec") or {}).get("nodeName") not in self._names:
            return
        stage = next_stage(new)
        if stage is not None:
            self.pod_work.put((object_key(new), stage.name), stage.delay(new))

    def _pod_ip(self, node: str, key: str) -> str:
        if key in self._ips:
            return self._ips[key]
        idx = self.names.index(node) if node in self._names else 0
        base = ipaddress.ip_address("10.200.0.0") + (idx % 65536) * 256
        n = self._next_ip.get(node, 2)
        self._next_ip[node] = n + 1 if n < 254 else 2
        ip = str(base + n)
        self._ips[key] = ip
        return ip

    async def _advance(self, item: tuple[str, str]) -> None:
        key, stage_name = item
        pod = self.pods.get(key)
        if pod is None:
            self._ips.pop(key, None)
            return
        stage = next_stage(pod)
        if stage is None or stage.name != stage_name:
            return
        ns, _, name = key.partition("/")
        try:
            if stage.next_phase == "Deleted":
                await self.pod_client.delete(name, ns, grace_period_seconds=0, uid=pod["metadata"].get("uid"))
                self._ips.pop(key, None)
                return
            await self.pod_client.patch(name, {"status": self._status(pod, stage.next_phase)}, ns,
                                        subresource="status", field_manager="hollow-kubelet")
        except (errors.NotFound, errors.Conflict):
            pass
        except Exception as e:
            log.debug("hollow pod %s: %s", key, e)

    def _status(self, pod: Obj, phase: str) -> Obj:
        now = meta.now_rfc3339()
        node = (pod.get("spec") or {}).get("nodeName", "")
        running = phase == "Running"
        ip = self._pod_ip(node, object_key(pod))
        containers = (pod.get("spec") or {}).get("containers") or []
        if running:
            state: Obj = {"running": {"startedAt": now}}
        else:
            code = 0 if phase == "Succeeded" else 1
            state = {"terminated": {"exitCode": code, "reason": "Completed" if code == 0 else "Error",
                                    "startedAt": now, "finishedAt": now}}
        cond = "True" if running else "False"
        return {
            "phase": phase, "hostIP": "127.0.0.1", "podIP": ip, "podIPs": [{"ip": ip}], "startTime": now,
            "conditions": [
                {"type": "PodScheduled", "status": "True", "lastTransitionTime": now},
                {"type": "Initialized", "status": "True", "lastTransitionTime": now},
                {"type": "ContainersReady", "status": cond, "lastTransitionTime": now},
                {"type": "Ready", "status": cond, "lastTransitionTime": now},
            ],
            "containerStatuses": [{"name": c.get("name"), "image": c.get("image"), "imageID": "",
                                   "containerID": f"hollow://{c.get('name')}", "ready": running,
                                   "started": running, "restartCount": 0, "state": state}
                                  for c in containers],
        }

    async def run(self) -> None:
        await self.register_all()
        loop_spread = self.config.lease_interval / max(len(self.names), 1)
        for i, name in enumerate(self.names):
            self.leases.put(name, i * loop_spread)
        async with asyncio.TaskGroup() as tg:
            tg.create_task(drain(self.leases, self._renew, self.config.workers), name="hollow-leases")
            if self.config.drive_pods:
                self.pods.start(tg)
                tg.create_task(drain(self.pod_work, self._advance, self.config.workers), name="hollow-pods")
