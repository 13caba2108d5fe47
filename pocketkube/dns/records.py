"""The cluster's DNS data, built from Services, EndpointSlices and Pods: a pure index of names.

What the Kubernetes DNS specification asks for (github.com/kubernetes/dns, schema 1.1.0):

* `svc.ns.svc.<domain>` A → the ClusterIP; for a headless Service, the ready endpoint IPs;
  ExternalName → CNAME;
* `_port._proto.svc.ns.svc.<domain>` SRV for each named port (headless: one per endpoint, whose
  own name `hostname-or-a-b-c-d.svc.ns.svc.<domain>` has an A record);
* `a-b-c-d.ns.pod.<domain>` A for pods that exist with that IP ("pods verified");
* PTR for ClusterIPs, endpoint IPs of headless Services and pod IPs.

Names are kept lowercase with the trailing dot; `names` also holds every ancestor inside the
domain, so the server can tell an empty name (NOERROR, no data) from a missing one (NXDOMAIN).
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

Obj = dict[str, Any]
SERVICE_NAME_LABEL = "kubernetes.io/service-name"


@dataclass
class Zone:
    domain: str  # "cluster.local." (lowercase, trailing dot)
    a: dict[str, list[str]] = field(default_factory=dict)
    srv: dict[str, list[tuple[int, str]]] = field(default_factory=dict)  # (port, target)
    ptr: dict[str, str] = field(default_factory=dict)
    cname: dict[str, str] = field(default_factory=dict)
    names: set[str] = field(default_factory=set)

    def in_domain(self, name: str) -> bool:
        return name == self.domain or name.endswith("." + self.domain)

    def _name(self, name: str) -> None:
        while self.in_domain(name) and name not in self.names:
            self.names.add(name)
            name = name.split(".", 1)[1] if "." in name[:-1] else self.domain

    def add_a(self, name: str, ip: str) -> None:
        ips = self.a.setdefault(name, [])
        if ip not in ips:
            ips.append(ip)
        self._name(name)

    def add_srv(self, name: str, port: int, target: str) -> None:
        self.srv.setdefault(name, []).append((port, target))
        self._name(name)

    def add_ptr(self, ip: str, target: str) -> None:
        self.ptr.setdefault(reverse_name(ip), target)


def reverse_name(ip: str) -> str:
    return ipaddress.ip_address(ip).reverse_pointer + "."


def dashed(ip: str) -> str:
    return ip.replace(".", "-").replace(":", "-")


def _ipv4(value: object) -> bool:
    try:
        return isinstance(value, str) and ipaddress.ip_address(value).version == 4
    except ValueError:
        return False


def build_zone(services: Iterable[Obj], slices: Iterable[Obj], pods: Iterable[Obj],
               domain: str = "cluster.local") -> Zone:
    zone = Zone(domain=domain.strip(".").lower() + ".")
    d = zone.domain
    by_svc: dict[tuple[str, str], list[Obj]] = {}
    for s in slices:
        md = s.get("metadata") or {}
        name = (md.get("labels") or {}).get(SERVICE_NAME_LABEL)
        if name and s.get("addressType", "IPv4") == "IPv4":
            by_svc.setdefault((str(md.get("namespace") or "").lower(), str(name).lower()), []).append(s)
    zone._name(f"svc.{d}")
    for svc in services:
        md = svc.get("metadata") or {}
        spec = svc.get("spec") or {}
        ns, name = str(md.get("namespace") or "default").lower(), str(md.get("name") or "").lower()
        fqdn = f"{name}.{ns}.svc.{d}"
        if spec.get("type") == "ExternalName":
            zone.cname[fqdn] = str(spec.get("externalName") or "").rstrip(".").lower() + "."
            zone._name(fqdn)
            continue
        cluster_ip = spec.get("clusterIP")
        ports = [p for p in spec.get("ports") or [] if p.get("name")]
        if _ipv4(cluster_ip):
            zone.add_a(fqdn, str(cluster_ip))
            zone.add_ptr(str(cluster_ip), fqdn)
            for p in ports:
                proto = str(p.get("protocol") or "TCP").lower()
                zone.add_srv(f"_{p['name'].lower()}._{proto}.{fqdn}", int(p["port"]), fqdn)
            continue
        if cluster_ip != "None":
            continue
        zone._name(fqdn)
        for s in by_svc.get((ns, name), []):
            for ep in s.get("endpoints") or []:
                if (ep.get("conditions") or {}).get("ready") is False:
                    continue
                for ip in (ep.get("addresses") or [])[:1]:
                    if not _ipv4(ip):
                        continue
                    ep_name = f"{str(ep.get('hostname') or dashed(ip)).lower()}.{fqdn}"
                    zone.add_a(fqdn, ip)
                    zone.add_a(ep_name, ip)
                    zone.add_ptr(ip, ep_name)
                    for p in s.get("ports") or []:
                        if p.get("name") and p.get("port"):
                            proto = str(p.get("protocol") or "TCP").lower()
                            zone.add_srv(f"_{p['name'].lower()}._{proto}.{fqdn}", int(p["port"]), ep_name)
    for pod in pods:
        md = pod.get("metadata") or {}
        status = pod.get("status") or {}
        ns = str(md.get("namespace") or "default").lower()
        if (pod.get("spec") or {}).get("hostNetwork"):
            continue
        for entry in status.get("podIPs") or [{"ip": status.get("podIP")}]:
            ip = entry.get("ip")
            if _ipv4(ip):
                pod_name = f"{dashed(ip)}.{ns}.pod.{d}"
                zone.add_a(pod_name, ip)
                zone.add_ptr(ip, pod_name)
    for values in zone.a.values():
        values.sort(key=ipaddress.ip_address)
    for records in zone.srv.values():
        records.sort()
    return zone
