"""`node_routes`: route every other node's pod subnet via that node's InternalIP (kubenet style).

ARCHITECTURE: nodes share one L2/L3 segment (the `cluster up` switch bridge, or a real LAN), so
pod-to-pod traffic between nodes needs no overlay: on each node, `<other podCIDR> via <other
InternalIP>`. This loop watches Nodes through the API and keeps exactly those routes in the
agent's own network namespace with `node_net.set_routes` (which only touches routes it owns), so
a node that leaves loses its route and a node that changes address gets it fixed. The source IP
of pod-to-pod traffic is preserved. A route whose gateway the kernel refuses (not on a directly
connected subnet: a hollow node, a node on another segment) is skipped and retried on the next
change.
"""

from __future__ import annotations

import asyncio
import ipaddress
import logging
from typing import Any

from pocketkube.client.informer import Informer
from pocketkube.client.rest import APIClient
from pocketkube.kubelet.network import node_net

log = logging.getLogger(__name__)


def desired_routes(nodes: list[dict[str, Any]], self_name: str) -> dict[str, str]:
    """{podCIDR: InternalIP} of every node but `self_name` that has both (IPv4 only)."""
    out: dict[str, str] = {}
    for node in nodes:
        if (node.get("metadata") or {}).get("name") == self_name:
            continue
        cidr = (node.get("spec") or {}).get("podCIDR")
        ip = next((a.get("address") for a in (node.get("status") or {}).get("addresses") or []
                   if a.get("type") == "InternalIP"), None)
        if not cidr or not ip:
            continue
        try:
            if ipaddress.ip_network(cidr).version != 4 or ipaddress.ip_address(ip).version != 4:
                continue
        except ValueError:
            continue
        out[str(ipaddress.ip_network(cidr))] = str(ip)
    return out


async def node_routes(client: APIClient, node_name: str, *, netns: str | None = None,
                      resync: float = 30.0) -> None:
    """Keep routes to the other nodes' podCIDRs in `netns` (None: this process's namespace) until
    cancelled; re-applies on every Node change and every `resync` seconds."""
    informer = Informer(client.core("nodes"))
    changed = asyncio.Event()
    informer.add_handler(lambda _old, _new: changed.set())
    task = asyncio.create_task(informer.run(), name="node-routes-informer")
    applied: dict[str, str] | None = None
    try:
        await informer.synced.wait()
        while True:
            changed.clear()
            want = desired_routes(informer.list(), node_name)
            if want != applied:
                try:
                    applied = await _apply(want, netns)
                except Exception:
                    log.exception("could not set pod routes; retrying")
                    applied = None
                    await asyncio.sleep(1.0)
                    changed.set()
            try:
                await asyncio.wait_for(changed.wait(), resync)
            except TimeoutError:
                applied = None  # resync: re-apply even if nothing changed (someone may have flushed them)
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)


async def _apply(want: dict[str, str], netns: str | None) -> dict[str, str] | None:
    """Apply all routes at once; on refusal, apply them one by one keeping those the kernel takes."""
    try:
        await node_net.set_routes(want, netns)
        log.info("pod routes: %s", ", ".join(f"{c} via {v}" for c, v in sorted(want.items())) or "none")
        return want
    except Exception as e:
        log.warning("could not set pod routes %s at once (%s); trying one by one", want, e)
    kept: dict[str, str] = {}
    for cidr, via in want.items():
        try:
            await node_net.set_routes({**kept, cidr: via}, netns)
            kept[cidr] = via
        except Exception as e:
            log.warning("route %s via %s refused: %s", cidr, via, e)
    await node_net.set_routes(kept, netns)
    return None
