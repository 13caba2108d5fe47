"""EndpointSlice mirroring: slices for the Endpoints users write for Services without a selector.

kubernetes pkg/controller/endpointslicemirroring: readers of EndpointSlices (the service proxy,
DNS) must also see the endpoints of selector-less Services, which users manage as core/v1
Endpoints. For each such Endpoints (unless labelled `endpointslice.kubernetes.io/skip-mirror:
"true"`, as kube-apiserver labels its own) this loop keeps mirrored slices: every address (ready)
and not-ready address becomes an endpoint with only the `ready` condition, grouped by the
subset's ports, at most 1000 addresses. When the Service gains a selector, or the Endpoints go,
the mirrored slices are deleted.
"""

from __future__ import annotations

from typing import Any

from pocketkube.client.informer import Informer, split_key
from pocketkube.client.rest import APIClient
from pocketkube.controllers.base import Controller
from pocketkube.controllers.endpoint_util import SERVICE_NAME_LABEL, ip_family, selector_of
from pocketkube.controllers.endpointslice_reconcile import (
    MANAGED_BY_LABEL,
    Desired,
    ManagedSlices,
    Plan,
    owned_by,
    ports_key,
    reconcile,
)

Obj = dict[str, Any]
CONTROLLER_NAME = "endpointslicemirroring-controller.k8s.io"
SKIP_MIRROR_LABEL = "endpointslice.kubernetes.io/skip-mirror"
MAX_MIRRORED = 1000


def mirrored_endpoints(endpoints: Obj) -> Desired:
    out: Desired = {}
    seen: set[tuple[str, str]] = set()
    count = 0
    for subset in endpoints.get("subsets") or []:
        ports = []
        for p in subset.get("ports") or []:
            port: Obj = {"name": p.get("name") or "", "port": p.get("port"), "protocol": p.get("protocol") or "TCP"}
            if p.get("appProtocol"):
                port["appProtocol"] = p["appProtocol"]
            ports.append(port)
        addresses = [(a, True) for a in subset.get("addresses") or []]
        addresses += [(a, False) for a in subset.get("notReadyAddresses") or []]
        for addr, ready in addresses:
            ip = str(addr.get("ip") or "")
            pk = ports_key(ports)
            if not ip or (ip, str(pk)) in seen or count >= MAX_MIRRORED:
                continue
            seen.add((ip, str(pk)))
            count += 1
            ep: Obj = {"addresses": [ip], "conditions": {"ready": ready}}
            if addr.get("hostname"):
                ep["hostname"] = addr["hostname"]
            if addr.get("nodeName"):
                ep["nodeName"] = addr["nodeName"]
            if addr.get("targetRef"):
                ep["targetRef"] = addr["targetRef"]
            out.setdefault(ip_family(ip), {}).setdefault(pk, (ports, []))[1].append(ep)
    return out


def mirror_labels(endpoints: Obj, service: str) -> dict[str, str]:
    labels = {k: v for k, v in (endpoints["metadata"].get("labels") or {}).items()
              if k not in (SERVICE_NAME_LABEL, MANAGED_BY_LABEL)}
    labels[SERVICE_NAME_LABEL] = service
    labels[MANAGED_BY_LABEL] = CONTROLLER_NAME
    return labels


class EndpointSliceMirroringController(Controller):
    name = "endpointslicemirroring"
    workers = 2

    def __init__(self, client: APIClient) -> None:
        super().__init__()
        self.services = Informer(client.core("services"))
        self.endpoints = Informer(client.core("endpoints"))
        self.services.add_handler(self.enqueue_handler)
        self.endpoints.add_handler(self.enqueue_handler)
        self.slices = ManagedSlices(client, CONTROLLER_NAME, self.queue.add)
        self.informers = [self.services, self.endpoints, self.slices.informer]

    async def sync(self, key: str) -> None:
        svc = self.services.get(key)
        if svc is None:
            return  # the garbage collector removes slices of deleted Services
        namespace, name = split_key(key)
        existing = self.slices.for_service(namespace, name)
        ep = self.endpoints.get(key)
        mirror = (ep is not None and selector_of(svc) is None
                  and (ep["metadata"].get("labels") or {}).get(SKIP_MIRROR_LABEL) != "true")
        if ep is None or not mirror:
            plan = Plan(delete=existing)
        else:
            plan = reconcile(svc, [s for s in existing if owned_by(s, svc)], mirrored_endpoints(ep),
                             labels=mirror_labels(ep, name), placeholder=False)
            plan.delete.extend(s for s in existing if not owned_by(s, svc))
        await self.slices.apply(plan, namespace, field_manager="endpointslicemirroring-controller")
