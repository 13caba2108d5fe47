"""Deployment: roll a ReplicaSet per pod template, RollingUpdate or Recreate, with history.

kubernetes pkg/controller/deployment in one loop: find the Deployment's ReplicaSets (adopting
orphans that match), make sure a "new" one exists for the current template (rolling back reuses
an old one and gives it the next revision), then scale: Recreate kills the old pods before the
new ones start; RollingUpdate surges the new ReplicaSet up to replicas + maxSurge and scales old
ones down while keeping replicas - maxUnavailable available. Status, the Available and
Progressing conditions (with progressDeadlineSeconds) and revision history cleanup follow.
What `kubectl rollout status|history|undo|pause|resume|restart` read and write is all here.
"""

from __future__ import annotations

import copy
import logging
from datetime import UTC, datetime
from typing import Any

from pocketkube.api import errors, meta
from pocketkube.api.selectors import selector_from_spec
from pocketkube.client.events import EventRecorder
from pocketkube.client.informer import Informer, object_key
from pocketkube.client.rest import APIClient
from pocketkube.controllers import deployment_util as du
from pocketkube.controllers.base import Controller
from pocketkube.controllers.pod_util import controller_ref, is_active

log = logging.getLogger(__name__)
Obj = dict[str, Any]


class DeploymentController(Controller):
    name = "deployment"
    workers = 4

    def __init__(self, client: APIClient) -> None:
        super().__init__()
        self.client = client
        self.deploy_client = client.resource("apps", "v1", "deployments")
        self.rs_client = client.resource("apps", "v1", "replicasets")
        self.deployments = Informer(self.deploy_client)
        self.replicasets = Informer(self.rs_client)
        self.pods = Informer(client.core("pods"))
        self.deployments.add_handler(self.enqueue_handler)
        self.replicasets.add_handler(self._rs_changed)
        self.pods.add_handler(self._pod_changed)
        self.informers = [self.deployments, self.replicasets, self.pods]
        self.recorder = EventRecorder(client, "deployment-controller")

    def _rs_changed(self, old: Obj | None, new: Obj | None) -> None:
        rs = new if new is not None else old
        assert rs is not None
        ref = controller_ref(rs)
        ns = rs["metadata"].get("namespace")
        if ref is not None and ref.get("kind") == "Deployment":
            self.queue.add(f"{ns}/{ref['name']}")
            return
        labels = rs["metadata"].get("labels") or {}
        for d in self.deployments.list():
            if d["metadata"].get("namespace") == ns and selector_from_spec(
                    (d.get("spec") or {}).get("selector")).matches(labels):
                self.queue.add(object_key(d))

    def _pod_changed(self, old: Obj | None, new: Obj | None) -> None:
        # Only Recreate waits on pods: requeue when a pod of an old ReplicaSet goes away.
        if new is None and old is not None:
            ref = controller_ref(old)
            if ref is not None and ref.get("kind") == "ReplicaSet":
                rs = self.replicasets.get(f"{old['metadata'].get('namespace')}/{ref['name']}")
                if rs is not None:
                    self._rs_changed(None, rs)

    # ---- ReplicaSets of a Deployment ---------------------------------------------------------
    async def _replicasets(self, d: Obj) -> list[Obj]:
        ns, uid = d["metadata"]["namespace"], d["metadata"]["uid"]
        sel = selector_from_spec((d.get("spec") or {}).get("selector"))
        out = []
        for rs in self.replicasets.list():
            if rs["metadata"].get("namespace") != ns:
                continue
            ref = controller_ref(rs)
            if ref is not None:
                if ref.get("uid") == uid:
                    out.append(rs)
                continue
            if sel.matches(rs["metadata"].get("labels") or {}) and not d["metadata"].get("deletionTimestamp"):
                refs = [{"apiVersion": "apps/v1", "kind": "Deployment", "name": d["metadata"]["name"], "uid": uid,
                         "controller": True, "blockOwnerDeletion": True}]
                try:
                    out.append(await self.rs_client.patch(rs["metadata"]["name"], {"metadata": {
                        "ownerReferences": refs, "resourceVersion": rs["metadata"]["resourceVersion"]}}, ns,
                        field_manager="deployment-controller"))
                except (errors.Conflict, errors.NotFound):
                    pass
        return out

    async def _ensure_new_rs(self, d: Obj, all_rs: list[Obj]) -> tuple[Obj | None, list[Obj]]:
        template = (d.get("spec") or {}).get("template") or {}
        new_rs = next((rs for rs in all_rs if du.equal_ignore_hash((rs.get("spec") or {}).get("template") or {},
                                                                    template)), None)
        old = [rs for rs in all_rs if rs is not new_rs]
        max_rev = max((du.revision(rs) for rs in old), default=0)
        ns = d["metadata"]["namespace"]
        if new_rs is not None:
            if du.revision(new_rs) <= max_rev:  # rolled back to this template: it becomes the newest
                new_rs = await self._annotate(new_rs, {du.REVISION: str(max_rev + 1)})
            await self._sync_revision(d, du.revision(new_rs))
            return new_rs, old
        if (d.get("spec") or {}).get("paused"):
            return None, old
        collision = int((d.get("status") or {}).get("collisionCount") or 0)
        h = du.template_hash(du.strip_hash(template), collision)
        rs_template: Obj = copy.deepcopy(template)
        rs_labels: dict[str, str] = rs_template.setdefault("metadata", {}).setdefault("labels", {})
        rs_labels[du.HASH_LABEL] = h
        selector = copy.deepcopy((d.get("spec") or {}).get("selector") or {})
        selector.setdefault("matchLabels", {})[du.HASH_LABEL] = h
        surge, _ = du.surge_and_unavailable(d)
        replicas = int((d.get("spec") or {}).get("replicas", 1))
        annotations = {du.REVISION: str(max_rev + 1), du.DESIRED: str(replicas), du.MAX_REPLICAS: str(replicas + surge)}
        cause = (d["metadata"].get("annotations") or {}).get(du.CHANGE_CAUSE)
        if cause:
            annotations[du.CHANGE_CAUSE] = cause
        rs_name = f"{d['metadata']['name']}-{h}"
        body: Obj = {
            "apiVersion": "apps/v1", "kind": "ReplicaSet",
            "metadata": {"name": rs_name, "namespace": ns,
                         "labels": dict(rs_labels), "annotations": annotations,
                         "ownerReferences": [{"apiVersion": "apps/v1", "kind": "Deployment",
                                              "name": d["metadata"]["name"], "uid": d["metadata"]["uid"],
                                              "controller": True, "blockOwnerDeletion": True}]},
            "spec": {"replicas": 0, "minReadySeconds": int((d.get("spec") or {}).get("minReadySeconds") or 0),
                     "selector": selector, "template": rs_template},
        }
        try:
            created = await self.rs_client.create(body, ns, field_manager="deployment-controller")
        except errors.AlreadyExists:
            existing = await self.rs_client.get(rs_name, ns)
            if (controller_ref(existing) or {}).get("uid") == d["metadata"]["uid"]:
                return existing, old
            # Hash collision with someone else's ReplicaSet: bump collisionCount and retry.
            await self.deploy_client.patch(d["metadata"]["name"], {"status": {"collisionCount": collision + 1}}, ns,
                                           subresource="status", field_manager="deployment-controller")
            raise
        await self._sync_revision(d, max_rev + 1)
        await self.recorder.event(d, "Normal", "ScalingReplicaSet",
                                  f"Scaled up replica set {created['metadata']['name']} from 0 to 0")
        return created, old

    async def _annotate(self, rs: Obj, annotations: dict[str, str]) -> Obj:
        return await self.rs_client.patch(rs["metadata"]["name"], {"metadata": {"annotations": annotations}},
                                          rs["metadata"]["namespace"], field_manager="deployment-controller")

    async def _sync_revision(self, d: Obj, rev: int) -> None:
        if (d["metadata"].get("annotations") or {}).get(du.REVISION) != str(rev):
            await self.deploy_client.patch(d["metadata"]["name"], {"metadata": {"annotations": {du.REVISION: str(rev)}}},
                                           d["metadata"]["namespace"], field_manager="deployment-controller")

    async def _scale(self, d: Obj, rs: Obj, replicas: int) -> Obj:
        current = du.replicas_of(rs)
        if current == replicas:
            return rs
        surge, _ = du.surge_and_unavailable(d)
        want = int((d.get("spec") or {}).get("replicas", 1))
        patch = {"metadata": {"annotations": {du.DESIRED: str(want), du.MAX_REPLICAS: str(want + surge)}},
                 "spec": {"replicas": replicas}}
        updated = await self.rs_client.patch(rs["metadata"]["name"], patch, rs["metadata"]["namespace"],
                                             field_manager="deployment-controller")
        verb = "up" if replicas > current else "down"
        await self.recorder.event(d, "Normal", "ScalingReplicaSet",
                                  f"Scaled {verb} replica set {rs['metadata']['name']} from {current} to {replicas}")
        return updated

    # ---- sync ------------------------------------------------------------------------------
    async def sync(self, key: str) -> None:
        d = self.deployments.get(key)
        if d is None or d["metadata"].get("deletionTimestamp"):
            return
        d = copy.deepcopy(d)
        all_rs = await self._replicasets(d)
        new_rs, old_rs = await self._ensure_new_rs(d, all_rs)
        spec = d.get("spec") or {}
        if not spec.get("paused") and new_rs is not None:
            if (spec.get("strategy") or {}).get("type") == "Recreate":
                new_rs, old_rs = await self._recreate(d, new_rs, old_rs)
            else:
                new_rs, old_rs = await self._rolling(d, new_rs, old_rs)
        elif spec.get("paused"):
            await self._scale_paused(d, new_rs, old_rs)
        await self._cleanup(d, old_rs)
        await self._update_status(d, new_rs, old_rs)

    async def _scale_paused(self, d: Obj, new_rs: Obj | None, old_rs: list[Obj]) -> None:
        active = [rs for rs in ([new_rs] if new_rs else []) + old_rs if du.replicas_of(rs) > 0]
        want = int((d.get("spec") or {}).get("replicas", 1))
        if len(active) == 1 and du.replicas_of(active[0]) != want:
            await self._scale(d, active[0], want)

    async def _recreate(self, d: Obj, new_rs: Obj, old_rs: list[Obj]) -> tuple[Obj, list[Obj]]:
        want = int((d.get("spec") or {}).get("replicas", 1))
        old_rs = [await self._scale(d, rs, 0) for rs in old_rs]
        old_uids = {rs["metadata"]["uid"] for rs in old_rs}
        old_pods = [p for p in self.pods.list() if p["metadata"].get("namespace") == d["metadata"]["namespace"]
                    and (controller_ref(p) or {}).get("uid") in old_uids and is_active(p)]
        if old_pods or any(du.status_of(rs, "replicas") for rs in old_rs):
            return new_rs, old_rs  # wait for every old pod to be gone
        return await self._scale(d, new_rs, want), old_rs

    async def _rolling(self, d: Obj, new_rs: Obj, old_rs: list[Obj]) -> tuple[Obj, list[Obj]]:
        """kube's rolloutRolling: reconcileNewReplicaSet, then reconcileOldReplicaSets."""
        want = int((d.get("spec") or {}).get("replicas", 1))
        surge, max_unavailable = du.surge_and_unavailable(d)
        if not any(du.replicas_of(rs) for rs in old_rs):
            return await self._scale(d, new_rs, want), old_rs
        # Scale up the new ReplicaSet as far as maxSurge allows.
        if du.replicas_of(new_rs) > want:
            new_rs = await self._scale(d, new_rs, want)
        else:
            current = du.replicas_of(new_rs) + sum(du.replicas_of(rs) for rs in old_rs)
            room = want + surge - current
            if room > 0:
                new_rs = await self._scale(d, new_rs, du.replicas_of(new_rs) + min(room, want - du.replicas_of(new_rs)))
        # Scale down old ReplicaSets, never below want - maxUnavailable available pods.
        old_rs = sorted(old_rs, key=du.revision)
        all_pods = du.replicas_of(new_rs) + sum(du.replicas_of(rs) for rs in old_rs)
        min_available = want - max_unavailable
        new_unavailable = du.replicas_of(new_rs) - du.status_of(new_rs, "availableReplicas")
        max_scaled_down = all_pods - min_available - new_unavailable
        if max_scaled_down <= 0:
            return new_rs, old_rs
        # Unhealthy old replicas go first: removing them costs no availability.
        done = 0
        for i, rs in enumerate(old_rs):
            if done >= max_scaled_down:
                break
            unhealthy = du.replicas_of(rs) - du.status_of(rs, "availableReplicas")
            if du.replicas_of(rs) == 0 or unhealthy <= 0:
                continue
            cut = min(max_scaled_down - done, unhealthy)
            old_rs[i] = await self._scale(d, rs, du.replicas_of(rs) - cut)
            done += cut
        available = du.status_of(new_rs, "availableReplicas") + sum(du.status_of(rs, "availableReplicas")
                                                                    for rs in old_rs)
        if available <= min_available:
            return new_rs, old_rs
        budget = available - min_available
        done = 0
        for i, rs in enumerate(old_rs):
            if done >= budget:
                break
            if du.replicas_of(rs) == 0:
                continue
            cut = min(du.replicas_of(rs), budget - done)
            old_rs[i] = await self._scale(d, rs, du.replicas_of(rs) - cut)
            done += cut
        return new_rs, old_rs

    async def _cleanup(self, d: Obj, old_rs: list[Obj]) -> None:
        limit = (d.get("spec") or {}).get("revisionHistoryLimit", 10)
        if limit is None:
            return
        idle = sorted((rs for rs in old_rs if du.replicas_of(rs) == 0 and du.status_of(rs, "replicas") == 0
                       and not rs["metadata"].get("deletionTimestamp")), key=du.revision)
        for rs in idle[:max(0, len(idle) - int(limit))]:
            try:
                await self.rs_client.delete(rs["metadata"]["name"], rs["metadata"]["namespace"],
                                            uid=rs["metadata"]["uid"])
            except (errors.NotFound, errors.Conflict):
                pass

    async def _update_status(self, d: Obj, new_rs: Obj | None, old_rs: list[Obj]) -> None:
        spec = d.get("spec") or {}
        want = int(spec.get("replicas", 1))
        all_rs = ([new_rs] if new_rs else []) + old_rs
        replicas = sum(du.status_of(rs, "replicas") for rs in all_rs)
        available = sum(du.status_of(rs, "availableReplicas") for rs in all_rs)
        ready = sum(du.status_of(rs, "readyReplicas") for rs in all_rs)
        updated = du.status_of(new_rs, "replicas") if new_rs else 0
        _, max_unavailable = du.surge_and_unavailable(d)
        old_status = d.get("status") or {}
        now = meta.now_rfc3339()
        conds = {c["type"]: c for c in old_status.get("conditions") or []}

        def set_cond(ctype: str, status: str, reason: str, message: str) -> None:
            prev = conds.get(ctype)
            transition = prev["lastTransitionTime"] if prev and prev.get("status") == status else now
            if prev and prev.get("status") == status and prev.get("reason") == reason and \
                    prev.get("message") == message:
                return
            conds[ctype] = {"type": ctype, "status": status, "lastUpdateTime": now, "lastTransitionTime": transition,
                            "reason": reason, "message": message}

        if available >= want - max_unavailable:
            set_cond("Available", "True", "MinimumReplicasAvailable", "Deployment has minimum availability.")
        else:
            set_cond("Available", "False", "MinimumReplicasUnavailable", "Deployment does not have minimum availability.")
        rs_name = new_rs["metadata"]["name"] if new_rs else ""
        complete = (new_rs is not None and updated == want and replicas == want and available >= want
                    and du.status_of(new_rs, "availableReplicas") >= want)
        if spec.get("paused"):
            set_cond("Progressing", "Unknown", "DeploymentPaused", "Deployment is paused")
        elif complete:
            set_cond("Progressing", "True", "NewReplicaSetAvailable", f'ReplicaSet "{rs_name}" has successfully progressed.')
        elif new_rs is not None:
            prev = conds.get("Progressing")
            progressed = (old_status.get("updatedReplicas", 0) != updated or old_status.get("availableReplicas", 0)
                          != available or old_status.get("readyReplicas", 0) != ready
                          or prev is None or prev.get("reason") in ("NewReplicaSetAvailable", "DeploymentPaused"))
            deadline = spec.get("progressDeadlineSeconds")
            last = meta.parse_time(str((prev or {}).get("lastUpdateTime") or "")) if prev else None
            if progressed:
                conds["Progressing"] = {"type": "Progressing", "status": "True", "lastUpdateTime": now,
                                        "lastTransitionTime": (prev or {}).get("lastTransitionTime", now)
                                        if (prev or {}).get("status") == "True" else now,
                                        "reason": "ReplicaSetUpdated",
                                        "message": f'ReplicaSet "{rs_name}" is progressing.'}
            elif deadline is not None and last is not None and \
                    (datetime.now(UTC) - last).total_seconds() > int(deadline):
                set_cond("Progressing", "False", "ProgressDeadlineExceeded",
                         f'ReplicaSet "{rs_name}" has timed out progressing.')
            if deadline is not None and not complete:
                self.queue.add_after(object_key(d), min(float(deadline), 10.0))
        status: Obj = {
            "observedGeneration": d["metadata"].get("generation", 1),
            "replicas": replicas, "updatedReplicas": updated, "readyReplicas": ready,
            "availableReplicas": available, "unavailableReplicas": max(want - available, 0),
            "conditions": [conds[k] for k in ("Available", "Progressing") if k in conds],
        }
        if old_status.get("collisionCount"):
            status["collisionCount"] = old_status["collisionCount"]
        if all(old_status.get(k) == v for k, v in status.items()):
            return
        try:
            await self.deploy_client.patch(d["metadata"]["name"], {"status": status}, d["metadata"]["namespace"],
                                           subresource="status", field_manager="deployment-controller")
        except errors.NotFound:
            pass
