"""EndpointSlices: for each Service with a selector, slices listing the pods that back it.

The loop of kubernetes pkg/controller/endpointslice: a pod or Service change enqueues the Service
at once (no batching), and `sync` rebuilds the wanted endpoints from the pods matching the
selector (not terminal, with an IP; ready, serving and terminating conditions; ports resolved
from targetPort numbers or names) and reconciles the slices the controller owns with them
(endpointslice_reconcile.py: at most 100 endpoints a slice, stable placement, a placeholder
slice when there are none).
"""

from __future__ import annotations

from typing import Any

from pocketkube.client.informer import split_key
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
from pocketkube.controllers.endpointslice_reconcile import (
    MANAGED_BY_LABEL,
    MAX_ENDPOINTS_PER_SLICE,
    Desired,
    ManagedSlices,
    owned_by,
    ports_key,
    reconcile,
)
from pocketkube.controllers.pod_util import is_ready

Obj = dict[str, Any]
CONTROLLER_NAME = "endpointslice-controller.k8s.io"


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


class EndpointSliceController(ServicePodsController):
    name = "endpointslice"
    workers = 4

    def __init__(self, client: APIClient, *, max_endpoints_per_slice: int = MAX_ENDPOINTS_PER_SLICE) -> None:
        super().__init__(client)
        self.max_endpoints_per_slice = max_endpoints_per_slice
        self.slices = ManagedSlices(client, CONTROLLER_NAME, self.queue.add)
        self.informers.append(self.slices.informer)

    async def sync(self, key: str) -> None:
        svc = self.services.get(key)
        if svc is None or selector_of(svc) is None:
            return  # the garbage collector removes slices of deleted Services
        namespace, name = split_key(key)
        existing = self.slices.for_service(namespace, name)
        desired = desired_endpoints(svc, self.pods_for(svc))
        plan = reconcile(svc, [s for s in existing if owned_by(s, svc)], desired, self.max_endpoints_per_slice,
                         labels=slice_labels(svc))
        plan.delete.extend(s for s in existing if not owned_by(s, svc))
        await self.slices.apply(plan, namespace, field_manager="endpointslice-controller")
