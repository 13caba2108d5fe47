"""Pod garbage collector: delete the pods no kubelet will ever finish (kube's pkg/controller/podgc).

A pod deleted gracefully waits for its node's kubelet to confirm; when that node is gone for
good, nobody will. Every 20 s (and soon after a node is deleted or tainted) one pass:
- orphaned: pods bound to a node that no longer exists, after a 40 s quarantine and a direct GET
  of the node (the cache may lag), get phase Failed with a DisruptionTarget condition (reason
  DeletionByPodGC, "PodGC: node no longer exists") and are deleted with grace 0;
- out of service: terminating pods on a NotReady node an operator tainted
  `node.kubernetes.io/out-of-service` (non-graceful node shutdown) are marked Failed and
  force-deleted, so their controllers' replacements, and volumes, are free to move;
- unscheduled terminating pods (no node to wait for) are force-deleted;
- terminated pods (Succeeded/Failed) beyond `terminated_threshold` go, oldest first.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from datetime import datetime
from typing import Any

from pocketkube.api import errors, meta
from pocketkube.api.disruption import disruption_target, replace_condition
from pocketkube.client.informer import Informer
from pocketkube.client.rest import APIClient
from pocketkube.controllers.base import Controller

log = logging.getLogger(__name__)
Obj = dict[str, Any]

OUT_OF_SERVICE = "node.kubernetes.io/out-of-service"
GC_KEY = "gc"


def _ready(node: Obj) -> bool:
    return any(c.get("type") == "Ready" and c.get("status") == "True"
               for c in (node.get("status") or {}).get("conditions") or [])


def out_of_service(node: Obj) -> bool:
    """NotReady and tainted out-of-service, whatever the effect (kube's gcTerminating test)."""
    taints = (node.get("spec") or {}).get("taints") or []
    return not _ready(node) and any(t.get("key") == OUT_OF_SERVICE for t in taints)


class PodGCController(Controller):
    name = "pod-garbage-collector"
    workers = 1

    def __init__(self, client: APIClient, *, terminated_threshold: int = 12500, quarantine_seconds: float = 40.0,
                 period_seconds: float = 20.0, now: Callable[[], datetime] = meta.now) -> None:
        super().__init__()
        self.client = client
        self.pods_client = client.core("pods")
        self.nodes_client = client.core("nodes")
        self.pods = Informer(self.pods_client)
        self.nodes = Informer(self.nodes_client)
        self.informers = [self.pods, self.nodes]
        self.nodes.add_handler(self._node_changed)
        self.pods.add_handler(self._pod_changed)
        self.threshold = terminated_threshold
        self.quarantine = quarantine_seconds
        self.period = period_seconds
        self.now = now
        self.missing_since: dict[str, datetime] = {}  # node name -> when first seen missing

    def _node_changed(self, old: Obj | None, new: Obj | None) -> None:
        if new is None:
            self.queue.add_after(GC_KEY, self.quarantine)
        elif out_of_service(new):
            self.queue.add(GC_KEY)

    def _pod_changed(self, old: Obj | None, new: Obj | None) -> None:
        if new is not None and new["metadata"].get("deletionTimestamp") and not (new.get("spec") or {}).get("nodeName"):
            self.queue.add(GC_KEY)

    async def sync(self, key: str) -> None:
        pods = self.pods.list()
        await self.gc_terminated(pods)
        await self.gc_orphaned(pods)
        await self.gc_terminating(pods)

    async def gc_terminated(self, pods: list[Obj]) -> None:
        if self.threshold <= 0:
            return
        done = [p for p in pods if (p.get("status") or {}).get("phase") in ("Succeeded", "Failed")
                and not p["metadata"].get("deletionTimestamp")]
        excess = len(done) - self.threshold
        if excess <= 0:
            return
        done.sort(key=lambda p: str(p["metadata"].get("creationTimestamp") or ""))
        for pod in done[:excess]:
            await self._delete(pod)

    async def gc_orphaned(self, pods: list[Obj]) -> None:
        now = self.now()
        existing = {n["metadata"]["name"] for n in self.nodes.list()}
        wanted = {str((p.get("spec") or {}).get("nodeName")) for p in pods if (p.get("spec") or {}).get("nodeName")}
        missing = wanted - existing
        for name in list(self.missing_since):
            if name not in missing:
                del self.missing_since[name]
        gone: set[str] = set()
        for name in missing:
            since = self.missing_since.setdefault(name, now)
            waited = (now - since).total_seconds()
            if waited < self.quarantine:
                self.queue.add_after(GC_KEY, self.quarantine - waited)
                continue
            try:
                await self.nodes_client.get(name)  # the cache may lag behind a re-created node
            except errors.NotFound:
                gone.add(name)
        for pod in pods:
            if (pod.get("spec") or {}).get("nodeName") in gone:
                await self._fail_and_delete(pod, disruption_target("DeletionByPodGC", "PodGC: node no longer exists"))

    async def gc_terminating(self, pods: list[Obj]) -> None:
        nodes = {n["metadata"]["name"]: n for n in self.nodes.list()}
        for pod in pods:
            if not pod["metadata"].get("deletionTimestamp"):
                continue
            node_name = (pod.get("spec") or {}).get("nodeName")
            if not node_name:
                await self._fail_and_delete(pod, None)
                continue
            if (pod.get("status") or {}).get("phase") in ("Succeeded", "Failed"):
                continue  # terminated, not terminating: its kubelet's business
            node = nodes.get(node_name)
            if node is not None and out_of_service(node):
                await self._fail_and_delete(pod, None)

    async def _fail_and_delete(self, pod: Obj, condition: Obj | None) -> None:
        """Phase Failed first (no kubelet will set it), then delete with grace 0."""
        md = pod["metadata"]
        status = pod.get("status") or {}
        if status.get("phase") not in ("Succeeded", "Failed"):
            patch: Obj = {"phase": "Failed"}
            if condition is not None:
                patch["conditions"] = replace_condition(status.get("conditions"), condition)
            try:
                await self.pods_client.patch(md["name"], {"status": patch}, md["namespace"], subresource="status",
                                             field_manager="pod-garbage-collector")
            except errors.NotFound:
                return
        log.info("PodGC is force deleting Pod %s/%s", md["namespace"], md["name"])
        await self._delete(pod)

    async def _delete(self, pod: Obj) -> None:
        md = pod["metadata"]
        try:
            await self.pods_client.delete(md["name"], md["namespace"], grace_period_seconds=0, uid=md.get("uid"))
        except (errors.NotFound, errors.Conflict):
            pass

    async def run(self) -> None:
        async def periodic() -> None:
            await asyncio.gather(*(inf.synced.wait() for inf in self.informers))
            while True:
                self.queue.add(GC_KEY)
                await asyncio.sleep(self.period)

        async with asyncio.TaskGroup() as tg:
            tg.create_task(super().run(), name="pod-gc")
            tg.create_task(periodic(), name="pod-gc-period")
