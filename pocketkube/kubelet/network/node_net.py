"""Node-level plumbing for kubenet-style networking: forwarding, the pod bridge, routes.

ARCHITECTURE: each node owns a /24 of the cluster CIDR behind the bridge `cbr0` (gateway .1) and
forwards between it and the node's uplink; other nodes' pod subnets are reached by plain routes
`<podCIDR> via <node IP>` — no overlay, so the source IP of pod-to-pod traffic is preserved.
Everything takes an optional `netns` path so that a whole node can live in a network namespace
(reference/platform.md §4); None means the host. Netlink goes through pyroute2's AsyncIPRoute.

Routes this module installs carry their own routing protocol number (`RTPROT_POCKETKUBE`), which
is how `set_routes` recognises stale ones of its own without touching anybody else's.
"""

from __future__ import annotations

import errno
import ipaddress
import socket
from collections.abc import Mapping
from typing import Any

from pyroute2 import AsyncIPRoute
from pyroute2.netlink.exceptions import NetlinkError

from pocketkube.kubelet.network.netns import NetnsError, run_in_netns

RTPROT_POCKETKUBE = 0x9C  # "proto 156" in `ip route`; unused by iproute2's rt_protos
MAIN_TABLE = 254


def _iproute(netns: str | None) -> AsyncIPRoute:
    # flags=0: never let pyroute2 create a missing namespace as a side effect.
    return AsyncIPRoute(netns=netns, flags=0) if netns else AsyncIPRoute()


async def ensure_forwarding(netns: str | None = None) -> None:
    """Set net.ipv4.ip_forward=1 in the namespace (a new netns inherits the host's value, but
    forwarding is what makes a node a router for its pods, so it is never left to chance)."""
    res = await run_in_netns(netns, ["sysctl", "-qw", "net.ipv4.ip_forward=1"], timeout=10.0)
    if not res.ok:
        raise NetnsError(f"sysctl ip_forward in {netns or 'host'}: {res.stderr.decode(errors='replace').strip()}")


async def ensure_link_up(name: str, *, netns: str | None = None) -> None:
    """Bring a link (e.g. `lo` of a fresh node namespace) up."""
    async with _iproute(netns) as ipr:
        index = await _lookup(ipr, name)
        if index is None:
            raise NetnsError(f"no link {name} in {netns or 'host'}")
        await ipr.link("set", index=index, state="up")


async def ensure_bridge(name: str, gateway_cidr: str, *, netns: str | None = None,
                        mtu: int | None = None) -> int:
    """Create the pod bridge if missing, give it the gateway address, bring it up; its ifindex.

    Done before the first CNI ADD so the node routes its pod subnet even with no pods, and so the
    gateway address is the one kubenet expects (the bridge plugin then finds it already there).
    """
    gateway = ipaddress.ip_interface(gateway_cidr)
    async with _iproute(netns) as ipr:
        index = await _lookup(ipr, name)
        if index is None:
            # A fixed MAC: a bridge left to itself takes the lowest MAC of its ports, so it would
            # change as pods come and go (stale neighbour caches; CNI CHECK then fails on it).
            spec: dict[str, Any] = {"ifname": name, "kind": "bridge", "address": bridge_mac(str(gateway.ip))}
            if mtu is not None:
                spec["mtu"] = mtu
            try:
                await ipr.link("add", **spec)
            except NetlinkError as e:
                if e.code != errno.EEXIST:
                    raise
            index = await _lookup(ipr, name)
            if index is None:
                raise NetnsError(f"bridge {name} vanished after creation")
        else:
            got = await ipr.link("get", index=index)
            # pyroute2 0.9 answers "get" with a list under some loops and an async iterator under others.
            links = list(got) if isinstance(got, list | tuple) else [link async for link in got]
            kind = links[0].get(("IFLA_LINKINFO", "IFLA_INFO_KIND")) if links else None
            if kind != "bridge":
                raise NetnsError(f"link {name} exists and is a {kind or 'non-bridge'}, not a bridge")
        try:
            await ipr.addr("add", index=index, address=str(gateway.ip), prefixlen=gateway.network.prefixlen)
        except NetlinkError as e:
            if e.code != errno.EEXIST:
                raise
        await ipr.link("set", index=index, state="up")
        return index


def bridge_mac(gateway_ip: str) -> str:
    """A stable, locally administered MAC for the bridge owning `gateway_ip` (0a:58:<IPv4>)."""
    packed = ipaddress.ip_address(gateway_ip).packed[-4:]
    return ":".join(f"{b:02x}" for b in (0x0A, 0x58, *packed))


async def delete_link(name: str, *, netns: str | None = None) -> None:
    """Delete a link (bridge, veth) by name; a missing one is fine."""
    async with _iproute(netns) as ipr:
        index = await _lookup(ipr, name)
        if index is None:
            return
        try:
            await ipr.link("del", index=index)
        except NetlinkError as e:
            if e.code not in (errno.ENODEV, errno.ENOENT):
                raise


async def link_names(*, netns: str | None = None) -> list[str]:
    """Names of all links in the namespace."""
    async with _iproute(netns) as ipr:
        return sorted([str(link.get("IFLA_IFNAME")) async for link in await ipr.link("dump")])


async def get_routes(*, netns: str | None = None, protocol: int = RTPROT_POCKETKUBE) -> dict[str, str]:
    """The IPv4 main-table routes installed with `protocol`, as {cidr: via}."""
    async with _iproute(netns) as ipr:
        return await _owned_routes(ipr, protocol)


async def set_routes(routes: Mapping[str, str], netns: str | None = None, *,
                     protocol: int = RTPROT_POCKETKUBE) -> None:
    """Make the owned routes exactly `routes` ({pod CIDR: node IP}): replace each one (so a
    node that changed address is fixed) and delete owned routes no longer wanted. Idempotent."""
    desired = {str(ipaddress.ip_network(cidr)): str(ipaddress.ip_address(via)) for cidr, via in routes.items()}
    async with _iproute(netns) as ipr:
        current = await _owned_routes(ipr, protocol)
        for cidr in current.keys() - desired.keys():
            net = ipaddress.ip_network(cidr)
            try:
                await ipr.route("del", dst=str(net.network_address), dst_len=net.prefixlen,
                                table=MAIN_TABLE, proto=protocol)
            except NetlinkError as e:
                if e.code != errno.ESRCH:
                    raise
        for cidr, via in desired.items():
            if current.get(cidr) == via:
                continue
            net = ipaddress.ip_network(cidr)
            await ipr.route("replace", dst=str(net.network_address), dst_len=net.prefixlen,
                            gateway=via, table=MAIN_TABLE, proto=protocol)


async def _owned_routes(ipr: AsyncIPRoute, protocol: int) -> dict[str, str]:
    out: dict[str, str] = {}
    async for route in await ipr.route("dump", family=socket.AF_INET, table=MAIN_TABLE):
        if route["proto"] != protocol:
            continue
        dst = route.get("dst") or "0.0.0.0"
        gateway = route.get("gateway")
        if gateway:
            out[f"{dst}/{route['dst_len']}"] = str(gateway)
    return out


async def _lookup(ipr: AsyncIPRoute, name: str) -> int | None:
    found = await ipr.link_lookup(ifname=name)
    return int(found[0]) if found else None
