"""Garbage collector: delete objects whose owners are gone, and carry out cascading deletes.

Like kubernetes pkg/controller/garbagecollector, it watches (metadata of) every listable
resource and keeps a graph of ownerReferences by uid:
- background: when every owner of an object is gone, the object is deleted (itself in background);
- foreground: an owner being deleted with the `foregroundDeletion` finalizer waits until its
  dependents with blockOwnerDeletion are gone (they are deleted in foreground too), then the
  finalizer is removed and the owner goes;
- orphan: an owner with the `orphan` finalizer has its references removed from its dependents,
  then the finalizer is removed.
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass, field
from typing import Any

from pocketkube.api import errors
from pocketkube.api.resources import ResourceInfo
from pocketkube.client.informer import Informer
from pocketkube.client.rest import APIClient, ResourceClient
from pocketkube.controllers.base import Controller

log = logging.getLogger(__name__)
Obj = dict[str, Any]

FOREGROUND = "foregroundDeletion"
ORPHAN = "orphan"


@dataclass
class Node:
    uid: str
    client: ResourceClient
    namespace: str
    name: str
    owners: list[Obj] = field(default_factory=list)
    finalizers: list[str] = field(default_factory=list)
    deleting: bool = False


class GarbageCollector(Controller):
    name = "garbage-collector"
    workers = 4

    def __init__(self, client: APIClient) -> None:
        super().__init__()
        self.client = client
        self.nodes: dict[str, Node] = {}
        self.dependents: dict[str, set[str]] = {}
        self.kinds: dict[tuple[str, str], ResourceInfo] = {}
        for info in client.table:
            if "list" in info.verbs and "watch" in info.verbs and "delete" in info.verbs:
                self.kinds[(info.api_version, info.kind)] = info
                inf = Informer(client.resource(info.group, info.version, info.plural))
                inf.add_handler(self._handler(client.resource(info.group, info.version, info.plural)))
                self.informers.append(inf)

    def _handler(self, rc: ResourceClient) -> Any:
        def handle(old: Obj | None, new: Obj | None) -> None:
            obj = new if new is not None else old
            assert obj is not None
            md = obj.get("metadata") or {}
            uid = md.get("uid", "")
            if new is None:
                node = self.nodes.pop(uid, None)
                for ref in (node.owners if node else []):
                    self.dependents.get(ref.get("uid", ""), set()).discard(uid)
                for dep in self.dependents.get(uid, set()):
                    self.queue.add(dep)
                # owners waiting in foreground for this dependent
                for ref in md.get("ownerReferences") or []:
                    self.queue.add(ref.get("uid", ""))
                return
            node = self.nodes.get(uid)
            owners = list(md.get("ownerReferences") or [])
            if node is not None:
                for ref in node.owners:
                    self.dependents.get(ref.get("uid", ""), set()).discard(uid)
            node = Node(uid, rc, md.get("namespace", ""), md.get("name", ""), owners, list(md.get("finalizers") or []),
                        bool(md.get("deletionTimestamp")))
            self.nodes[uid] = node
            for ref in owners:
                self.dependents.setdefault(ref.get("uid", ""), set()).add(uid)
                self.queue.add(uid)
            if node.deleting and (FOREGROUND in node.finalizers or ORPHAN in node.finalizers):
                self.queue.add(uid)
            for dep in self.dependents.get(uid, set()):
                if node.deleting:
                    self.queue.add(dep)
        return handle

    def _owner_exists(self, ref: Obj, namespace: str) -> bool:
        node = self.nodes.get(ref.get("uid", ""))
        return node is not None

    async def sync(self, uid: str) -> None:
        node = self.nodes.get(uid)
        if node is None:
            return
        if node.deleting and ORPHAN in node.finalizers:
            await self._orphan_dependents(node)
            return
        if node.deleting and FOREGROUND in node.finalizers:
            await self._foreground(node)
            return
        if not node.owners or node.deleting:
            return
        absent = [r for r in node.owners if not self._owner_exists(r, node.namespace)]
        if not absent:
            # An owner being deleted in foreground deletes its blocking dependents.
            for ref in node.owners:
                owner = self.nodes.get(ref.get("uid", ""))
                if owner and owner.deleting and FOREGROUND in owner.finalizers and ref.get("blockOwnerDeletion"):
                    await self._delete(node, "Foreground")
                    return
            return
        # Confirm with the API server that the owners are really gone (the caches may lag).
        for ref in absent:
            if await self._owner_live(ref, node.namespace):
                return
        if len(absent) == len(node.owners):
            await self._delete(node, "Background")
        else:
            keep = [r for r in node.owners if r not in absent]
            await self._patch_owners(node, keep)

    async def _owner_live(self, ref: Obj, namespace: str) -> bool:
        info = self.kinds.get((ref.get("apiVersion", ""), ref.get("kind", "")))
        if info is None:
            return False
        rc = self.client.resource(info.group, info.version, info.plural)
        try:
            owner = await rc.get(ref.get("name", ""), namespace if info.namespaced else None)
        except errors.NotFound:
            return False
        return bool(owner.get("metadata", {}).get("uid") == ref.get("uid"))

    async def _delete(self, node: Node, policy: str) -> None:
        try:
            await node.client.delete(node.name, node.namespace or None, propagation_policy=policy, uid=node.uid)
        except (errors.NotFound, errors.Conflict):
            pass

    async def _patch_owners(self, node: Node, refs: list[Obj]) -> None:
        try:
            await node.client.patch(node.name, {"metadata": {"ownerReferences": refs or None}}, node.namespace or None,
                                    field_manager="garbage-collector")
        except errors.NotFound:
            pass

    async def _remove_finalizer(self, node: Node, finalizer: str) -> None:
        try:
            current = await node.client.get(node.name, node.namespace or None)
        except errors.NotFound:
            return
        fins = [f for f in current["metadata"].get("finalizers") or [] if f != finalizer]
        try:
            await node.client.patch(node.name, {"metadata": {"finalizers": fins,
                                    "resourceVersion": current["metadata"]["resourceVersion"]}},
                                    node.namespace or None, field_manager="garbage-collector")
        except errors.NotFound:
            pass

    async def _orphan_dependents(self, node: Node) -> None:
        for dep_uid in list(self.dependents.get(node.uid, set())):
            dep = self.nodes.get(dep_uid)
            if dep is None:
                continue
            await self._patch_owners(dep, [r for r in dep.owners if r.get("uid") != node.uid])
        await self._remove_finalizer(node, ORPHAN)

    async def _foreground(self, node: Node) -> None:
        blocking = []
        for dep_uid in list(self.dependents.get(node.uid, set())):
            dep = self.nodes.get(dep_uid)
            if dep is None:
                continue
            ref = next((r for r in dep.owners if r.get("uid") == node.uid), {})
            if not dep.deleting:
                await self._delete(dep, "Foreground")
            if ref.get("blockOwnerDeletion"):
                blocking.append(dep)
        if blocking:
            self.queue.add_after(node.uid, 0.5)
            return
        await self._remove_finalizer(node, FOREGROUND)

    async def run(self) -> None:
        # Each informer is its own watch; start them all, then the workers.
        async with asyncio.TaskGroup() as tg:
            for inf in self.informers:
                inf.start(tg)
            await asyncio.gather(*(inf.synced.wait() for inf in self.informers))
            for uid in list(self.nodes):
                self.queue.add(uid)
            for i in range(self.workers):
                tg.create_task(self._worker(), name=f"gc-worker-{i}")
