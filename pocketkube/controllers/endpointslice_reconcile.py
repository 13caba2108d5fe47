"""EndpointSlice reconciling shared by the EndpointSlice and mirroring controllers.

`reconcile` turns the slices a controller owns for one Service into the wanted endpoints (grouped
by address type and by the ports they resolve to) with as few writes as it can, as kubernetes
pkg/controller/endpointslice/reconciler.go does: endpoints stay in the slice they are in, new
ones fill slices with room before new slices (at most `max_per_slice` each) are created, emptied
slices are deleted, and (for the EndpointSlice controller) a Service without endpoints keeps one
empty placeholder slice. `ManagedSlices` applies a plan create → update → delete, so readers
never see a gap, and remembers its own writes until the informer catches up (client-go's
mutation cache): a quick second sync neither duplicates a slice nor updates a stale revision.
"""

from __future__ import annotations

import copy
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from pocketkube.api import errors
from pocketkube.client.informer import Informer, object_key
from pocketkube.client.rest import APIClient
from pocketkube.controllers.endpoint_util import SERVICE_NAME_LABEL

Obj = dict[str, Any]
MANAGED_BY_LABEL = "endpointslice.kubernetes.io/managed-by"
MAX_ENDPOINTS_PER_SLICE = 100
PortsKey = tuple[tuple[str, int, str, str], ...]
Desired = dict[str, dict[PortsKey, tuple[list[Obj], list[Obj]]]]  # address type -> ports -> (ports, endpoints)


@dataclass
class Plan:
    create: list[Obj] = field(default_factory=list)
    update: list[Obj] = field(default_factory=list)
    delete: list[Obj] = field(default_factory=list)


def ports_key(ports: list[Obj] | None) -> PortsKey:
    return tuple(sorted((str(p.get("name") or ""), int(p.get("port") or 0), str(p.get("protocol") or "TCP"),
                         str(p.get("appProtocol") or "")) for p in ports or []))


def endpoint_key(ep: Obj) -> tuple[str, tuple[str, ...]]:
    ref = ep.get("targetRef") or {}
    return str(ref.get("uid") or ref.get("name") or ""), tuple(ep.get("addresses") or [])


def new_slice(svc: Obj, address_type: str, ports: list[Obj], endpoints: list[Obj], labels: dict[str, str]) -> Obj:
    md = svc["metadata"]
    return {"apiVersion": "discovery.k8s.io/v1", "kind": "EndpointSlice",
            "metadata": {"generateName": f"{md['name']}-", "namespace": md["namespace"], "labels": dict(labels),
                         "ownerReferences": [{"apiVersion": "v1", "kind": "Service", "name": md["name"],
                                              "uid": md.get("uid"), "controller": True,
                                              "blockOwnerDeletion": True}]},
            "addressType": address_type, "endpoints": endpoints, "ports": ports}


def _changed(s: Obj, labels: dict[str, str], endpoints: list[Obj], ports: list[Obj]) -> Obj | None:
    if s.get("endpoints") == endpoints and (s["metadata"].get("labels") or {}) == labels \
            and (s.get("ports") or []) == ports:
        return None
    updated = copy.deepcopy(s)
    updated["metadata"]["labels"] = labels
    updated["endpoints"] = endpoints
    updated["ports"] = ports
    return updated


def reconcile(svc: Obj, existing: list[Obj], desired: Desired, max_per_slice: int = MAX_ENDPOINTS_PER_SLICE, *,
              labels: dict[str, str], placeholder: bool = True) -> Plan:
    """The writes that turn `existing` slices (all owned by svc) into `desired`, labelled `labels`."""
    plan = Plan()
    kept: list[Obj] = []  # slices that stay, as they will be
    for address_type, groups in desired.items():
        by_ports: dict[PortsKey, list[Obj]] = {}
        for s in existing:
            if s.get("addressType") == address_type:
                by_ports.setdefault(ports_key(s.get("ports")), []).append(s)
        for pk, (ports, endpoints) in groups.items():
            remaining = {endpoint_key(ep): ep for ep in endpoints}
            slices = [(s, [remaining.pop(k) for ep in s.get("endpoints") or []
                           if (k := endpoint_key(ep)) in remaining]) for s in by_ports.pop(pk, [])]
            left = list(remaining.values())
            for _s, eps in sorted(slices, key=lambda pair: -len(pair[1])):  # fill the fullest first
                room = max(max_per_slice - len(eps), 0)
                eps.extend(left[:room])
                left = left[room:]
            for s, eps in slices:
                if not eps:
                    plan.delete.append(s)
                    continue
                updated = _changed(s, labels, eps, ports)
                if updated is not None:
                    plan.update.append(updated)
                kept.append(updated or s)
            for i in range(0, len(left), max_per_slice):
                plan.create.append(new_slice(svc, address_type, ports, left[i:i + max_per_slice], labels))
        for unwanted in by_ports.values():
            plan.delete.extend(unwanted)
    plan.delete.extend(s for s in existing if s.get("addressType") not in desired)
    if placeholder and not plan.create and not kept:
        # No endpoints at all: one empty placeholder slice remains (reused when one exists).
        families = list(desired) or ["IPv4"]
        reuse = next((s for s in plan.delete if s.get("addressType") == families[0]), None)
        if reuse is None:
            plan.create.append(new_slice(svc, families[0], [], [], labels))
        else:
            plan.delete.remove(reuse)
            updated = _changed(reuse, labels, [], [])
            if updated is not None:
                plan.update.append(updated)
    return plan


def _rv(obj: Obj) -> int:
    try:
        return int(obj["metadata"].get("resourceVersion") or 0)
    except ValueError:
        return 0


def owned_by(s: Obj, svc: Obj) -> bool:
    return any(r.get("kind") == "Service" and r.get("uid") == svc["metadata"].get("uid")
               for r in s["metadata"].get("ownerReferences") or [])




class ManagedSlices:
    """The EndpointSlices one controller manages (by its managed-by label), and how it writes them."""

    def __init__(self, client: APIClient, managed_by: str, enqueue: Callable[[str], None]) -> None:
        self.client = client.resource("discovery.k8s.io", "v1", "endpointslices")
        self.informer = Informer(self.client, label_selector=f"{MANAGED_BY_LABEL}={managed_by}")
        self.informer.add_handler(self._changed)
        self.enqueue = enqueue
        # slice key -> (resourceVersion, object or None when we deleted it) until the informer catches up
        self._recent: dict[str, tuple[int, Obj | None]] = {}

    def _changed(self, old: Obj | None, new: Obj | None) -> None:
        obj = new if new is not None else old
        assert obj is not None
        key = object_key(obj)
        recent = self._recent.get(key)
        if recent is not None and (new is None or _rv(new) >= recent[0]):
            self._recent.pop(key, None)
        svc = (obj["metadata"].get("labels") or {}).get(SERVICE_NAME_LABEL)
        if svc:
            self.enqueue(f"{obj['metadata'].get('namespace')}/{svc}")

    def for_service(self, namespace: str, service: str) -> list[Obj]:
        def ours(s: Obj) -> bool:
            return (s["metadata"].get("namespace") == namespace
                    and (s["metadata"].get("labels") or {}).get(SERVICE_NAME_LABEL) == service)

        found = {object_key(s): s for s in self.informer.list() if ours(s)}
        for key, (rv, obj) in list(self._recent.items()):
            current = found.get(key)
            if obj is None:
                if current is not None and _rv(current) <= rv:
                    found.pop(key)
            elif ours(obj) and (current is None or _rv(current) < rv):
                found[key] = obj
        return sorted(found.values(), key=lambda s: str(s["metadata"].get("name")))

    async def apply(self, plan: Plan, namespace: str, *, field_manager: str) -> None:
        for body in plan.create:
            created = await self.client.create(body, namespace, field_manager=field_manager)
            self._recent[object_key(created)] = (_rv(created), created)
        for body in plan.update:
            updated = await self.client.update(body)
            self._recent[object_key(updated)] = (_rv(updated), updated)
        for body in plan.delete:
            try:
                await self.client.delete(body["metadata"]["name"], namespace, uid=body["metadata"].get("uid"))
            except errors.NotFound:
                pass
            self._recent[object_key(body)] = (_rv(body), None)
