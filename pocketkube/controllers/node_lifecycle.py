"""Node lifecycle: notice dead nodes, taint them, and evict their pods after tolerationSeconds.

kubernetes pkg/controller/nodelifecycle in two parts:
- monitor: a node whose Lease was not renewed for the grace period (40 s) gets Ready=Unknown
  ("Kubelet stopped posting node status.") and the unreachable NoSchedule + NoExecute taints,
  and its pods get Ready=False (MarkPodsNotReady: nobody else will, and Services must stop
  sending them traffic); a node reporting Ready=False gets the not-ready taints; a healthy node
  loses them again.
- taint eviction: a pod on a node with a NoExecute taint it does not tolerate is deleted at once;
  if it tolerates it for tolerationSeconds, it is deleted that long after the taint appeared,
  with a DisruptionTarget condition first (reason DeletionByTaintManager). The delete is graceful,
  so on a dead node the pod stays Terminating until its kubelet returns; its controller ignores
  terminating pods and creates a replacement, which the scheduler puts on a healthy node.
"""

from __future__ import annotations

import asyncio
import copy
import logging
from datetime import UTC, datetime
from typing import Any

from pocketkube.api import errors, meta
from pocketkube.api.disruption import disruption_target, replace_condition
from pocketkube.client.events import EventRecorder
from pocketkube.client.informer import Informer, object_key
from pocketkube.client.rest import APIClient
from pocketkube.controllers.base import Controller

log = logging.getLogger(__name__)
Obj = dict[str, Any]

UNREACHABLE = "node.kubernetes.io/unreachable"
NOT_READY = "node.kubernetes.io/not-ready"


def _now() -> datetime:
    return datetime.now(UTC)


def tolerates(pod: Obj, taint: Obj) -> tuple[bool, float | None]:
    """(tolerated, seconds) — seconds None means forever."""
    best: float | None = None
    found = False
    for tol in (pod.get("spec") or {}).get("tolerations") or []:
        effect = tol.get("effect")
        if effect and effect != taint.get("effect"):
            continue
        op = tol.get("operator", "Equal")
        key = tol.get("key")
        if key and key != taint.get("key"):
            continue
        if not key and op != "Exists":
            continue
        if op == "Equal" and tol.get("value", "") != taint.get("value", ""):
            continue
        found = True
        seconds = tol.get("tolerationSeconds")
        if seconds is None:
            return True, None
        best = float(seconds) if best is None else min(best, float(seconds))
    return found, best


class NodeLifecycleController(Controller):
    name = "node-lifecycle"
    workers = 2

    def __init__(self, client: APIClient, *, grace_seconds: float = 40.0, monitor_seconds: float = 5.0) -> None:
        super().__init__()
        self.client = client
        self.grace = grace_seconds
        self.monitor_every = monitor_seconds
        self.nodes = Informer(client.core("nodes"))
        self.leases = Informer(client.resource("coordination.k8s.io", "v1", "leases"), namespace="kube-node-lease")
        self.pods = Informer(client.core("pods"), field_selector="spec.nodeName!=")
        self.nodes.add_handler(self._node_changed)
        self.pods.add_handler(self._pod_changed)
        self.pods_on: dict[str, set[str]] = {}  # node name -> keys of the pods bound to it
        self.informers = [self.nodes, self.leases, self.pods]
        self.recorder = EventRecorder(client, "node-controller")
        self.started = _now()

    # Queue keys: "node:<name>" for node checks, "pod:<ns>/<name>" for eviction checks.
    def _node_changed(self, old: Obj | None, new: Obj | None) -> None:
        node = new if new is not None else old
        assert node is not None
        name = node["metadata"]["name"]
        self.queue.add(f"node:{name}")
        if new is not None and (old is None or (old.get("spec") or {}).get("taints") != (new.get("spec") or {}).get("taints")):
            for key in self.pods_on.get(name, ()):
                self.queue.add(f"pod:{key}")

    def _pod_changed(self, old: Obj | None, new: Obj | None) -> None:
        if old is not None:
            key = object_key(old)
            keys = self.pods_on.get((old.get("spec") or {}).get("nodeName", ""))
            if keys is not None:
                keys.discard(key)
        if new is not None:
            key = object_key(new)
            self.pods_on.setdefault((new.get("spec") or {}).get("nodeName", ""), set()).add(key)
            self.queue.add(f"pod:{key}")

    def _last_heartbeat(self, node: Obj) -> datetime | None:
        name = node["metadata"]["name"]
        lease = self.leases.get(f"kube-node-lease/{name}")
        times = []
        if lease is not None:
            t = meta.parse_time(str((lease.get("spec") or {}).get("renewTime") or ""))
            if t:
                times.append(t)
        for c in (node.get("status") or {}).get("conditions") or []:
            if c.get("type") == "Ready":
                t = meta.parse_time(str(c.get("lastHeartbeatTime") or ""))
                if t:
                    times.append(t)
        return max(times) if times else None

    async def sync(self, key: str) -> None:
        kind, _, rest = key.partition(":")
        if kind == "node":
            await self._sync_node(rest)
        else:
            await self._sync_pod(rest)

    async def _sync_node(self, name: str) -> None:
        node = self.nodes.get(name)
        if node is None:
            return
        now = _now()
        beat = self._last_heartbeat(node) or meta.parse_time(str(node["metadata"].get("creationTimestamp"))) or now
        # After a controller restart, give nodes a full grace period before judging them.
        since = max(beat, self.started)
        conds = {c.get("type"): c for c in (node.get("status") or {}).get("conditions") or []}
        ready = (conds.get("Ready") or {}).get("status")
        stale = (now - since).total_seconds() > self.grace
        if stale and ready != "Unknown":
            await self._mark_unknown(node)
            await self.recorder.event(node, "Normal", "NodeNotReady", f"Node {name} status is now: NodeNotReady")
            return
        want: list[Obj] = []
        if stale or ready == "Unknown":
            want = [{"key": UNREACHABLE, "effect": "NoSchedule"}, {"key": UNREACHABLE, "effect": "NoExecute"}]
        elif ready == "False":
            want = [{"key": NOT_READY, "effect": "NoSchedule"}, {"key": NOT_READY, "effect": "NoExecute"}]
        await self._set_taints(node, want)
        if ready == "Unknown":
            await self._mark_pods_not_ready(name)
        if not stale:
            self.queue.add_after(f"node:{name}", max(self.grace - (now - since).total_seconds(), 0.5))

    async def _mark_unknown(self, node: Obj) -> None:
        now = meta.now_rfc3339()
        conds = []
        for c in copy.deepcopy((node.get("status") or {}).get("conditions") or []):
            if c.get("type") in ("Ready", "MemoryPressure", "DiskPressure", "PIDPressure") and c.get("status") != "Unknown":
                c.update({"status": "Unknown", "reason": "NodeStatusUnknown",
                          "message": "Kubelet stopped posting node status.", "lastTransitionTime": now})
            conds.append(c)
        try:
            await self.client.core("nodes").patch(node["metadata"]["name"], {"status": {"conditions": conds}},
                                                  subresource="status", field_manager="node-controller")
        except errors.NotFound:
            pass

    async def _mark_pods_not_ready(self, node_name: str) -> None:
        for key in list(self.pods_on.get(node_name, ())):
            pod = self.pods.get(key)
            if pod is None:
                continue
            conds = copy.deepcopy((pod.get("status") or {}).get("conditions") or [])
            ready = next((c for c in conds if c.get("type") == "Ready"), None)
            if ready is None or ready.get("status") == "False":
                continue
            ready.update({"status": "False", "lastTransitionTime": meta.now_rfc3339()})
            md = pod["metadata"]
            try:
                await self.client.core("pods").patch(md["name"], {"status": {"conditions": conds}}, md["namespace"],
                                                      subresource="status", field_manager="node-controller")
            except errors.NotFound:
                continue
            await self.recorder.event({"kind": "Pod", "apiVersion": "v1", **pod}, "Warning", "NodeNotReady",
                                      "Node is not ready")

    async def _set_taints(self, node: Obj, want: list[Obj]) -> None:
        managed = (UNREACHABLE, NOT_READY)
        have = list((node.get("spec") or {}).get("taints") or [])
        keep = [t for t in have if t.get("key") not in managed]
        current = [t for t in have if t.get("key") in managed]
        same = sorted((t["key"], t["effect"]) for t in current) == sorted((t["key"], t["effect"]) for t in want)
        if same:
            return
        now = meta.now_rfc3339()
        new = keep + [{**t, "timeAdded": now} if t["effect"] == "NoExecute" else dict(t) for t in want]
        try:
            await self.client.core("nodes").patch(node["metadata"]["name"], {"spec": {"taints": new or None}},
                                                  field_manager="node-controller")
        except errors.NotFound:
            pass

    async def _sync_pod(self, key: str) -> None:
        pod = self.pods.get(key)
        if pod is None or pod["metadata"].get("deletionTimestamp"):
            return
        node = self.nodes.get((pod.get("spec") or {}).get("nodeName", ""))
        if node is None:
            return
        taints = [t for t in (node.get("spec") or {}).get("taints") or [] if t.get("effect") == "NoExecute"]
        if not taints:
            return
        now = _now()
        evict_at: datetime | None = None
        for taint in taints:
            ok, seconds = tolerates(pod, taint)
            if not ok:
                evict_at = now
                break
            if seconds is None:
                continue
            added = meta.parse_time(str(taint.get("timeAdded") or "")) or now
            at = datetime.fromtimestamp(added.timestamp() + seconds, UTC)
            evict_at = at if evict_at is None else min(evict_at, at)
        if evict_at is None:
            return
        wait = (evict_at - now).total_seconds()
        if wait > 0:
            self.queue.add_after(f"pod:{key}", wait)
            return
        ns, _, name = key.partition("/")
        pod = {"kind": "Pod", "apiVersion": "v1", **pod}
        await self.recorder.event(pod, "Normal", "TaintManagerEviction", f"Marking for deletion Pod {key}")
        pods = self.client.core("pods")
        conds = replace_condition((pod.get("status") or {}).get("conditions"), disruption_target(
            "DeletionByTaintManager", "Taint manager: deleting due to NoExecute taint"))
        try:
            await pods.patch(name, {"status": {"conditions": conds}}, ns, subresource="status",
                             field_manager="node-controller")
            await pods.delete(name, ns, uid=pod["metadata"].get("uid"))
        except (errors.NotFound, errors.Conflict):
            pass

    async def run(self) -> None:
        # A backstop only: each node is re-queued at its own grace expiry by _sync_node, and a full
        # pass costs O(nodes) (1,000 syncs per pass at 1,000 nodes), so every 5 s as kube's
        # --node-monitor-period, not every second.
        async def monitor() -> None:
            await asyncio.gather(*(inf.synced.wait() for inf in self.informers))
            while True:
                for node in self.nodes.list():
                    self.queue.add(f"node:{node['metadata']['name']}")
                await asyncio.sleep(self.monitor_every)

        async with asyncio.TaskGroup() as tg:
            tg.create_task(super().run(), name="node-lifecycle")
            tg.create_task(monitor(), name="node-monitor")
