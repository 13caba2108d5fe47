"""ResourceQuota admission: charge each write to the namespace's quotas before it is stored.

As kube-apiserver's ResourceQuota plugin does, the charge is written to `status.used` of every
matching quota with compare-and-swap on its revision BEFORE the object itself is stored, so two
concurrent creates cannot both squeeze under a limit: the second sees the first's charge (or loses
the swap and tries again). Writes in one namespace are checked one at a time. A charge for a write
that later fails is not refunded here; the resourcequota controller recomputes true usage.
The arithmetic and the refusal messages live in api/quota.py.
"""

from __future__ import annotations

import asyncio
import copy
from typing import TYPE_CHECKING, Any

from pocketkube.api import errors, meta
from pocketkube.api import quota as q
from pocketkube.api.resources import ResourceInfo
from pocketkube.apiserver.registry.store import encode
from pocketkube.storage.interface import ConflictError, KeyNotFoundError

if TYPE_CHECKING:
    from pocketkube.apiserver.server import APIServer

Obj = dict[str, Any]
MAX_ATTEMPTS = 16


class QuotaAdmission:
    def __init__(self, server: APIServer) -> None:
        self.server = server
        self._locks: dict[str, asyncio.Lock] = {}

    def _quota_prefix(self, namespace: str) -> str:
        info = self.server.table.get("", "v1", "resourcequotas")
        assert info is not None
        return info.key_prefix(namespace)

    async def admit(self, operation: str, info: ResourceInfo, obj: Obj, old: Obj | None, dry_run: bool) -> None:
        if not info.namespaced or not q.handles(info.group, info.plural, operation):
            return
        namespace = meta.namespace_of(obj)
        prefix = self._quota_prefix(namespace)
        if not self.server.cache.list_prefix(prefix):
            return  # the common case: no quota in this namespace
        async with self._locks.setdefault(namespace, asyncio.Lock()):
            await self._charge(prefix, operation, info, obj, old, dry_run)

    async def _charge(self, prefix: str, operation: str, info: ResourceInfo, obj: Obj, old: Obj | None,
                      dry_run: bool) -> None:
        charged: set[str] = set()
        cache = self.server.cache
        for _ in range(MAX_ATTEMPTS):
            cached = [co for co in cache.list_prefix(prefix) if co.key not in charged]
            try:
                plan = q.check_request([co.obj for co in cached], info.group, info.plural, operation, obj, old,
                                       meta.now())
            except q.QuotaRefused as e:
                raise errors.Forbidden.for_resource(info.group, info.plural, meta.name_of(obj), str(e)) from e
            if dry_run or not plan:
                return
            retry = False
            for index, used in sorted(plan.items()):
                co = cached[index]
                new = copy.deepcopy(co.obj)
                new.setdefault("status", {})["used"] = q.format_list(used)
                try:
                    kv = await self.server.storage.update(co.key, encode(new), expected_revision=co.mod_revision)
                except ConflictError as e:
                    # Someone (the controller, another server) wrote it first: re-read, re-check.
                    if e.current is not None:
                        await cache.wait_for(e.current.mod_revision)
                    retry = True
                    continue
                except KeyNotFoundError:
                    continue  # the quota was deleted meanwhile: nothing to charge
                charged.add(co.key)
                await cache.wait_for(kv.mod_revision)
            if not retry:
                return
        raise errors.Conflict.for_resource("", "resourcequotas", "", "too many conflicts charging the quota")
