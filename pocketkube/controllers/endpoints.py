"""Endpoints: the legacy core/v1 Endpoints object of each Service with a selector.

kubernetes pkg/controller/endpoint: for every Service with a selector, an Endpoints object of the
same name whose subsets list ready pods under `addresses` and unready ones under
`notReadyAddresses`, grouped by the ports they resolve to (endpoints.RepackSubsets). Terminating
pods are left out unless the Service publishes not-ready addresses; headless Services without
ports still list addresses. Past 1000 addresses the list is truncated (ready ones kept first) and
annotated `endpoints.kubernetes.io/over-capacity: truncated`. Services without a selector are
left to their users, and the Endpoints of a deleted Service are deleted (no owner reference).
"""

from __future__ import annotations

import copy
from typing import Any

from pocketkube.api import errors
from pocketkube.client.informer import Informer, object_key, split_key
from pocketkube.client.rest import APIClient
from pocketkube.controllers.endpoint_util import (
    ServicePodsController,
    endpoint_labels,
    find_port,
    in_endpoints,
    ip_family,
    is_headless,
    pod_ips,
    selector_of,
    should_set_hostname,
    target_ref,
)
from pocketkube.controllers.pod_util import is_ready

Obj = dict[str, Any]
PortKey = tuple[str, int, str, str]
MAX_CAPACITY = 1000
OVER_CAPACITY = "endpoints.kubernetes.io/over-capacity"


def _address(pod: Obj, svc: Obj, ip: str) -> Obj:
    addr: Obj = {"ip": ip}
    spec = pod.get("spec") or {}
    if should_set_hostname(pod, svc):
        addr["hostname"] = spec["hostname"]
    if spec.get("nodeName"):
        addr["nodeName"] = spec["nodeName"]
    addr["targetRef"] = target_ref(pod)
    return addr


def _port_key(port: Obj | None) -> PortKey:
    if port is None:
        return ("", -1, "", "")  # the sentinel of headless Services without ports
    return (str(port.get("name") or ""), int(port["port"]), str(port.get("protocol") or "TCP"),
            str(port.get("appProtocol") or ""))


def build_subsets(svc: Obj, pods: list[Obj]) -> list[Obj]:
    spec = svc.get("spec") or {}
    publish = bool(spec.get("publishNotReadyAddresses"))
    family = (spec.get("ipFamilies") or ["IPv4"])[0]
    service_ports = spec.get("ports") or []
    # port -> address key -> (address, ready)
    by_port: dict[PortKey, tuple[Obj | None, dict[tuple[str, str], tuple[Obj, bool]]]] = {}
    for pod in pods:
        if not in_endpoints(pod, include_terminating=publish):
            continue
        ip = next((i for i in pod_ips(pod) if ip_family(i) == family), None)
        if ip is None:
            continue
        addr = _address(pod, svc, ip)
        entry = (addr, publish or is_ready(pod))
        addr_key = (ip, str(pod["metadata"].get("uid") or ""))
        ports: list[Obj | None] = []
        for sp in service_ports:
            number = find_port(pod, sp)
            if number is None:
                continue
            port: Obj = {"port": number, "protocol": sp.get("protocol") or "TCP"}
            if sp.get("name"):
                port["name"] = sp["name"]
            if sp.get("appProtocol"):
                port["appProtocol"] = sp["appProtocol"]
            ports.append(port)
        if not service_ports and is_headless(svc):
            ports.append(None)
        for resolved in ports:
            by_port.setdefault(_port_key(resolved), (resolved, {}))[1][addr_key] = entry
    # Ports offered by the same set of addresses share a subset.
    groups: dict[frozenset[tuple[tuple[str, str], bool]], tuple[list[Obj], dict[tuple[str, str], tuple[Obj, bool]]]] = {}
    for port_or_none, addrs in by_port.values():
        signature = frozenset((k, ready) for k, (_, ready) in addrs.items())
        group = groups.setdefault(signature, ([], addrs))
        if port_or_none is not None:
            group[0].append(port_or_none)
    subsets = []
    for ports_list, addrs in groups.values():
        ordered = sorted(addrs.items())
        subset: Obj = {}
        ready = [a for _, (a, r) in ordered if r]
        not_ready = [a for _, (a, r) in ordered if not r]
        if ready:
            subset["addresses"] = ready
        if not_ready:
            subset["notReadyAddresses"] = not_ready
        if ports_list:
            subset["ports"] = sorted(ports_list, key=lambda p: _port_key(p))
        subsets.append(subset)
    return sorted(subsets, key=lambda s: [a["ip"] for a in s.get("addresses", []) + s.get("notReadyAddresses", [])])


def truncate(subsets: list[Obj], capacity: int = MAX_CAPACITY) -> bool:
    """truncateEndpoints: past capacity keep ready addresses first, cut each subset in proportion."""
    total_ready = sum(len(s.get("addresses", [])) for s in subsets)
    total_not_ready = sum(len(s.get("notReadyAddresses", [])) for s in subsets)
    if total_ready + total_not_ready <= capacity:
        return False
    cut_ready = total_ready > capacity
    limit, total = (capacity, total_ready) if cut_ready else (capacity - total_ready, total_not_ready)
    room = limit
    for subset in subsets:
        field = "addresses" if cut_ready else "notReadyAddresses"
        share = min(-(-len(subset.get(field, [])) * limit // total), room)
        subset[field] = subset.get(field, [])[:share]
        if cut_ready:
            subset.pop("notReadyAddresses", None)
        room -= len(subset[field])
        if not subset[field]:
            subset.pop(field)
    return True


def _rv(obj: Obj) -> int:
    try:
        return int(obj["metadata"].get("resourceVersion") or 0)
    except ValueError:
        return 0


class EndpointsController(ServicePodsController):
    name = "endpoints"
    workers = 4

    def __init__(self, client: APIClient) -> None:
        super().__init__(client)
        self.endpoints_client = client.core("endpoints")
        self.endpoints = Informer(self.endpoints_client)
        self.endpoints.add_handler(self._endpoints_changed)
        self.informers.append(self.endpoints)
        self._recent: dict[str, Obj] = {}  # our last write per key, until the informer catches up

    def _endpoints_changed(self, old: Obj | None, new: Obj | None) -> None:
        obj = new if new is not None else old
        assert obj is not None
        key = object_key(obj)
        recent = self._recent.get(key)
        if recent is not None and (new is None or _rv(new) >= _rv(recent)):
            self._recent.pop(key, None)
        if self.services.get(key) is not None:
            self.queue.add(key)  # someone else changed (or deleted) what we manage

    def current(self, key: str) -> Obj | None:
        found = self.endpoints.get(key)
        recent = self._recent.get(key)
        if recent is not None and (found is None or _rv(found) < _rv(recent)):
            return recent
        return found

    async def sync(self, key: str) -> None:
        namespace, name = split_key(key)
        svc = self.services.get(key)
        if svc is None:
            self._recent.pop(key, None)
            if self.endpoints.get(key) is not None:
                try:
                    await self.endpoints_client.delete(name, namespace)
                except errors.NotFound:
                    pass
            return
        if selector_of(svc) is None:
            return
        subsets = build_subsets(svc, self.pods_for(svc))
        labels = endpoint_labels(svc)
        current = self.current(key)
        annotations = dict((current or {}).get("metadata", {}).get("annotations") or {})
        annotations.pop(OVER_CAPACITY, None)
        if truncate(subsets):
            annotations[OVER_CAPACITY] = "truncated"
        if current is not None and (current.get("subsets") or []) == subsets \
                and (current["metadata"].get("labels") or {}) == labels \
                and (current["metadata"].get("annotations") or {}) == annotations:
            return
        if current is None:
            body: Obj = {"apiVersion": "v1", "kind": "Endpoints",
                         "metadata": {"name": name, "namespace": namespace, "labels": labels}}
            if annotations:
                body["metadata"]["annotations"] = annotations
            if subsets:
                body["subsets"] = subsets
            written = await self.endpoints_client.create(body, namespace, field_manager="endpoint-controller")
        else:
            body = copy.deepcopy(current)
            body["metadata"]["labels"] = labels
            body["metadata"]["annotations"] = annotations
            body["subsets"] = subsets
            if not subsets:
                body.pop("subsets")
            written = await self.endpoints_client.update(body)
        self._recent[key] = written
