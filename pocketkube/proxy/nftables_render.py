"""Render Services + EndpointSlices into one nftables script, pure (no I/O), for an atomic load.

The layout follows kube-proxy's nftables mode in spirit (reference/platform.md §3):

* `service-ips` verdict map (ClusterIP / external IP . proto . port → goto the Service's chain)
  and `service-nodeports` (proto . port → goto its external chain) for NodePorts on the node IPs;
* a `svc-…` chain per Service port: ClientIP affinity lookups, then
  `numgen inc mod N vmap { 0 : goto ep1, … }` — exact round-robin over the READY endpoints;
* an `ep-…` chain per endpoint: the hairpin mark when the client is the endpoint itself, the
  affinity set update, `meta l4proto P dnat to IP:PORT`;
* `ext-…` chains for NodePort/external traffic: mark for masquerade (policy Cluster) or only local
  endpoints (policy Local, `svl-…`);
* Service ports with no ready endpoint are in `no-endpoint-*` maps read by filter hooks, which
  `reject` new connections (tcp reset / icmp port-unreachable) instead of letting them hang;
* postrouting masquerades marked traffic only toward the pod bridge, or toward pods of other nodes
  (the cluster CIDR), so a NodePort/LoadBalancer reply comes back through the node that DNATed it;
  nothing else is ever masqueraded out of an uplink.

The script starts with `table ip T` / `delete table ip T` so that one `nft -f` replaces the table
atomically (a separate delete then a failing load would leave no table at all).
"""

from __future__ import annotations

import base64
import functools
import hashlib
from dataclasses import dataclass, field

from pocketkube.proxy.model import Endpoint, ServicePort

MASQ_MARK = "0x4000"


@dataclass(frozen=True)
class NodeInfo:
    table: str  # "pocketkube-<node>"; tests use a unique "pkt<rand>"
    node_name: str
    bridge: str
    nodeport_ips: list[str] = field(default_factory=list)  # empty: every local address but 127/8
    cluster_cidr: str = ""  # pod network: marked traffic to pods on other nodes is masqueraded too


@functools.lru_cache(maxsize=262_144)  # names are stable across syncs: hash each once
def _hash(text: str) -> str:
    return base64.b32encode(hashlib.sha256(text.encode()).digest())[:8].decode()


def service_chain(sp: ServicePort) -> str:
    return f"svc-{_hash(sp.key)}-{sp.key}"


def external_chain(sp: ServicePort) -> str:
    return f"ext-{_hash(sp.key)}-{sp.key}"


def local_chain(sp: ServicePort) -> str:
    return f"svl-{_hash(sp.key)}-{sp.key}"


def endpoint_chain(sp: ServicePort, ep: Endpoint) -> str:
    key = f"{sp.key}__{ep.ip}/{ep.port}"
    return f"ep-{_hash(key)}-{key}"


def affinity_set(sp: ServicePort, ep: Endpoint) -> str:
    return f"aff-{_hash(f'{sp.key}__{ep.ip}/{ep.port}')}"


def _balance(sp: ServicePort, endpoints: list[Endpoint]) -> list[str]:
    """Rules picking one endpoint: a sticky one first if affinity applies, else round-robin."""
    rules = []
    if sp.affinity_timeout:
        rules += [f"ip saddr @{affinity_set(sp, ep)} goto {endpoint_chain(sp, ep)}" for ep in endpoints]
    if len(endpoints) == 1:
        rules.append(f"goto {endpoint_chain(sp, endpoints[0])}")
    else:
        vmap = ", ".join(f"{i} : goto {endpoint_chain(sp, ep)}" for i, ep in enumerate(endpoints))
        rules.append(f"numgen inc mod {len(endpoints)} vmap {{ {vmap} }}")
    return rules


def _chain(name: str, rules: list[str]) -> list[str]:
    return [f"  chain {name} {{", *(f"    {r}" for r in rules), "  }"]


def _map(name: str, key_type: str, elements: dict[str, str]) -> list[str]:
    out = [f"  map {name} {{", f"    type {key_type} : verdict"]
    if elements:
        out.append("    elements = {")
        out += [f"      {k} : {v}," for k, v in elements.items()]
        out.append("    }")
    return [*out, "  }"]


def _local_ips(node: NodeInfo) -> str:
    if node.nodeport_ips:
        return f"ip daddr {{ {', '.join(node.nodeport_ips)} }}"
    return "fib daddr type local ip daddr != 127.0.0.0/8"


MAP_TYPES = {"service-ips": "ipv4_addr . inet_proto . inet_service", "service-nodeports": "inet_proto . inet_service",
             "no-endpoint-services": "ipv4_addr . inet_proto . inet_service",
             "no-endpoint-nodeports": "inet_proto . inet_service"}


@dataclass
class Ruleset:
    """The table as data, so a later one can be applied as a diff (nftables_diff.py)."""

    table: str
    maps: dict[str, dict[str, str]]  # map name -> {key: verdict}
    sets: dict[str, list[str]]  # affinity set name -> its body lines
    fixed: dict[str, list[str]]  # base chains and the chains they jump to: replaced only as a whole
    chains: dict[str, list[str]]  # per-Service and per-endpoint chains

    def script(self) -> str:
        t = self.table
        lines = [f"table ip {t}", f"delete table ip {t}", f"table ip {t} {{"]
        for name, elements in self.maps.items():
            lines += _map(name, MAP_TYPES[name], elements)
        for name, body in self.sets.items():
            lines += [f"  set {name} {{", *(f"    {b}" for b in body), "  }"]
        for name, rules in (self.fixed | self.chains).items():
            lines += _chain(name, rules)
        lines.append("}")
        return "\n".join(lines) + "\n"


def render_ruleset(ports: list[ServicePort], node: NodeInfo) -> Ruleset:
    """The whole table as data (deterministic for the same input: sorted everywhere)."""
    chains: dict[str, list[str]] = {}
    sets: dict[str, list[str]] = {}
    maps: dict[str, dict[str, str]] = {name: {} for name in MAP_TYPES}
    for sp in ports:
        vips = [f"{sp.cluster_ip} . {sp.protocol} . {sp.port}"]
        ext_vips = [f"{ip} . {sp.protocol} . {sp.port}" for ip in sp.external_ips]
        if not sp.endpoints:
            maps["no-endpoint-services"].update((v, "goto reject-chain") for v in vips + ext_vips)
            if sp.node_port:
                maps["no-endpoint-nodeports"][f"{sp.protocol} . {sp.node_port}"] = "goto reject-chain"
            continue
        svc = service_chain(sp)
        maps["service-ips"].update((v, f"goto {svc}") for v in vips)
        chains[svc] = _balance(sp, sp.endpoints)
        for ep in sp.endpoints:
            rules = [f"ip saddr {ep.ip} meta mark set meta mark | {MASQ_MARK}"]
            if sp.affinity_timeout:
                aff = affinity_set(sp, ep)
                sets[aff] = ["type ipv4_addr", "flags dynamic,timeout", f"timeout {sp.affinity_timeout}s"]
                rules.append(f"update @{aff} {{ ip saddr }}")
            rules.append(f"meta l4proto {sp.protocol} dnat to {ep.ip}:{ep.port}")
            chains[endpoint_chain(sp, ep)] = rules
        if sp.node_port or ext_vips:
            ext = external_chain(sp)
            if sp.external_local:
                local_eps = [ep for ep in sp.endpoints if ep.node_name == node.node_name]
                # Traffic from this node itself may use any endpoint (kube-proxy does the same).
                chains[local_chain(sp)] = _balance(sp, local_eps) if local_eps else ["drop"]
                chains[ext] = [f"fib saddr type local meta mark set meta mark | {MASQ_MARK} goto {svc}",
                               f"goto {local_chain(sp)}"]
            else:
                chains[ext] = [f"meta mark set meta mark | {MASQ_MARK}", f"goto {svc}"]
            maps["service-ips"].update((v, f"goto {ext}") for v in ext_vips)
            if sp.node_port:
                maps["service-nodeports"][f"{sp.protocol} . {sp.node_port}"] = f"goto {ext}"
    local = _local_ips(node)
    fixed = {
        "reject-chain": ["meta l4proto tcp reject with tcp reset", "reject"],
        "services": ["ip daddr . meta l4proto . th dport vmap @service-ips",
                     f"{local} meta l4proto . th dport vmap @service-nodeports"],
        "endpoints-check": ["ip daddr . meta l4proto . th dport vmap @no-endpoint-services",
                            f"{local} meta l4proto . th dport vmap @no-endpoint-nodeports"],
        "nat-prerouting": ["type nat hook prerouting priority -100; policy accept;", "jump services"],
        "nat-output": ["type nat hook output priority -100; policy accept;", "jump services"],
        "nat-postrouting": ["type nat hook postrouting priority 100; policy accept;",
                            f'oifname "{node.bridge}" meta mark & {MASQ_MARK} == {MASQ_MARK} masquerade',
                            *([f"ip daddr {node.cluster_cidr} meta mark & {MASQ_MARK} == {MASQ_MARK} masquerade"]
                              if node.cluster_cidr else [])],
    }
    for hook in ("input", "forward", "output"):
        fixed[f"filter-{hook}"] = [f"type filter hook {hook} priority -10; policy accept;",
                                   "ct state new jump endpoints-check"]
    return Ruleset(table=node.table, maps=maps, sets=sets, fixed=fixed, chains=chains)


def render(ports: list[ServicePort], node: NodeInfo) -> str:
    """The whole table as one nft script that replaces it atomically."""
    return render_ruleset(ports, node).script()


def render_delete(table: str) -> str:
    """A script removing the table whether or not it exists."""
    return f"table ip {table}\ndelete table ip {table}\n"
