"""Disruption controller: keep each PodDisruptionBudget's status true (kube's pkg/controller/disruption).

For a PDB it finds the pods its selector picks in its namespace and writes:
- expectedPods: with maxUnavailable or a percentage minAvailable, the sum of the scales of the
  pods' controllers (a Deployment's replicas for its ReplicaSets' pods, a ReplicaSet's or
  StatefulSet's own); with an integer minAvailable, simply the number of pods;
- desiredHealthy: minAvailable (a percentage of expectedPods, rounded up), or expectedPods minus
  maxUnavailable, never below 0;
- currentHealthy: pods Ready, not terminating, not named in disruptedPods;
- disruptionsAllowed = currentHealthy - desiredHealthy (0 when negative or when nothing is
  expected), plus the DisruptionAllowed condition and observedGeneration;
- disruptedPods: the evictions the API server granted (pods/eviction, apiserver/eviction.py)
  whose deletion has not shown yet, dropped once the pod is terminating or gone, or after 2 min.
A sync that cannot find a pod's controller leaves disruptionsAllowed 0 with reason SyncFailed, so
no eviction slips through on a guess. Pod and PDB events enqueue the PDB; an entry of
disruptedPods requeues it for when it expires.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from datetime import datetime, timedelta
from typing import Any

from pocketkube.api import errors, meta
from pocketkube.api.disruption import pod_ready, scaled_value, set_disruption_allowed_condition
from pocketkube.api.selectors import selector_from_spec
from pocketkube.client.events import EventRecorder
from pocketkube.client.informer import Informer
from pocketkube.client.rest import APIClient
from pocketkube.controllers.base import Controller

log = logging.getLogger(__name__)
Obj = dict[str, Any]

DELETION_TIMEOUT = timedelta(minutes=2)


class SyncFailed(Exception):
    """The expected scale could not be worked out (a pod's controller is missing or unknown)."""


def _controller_ref(obj: Obj) -> Obj | None:
    return next((r for r in obj["metadata"].get("ownerReferences") or [] if r.get("controller")), None)


def pdb_pods(pdb: Obj, pods: list[Obj]) -> list[Obj]:
    """The pods `pdb` selects (policy/v1: a missing selector selects none, an empty one all)."""
    ns = pdb["metadata"]["namespace"]
    try:
        selector = selector_from_spec((pdb.get("spec") or {}).get("selector"))
    except errors.BadRequest:
        return []
    return [p for p in pods if p["metadata"].get("namespace") == ns and selector.matches(p["metadata"].get("labels") or {})]


def disrupted_pods(pdb: Obj, pods: list[Obj], now: datetime) -> tuple[dict[str, str], datetime | None]:
    """The granted evictions still pending (pod alive, not terminating, under 2 min old) and when
    the first of them expires."""
    recorded = (pdb.get("status") or {}).get("disruptedPods") or {}
    kept: dict[str, str] = {}
    recheck: datetime | None = None
    for pod in pods:
        name = pod["metadata"]["name"]
        if pod["metadata"].get("deletionTimestamp") or name not in recorded:
            continue
        at = meta.parse_time(str(recorded[name]))
        if at is None or at + DELETION_TIMEOUT < now:
            continue
        kept[name] = str(recorded[name])
        recheck = at + DELETION_TIMEOUT if recheck is None else min(recheck, at + DELETION_TIMEOUT)
    return kept, recheck


def healthy_count(pods: list[Obj], disrupted: dict[str, str]) -> int:
    return sum(1 for p in pods if not p["metadata"].get("deletionTimestamp")
               and p["metadata"]["name"] not in disrupted and pod_ready(p))


def budget_status(pdb: Obj, *, expected: int, desired: int, healthy: int, disrupted: dict[str, str]) -> Obj:
    """The PDB with its status recomputed (kube's updatePdbStatus)."""
    allowed = healthy - desired
    if expected <= 0 or allowed <= 0:
        allowed = 0
    status = {**(pdb.get("status") or {}), "currentHealthy": healthy, "desiredHealthy": desired,
              "expectedPods": expected, "disruptionsAllowed": allowed,
              "observedGeneration": int(pdb["metadata"].get("generation") or 0)}
    status.pop("disruptedPods", None)
    if disrupted:
        status["disruptedPods"] = disrupted
    new = {**pdb, "status": status}
    set_disruption_allowed_condition(new, allowed=allowed > 0)
    return new


class DisruptionController(Controller):
    name = "disruption"
    workers = 2

    def __init__(self, client: APIClient, *, now: Callable[[], datetime] = meta.now) -> None:
        super().__init__()
        self.client = client
        self.now = now
        self.pdb_client = client.resource("policy", "v1", "poddisruptionbudgets")
        self.pdbs = Informer(self.pdb_client)
        self.pods = Informer(client.core("pods"))
        self.pdbs.add_handler(self.enqueue_handler)
        self.pods.add_handler(self._pod_changed)
        self.informers = [self.pdbs, self.pods]
        self.recorder = EventRecorder(client, "controllermanager")

    def _pod_changed(self, old: Obj | None, new: Obj | None) -> None:
        for pod in (old, new):
            if pod is None:
                continue
            for pdb in self.pdbs.list():
                if pdb_pods(pdb, [pod]):
                    self.enqueue(pdb)

    async def sync(self, key: str) -> None:
        pdb = self.pdbs.get(key)
        if pdb is None:
            return
        pods = pdb_pods(pdb, self.pods.list())
        try:
            expected, desired = await self.expected_and_desired(pdb, pods)
        except SyncFailed as e:
            await self.recorder.event({"kind": "PodDisruptionBudget", "apiVersion": "policy/v1", **pdb}, "Warning",
                                      "CalculateExpectedPodCountFailed",
                                      f"Failed to calculate the number of expected pods: {e}")
            await self._fail_safe(pdb, str(e))
            return
        now = self.now()
        disrupted, recheck = disrupted_pods(pdb, pods, now)
        new = budget_status(pdb, expected=expected, desired=desired, healthy=healthy_count(pods, disrupted),
                            disrupted=disrupted)
        if new["status"] != (pdb.get("status") or {}):
            await self._write_status(pdb, new["status"])
        if recheck is not None:
            self.queue.add_after(key, max((recheck - now).total_seconds(), 0.1))

    async def expected_and_desired(self, pdb: Obj, pods: list[Obj]) -> tuple[int, int]:
        spec = pdb.get("spec") or {}
        if spec.get("maxUnavailable") is not None:
            expected = await self.expected_scale(pods)
            return expected, max(expected - self._scaled(spec["maxUnavailable"], expected), 0)
        min_available = spec.get("minAvailable")
        if isinstance(min_available, str):
            expected = await self.expected_scale(pods)
            return expected, self._scaled(min_available, expected)
        if min_available is not None:
            return len(pods), int(min_available)
        return len(pods), 0

    @staticmethod
    def _scaled(value: Any, total: int) -> int:
        try:
            return scaled_value(value, total)
        except (ValueError, TypeError) as e:
            raise SyncFailed(str(e)) from e

    async def expected_scale(self, pods: list[Obj]) -> int:
        """The sum of the desired replicas of every controller of `pods`, each counted once (the
        ReplicaSets of one Deployment count as that Deployment)."""
        scales: dict[str, int] = {}
        seen: set[str] = set()
        for pod in pods:
            ref = _controller_ref(pod)
            if ref is None or str(ref.get("uid")) in seen:
                continue  # kube logs unmanaged pods and leaves them out
            seen.add(str(ref.get("uid")))
            uid, replicas = await self._controller_scale(ref, pod["metadata"]["namespace"], pod["metadata"]["name"])
            scales[uid] = replicas
        return sum(scales.values())

    async def _controller_scale(self, ref: Obj, namespace: str, pod_name: str) -> tuple[str, int]:
        kind, name = ref.get("kind"), str(ref.get("name"))
        clients = {"ReplicaSet": ("apps", "replicasets"), "StatefulSet": ("apps", "statefulsets"),
                   "Deployment": ("apps", "deployments"), "ReplicationController": ("", "replicationcontrollers")}
        if kind not in clients or not str(ref.get("apiVersion", "")).endswith("v1"):
            raise SyncFailed(f'found no controllers for pod "{pod_name}"')
        group, plural = clients[str(kind)]
        try:
            owner = await (self.client.resource(group, "v1", plural) if group else self.client.core(plural)).get(
                name, namespace)
        except errors.StatusError as e:
            raise SyncFailed(f'found no controllers for pod "{pod_name}"') from e
        if owner["metadata"].get("uid") != ref.get("uid"):
            raise SyncFailed(f'found no controllers for pod "{pod_name}"')
        parent = _controller_ref(owner) if kind == "ReplicaSet" else None
        if parent is not None and parent.get("kind") == "Deployment":
            return await self._controller_scale(parent, namespace, pod_name)
        return str(owner["metadata"]["uid"]), int((owner.get("spec") or {}).get("replicas", 1))

    async def _fail_safe(self, pdb: Obj, message: str) -> None:
        new = {**pdb, "status": {**(pdb.get("status") or {}), "disruptionsAllowed": 0}}
        set_disruption_allowed_condition(new, allowed=False, reason="SyncFailed", message=message)
        if new["status"] != (pdb.get("status") or {}):
            await self._write_status(pdb, new["status"])

    async def _write_status(self, pdb: Obj, status: Obj) -> None:
        # A PUT carrying the cached resourceVersion: an eviction that took a disruption since
        # (apiserver/eviction.py) makes it a 409, and the sync is retried on fresh data.
        body = {**pdb, "apiVersion": "policy/v1", "kind": "PodDisruptionBudget", "status": status}
        try:
            await self.pdb_client.update_status(body)
        except errors.NotFound:
            pass
