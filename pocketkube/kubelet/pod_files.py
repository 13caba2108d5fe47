"""The files every container of a pod shares: /etc/resolv.conf, /etc/hosts and /etc/hostname.

resolv.conf follows the pod's dnsPolicy as the kubelet writes it: ClusterFirst points at the
cluster DNS Service with the search path `<ns>.svc.<domain> svc.<domain> <domain>` and ndots:5;
Default copies the node's; None uses only spec.dnsConfig (which otherwise adds to the others).
"""

from __future__ import annotations

import contextlib
import os
from dataclasses import dataclass
from typing import Any

Obj = dict[str, Any]


@dataclass(frozen=True)
class DNSSettings:
    cluster_dns: str = "10.43.0.10"
    cluster_domain: str = "cluster.local"
    node_resolv_conf: str = "/etc/resolv.conf"


def _node_resolv(path: str) -> tuple[list[str], list[str], list[str]]:
    servers: list[str] = []
    search: list[str] = []
    options: list[str] = []
    try:
        with open(path) as f:
            for line in f:
                parts = line.split()
                if not parts or parts[0].startswith("#"):
                    continue
                if parts[0] == "nameserver":
                    servers += parts[1:2]
                elif parts[0] == "search":
                    search = parts[1:]
                elif parts[0] == "options":
                    options += parts[1:]
    except OSError:
        pass
    return servers, search, options


def resolv_conf(pod: Obj, dns: DNSSettings) -> str:
    spec = pod.get("spec") or {}
    ns = (pod.get("metadata") or {}).get("namespace", "default")
    policy = spec.get("dnsPolicy") or "ClusterFirst"
    host_network = bool(spec.get("hostNetwork"))
    if policy == "ClusterFirst" and host_network:
        policy = "Default"
    if policy == "ClusterFirstWithHostNet":
        policy = "ClusterFirst"
    servers: list[str] = []
    search: list[str] = []
    options: list[str] = []
    if policy == "ClusterFirst":
        d = dns.cluster_domain
        servers = [dns.cluster_dns]
        search = [f"{ns}.svc.{d}", f"svc.{d}", d]
        options = ["ndots:5"]
    elif policy == "Default":
        servers, search, options = _node_resolv(dns.node_resolv_conf)
    cfg = spec.get("dnsConfig") or {}
    servers += [s for s in cfg.get("nameservers") or [] if s not in servers]
    search += [s for s in cfg.get("searches") or [] if s not in search]
    for opt in cfg.get("options") or []:
        name = opt.get("name", "")
        options = [o for o in options if o.split(":")[0] != name]
        options.append(f"{name}:{opt['value']}" if opt.get("value") is not None else name)
    lines = [f"nameserver {s}" for s in servers[:3]]
    if search:
        lines.append("search " + " ".join(search[:32]))
    if options:
        lines.append("options " + " ".join(options))
    return "\n".join(lines) + "\n"


def hostname_of(pod: Obj) -> str:
    spec = pod.get("spec") or {}
    return str(spec.get("hostname") or (pod.get("metadata") or {}).get("name", "pod"))[:63]


def hosts_file(pod: Obj, pod_ip: str, dns: DNSSettings) -> str:
    spec = pod.get("spec") or {}
    lines = ["# Kubernetes-managed hosts file.", "127.0.0.1\tlocalhost", "::1\tlocalhost ip6-localhost ip6-loopback",
             "fe00::0\tip6-localnet", "fe00::0\tip6-mcastprefix", "fe00::1\tip6-allnodes", "fe00::2\tip6-allrouters"]
    name = hostname_of(pod)
    if pod_ip:
        if spec.get("subdomain"):
            ns = (pod.get("metadata") or {}).get("namespace", "default")
            fqdn = f"{name}.{spec['subdomain']}.{ns}.svc.{dns.cluster_domain}"
            lines.append(f"{pod_ip}\t{fqdn}\t{name}")
        else:
            lines.append(f"{pod_ip}\t{name}")
    for alias in spec.get("hostAliases") or []:
        lines.append("# Entries added by HostAliases.")
        lines.append(f"{alias.get('ip')}\t" + "\t".join(alias.get("hostnames") or []))
    return "\n".join(lines) + "\n"


def write_pod_files(pod_dir: str, pod: Obj, pod_ip: str, dns: DNSSettings) -> dict[str, str]:
    """Write the three files; returns container path -> host path, for bind mounts."""
    os.makedirs(pod_dir, exist_ok=True)
    out = {}
    for target, content in (("/etc/resolv.conf", resolv_conf(pod, dns)),
                            ("/etc/hosts", hosts_file(pod, pod_ip, dns)),
                            ("/etc/hostname", hostname_of(pod) + "\n")):
        host = os.path.join(pod_dir, target.rsplit("/", 1)[1])
        out[target] = host
        # Called on every sync (each pod, every second): rewrite only what changed. A replaced file
        # is a new inode the running containers' bind mounts would not see anyway.
        with contextlib.suppress(OSError), open(host) as f:
            if f.read() == content:
                continue
        with open(host + ".tmp", "w") as f:
            f.write(content)
        os.replace(host + ".tmp", host)
    return out
