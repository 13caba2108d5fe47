"""Namespace lifecycle: empty a terminating namespace, then release it.

When a namespace is deleted the API server marks it Terminating and keeps it while
`spec.finalizers` holds "kubernetes". This loop (kubernetes pkg/controller/namespace) deletes
every namespaced object in it, resource by resource, waits until nothing is left (pods may take
their grace period, objects their finalizers), then removes the finalizer through /finalize, and
the namespace goes away.
"""

from __future__ import annotations

from typing import Any

from pocketkube.api import errors
from pocketkube.client.informer import Informer
from pocketkube.client.rest import APIClient
from pocketkube.controllers.base import Controller

Obj = dict[str, Any]
FINALIZER = "kubernetes"


class NamespaceController(Controller):
    name = "namespace"

    def __init__(self, client: APIClient, *, recheck_seconds: float = 1.0) -> None:
        super().__init__()
        self.client = client
        self.recheck_seconds = recheck_seconds
        self.namespaces = Informer(client.core("namespaces"))
        self.namespaces.add_handler(self.enqueue_handler)
        self.informers = [self.namespaces]

    async def _namespaced_resources(self) -> list[tuple[str, str, str, bool]]:
        """(group, version, plural, has deletecollection) of every namespaced listable resource."""
        out: list[tuple[str, str, str, bool]] = []
        core = await self.client.request("GET", "/api/v1")
        groups = await self.client.request("GET", "/apis")
        lists = [("", "v1", core)]
        for g in groups.get("groups") or []:
            pv = g.get("preferredVersion") or {}
            gv = pv.get("groupVersion", "")
            try:
                lists.append((g["name"], pv.get("version", ""), await self.client.request("GET", f"/apis/{gv}")))
            except errors.StatusError:
                continue
        for group, version, rl in lists:
            for r in rl.get("resources") or []:
                verbs = r.get("verbs") or []
                if "/" in r["name"] or not r.get("namespaced") or "list" not in verbs or "delete" not in verbs:
                    continue
                if group == "events.k8s.io":
                    continue  # the same objects as core/v1 events
                out.append((group, version, r["name"], "deletecollection" in verbs))
        return out

    async def sync(self, key: str) -> None:
        ns = self.namespaces.get(key)
        if ns is None or not ns.get("metadata", {}).get("deletionTimestamp"):
            return
        if FINALIZER not in ((ns.get("spec") or {}).get("finalizers") or []):
            return
        name = ns["metadata"]["name"]
        remaining = 0
        for group, version, plural, collection in await self._namespaced_resources():
            base = f"/apis/{group}/{version}" if group else f"/api/{version}"
            path = f"{base}/namespaces/{name}/{plural}"
            try:
                listed = await self.client.request("GET", path)
            except errors.StatusError:
                continue
            items = listed.get("items") or []
            if not items:
                continue
            remaining += len(items)
            pending = [i for i in items if not i.get("metadata", {}).get("deletionTimestamp")]
            if not pending:
                continue
            body = {"kind": "DeleteOptions", "apiVersion": "v1", "propagationPolicy": "Background"}
            if collection:
                await self.client.request("DELETE", path, body=body)
            else:
                for item in pending:
                    try:
                        await self.client.request("DELETE", f"{path}/{item['metadata']['name']}", body=body)
                    except errors.NotFound:
                        pass
        if remaining:
            self.queue.add_after(key, self.recheck_seconds)
            return
        spec = dict(ns.get("spec") or {})
        spec["finalizers"] = [f for f in spec.get("finalizers") or [] if f != FINALIZER]
        fin: Obj = {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": name}, "spec": spec}
        try:
            await self.client.request("PUT", f"/api/v1/namespaces/{name}/finalize", body=fin)
        except errors.NotFound:
            pass
