"""Services and EndpointSlices boiled down to what the dataplane needs: one `ServicePort` per
Service port, with its virtual addresses and the ready endpoints it balances over.

kube-proxy's `ServicePortInfo` + `EndpointsMap` in one pure step. The renderer (nftables_render.py)
takes only these, so it can be tested with plain dicts and no cluster; the DNS server reads the
same raw objects on its own. Only IPv4 is modelled, as the pod network is IPv4.
"""

from __future__ import annotations

import functools
import ipaddress
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

Obj = dict[str, Any]
SERVICE_NAME_LABEL = "kubernetes.io/service-name"
DEFAULT_AFFINITY_TIMEOUT = 10800


@dataclass(frozen=True)
class Endpoint:
    ip: str
    port: int
    node_name: str = ""


@dataclass
class ServicePort:
    namespace: str
    name: str
    port_name: str
    protocol: str  # "tcp" | "udp" | "sctp"
    port: int
    cluster_ip: str
    node_port: int = 0
    external_ips: list[str] = field(default_factory=list)  # spec.externalIPs + LoadBalancer ingress IPs
    external_local: bool = False  # externalTrafficPolicy: Local
    affinity_timeout: int = 0  # seconds; 0 = no ClientIP session affinity
    endpoints: list[Endpoint] = field(default_factory=list)  # ready endpoints only, sorted

    @property
    def key(self) -> str:
        return f"{self.namespace}/{self.name}/{self.protocol}/{self.port_name or self.port}"


@functools.lru_cache(maxsize=262_144)
def _ip_key(value: str) -> int:
    """The address as an int for sorting, -1 when it is not IPv4 (cached: parsing dominates)."""
    try:
        ip = ipaddress.ip_address(value)
    except ValueError:
        return -1
    return int(ip) if ip.version == 4 else -1


def _is_ipv4(value: object) -> bool:
    return isinstance(value, str) and _ip_key(value) >= 0


def slices_by_service(slices: Iterable[Obj]) -> dict[tuple[str, str], list[Obj]]:
    out: dict[tuple[str, str], list[Obj]] = {}
    for s in slices:
        md = s.get("metadata") or {}
        svc = (md.get("labels") or {}).get(SERVICE_NAME_LABEL)
        if not svc or s.get("addressType", "IPv4") != "IPv4":
            continue
        out.setdefault((str(md.get("namespace") or "default"), str(svc)), []).append(s)
    return out


def ready_endpoints(slices: list[Obj], port_name: str, protocol: str) -> list[Endpoint]:
    """Ready endpoints serving the Service port named `port_name` (slice ports carry the resolved
    target port number, so named and numbered targetPorts come out the same)."""
    seen: dict[str, Endpoint] = {}
    for s in slices:
        number = next((int(p["port"]) for p in s.get("ports") or []
                       if (p.get("name") or "") == port_name and (p.get("protocol") or "TCP").lower() == protocol
                       and p.get("port")), None)
        if number is None:
            continue
        for ep in s.get("endpoints") or []:
            cond = ep.get("conditions") or {}
            if cond.get("ready") is False or cond.get("terminating") is True:
                continue  # unset ready means ready (EndpointConditions doc)
            for ip in (ep.get("addresses") or [])[:1]:
                if _is_ipv4(ip) and ip not in seen:
                    seen[ip] = Endpoint(ip, number, str(ep.get("nodeName") or ""))
    return sorted(seen.values(), key=lambda e: (_ip_key(e.ip), e.port))


def service_id(svc: Obj) -> str:
    """`namespace/name` of a Service: the unit a partial sync re-renders."""
    md = svc.get("metadata") or {}
    return f"{md.get('namespace') or 'default'}/{md.get('name') or ''}"


def slice_service_id(endpoint_slice: Obj) -> str:
    """`namespace/name` of the Service an EndpointSlice belongs to, "" when it names none."""
    md = endpoint_slice.get("metadata") or {}
    name = (md.get("labels") or {}).get(SERVICE_NAME_LABEL)
    return f"{md.get('namespace') or 'default'}/{name}" if name else ""


def ports_of_service(svc: Obj, slices: list[Obj]) -> list[ServicePort]:
    """The proxied ports of one Service given its EndpointSlices, sorted as in the table.
    Headless and ExternalName Services have none."""
    md = svc.get("metadata") or {}
    spec = svc.get("spec") or {}
    cluster_ip = spec.get("clusterIP")
    if spec.get("type") == "ExternalName" or not _is_ipv4(cluster_ip):
        return []
    ns, name = str(md.get("namespace") or "default"), str(md.get("name") or "")
    externals = [ip for ip in spec.get("externalIPs") or [] if _is_ipv4(ip)]
    if spec.get("type") == "LoadBalancer":  # ipMode Proxy: the balancer proxies, the node must not
        externals += [i["ip"] for i in ((svc.get("status") or {}).get("loadBalancer") or {}).get("ingress") or []
                      if _is_ipv4(i.get("ip")) and i.get("ipMode") != "Proxy"]
    affinity = 0
    if spec.get("sessionAffinity") == "ClientIP":
        cfg = ((spec.get("sessionAffinityConfig") or {}).get("clientIP") or {})
        affinity = int(cfg.get("timeoutSeconds") or DEFAULT_AFFINITY_TIMEOUT)
    local = spec.get("externalTrafficPolicy") == "Local"
    node_port_ok = spec.get("type") in ("NodePort", "LoadBalancer")
    out: list[ServicePort] = []
    for p in spec.get("ports") or []:
        protocol = str(p.get("protocol") or "TCP").lower()
        port_name = str(p.get("name") or "")
        out.append(ServicePort(
            namespace=ns, name=name, port_name=port_name, protocol=protocol, port=int(p["port"]),
            cluster_ip=str(cluster_ip), node_port=int(p.get("nodePort") or 0) if node_port_ok else 0,
            external_ips=sorted(set(externals), key=_ip_key), external_local=local,
            affinity_timeout=affinity, endpoints=ready_endpoints(slices, port_name, protocol)))
    out.sort(key=lambda sp: (sp.port, sp.protocol))
    return out


def service_ports(services: Iterable[Obj], slices: Iterable[Obj]) -> list[ServicePort]:
    """Every proxied Service port, sorted by (namespace, name, port, protocol)."""
    by_svc = slices_by_service(slices)
    out: list[ServicePort] = []
    for svc in services:
        md = svc.get("metadata") or {}
        key = (str(md.get("namespace") or "default"), str(md.get("name") or ""))
        out += ports_of_service(svc, by_svc.get(key, []))
    out.sort(key=lambda sp: (sp.namespace, sp.name, sp.port, sp.protocol))
    return out
