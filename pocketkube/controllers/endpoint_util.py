"""What the endpoints and EndpointSlice controllers share: which pods back a Service, and how.

Both loops (kubernetes pkg/controller/endpoint and endpointslice) watch Services and pods, map a
pod change to the Services whose selector matches the pod before or after the change, and sync
one Service key at a time. A pod is an endpoint when it is not terminal and has an IP; its port
for a Service port is the targetPort number, or the named container port (util/pod FindPort).
"""

from __future__ import annotations

from typing import Any

from pocketkube.client.informer import Informer, object_key
from pocketkube.client.rest import APIClient
from pocketkube.controllers.base import Controller
from pocketkube.controllers.pod_util import is_ready

Obj = dict[str, Any]
HEADLESS_LABEL = "service.kubernetes.io/headless"
SERVICE_NAME_LABEL = "kubernetes.io/service-name"


def selector_of(svc: Obj) -> dict[str, str] | None:
    """The Service's selector, or None when users manage its endpoints themselves."""
    selector = (svc.get("spec") or {}).get("selector")
    return dict(selector) if selector else None


def selects(svc: Obj, pod: Obj) -> bool:
    selector = selector_of(svc)
    if selector is None or (pod.get("metadata") or {}).get("namespace") != svc["metadata"].get("namespace"):
        return False
    labels = (pod.get("metadata") or {}).get("labels") or {}
    return all(labels.get(k) == v for k, v in selector.items())


def pod_ips(pod: Obj) -> list[str]:
    status = pod.get("status") or {}
    ips = [str(p.get("ip")) for p in status.get("podIPs") or [] if p.get("ip")]
    if not ips and status.get("podIP"):
        ips = [str(status["podIP"])]
    return ips


def ip_family(ip: str) -> str:
    return "IPv6" if ":" in ip else "IPv4"


def in_endpoints(pod: Obj, *, include_terminating: bool) -> bool:
    """endpointutil.ShouldPodBeInEndpoints."""
    if (pod.get("status") or {}).get("phase") in ("Succeeded", "Failed"):
        return False
    if not pod_ips(pod):
        return False
    return include_terminating or not (pod.get("metadata") or {}).get("deletionTimestamp")


def find_port(pod: Obj, port: Obj) -> int | None:
    """podutil.FindPort: the pod's port for a Service port (None when a named port is missing)."""
    target = port.get("targetPort", port.get("port"))
    if isinstance(target, int):
        return target
    if isinstance(target, str) and target.isdigit():
        return int(target)
    protocol = port.get("protocol") or "TCP"
    for c in (pod.get("spec") or {}).get("containers") or []:
        for cp in c.get("ports") or []:
            if cp.get("name") == target and (cp.get("protocol") or "TCP") == protocol:
                return int(cp["containerPort"])
    return None


def should_set_hostname(pod: Obj, svc: Obj) -> bool:
    spec = pod.get("spec") or {}
    return bool(spec.get("hostname")) and spec.get("subdomain") == svc["metadata"]["name"]


def is_headless(svc: Obj) -> bool:
    return (svc.get("spec") or {}).get("clusterIP") == "None"


def endpoint_labels(svc: Obj) -> dict[str, str]:
    labels = dict(svc["metadata"].get("labels") or {})
    if is_headless(svc):
        labels[HEADLESS_LABEL] = ""
    return labels


def target_ref(pod: Obj) -> Obj:
    md = pod["metadata"]
    return {"kind": "Pod", "namespace": md.get("namespace"), "name": md.get("name"), "uid": md.get("uid")}


def _signature(pod: Obj) -> tuple[Any, ...]:
    """The parts of a pod an endpoint depends on: other changes need no sync."""
    md, spec = pod.get("metadata") or {}, pod.get("spec") or {}
    ports = [c.get("ports") for c in spec.get("containers") or []]
    return (md.get("labels"), md.get("deletionTimestamp"), pod_ips(pod), is_ready(pod),
            (pod.get("status") or {}).get("phase"), spec.get("nodeName"), spec.get("hostname"),
            spec.get("subdomain"), ports)


class ServicePodsController(Controller):
    """Services and pods feed a queue of Service keys; subclasses write what a Service needs."""

    def __init__(self, client: APIClient) -> None:
        super().__init__()
        self.client = client
        self.services = Informer(client.core("services"))
        self.pods = Informer(client.core("pods"))
        self.services.add_handler(self.enqueue_handler)
        self.pods.add_handler(self._pod_changed)
        self.informers = [self.services, self.pods]
        self._pods_by_namespace: dict[str, dict[str, Obj]] = {}

    def services_for(self, pod: Obj) -> set[str]:
        ns = (pod.get("metadata") or {}).get("namespace")
        return {object_key(svc) for svc in self.services.list()
                if svc["metadata"].get("namespace") == ns and selects(svc, pod)}

    def _pod_changed(self, old: Obj | None, new: Obj | None) -> None:
        pod = new if new is not None else old
        assert pod is not None
        ns = str(pod["metadata"].get("namespace"))
        by_name = self._pods_by_namespace.setdefault(ns, {})
        if new is None:
            by_name.pop(pod["metadata"].get("name"), None)
            if not by_name:
                self._pods_by_namespace.pop(ns, None)
        else:
            by_name[new["metadata"].get("name")] = new
        if old is not None and new is not None and _signature(old) == _signature(new):
            return
        keys: set[str] = set()
        for pod in (old, new):
            if pod is not None:
                keys |= self.services_for(pod)
        for key in keys:
            self.queue.add(key)

    def pods_for(self, svc: Obj) -> list[Obj]:
        candidates = self._pods_by_namespace.get(str(svc["metadata"].get("namespace")), {})
        return [p for p in candidates.values() if selects(svc, p)]
