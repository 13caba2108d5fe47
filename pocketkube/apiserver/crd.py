"""CustomResourceDefinitions: serve each CRD's resources and mark it Established.

kube-apiserver runs this inside its apiextensions part: when a CRD appears, its served versions
join discovery and the REST tree (with its schema for validation and OpenAPI, and its printer
columns for tables); NamesAccepted and Established conditions are written to its status. When the
CRD goes, so do its routes (its objects are deleted first, by the CRD's finalizer).
"""

from __future__ import annotations

import asyncio
import contextlib
import copy
import logging
from typing import TYPE_CHECKING, Any

from pocketkube.api import meta
from pocketkube.api.resources import ALL_VERBS, ResourceInfo, Subresource
from pocketkube.apiserver.watch_cache import CacheWatcher

if TYPE_CHECKING:
    from pocketkube.apiserver.server import APIServer

log = logging.getLogger(__name__)
Obj = dict[str, Any]


def infos_for(crd: Obj) -> list[tuple[ResourceInfo, Obj]]:
    spec = crd.get("spec") or {}
    names = spec.get("names") or {}
    group = spec.get("group", "")
    out = []
    for v in spec.get("versions") or []:
        if not v.get("served", True):
            continue
        subs: list[Subresource] = []
        subdef = v.get("subresources") or {}
        if "status" in subdef:
            subs.append(Subresource("status", names.get("kind", ""), ("get", "patch", "update")))
        if "scale" in subdef:
            subs.append(Subresource("scale", "Scale", ("get", "patch", "update"), group="autoscaling", version="v1"))
        info = ResourceInfo(
            group=group, version=v.get("name", ""), kind=names.get("kind", ""), plural=names.get("plural", ""),
            singular=names.get("singular") or str(names.get("kind", "")).lower(),
            namespaced=spec.get("scope", "Namespaced") == "Namespaced",
            short_names=tuple(names.get("shortNames") or ()), categories=tuple(names.get("categories") or ()),
            verbs=ALL_VERBS, subresources=tuple(subs), list_kind=names.get("listKind", ""), custom=True)
        out.append((info, v))
    return out


class CRDWatcher:
    def __init__(self, server: APIServer) -> None:
        self.server = server
        self.info = server.table.get("apiextensions.k8s.io", "v1", "customresourcedefinitions")
        assert self.info is not None
        self._served: dict[str, list[ResourceInfo]] = {}
        self._task: asyncio.Task[None] | None = None
        self._watcher: CacheWatcher | None = None

    async def start(self) -> None:
        assert self.info is not None
        cache = self.server.cache
        prefix = self.info.key_prefix()
        for co in cache.list_prefix(prefix):
            await self._sync(co.obj)
        self._watcher = cache.watch(prefix, cache.revision, None)
        self._task = asyncio.get_running_loop().create_task(self._run(), name="crd-watcher")

    async def stop(self) -> None:
        if self._watcher is not None:
            self.server.cache.unwatch(self._watcher)
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task

    async def _run(self) -> None:
        assert self._watcher is not None
        while True:
            item = await self._watcher.queue.get()
            if item is None:
                # The cache relisted: start over from its current state.
                await asyncio.sleep(0.1)
                await self.start_over()
                return
            event_type, event = item
            try:
                if event_type == "DELETED":
                    self._remove(meta.name_of(event.obj.obj))
                else:
                    await self._sync(event.obj.obj)
            except Exception:
                log.exception("CRD %s: sync failed", event.key)

    async def start_over(self) -> None:
        for name in list(self._served):
            self._remove(name)
        await self.start()

    def _remove(self, name: str) -> None:
        for info in self._served.pop(name, []):
            self.server.table.remove(info.group, info.version, info.plural)
            key = (info.group, info.version, info.plural)
            self.server.crd_schemas.pop(key, None)
            self.server.crd_printer_columns.pop(key, None)

    async def _sync(self, crd: Obj) -> None:
        name = meta.name_of(crd)
        self._remove(name)
        if crd.get("metadata", {}).get("deletionTimestamp"):
            await self._finish_delete(crd)
            return
        infos = infos_for(crd)
        for info, version in infos:
            key = (info.group, info.version, info.plural)
            schema = (version.get("schema") or {}).get("openAPIV3Schema")
            if isinstance(schema, dict):
                self.server.crd_schemas[key] = schema
            cols = version.get("additionalPrinterColumns")
            if cols:
                self.server.crd_printer_columns[key] = cols
            self.server.table.add(info)
        self._served[name] = [i for i, _ in infos]
        await self._mark_established(crd)

    async def _mark_established(self, crd: Obj) -> None:
        status = crd.get("status") or {}
        conds = {c.get("type"): c for c in status.get("conditions") or []}
        if conds.get("Established", {}).get("status") == "True" and conds.get("NamesAccepted", {}).get("status") == "True":
            return
        assert self.info is not None
        store = self.server.store_for(self.info)
        spec = crd.get("spec") or {}
        now = meta.now_rfc3339()

        async def mutate(current: Obj) -> Obj:
            new = copy.deepcopy(current)
            st = new.setdefault("status", {})
            st["conditions"] = [
                {"type": "NamesAccepted", "status": "True", "lastTransitionTime": now, "reason": "NoConflicts",
                 "message": "no conflicts found"},
                {"type": "Established", "status": "True", "lastTransitionTime": now, "reason": "InitialNamesAccepted",
                 "message": "the initial names have been accepted"},
            ]
            st["acceptedNames"] = copy.deepcopy(spec.get("names") or {})
            st["storedVersions"] = [v["name"] for v in spec.get("versions") or [] if v.get("storage")]
            return new

        from pocketkube.apiserver.registry.store import WriteOptions

        with contextlib.suppress(Exception):
            await store.guaranteed_update("", meta.name_of(crd), mutate, WriteOptions(), subresource="status")

    async def _finish_delete(self, crd: Obj) -> None:
        """Delete every object of the CRD, then drop its finalizer so the CRD itself goes."""
        finalizers = crd.get("metadata", {}).get("finalizers") or []
        if "customresourcecleanup.apiextensions.k8s.io" not in finalizers:
            return
        spec = crd.get("spec") or {}
        group = spec.get("group", "")
        plural = (spec.get("names") or {}).get("plural", "")
        prefix = f"/registry/{group}/{plural}/"
        for co in self.server.cache.list_prefix(prefix):
            with contextlib.suppress(Exception):
                await self.server.storage.delete(co.key)
        assert self.info is not None
        store = self.server.store_for(self.info)

        async def mutate(current: Obj) -> Obj:
            new = copy.deepcopy(current)
            new["metadata"]["finalizers"] = [f for f in new["metadata"].get("finalizers") or []
                                             if f != "customresourcecleanup.apiextensions.k8s.io"]
            return new

        from pocketkube.apiserver.subresources import _internal_update

        with contextlib.suppress(Exception):
            await _internal_update(store, "", meta.name_of(crd), mutate, False)
