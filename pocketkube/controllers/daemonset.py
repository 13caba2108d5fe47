"""DaemonSet: one pod on every eligible node (kubernetes pkg/controller/daemon/daemon_controller.go).

Node, pod and DaemonSet events enqueue the DaemonSet's key. `sync(key)` snapshots the template as
a ControllerRevision (revisions.py), then walks the nodes: where a pod should run (node_fit.py:
nodeSelector, required node affinity, tolerated taints) and none does, it creates one pinned to
the node by a required node affinity on metadata.name — the scheduler binds it; where one must
not run, or there are duplicates or failed pods, it deletes. RollingUpdate then replaces pods of
old revisions (daemonset_update.py: within maxUnavailable, or surging up to maxSurge); OnDelete
waits for the user to delete them. Creates go in slow-start batches under expectations, like the
ReplicaSet's.
"""

from __future__ import annotations

import asyncio
import copy
import logging
from typing import Any

from pocketkube.api import errors
from pocketkube.api.selectors import selector_from_spec
from pocketkube.client.events import EventRecorder
from pocketkube.client.informer import Informer
from pocketkube.client.rest import APIClient
from pocketkube.controllers import daemonset_update, node_fit, revisions
from pocketkube.controllers.base import Controller
from pocketkube.controllers.expectations import Expectations
from pocketkube.controllers.owned_pods import observe_pod_event
from pocketkube.controllers.pod_util import controller_ref, is_available, is_ready, pod_from_template

log = logging.getLogger(__name__)
Obj = dict[str, Any]
MANAGER = "daemonset-controller"
GENERATION_LABEL = "pod-template-generation"


def _created(pod: Obj) -> str:
    return str(pod["metadata"].get("creationTimestamp") or "")


class DaemonSetController(Controller):
    name = "daemonset"
    workers = 2

    def __init__(self, client: APIClient) -> None:
        super().__init__()
        self.ds_client = client.resource("apps", "v1", "daemonsets")
        self.rev_client = client.resource("apps", "v1", "controllerrevisions")
        self.pods_client = client.core("pods")
        self.daemonsets = Informer(self.ds_client)
        self.pods = Informer(self.pods_client)
        self.nodes = Informer(client.core("nodes"))
        self.revisions = Informer(self.rev_client)
        self.daemonsets.add_handler(self.enqueue_handler)
        self.pods.add_handler(self._pod_changed)
        self.nodes.add_handler(self._node_changed)
        self.informers = [self.daemonsets, self.pods, self.nodes, self.revisions]
        self.expectations = Expectations()
        self.recorder = EventRecorder(client, MANAGER)
        self.pod_control = self  # test seam: create_pod / delete_pod

    # ---- event handlers --------------------------------------------------------------------
    def _pod_changed(self, old: Obj | None, new: Obj | None) -> None:
        observe_pod_event(old, new, "DaemonSet", self.expectations, self.queue)

    def _node_changed(self, old: Obj | None, new: Obj | None) -> None:
        if old is not None and new is not None and (
                old["metadata"].get("labels") == new["metadata"].get("labels")
                and (old.get("spec") or {}).get("taints") == (new.get("spec") or {}).get("taints")):
            return
        for ds in self.daemonsets.list():
            self.enqueue(ds)

    # ---- pod control -----------------------------------------------------------------------
    async def create_pod(self, ds: Obj, node_name: str, revision_hash: str) -> None:
        template = copy.deepcopy((ds.get("spec") or {}).get("template") or {})
        labels = template.setdefault("metadata", {}).setdefault("labels", {})
        labels[revisions.HASH_LABEL] = revision_hash
        labels[GENERATION_LABEL] = str(ds["metadata"].get("generation", 1))
        template["spec"] = node_fit.pin_to_node(template.get("spec") or {}, node_name)
        pod = pod_from_template(template, ds)
        created = await self.pods_client.create(pod, ds["metadata"]["namespace"], field_manager=MANAGER)
        await self.recorder.event(ds, "Normal", "SuccessfulCreate", f"Created pod: {created['metadata']['name']}")

    async def delete_pod(self, ds: Obj, pod: Obj) -> None:
        await self.pods_client.delete(pod["metadata"]["name"], pod["metadata"]["namespace"],
                                      uid=pod["metadata"].get("uid"))
        await self.recorder.event(ds, "Normal", "SuccessfulDelete", f"Deleted pod: {pod['metadata']['name']}")

    # ---- sync ------------------------------------------------------------------------------
    def _pods_by_node(self, ds: Obj) -> dict[str, list[Obj]]:
        ns, uid = ds["metadata"]["namespace"], ds["metadata"]["uid"]
        out: dict[str, list[Obj]] = {}
        for pod in self.pods.list():
            if pod["metadata"].get("namespace") != ns or (controller_ref(pod) or {}).get("uid") != uid:
                continue
            node = node_fit.target_node(pod)
            if node is not None:
                out.setdefault(node, []).append(pod)
        for pods in out.values():
            pods.sort(key=_created)
        return out

    async def _adopt_orphans(self, ds: Obj) -> None:
        ns = ds["metadata"]["namespace"]
        sel = selector_from_spec((ds.get("spec") or {}).get("selector"))
        for pod in self.pods.list():
            md = pod["metadata"]
            if (md.get("namespace") != ns or controller_ref(pod) is not None or md.get("deletionTimestamp")
                    or not sel.matches(md.get("labels") or {})):
                continue
            refs = [*(md.get("ownerReferences") or []), _owner_ref(ds)]
            try:
                await self.pods_client.patch(md["name"], {"metadata": {
                    "ownerReferences": refs, "resourceVersion": md["resourceVersion"]}}, ns, field_manager=MANAGER)
            except (errors.Conflict, errors.NotFound):
                pass

    async def sync(self, key: str) -> None:
        cached = self.daemonsets.get(key)
        if cached is None:
            self.expectations.forget(key)
            return
        ds: Obj = {**cached, "apiVersion": "apps/v1", "kind": "DaemonSet"}
        if ds["metadata"].get("deletionTimestamp"):
            return
        await self._adopt_orphans(ds)
        history = revisions.owned_revisions(self.revisions.list(), ds)
        template = (ds.get("spec") or {}).get("template") or {}
        current = await revisions.ensure_revision(self.rev_client, ds, template, history, field_manager=MANAGER)
        current_hash = revisions.revision_hash(current)
        by_node = self._pods_by_node(ds)
        error: Exception | None = None
        if self.expectations.satisfied(key):
            error = await self._manage(key, ds, by_node, current_hash)
        live = {(p["metadata"].get("labels") or {}).get(revisions.HASH_LABEL, "") for ps in by_node.values() for p in ps}
        await revisions.truncate_history(self.rev_client, ds, history, live | {current_hash})
        await self._update_status(ds, by_node, current_hash)
        min_ready = int((ds.get("spec") or {}).get("minReadySeconds") or 0)
        if min_ready > 0 and any(is_ready(p) and not is_available(p, min_ready) for ps in by_node.values() for p in ps):
            self.queue.add_after(key, min_ready)  # readiness ripens into availability without an event
        if error is not None:
            raise error

    def _desired(self, ds: Obj, by_node: dict[str, list[Obj]]) -> dict[str, list[Obj]]:
        """Each node that should run a daemon pod → its live pods, oldest first."""
        pod_spec = ((ds.get("spec") or {}).get("template") or {}).get("spec") or {}
        return {n["metadata"]["name"]: [p for p in by_node.get(n["metadata"]["name"], [])
                                        if not p["metadata"].get("deletionTimestamp")]
                for n in self.nodes.list() if node_fit.should_run(pod_spec, n)[0]}

    def _plan(self, ds: Obj, by_node: dict[str, list[Obj]], current_hash: str) -> tuple[list[str], list[Obj]]:
        """(nodes needing a pod, pods to delete) — podsShouldBeOnNode for every node."""
        pod_spec = ((ds.get("spec") or {}).get("template") or {}).get("spec") or {}
        surge = daemonset_update.surging(ds)
        create: list[str] = []
        delete: list[Obj] = []
        names = set()
        for node in self.nodes.list():
            name = node["metadata"]["name"]
            names.add(name)
            run, keep = node_fit.should_run(pod_spec, node)
            pods = [p for p in by_node.get(name, []) if not p["metadata"].get("deletionTimestamp")]
            failed = [p for p in pods if (p.get("status") or {}).get("phase") == "Failed"]
            alive = [p for p in pods if p not in failed]
            delete += failed
            if run and not alive:
                create.append(name)
            elif not keep:
                delete += alive
            elif len(alive) == 2 and surge and sum(daemonset_update.is_updated(p, current_hash) for p in alive) == 1:
                continue  # an old pod and its surge replacement: the rolling update settles it
            elif len(alive) > 1:
                delete += alive[1:]  # keep the oldest
        for name, pods in by_node.items():
            if name not in names:
                delete += [p for p in pods if not p["metadata"].get("deletionTimestamp")]
        return create, delete

    async def _manage(self, key: str, ds: Obj, by_node: dict[str, list[Obj]], current_hash: str) -> Exception | None:
        create, delete = self._plan(ds, by_node, current_hash)
        if not create and not delete:
            create, delete = daemonset_update.rolling_plan(ds, self._desired(ds, by_node), current_hash)
        self.expectations.expect(key, adds=len(create), dels=len(delete))
        error: Exception | None = None
        results = await asyncio.gather(*(self.pod_control.delete_pod(ds, p) for p in delete), return_exceptions=True)
        failed_dels = [r for r in results if isinstance(r, Exception)]
        if failed_dels:
            self.expectations.lower(key, dels=len(failed_dels))
            error = next((r for r in failed_dels if not isinstance(r, errors.NotFound)), None)
        done, batch = 0, 1
        while done < len(create):
            chunk = create[done:done + batch]
            results = await asyncio.gather(*(self.pod_control.create_pod(ds, n, current_hash) for n in chunk),
                                           return_exceptions=True)
            done += len(chunk)
            failures = [r for r in results if isinstance(r, Exception)]
            if failures:
                self.expectations.lower(key, adds=len(failures) + len(create) - done)
                error = error or failures[0]
                break
            batch *= 2
        return error

    def compute_status(self, ds: Obj, by_node: dict[str, list[Obj]], current_hash: str) -> Obj:
        spec = ds.get("spec") or {}
        pod_spec = (spec.get("template") or {}).get("spec") or {}
        min_ready = int(spec.get("minReadySeconds") or 0)
        desired = scheduled = misscheduled = ready = available = updated = 0
        for node in self.nodes.list():
            run, _ = node_fit.should_run(pod_spec, node)
            pods = [p for p in by_node.get(node["metadata"]["name"], []) if not p["metadata"].get("deletionTimestamp")]
            if run:
                desired += 1
                if pods:
                    scheduled += 1
                    pod = pods[0]
                    ready += is_ready(pod)
                    available += is_available(pod, min_ready)
                    updated += (pod["metadata"].get("labels") or {}).get(revisions.HASH_LABEL) == current_hash
            elif pods:
                misscheduled += 1
        return {"desiredNumberScheduled": desired, "currentNumberScheduled": scheduled,
                "numberMisscheduled": misscheduled, "numberReady": ready, "numberAvailable": available,
                "numberUnavailable": desired - available, "updatedNumberScheduled": updated,
                "observedGeneration": ds["metadata"].get("generation", 1)}

    async def _update_status(self, ds: Obj, by_node: dict[str, list[Obj]], current_hash: str) -> None:
        status = self.compute_status(ds, by_node, current_hash)
        old = ds.get("status") or {}
        if all(old.get(k, 0) == v for k, v in status.items()):
            return
        try:
            await self.ds_client.patch(ds["metadata"]["name"], {"status": status}, ds["metadata"]["namespace"],
                                       subresource="status", field_manager=MANAGER)
        except errors.NotFound:
            pass


def _owner_ref(ds: Obj) -> Obj:
    return {"apiVersion": "apps/v1", "kind": "DaemonSet", "name": ds["metadata"]["name"],
            "uid": ds["metadata"]["uid"], "controller": True, "blockOwnerDeletion": True}

