"""StatefulSet: pods with stable names and storage, created, removed and updated in order
(kubernetes pkg/controller/statefulset, stateful_set_control.go).

Pod `<set>-<ordinal>` gets hostname `<set>-<ordinal>`, subdomain `spec.serviceName` and one PVC
`<claim>-<set>-<ordinal>` per volumeClaimTemplate (kept unless persistentVolumeClaimRetentionPolicy
says Delete: then the set, or for whenScaled the condemned pod, owns it and GC removes it). With
podManagementPolicy OrderedReady, `sync(key)` does at most one thing per pass: create the lowest
missing ordinal only when every lower one is Running and Ready, remove the highest condemned
ordinal first; Parallel creates and removes all at once. RollingUpdate replaces pods whose
controller-revision-hash is not the update revision, highest ordinal first, one at a time, down
to the partition; OnDelete only uses the new template for pods the user deleted. Revisions are
ControllerRevisions (revisions.py); status.currentRevision becomes the update revision once all
replicas run it.
"""

from __future__ import annotations

import asyncio
import logging
import re
from typing import Any

from pocketkube.api import errors
from pocketkube.api.selectors import selector_from_spec
from pocketkube.client.events import EventRecorder
from pocketkube.client.informer import Informer
from pocketkube.client.rest import APIClient
from pocketkube.controllers import revisions
from pocketkube.controllers.base import Controller
from pocketkube.controllers.expectations import Expectations
from pocketkube.controllers.owned_pods import observe_pod_event
from pocketkube.controllers.pod_util import (
    controller_ref,
    is_available,
    is_ready,
    owner_reference,
    pod_from_template,
)

log = logging.getLogger(__name__)
Obj = dict[str, Any]
MANAGER = "statefulset-controller"
POD_NAME_LABEL = "statefulset.kubernetes.io/pod-name"
POD_INDEX_LABEL = "apps.kubernetes.io/pod-index"


def ordinal_of(sts_name: str, pod: Obj) -> int | None:
    m = re.fullmatch(re.escape(sts_name) + r"-(\d+)", str(pod["metadata"].get("name") or ""))
    return int(m.group(1)) if m else None


def _healthy(pod: Obj) -> bool:
    return (pod.get("status") or {}).get("phase") == "Running" and is_ready(pod)


def _revision_of(pod: Obj) -> str:
    return str((pod["metadata"].get("labels") or {}).get(revisions.HASH_LABEL) or "")


class StatefulSetController(Controller):
    name = "statefulset"
    workers = 2

    def __init__(self, client: APIClient) -> None:
        super().__init__()
        self.sts_client = client.resource("apps", "v1", "statefulsets")
        self.rev_client = client.resource("apps", "v1", "controllerrevisions")
        self.pods_client = client.core("pods")
        self.pvc_client = client.core("persistentvolumeclaims")
        self.sets = Informer(self.sts_client)
        self.pods = Informer(self.pods_client)
        self.revisions = Informer(self.rev_client)
        self.claims = Informer(self.pvc_client)
        self.sets.add_handler(self.enqueue_handler)
        self.pods.add_handler(self._pod_changed)
        self.informers = [self.sets, self.pods, self.revisions, self.claims]
        self.expectations = Expectations()
        self.recorder = EventRecorder(client, MANAGER)
        self.pod_control = self  # test seam: create_pod / delete_pod

    def _pod_changed(self, old: Obj | None, new: Obj | None) -> None:
        observe_pod_event(old, new, "StatefulSet", self.expectations, self.queue)

    # ---- pod control -----------------------------------------------------------------------
    def new_pod(self, sts: Obj, ordinal: int, revision: Obj) -> Obj:
        name = f"{sts['metadata']['name']}-{ordinal}"
        pod = pod_from_template(revisions.template_of(revision), sts, name=name)
        pod["metadata"]["labels"] = {**pod["metadata"]["labels"], POD_NAME_LABEL: name,
                                     POD_INDEX_LABEL: str(ordinal),
                                     revisions.HASH_LABEL: revision["metadata"]["name"]}
        spec = pod["spec"]
        spec["hostname"] = name
        if (sts.get("spec") or {}).get("serviceName"):
            spec["subdomain"] = sts["spec"]["serviceName"]
        claims = (sts.get("spec") or {}).get("volumeClaimTemplates") or []
        if claims:
            names = {c["metadata"]["name"] for c in claims}
            volumes = [v for v in spec.get("volumes") or [] if v.get("name") not in names]
            volumes += [{"name": c["metadata"]["name"], "persistentVolumeClaim": {
                "claimName": f"{c['metadata']['name']}-{name}"}} for c in claims]
            spec["volumes"] = volumes
        return pod

    async def _ensure_claims(self, sts: Obj, ordinal: int) -> None:
        spec = sts.get("spec") or {}
        ns = sts["metadata"]["namespace"]
        match_labels = (spec.get("selector") or {}).get("matchLabels") or {}
        delete_with_set = (spec.get("persistentVolumeClaimRetentionPolicy") or {}).get("whenDeleted") == "Delete"
        for claim in spec.get("volumeClaimTemplates") or []:
            cmeta = claim.get("metadata") or {}
            name = f"{cmeta['name']}-{sts['metadata']['name']}-{ordinal}"
            if self.claims.get(f"{ns}/{name}") is not None:
                continue
            md: Obj = {"name": name, "namespace": ns, "labels": {**(cmeta.get("labels") or {}), **match_labels}}
            if cmeta.get("annotations"):
                md["annotations"] = cmeta["annotations"]
            if delete_with_set:
                md["ownerReferences"] = [{"apiVersion": "apps/v1", "kind": "StatefulSet",
                                          "name": sts["metadata"]["name"], "uid": sts["metadata"]["uid"]}]
            body = {"apiVersion": "v1", "kind": "PersistentVolumeClaim", "metadata": md,
                    "spec": claim.get("spec") or {}}
            try:
                await self.pvc_client.create(body, ns, field_manager=MANAGER)
                await self.recorder.event(sts, "Normal", "SuccessfulCreate",
                                          f"create Claim {name} Pod {sts['metadata']['name']}-{ordinal} "
                                          f"in StatefulSet {sts['metadata']['name']} success")
            except errors.AlreadyExists:
                pass

    async def create_pod(self, sts: Obj, ordinal: int, revision: Obj) -> None:
        await self._ensure_claims(sts, ordinal)
        pod = self.new_pod(sts, ordinal, revision)
        try:
            await self.pods_client.create(pod, sts["metadata"]["namespace"], field_manager=MANAGER)
        except errors.AlreadyExists:
            return
        await self.recorder.event(sts, "Normal", "SuccessfulCreate",
                                  f"create Pod {pod['metadata']['name']} in StatefulSet {sts['metadata']['name']} successful")

    async def _claims_follow_pod(self, sts: Obj, pod: Obj) -> None:
        """whenScaled: Delete — the condemned pod becomes its claims' only owner, so GC removes them
        with it (GC keeps an object while any owner lives, so the set's reference goes)."""
        spec = sts.get("spec") or {}
        if (spec.get("persistentVolumeClaimRetentionPolicy") or {}).get("whenScaled") != "Delete":
            return
        ns = sts["metadata"]["namespace"]
        ref = {"apiVersion": "v1", "kind": "Pod", "name": pod["metadata"]["name"], "uid": pod["metadata"]["uid"]}
        for claim in spec.get("volumeClaimTemplates") or []:
            pvc = self.claims.get(f"{ns}/{claim['metadata']['name']}-{pod['metadata']['name']}")
            refs = list(((pvc or {}).get("metadata") or {}).get("ownerReferences") or [])
            if pvc is None or any(r.get("uid") == ref["uid"] for r in refs):
                continue
            refs = [r for r in refs if r.get("uid") != sts["metadata"]["uid"]]
            try:
                await self.pvc_client.patch(pvc["metadata"]["name"], {"metadata": {"ownerReferences": [*refs, ref]}},
                                            ns, field_manager=MANAGER)
            except errors.NotFound:
                pass

    async def delete_pod(self, sts: Obj, pod: Obj) -> None:
        spec = sts.get("spec") or {}
        start = int((spec.get("ordinals") or {}).get("start") or 0)
        ordinal = ordinal_of(sts["metadata"]["name"], pod)
        if ordinal is not None and not start <= ordinal < start + int(spec.get("replicas", 1)):
            await self._claims_follow_pod(sts, pod)
        try:
            await self.pods_client.delete(pod["metadata"]["name"], pod["metadata"]["namespace"],
                                          uid=pod["metadata"].get("uid"))
        except errors.NotFound:
            return
        await self.recorder.event(sts, "Normal", "SuccessfulDelete",
                                  f"delete Pod {pod['metadata']['name']} in StatefulSet {sts['metadata']['name']} successful")

    # ---- sync ------------------------------------------------------------------------------
    async def _owned_pods(self, sts: Obj) -> dict[int, Obj]:
        ns, uid, name = sts["metadata"]["namespace"], sts["metadata"]["uid"], sts["metadata"]["name"]
        sel = selector_from_spec((sts.get("spec") or {}).get("selector"))
        out: dict[int, Obj] = {}
        for pod in self.pods.list():
            md = pod["metadata"]
            ordinal = ordinal_of(name, pod)
            if md.get("namespace") != ns or ordinal is None:
                continue
            ref = controller_ref(pod)
            if ref is not None and ref.get("uid") == uid:
                out[ordinal] = pod
            elif ref is None and not md.get("deletionTimestamp") and sel.matches(md.get("labels") or {}):
                refs = [*(md.get("ownerReferences") or []), owner_reference(sts)]
                try:
                    out[ordinal] = await self.pods_client.patch(md["name"], {"metadata": {
                        "ownerReferences": refs, "resourceVersion": md["resourceVersion"]}}, ns, field_manager=MANAGER)
                except (errors.Conflict, errors.NotFound):
                    pass
        return out

    async def sync(self, key: str) -> None:
        cached = self.sets.get(key)
        if cached is None:
            self.expectations.forget(key)
            return
        sts: Obj = {**cached, "apiVersion": "apps/v1", "kind": "StatefulSet"}
        if sts["metadata"].get("deletionTimestamp"):
            return
        history = revisions.owned_revisions(self.revisions.list(), sts)
        template = (sts.get("spec") or {}).get("template") or {}
        update = await revisions.ensure_revision(self.rev_client, sts, template, history, field_manager=MANAGER)
        current_name = (sts.get("status") or {}).get("currentRevision") or update["metadata"]["name"]
        current = next((r for r in history if r["metadata"]["name"] == current_name), update)
        pods = await self._owned_pods(sts)
        error: Exception | None = None
        if self.expectations.satisfied(key):
            error = await self._execute(key, sts, pods, current, update)
        await self._update_status(sts, pods, current["metadata"]["name"], update["metadata"]["name"])
        live = {_revision_of(p) for p in pods.values()} | {current["metadata"]["name"], update["metadata"]["name"]}
        await revisions.truncate_history(self.rev_client, sts, history, live)
        min_ready = int((sts.get("spec") or {}).get("minReadySeconds") or 0)
        if min_ready > 0 and any(_healthy(p) and not is_available(p, min_ready) for p in pods.values()):
            self.queue.add_after(key, min_ready)
        if error is not None:
            raise error

    def plan(self, sts: Obj, pods: dict[int, Obj], update_name: str) -> tuple[list[int], list[Obj]]:
        """(ordinals to create, pods to delete) for this pass."""
        spec = sts.get("spec") or {}
        ordered = spec.get("podManagementPolicy", "OrderedReady") != "Parallel"
        start = int((spec.get("ordinals") or {}).get("start") or 0)
        end = start + int(spec.get("replicas", 1))
        min_ready = int(spec.get("minReadySeconds") or 0)
        create: list[int] = []
        delete: list[Obj] = []
        for ordinal in range(start, end):
            pod = pods.get(ordinal)
            if pod is None:
                create.append(ordinal)
            elif (pod.get("status") or {}).get("phase") in ("Failed", "Succeeded") \
                    and not pod["metadata"].get("deletionTimestamp"):
                delete.append(pod)  # recreated under the same name on a later pass
            elif ordered and (pod["metadata"].get("deletionTimestamp") or not _healthy(pod)
                              or not is_available(pod, min_ready)):
                return create, delete
            else:
                continue
            if ordered:
                return create, delete
        condemned = sorted((o for o in pods if not start <= o < end), reverse=True)
        for ordinal in condemned:
            pod = pods[ordinal]
            if pod["metadata"].get("deletionTimestamp"):
                if ordered:
                    return create, delete
                continue
            delete.append(pod)
            if ordered:
                return create, delete
        if create or delete:
            return create, delete
        strategy = spec.get("updateStrategy") or {}
        if strategy.get("type", "RollingUpdate") != "RollingUpdate":
            return create, delete
        partition = int((strategy.get("rollingUpdate") or {}).get("partition") or 0)
        for ordinal in range(end - 1, start + partition - 1, -1):
            pod = pods[ordinal]
            if _revision_of(pod) != update_name and not pod["metadata"].get("deletionTimestamp"):
                return create, [pod]
            if not _healthy(pod):
                return create, delete
        return create, delete

    def _revision_for(self, sts: Obj, ordinal: int, current: Obj, update: Obj) -> Obj:
        spec = sts.get("spec") or {}
        index = ordinal - int((spec.get("ordinals") or {}).get("start") or 0)
        strategy = spec.get("updateStrategy") or {}
        if strategy.get("type", "RollingUpdate") != "RollingUpdate":
            return update  # OnDelete: whatever is (re)created gets the new template
        rolling = strategy.get("rollingUpdate")
        if rolling is None:
            return current if index < int((sts.get("status") or {}).get("currentReplicas") or 0) else update
        return current if index < int(rolling.get("partition") or 0) else update

    async def _execute(self, key: str, sts: Obj, pods: dict[int, Obj], current: Obj, update: Obj) -> Exception | None:
        create, delete = self.plan(sts, pods, update["metadata"]["name"])
        if not create and not delete:
            return None
        self.expectations.expect(key, adds=len(create), dels=len(delete))
        results: list[Any] = list(await asyncio.gather(*(self.pod_control.delete_pod(sts, p) for p in delete),
                                                       return_exceptions=True))
        failed = sum(isinstance(r, Exception) for r in results)
        if failed:
            self.expectations.lower(key, dels=failed)
        created = await asyncio.gather(*(self.pod_control.create_pod(sts, o, self._revision_for(sts, o, current, update))
                                         for o in create), return_exceptions=True)
        failed_creates = [r for r in created if isinstance(r, Exception)]
        if failed_creates:
            self.expectations.lower(key, adds=len(failed_creates))
        errs = [r for r in [*results, *created] if isinstance(r, Exception)]
        return errs[0] if errs else None

    def compute_status(self, sts: Obj, pods: dict[int, Obj], current_name: str, update_name: str) -> Obj:
        spec = sts.get("spec") or {}
        min_ready = int(spec.get("minReadySeconds") or 0)
        live = [p for p in pods.values() if not p["metadata"].get("deletionTimestamp")]
        status: Obj = {
            "observedGeneration": sts["metadata"].get("generation", 1),
            "replicas": len(live),
            "readyReplicas": sum(1 for p in live if is_ready(p)),
            "availableReplicas": sum(1 for p in live if is_available(p, min_ready)),
            "currentReplicas": sum(1 for p in live if _revision_of(p) == current_name),
            "updatedReplicas": sum(1 for p in live if _revision_of(p) == update_name),
            "currentRevision": current_name,
            "updateRevision": update_name,
            "collisionCount": int((sts.get("status") or {}).get("collisionCount") or 0),
        }
        want = int(spec.get("replicas", 1))
        if status["updatedReplicas"] == want and status["readyReplicas"] == want and status["replicas"] == want:
            status["currentRevision"] = update_name
            status["currentReplicas"] = status["updatedReplicas"]
        return status

    async def _update_status(self, sts: Obj, pods: dict[int, Obj], current_name: str, update_name: str) -> None:
        status = self.compute_status(sts, pods, current_name, update_name)
        old = sts.get("status") or {}
        if all(old.get(k, 0) == v for k, v in status.items()):
            return
        try:
            await self.sts_client.patch(sts["metadata"]["name"], {"status": status}, sts["metadata"]["namespace"],
                                        subresource="status", field_manager=MANAGER)
        except errors.NotFound:
            pass
