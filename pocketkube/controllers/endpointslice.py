"""EndpointSlices: for each Service with a selector, slices listing the pods that back it.

The loop of kubernetes pkg/controller/endpointslice: a pod or Service change enqueues the Service
at once (no batching), and `sync` rebuilds the wanted endpoints, grouped by address family and by
the ports they resolve to, then reconciles them with the slices this controller owns: endpoints
stay in the slice they are in, new ones fill slices with room before new slices (at most
`max_endpoints_per_slice` each) are created, emptied slices are deleted, and a Service without
endpoints keeps one empty placeholder slice. Writes go create → update → delete so readers never
see a gap. Our own writes are remembered until the informer catches up (client-go's mutation
cache), so a quick second sync neither duplicates a slice nor updates a stale revision.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass, field
from typing import Any

from pocketkube.api import errors
from pocketkube.client.informer import Informer, object_key, split_key
from pocketkube.client.rest import APIClient
from pocketkube.controllers.endpoint_util import (
    SERVICE_NAME_LABEL,
    ServicePodsController,
    endpoint_labels,
    find_port,
    in_endpoints,
    ip_family,
    pod_ips,
    selector_of,
    should_set_hostname,
    target_ref,
)
from pocketkube.controllers.pod_util import is_ready

Obj = dict[str, Any]
MANAGED_BY_LABEL = "endpointslice.kubernetes.io/managed-by"
CONTROLLER_NAME = "endpointslice-controller.k8s.io"
MAX_ENDPOINTS_PER_SLICE = 100
PortsKey = tuple[tuple[str, int, str, str], ...]


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


def pod_endpoint(pod: Obj, svc: Obj, ip: str) -> Obj:
    """podToEndpoint: ready only when serving and not terminating (unless publishNotReadyAddresses)."""
    serving = is_ready(pod)
    terminating = bool(pod["metadata"].get("deletionTimestamp"))
    ready = bool((svc.get("spec") or {}).get("publishNotReadyAddresses")) or (serving and not terminating)
    ep: Obj = {"addresses": [ip], "conditions": {"ready": ready, "serving": serving, "terminating": terminating}}
    spec = pod.get("spec") or {}
    if should_set_hostname(pod, svc):
        ep["hostname"] = spec["hostname"]
    if spec.get("nodeName"):
        ep["nodeName"] = spec["nodeName"]
    ep["targetRef"] = target_ref(pod)
    return ep


def pod_ports(pod: Obj, svc: Obj) -> list[Obj]:
    out = []
    for sp in (svc.get("spec") or {}).get("ports") or []:
        number = find_port(pod, sp)
        if number is None:
            continue
        port: Obj = {"name": sp.get("name") or "", "port": number, "protocol": sp.get("protocol") or "TCP"}
        if sp.get("appProtocol"):
            port["appProtocol"] = sp["appProtocol"]
        out.append(port)
    return out


Desired = dict[str, dict[PortsKey, tuple[list[Obj], list[Obj]]]]


def desired_endpoints(svc: Obj, pods: list[Obj]) -> Desired:
    """address type -> ports key -> (ports, endpoints), for the pods that should be endpoints."""
    families = list((svc.get("spec") or {}).get("ipFamilies") or ["IPv4"])
    out: Desired = {family: {} for family in families}
    for pod in sorted(pods, key=lambda p: str(p["metadata"].get("name"))):
        if not in_endpoints(pod, include_terminating=True):
            continue
        ports = pod_ports(pod, svc)
        for family in families:
            ip = next((i for i in pod_ips(pod) if ip_family(i) == family), None)
            if ip is None:
                continue
            group = out[family].setdefault(ports_key(ports), (ports, []))
            group[1].append(pod_endpoint(pod, svc, ip))
    return out


def slice_labels(svc: Obj) -> dict[str, str]:
    labels = {k: v for k, v in endpoint_labels(svc).items() if k not in (SERVICE_NAME_LABEL, MANAGED_BY_LABEL)}
    labels[SERVICE_NAME_LABEL] = svc["metadata"]["name"]
    labels[MANAGED_BY_LABEL] = CONTROLLER_NAME
    return labels


def new_slice(svc: Obj, address_type: str, ports: list[Obj], endpoints: list[Obj]) -> Obj:
    md = svc["metadata"]
    return {"apiVersion": "discovery.k8s.io/v1", "kind": "EndpointSlice",
            "metadata": {"generateName": f"{md['name']}-", "namespace": md["namespace"], "labels": slice_labels(svc),
                         "ownerReferences": [{"apiVersion": "v1", "kind": "Service", "name": md["name"],
                                              "uid": md.get("uid"), "controller": True,
                                              "blockOwnerDeletion": True}]},
            "addressType": address_type, "endpoints": endpoints, "ports": ports}


def _changed(s: Obj, svc: Obj, endpoints: list[Obj], ports: list[Obj]) -> Obj | None:
    labels = slice_labels(svc)
    if s.get("endpoints") == endpoints and (s["metadata"].get("labels") or {}) == labels \
            and (s.get("ports") or []) == ports:
        return None
    updated = copy.deepcopy(s)
    updated["metadata"]["labels"] = labels
    updated["endpoints"] = endpoints
    updated["ports"] = ports
    return updated


def reconcile(svc: Obj, existing: list[Obj], desired: Desired, max_per_slice: int = MAX_ENDPOINTS_PER_SLICE) -> Plan:
    """The writes that turn `existing` slices (all owned by svc) into `desired`."""
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
                updated = _changed(s, svc, eps, ports)
                if updated is not None:
                    plan.update.append(updated)
                kept.append(updated or s)
            for i in range(0, len(left), max_per_slice):
                plan.create.append(new_slice(svc, address_type, ports, left[i:i + max_per_slice]))
        for unwanted in by_ports.values():
            plan.delete.extend(unwanted)
    plan.delete.extend(s for s in existing if s.get("addressType") not in desired)
    if not plan.create and not kept:
        # No endpoints at all: one empty placeholder slice remains (reused when one exists).
        families = list(desired) or ["IPv4"]
        reuse = next((s for s in plan.delete if s.get("addressType") == families[0]), None)
        if reuse is None:
            plan.create.append(new_slice(svc, families[0], [], []))
        else:
            plan.delete.remove(reuse)
            updated = _changed(reuse, svc, [], [])
            if updated is not None:
                plan.update.append(updated)
    return plan


def _rv(obj: Obj) -> int:
    try:
        return int(obj["metadata"].get("resourceVersion") or 0)
    except ValueError:
        return 0


def _owned_by(s: Obj, svc: Obj) -> bool:
    return any(r.get("kind") == "Service" and r.get("uid") == svc["metadata"].get("uid")
               for r in s["metadata"].get("ownerReferences") or [])


class EndpointSliceController(ServicePodsController):
    name = "endpointslice"
    workers = 4

    def __init__(self, client: APIClient, *, max_endpoints_per_slice: int = MAX_ENDPOINTS_PER_SLICE) -> None:
        super().__init__(client)
        self.max_endpoints_per_slice = max_endpoints_per_slice
        self.slice_client = client.resource("discovery.k8s.io", "v1", "endpointslices")
        self.slices = Informer(self.slice_client, label_selector=f"{MANAGED_BY_LABEL}={CONTROLLER_NAME}")
        self.slices.add_handler(self._slice_changed)
        self.informers.append(self.slices)
        # slice key -> (resourceVersion, object or None when we deleted it) until the informer catches up
        self._recent: dict[str, tuple[int, Obj | None]] = {}

    def _slice_changed(self, old: Obj | None, new: Obj | None) -> None:
        obj = new if new is not None else old
        assert obj is not None
        key = object_key(obj)
        recent = self._recent.get(key)
        if recent is not None and (new is None or _rv(new) >= recent[0]):
            self._recent.pop(key, None)
        svc = (obj["metadata"].get("labels") or {}).get(SERVICE_NAME_LABEL)
        if svc:
            self.queue.add(f"{obj['metadata'].get('namespace')}/{svc}")

    def slices_for(self, namespace: str, service: str) -> list[Obj]:
        def ours(s: Obj) -> bool:
            return (s["metadata"].get("namespace") == namespace
                    and (s["metadata"].get("labels") or {}).get(SERVICE_NAME_LABEL) == service)

        found = {object_key(s): s for s in self.slices.list() if ours(s)}
        for key, (rv, obj) in list(self._recent.items()):
            current = found.get(key)
            if obj is None:
                if current is not None and _rv(current) <= rv:
                    found.pop(key)
            elif ours(obj) and (current is None or _rv(current) < rv):
                found[key] = obj
        return sorted(found.values(), key=lambda s: str(s["metadata"].get("name")))

    async def sync(self, key: str) -> None:
        svc = self.services.get(key)
        if svc is None or selector_of(svc) is None:
            return  # the garbage collector removes slices of deleted Services
        namespace, name = split_key(key)
        existing = self.slices_for(namespace, name)
        stale = [s for s in existing if not _owned_by(s, svc)]
        owned = [s for s in existing if _owned_by(s, svc)]
        plan = reconcile(svc, owned, desired_endpoints(svc, self.pods_for(svc)), self.max_endpoints_per_slice)
        plan.delete.extend(stale)
        for body in plan.create:
            created = await self.slice_client.create(body, namespace, field_manager=self.name + "-controller")
            self._recent[object_key(created)] = (_rv(created), created)
        for body in plan.update:
            updated = await self.slice_client.update(body)
            self._recent[object_key(updated)] = (_rv(updated), updated)
        for body in plan.delete:
            try:
                await self.slice_client.delete(body["metadata"]["name"], namespace, uid=body["metadata"].get("uid"))
            except errors.NotFound:
                pass
            self._recent[object_key(body)] = (_rv(body), None)
