"""ResourceQuota: keep `status.hard` (a copy of spec.hard) and `status.used` (true usage) current.

Quota admission in the API server charges each create to `status.used` before the object is
stored; this loop (kubernetes pkg/controller/resourcequota) recomputes usage from the objects
themselves, which refunds charges for writes that failed and releases what deleted or finished
objects held. Quota changes sync at once; changes of tracked objects, and charges by admission,
sync `settle` seconds after the last charge, so a recount never races creations still in flight
(a recount that missed one would let the next create squeeze past the limit).

Usage is counted from informers for the kinds quotas commonly track; other `count/<resource>`
names are counted with a list call at sync time.
"""

from __future__ import annotations

import logging
import time
from typing import Any

from pocketkube.api import errors
from pocketkube.api import quota as q
from pocketkube.api.meta import now
from pocketkube.client.informer import Informer, object_key
from pocketkube.client.rest import APIClient
from pocketkube.controllers.base import Controller

log = logging.getLogger(__name__)
Obj = dict[str, Any]

# Kinds watched with informers: (group, version, plural).
TRACKED = (("", "v1", "pods"), ("", "v1", "services"), ("", "v1", "configmaps"), ("", "v1", "secrets"),
           ("", "v1", "replicationcontrollers"), ("", "v1", "persistentvolumeclaims"))


class ResourceQuotaController(Controller):
    name = "resourcequota"
    workers = 2

    def __init__(self, client: APIClient, *, settle: float = 1.0) -> None:
        super().__init__()
        self.client = client
        self.settle = settle
        self.quota_client = client.core("resourcequotas")
        self.quotas = Informer(self.quota_client)
        self.quotas.add_handler(self._quota_changed)
        self.objects: dict[tuple[str, str], Informer] = {("", "resourcequotas"): self.quotas}
        for group, version, plural in TRACKED:
            if client.table.get(group, version, plural) is None:
                continue  # not served here (replicationcontrollers)
            inf = Informer(client.resource(group, version, plural))
            inf.add_handler(self._object_changed)
            self.objects[(group, plural)] = inf
        self.informers = list(self.objects.values())
        self._last_charge: dict[str, float] = {}
        self._written: dict[str, str] = {}  # quota key -> resourceVersion of our own last write

    # ---- event handlers --------------------------------------------------------------------
    def _quota_changed(self, old: Obj | None, new: Obj | None) -> None:
        if new is None:
            if old is not None:
                key = object_key(old)
                self._last_charge.pop(key, None)
                self._written.pop(key, None)
                self._namespace_changed(old)  # `resourcequotas` counts in the others
            return
        key = object_key(new)
        if old is None or (old.get("spec") or {}) != (new.get("spec") or {}):
            self.queue.add(key)
            if old is None:
                self._namespace_changed(new)
            return
        used_before = (old.get("status") or {}).get("used")
        if used_before != (new.get("status") or {}).get("used") and \
                self._written.get(key) != new["metadata"].get("resourceVersion"):
            self._last_charge[key] = time.monotonic()  # admission charged it: recount once settled
            self.queue.add_after(key, self.settle)

    def _object_changed(self, old: Obj | None, new: Obj | None) -> None:
        obj = new if new is not None else old
        if obj is not None:
            self._namespace_changed(obj)

    def _namespace_changed(self, obj: Obj) -> None:
        ns = (obj.get("metadata") or {}).get("namespace")
        for quota in self.quotas.list():
            if quota["metadata"].get("namespace") == ns:
                self.queue.add_after(object_key(quota), self.settle)

    # ---- sync ------------------------------------------------------------------------------
    async def _objects_in(self, namespace: str, hard: q.ResourceList) -> dict[tuple[str, str], list[Obj]]:
        out: dict[tuple[str, str], list[Obj]] = {}
        for (group, plural), inf in self.objects.items():
            if q.matching_resources(group, plural, hard):
                out[(group, plural)] = [o for o in inf.list() if o["metadata"].get("namespace") == namespace]
        for name in hard:
            if not name.startswith("count/"):
                continue
            plural, _, group = name[len("count/"):].partition(".")
            if (group, plural) in out or (group, plural) in q.IGNORED:
                continue
            info = next((i for i in self.client.table if i.group == group and i.plural == plural), None)
            if info is None or not info.namespaced:
                continue
            listing = await self.client.resource(info.group, info.version, info.plural).list(namespace)
            out[(group, plural)] = list(listing.get("items") or [])
        return out

    def compute_status(self, quota: Obj, objects: dict[tuple[str, str], list[Obj]]) -> Obj:
        raw_hard = (quota.get("spec") or {}).get("hard") or {}
        hard = q.parse_list(raw_hard)
        used = q.namespace_usage(quota, hard, objects, now())
        return {"hard": dict(raw_hard), "used": q.format_list(used)}

    async def sync(self, key: str) -> None:
        quota = self.quotas.get(key)
        if quota is None:
            return
        waited = time.monotonic() - self._last_charge.get(key, float("-inf"))
        if waited < self.settle:
            self.queue.add_after(key, self.settle - waited)
            return
        hard = q.parse_list((quota.get("spec") or {}).get("hard"))
        objects = await self._objects_in(quota["metadata"]["namespace"], hard)
        status = self.compute_status(quota, objects)
        current = quota.get("status") or {}
        if current.get("hard") == status["hard"] and current.get("used") == status["used"]:
            return
        body = {**quota, "status": status}
        try:
            written = await self.quota_client.update_status(body)
        except errors.NotFound:
            return
        self._written[key] = str(written["metadata"].get("resourceVersion"))
