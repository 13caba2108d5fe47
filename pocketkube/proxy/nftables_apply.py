"""Push a rendered ruleset into the kernel: one `nft -f` transaction, plus the service route.

A diff goes through libnftables in-process when it is there (libnftables.py: no process per sync),
a whole table (and everything when libnftables is missing) through the `nft -f -` CLI; the script
and its all-or-nothing effect are the same either way.

The script from nftables_render.py creates-then-deletes-then-recreates the table in one batch, so
the kernel swaps the whole table atomically or, on any error, keeps the old one. The route of the
service CIDR to the pod bridge (`ip route replace CIDR dev BRIDGE src GATEWAY`) must exist before
any DNAT rule: without it host → ClusterIP picks the uplink and its address, and anything not
DNATed would leak out of a real interface (reference/platform.md §3). With `netns` every command
runs in that network namespace (`nsenter --net=`, never `ip netns exec`, see §4).
"""

from __future__ import annotations

import asyncio
import ipaddress
import json
import logging

from pocketkube.proxy import libnftables
from pocketkube.proxy.nftables_render import render_delete

log = logging.getLogger(__name__)
BACKEND = "lib" if libnftables.available() else "cli"  # "cli" forces `nft -f -` (bench compares both)


class ApplyError(Exception):
    """nft or ip refused a command; the message is theirs."""


async def _run(argv: list[str], *, stdin: bytes | None = None, netns: str | None = None) -> str:
    if netns:
        argv = ["nsenter", f"--net={netns}", *argv]
    proc = await asyncio.create_subprocess_exec(
        *argv, stdin=asyncio.subprocess.PIPE if stdin is not None else asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
    try:
        out, err = await proc.communicate(stdin)
    except asyncio.CancelledError:
        await asyncio.shield(proc.wait())  # let a cancelled nft finish before anyone acts after it
        raise
    if proc.returncode != 0:
        raise ApplyError(f"{' '.join(argv[:3])}: {err.decode(errors='replace').strip()[:2000]}")
    return out.decode()


async def apply_script(script: str, *, netns: str | None = None, whole_table: bool = False) -> None:
    """Commit a script as one atomic transaction. A whole-table load goes through the CLI even
    with libnftables: parsing 10,000 Services in-process leaves ~270 MB in the caller's heap (an
    `nft` child returns it when it exits) and took no less time."""
    if BACKEND == "lib" and not whole_table:
        try:
            ctx = libnftables.context(netns)
        except (libnftables.NftError, OSError) as e:
            log.warning("libnftables unusable here (%s); using the nft CLI", e)
        else:
            try:
                await ctx.run(script)
            except libnftables.NftError as e:
                raise ApplyError(f"nft: {e}") from e
            return
    await _run(["nft", "-f", "-"], stdin=script.encode(), netns=netns)


def release(netns: str | None = None) -> None:
    """Free the in-process nft context of `netns` (its thread would keep the namespace alive)."""
    libnftables.close(netns)


async def delete_table(table: str, *, netns: str | None = None) -> None:
    """Through apply_script, so it queues behind a load still running in the libnftables thread
    (a cancelled sync's transaction goes on there and would otherwise re-create the table)."""
    await apply_script(render_delete(table), netns=netns)


async def bridge_gateway(bridge: str, *, netns: str | None = None) -> str | None:
    """The first IPv4 address of the bridge, or None while the bridge does not exist yet."""
    try:
        out = await _run(["ip", "-j", "-4", "addr", "show", "dev", bridge], netns=netns)
    except ApplyError:
        return None
    for link in json.loads(out or "[]"):
        for addr in link.get("addr_info") or []:
            if addr.get("family") == "inet" and addr.get("local"):
                return str(addr["local"])
    return None


async def ensure_service_route(service_cidr: str, bridge: str, gateway: str, *, netns: str | None = None) -> None:
    net = ipaddress.ip_network(service_cidr)
    await _run(["ip", "route", "replace", str(net), "dev", bridge, "src", gateway], netns=netns)


async def delete_service_route(service_cidr: str, bridge: str, *, netns: str | None = None) -> None:
    try:
        await _run(["ip", "route", "del", str(ipaddress.ip_network(service_cidr)), "dev", bridge], netns=netns)
    except ApplyError:
        pass  # already gone (the bridge was deleted, say)
