"""ReplicaSet: keep exactly spec.replicas pods matching the selector (the seed's "4 stay 4").

The loop of kubernetes pkg/controller/replicaset/replica_set.go: pod and ReplicaSet events only
enqueue the owning ReplicaSet's key; `sync(key)` adopts matching orphans, releases pods that no
longer match, creates missing pods in slow-start batches (1, 2, 4 … stopping at the first error)
and deletes extras (unscheduled, pending, not-ready and newest first), guarded by expectations
so it never acts twice on the same shortfall; then it writes status.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

from pocketkube.api import errors
from pocketkube.api.selectors import selector_from_spec
from pocketkube.client.informer import Informer, object_key
from pocketkube.client.rest import APIClient, ResourceClient
from pocketkube.controllers.base import Controller
from pocketkube.controllers.expectations import Expectations
from pocketkube.controllers.pod_util import (
    controller_ref,
    deletion_rank,
    is_active,
    is_available,
    is_ready,
    pod_from_template,
)

log = logging.getLogger(__name__)
Obj = dict[str, Any]
BURST = 500


class ReplicaSetController(Controller):
    name = "replicaset"
    workers = 4
    kind = "ReplicaSet"
    api_version = "apps/v1"

    def __init__(self, client: APIClient, *, owners: ResourceClient | None = None) -> None:
        super().__init__()
        self.client = client
        self.owner_client = owners or client.resource("apps", "v1", "replicasets")
        self.pods_client = client.core("pods")
        self.owners = Informer(self.owner_client)
        self.pods = Informer(self.pods_client)
        self.owners.add_handler(self.enqueue_handler)
        self.pods.add_handler(self._pod_changed)
        self.informers = [self.owners, self.pods]
        self.expectations = Expectations()
        # Test seam (kube's podControl): how pods are created and deleted.
        self.pod_control = self

    # ---- event handlers --------------------------------------------------------------------
    def _owner_key(self, pod: Obj) -> str | None:
        ref = controller_ref(pod)
        if ref is None or ref.get("kind") != self.kind:
            return None
        ns = pod["metadata"].get("namespace")
        owner = self.owners.get(f"{ns}/{ref['name']}")
        if owner is None or owner["metadata"].get("uid") != ref.get("uid"):
            return None
        return f"{ns}/{ref['name']}"

    def _matching_owners(self, pod: Obj) -> list[str]:
        ns = pod["metadata"].get("namespace")
        labels = pod["metadata"].get("labels") or {}
        out = []
        for owner in self.owners.list():
            if owner["metadata"].get("namespace") != ns:
                continue
            sel = (owner.get("spec") or {}).get("selector")
            if sel and selector_from_spec(sel).matches(labels):
                out.append(object_key(owner))
        return out

    def _pod_changed(self, old: Obj | None, new: Obj | None) -> None:
        if new is not None and old is None:
            key = self._owner_key(new)
            if key is not None:
                self.expectations.observed_add(key)
                self.queue.add(key)
            else:
                for k in self._matching_owners(new):
                    self.queue.add(k)
            return
        if new is None and old is not None:
            key = self._owner_key(old)
            if key is not None:
                self.expectations.observed_delete(key)
                self.queue.add(key)
            return
        assert new is not None and old is not None
        keys = {k for k in (self._owner_key(new), self._owner_key(old)) if k is not None}
        if not keys or (old["metadata"].get("labels") != new["metadata"].get("labels")):
            keys |= set(self._matching_owners(new))
        for k in keys:
            self.queue.add(k)

    # ---- pod control -----------------------------------------------------------------------
    async def create_pod(self, owner: Obj) -> None:
        template = (owner.get("spec") or {}).get("template") or {}
        pod = pod_from_template(template, owner)
        await self.pods_client.create(pod, owner["metadata"]["namespace"], field_manager=f"{self.name}-controller")

    async def delete_pod(self, pod: Obj) -> None:
        await self.pods_client.delete(pod["metadata"]["name"], pod["metadata"]["namespace"],
                                      uid=pod["metadata"].get("uid"))

    # ---- sync ------------------------------------------------------------------------------
    def owned_pods(self, owner: Obj) -> tuple[list[Obj], list[Obj], list[Obj]]:
        """(owned active pods, orphans to adopt, owned pods to release)."""
        ns = owner["metadata"]["namespace"]
        uid = owner["metadata"]["uid"]
        sel = selector_from_spec((owner.get("spec") or {}).get("selector"))
        owned, adopt, release = [], [], []
        for pod in self.pods.list():
            md = pod["metadata"]
            if md.get("namespace") != ns:
                continue
            ref = controller_ref(pod)
            matches = sel.matches(md.get("labels") or {})
            if ref is not None and ref.get("uid") == uid:
                if matches:
                    if is_active(pod):
                        owned.append(pod)
                else:
                    release.append(pod)
            elif ref is None and matches and is_active(pod) and not owner["metadata"].get("deletionTimestamp"):
                adopt.append(pod)
        return owned, adopt, release

    async def _adopt(self, owner: Obj, pod: Obj) -> None:
        refs = list(pod["metadata"].get("ownerReferences") or [])
        refs.append({"apiVersion": self.api_version, "kind": self.kind, "name": owner["metadata"]["name"],
                     "uid": owner["metadata"]["uid"], "controller": True, "blockOwnerDeletion": True})
        await self.pods_client.patch(pod["metadata"]["name"], {"metadata": {"ownerReferences": refs,
                                     "resourceVersion": pod["metadata"]["resourceVersion"]}},
                                     pod["metadata"]["namespace"], field_manager=f"{self.name}-controller")

    async def _release(self, owner: Obj, pod: Obj) -> None:
        refs = [r for r in pod["metadata"].get("ownerReferences") or [] if r.get("uid") != owner["metadata"]["uid"]]
        await self.pods_client.patch(pod["metadata"]["name"], {"metadata": {"ownerReferences": refs}},
                                     pod["metadata"]["namespace"], field_manager=f"{self.name}-controller")

    async def sync(self, key: str) -> None:
        owner = self.owners.get(key)
        if owner is None:
            self.expectations.forget(key)
            return
        owned, adopt, release = self.owned_pods(owner)
        for pod in adopt:
            try:
                await self._adopt(owner, pod)
                owned.append(pod)
            except (errors.Conflict, errors.NotFound):
                pass
        for pod in release:
            try:
                await self._release(owner, pod)
            except errors.NotFound:
                pass
        error: Exception | None = None
        if self.expectations.satisfied(key) and not owner["metadata"].get("deletionTimestamp"):
            error = await self.manage_replicas(key, owner, owned)
        await self.update_status(owner, owned)
        if error is not None:
            raise error

    async def manage_replicas(self, key: str, owner: Obj, pods: list[Obj]) -> Exception | None:
        want = int((owner.get("spec") or {}).get("replicas", 1))
        diff = len(pods) - want
        if diff < 0:
            count = min(-diff, BURST)
            self.expectations.expect(key, adds=count)
            created, batch = 0, 1
            while created < count:
                n = min(batch, count - created)
                results = await asyncio.gather(*(self.pod_control.create_pod(owner) for _ in range(n)),
                                               return_exceptions=True)
                failures = [r for r in results if isinstance(r, Exception)]
                created += n
                if failures:
                    # Skip the rest: their creations will not happen, so do not wait for them.
                    self.expectations.lower(key, adds=len(failures) + (count - created))
                    err = failures[0]
                    if isinstance(err, errors.Forbidden) and "terminated" in str(err):
                        return None
                    return err
                batch *= 2
        elif diff > 0:
            count = min(diff, BURST)
            victims = sorted(pods, key=deletion_rank)[:count]
            self.expectations.expect(key, dels=count)
            results = await asyncio.gather(*(self.pod_control.delete_pod(p) for p in victims), return_exceptions=True)
            failed = [r for r in results if isinstance(r, Exception) and not isinstance(r, errors.NotFound)]
            missing = [r for r in results if isinstance(r, errors.NotFound)]
            if failed or missing:
                self.expectations.lower(key, dels=len(failed) + len(missing))
            if failed:
                return failed[0]
        return None

    def compute_status(self, owner: Obj, pods: list[Obj]) -> Obj:
        spec = owner.get("spec") or {}
        template_labels = ((spec.get("template") or {}).get("metadata") or {}).get("labels") or {}
        min_ready = int(spec.get("minReadySeconds") or 0)
        status: Obj = {
            "replicas": len(pods),
            "fullyLabeledReplicas": sum(1 for p in pods if all(
                (p["metadata"].get("labels") or {}).get(k) == v for k, v in template_labels.items())),
            "readyReplicas": sum(1 for p in pods if is_ready(p)),
            "availableReplicas": sum(1 for p in pods if is_available(p, min_ready)),
            "observedGeneration": owner["metadata"].get("generation", 1),
        }
        old = owner.get("status") or {}
        if old.get("conditions"):
            status["conditions"] = old["conditions"]
        return status

    async def update_status(self, owner: Obj, pods: list[Obj]) -> None:
        status = self.compute_status(owner, pods)
        old = owner.get("status") or {}
        if all(old.get(k, 0) == v for k, v in status.items() if k != "conditions"):
            return
        try:
            await self.owner_client.patch(owner["metadata"]["name"], {"status": status},
                                          owner["metadata"]["namespace"], subresource="status",
                                          field_manager=f"{self.name}-controller")
        except errors.NotFound:
            pass
