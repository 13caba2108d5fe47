"""Render Services + EndpointSlices into one nftables script, pure (no I/O), for an atomic load.

The layout follows kube-proxy's nftables mode in spirit (reference/platform.md §3):

* `service-ips` verdict map (ClusterIP / external IP . proto . port → goto the Service's chain)
  and `service-nodeports` (proto . port → goto its external chain) for NodePorts on the node IPs;
* a `svc-…` chain per Service port: ClientIP affinity lookups, then exact round-robin over the
  READY endpoints. kube-proxy writes `numgen … mod N vmap { 0 : goto ep1, … }`; each such inline
  map is an anonymous set, and the kernel scans the whole transaction once per anonymous set it
  binds (`__nft_set_trans_bind`), so a 10,000-Service load took 30 to 100 s. Up to RULE_CHAIN_MAX
  endpoints the chain is instead `numgen inc mod N == 0 goto ep1; numgen inc mod N-1 == 0 goto
  ep2; …; goto epN`: every rule has its own counter and only sees the packets the rules before it
  passed on, so the cycle is still exactly ep1, ep2, …, epN — and no set is created at all;
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


RULE_CHAIN_MAX = 16  # above this many endpoints one vmap lookup beats walking the rules per connection


def _balance(sp: ServicePort, endpoints: list[Endpoint]) -> list[str]:
    """Rules picking one endpoint: a sticky one first if affinity applies, else round-robin."""
    rules = []
    if sp.affinity_timeout:
        rules += [f"ip saddr @{affinity_set(sp, ep)} goto {endpoint_chain(sp, ep)}" for ep in endpoints]
    n = len(endpoints)
    if n <= RULE_CHAIN_MAX:
        rules += [f"numgen inc mod {n - i} == 0 goto {endpoint_chain(sp, ep)}" for i, ep in enumerate(endpoints[:-1])]
        rules.append(f"goto {endpoint_chain(sp, endpoints[-1])}")
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
class Fragment:
    """What one Service port adds to the table: its own chains and sets, and its map elements.

    Rendered on its own, so a sync re-renders only the Services that changed (nftables_diff.py)."""

    order: tuple[str, str, int, str]  # (namespace, name, port, protocol): the table's sort order
    chains: dict[str, list[str]] = field(default_factory=dict)
    sets: dict[str, list[str]] = field(default_factory=dict)
    elements: list[tuple[str, str, str]] = field(default_factory=list)  # (map, key, verdict)


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


def render_fragment(sp: ServicePort, node: NodeInfo) -> Fragment:
    """One Service port's chains, affinity sets and map elements (pure)."""
    frag = Fragment(order=(sp.namespace, sp.name, sp.port, sp.protocol))
    chains, elements = frag.chains, frag.elements
    vips = [f"{sp.cluster_ip} . {sp.protocol} . {sp.port}"]
    ext_vips = [f"{ip} . {sp.protocol} . {sp.port}" for ip in sp.external_ips]
    if not sp.endpoints:
        elements += [("no-endpoint-services", v, "goto reject-chain") for v in vips + ext_vips]
        if sp.node_port:
            elements.append(("no-endpoint-nodeports", f"{sp.protocol} . {sp.node_port}", "goto reject-chain"))
        return frag
    svc = service_chain(sp)
    elements += [("service-ips", v, f"goto {svc}") for v in vips]
    chains[svc] = _balance(sp, sp.endpoints)
    for ep in sp.endpoints:
        rules = [f"ip saddr {ep.ip} meta mark set meta mark | {MASQ_MARK}"]
        if sp.affinity_timeout:
            aff = affinity_set(sp, ep)
            frag.sets[aff] = ["type ipv4_addr", "flags dynamic,timeout", f"timeout {sp.affinity_timeout}s"]
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
        elements += [("service-ips", v, f"goto {ext}") for v in ext_vips]
        if sp.node_port:
            elements.append(("service-nodeports", f"{sp.protocol} . {sp.node_port}", f"goto {ext}"))
    return frag


def base_chains(node: NodeInfo) -> dict[str, list[str]]:
    """The hooks and the chains every Service shares; they change only with the node."""
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
    return fixed


def assemble(table: str, fixed: dict[str, list[str]], fragments: list[Fragment]) -> Ruleset:
    """Fragments, in table order, as one Ruleset; on a map key claimed twice the later one wins."""
    chains: dict[str, list[str]] = {}
    sets: dict[str, list[str]] = {}
    maps: dict[str, dict[str, str]] = {name: {} for name in MAP_TYPES}
    for frag in sorted(fragments, key=lambda f: f.order):
        chains.update(frag.chains)
        sets.update(frag.sets)
        for name, key, verdict in frag.elements:
            maps[name][key] = verdict
    return Ruleset(table=table, maps=maps, sets=sets, fixed=fixed, chains=chains)


def render_ruleset(ports: list[ServicePort], node: NodeInfo) -> Ruleset:
    """The whole table as data (deterministic for the same input: sorted everywhere)."""
    return assemble(node.table, base_chains(node), [render_fragment(sp, node) for sp in ports])


def render(ports: list[ServicePort], node: NodeInfo) -> str:
    """The whole table as one nft script that replaces it atomically."""
    return render_ruleset(ports, node).script()


def render_delete(table: str) -> str:
    """A script removing the table whether or not it exists."""
    return f"table ip {table}\ndelete table ip {table}\n"
