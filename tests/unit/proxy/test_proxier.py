"""The proxier's loop without a cluster: informer caches filled by hand and their handlers called as
a watch would, nft and ip faked. The first sync loads the whole table after routing the service
CIDR; a change re-renders only its Service and sends a diff; an unchanged state sends nothing; a
failed diff, a node address change or the full-sync period reload the whole table; the loop syncs
at once after a quiet spell and batches a burst."""

from __future__ import annotations

import asyncio
import contextlib
import copy
import time
from typing import Any

import pytest

from pocketkube.client.informer import Informer, object_key
from pocketkube.client.rest import APIClient, ClientConfig
from pocketkube.proxy import nftables_apply
from pocketkube.proxy import proxier as proxier_module
from pocketkube.proxy.model import ServicePort
from pocketkube.proxy.nftables_render import Fragment, NodeInfo
from pocketkube.proxy.proxier import Proxier, ProxyConfig
from tests.unit.proxy.fixtures import many

Calls = list[tuple[str, str]]


@pytest.fixture
def calls(monkeypatch: pytest.MonkeyPatch) -> Calls:
    out: Calls = []

    async def gateway(bridge: str, *, netns: str | None = None) -> str:
        return "10.42.0.1"

    async def route(cidr: str, bridge: str, gw: str, *, netns: str | None = None) -> None:
        out.append(("route", f"{cidr} dev {bridge} src {gw}"))

    async def apply(script: str, *, netns: str | None = None, whole_table: bool = False) -> None:
        assert whole_table == script.startswith("table ip")  # whole tables go by the CLI (memory)
        if "FAIL" in [c[0] for c in out] and not whole_table:
            raise nftables_apply.ApplyError("No such file or directory")
        out.append(("apply", script))

    monkeypatch.setattr(nftables_apply, "bridge_gateway", gateway)
    monkeypatch.setattr(nftables_apply, "ensure_service_route", route)
    monkeypatch.setattr(nftables_apply, "apply_script", apply)
    return out


def proxier(**config: Any) -> Proxier:
    p = Proxier(APIClient(ClientConfig(server="http://127.0.0.1:1")),
                ProxyConfig(node_name="node-a", bridge="pktbr0", service_cidr="10.43.0.0/16", **config))
    services, slices = many(10)
    p.nodes.store = {"node-a": {"metadata": {"name": "node-a"}, "status": {"addresses": [
        {"type": "InternalIP", "address": "127.0.0.1"}, {"type": "InternalIP", "address": "192.0.2.7"},
        {"type": "Hostname", "address": "node-a"}]}}}
    for inf, objs in ((p.services, services), (p.slices, slices)):
        for obj in objs:
            put(inf, obj)
    return p


def put(inf: Informer, obj: dict[str, Any] | None, key: str = "") -> None:
    """What the informer does on a watch event: store, then call the handlers with (old, new)."""
    key = key or object_key(obj or {})
    old = inf.store.get(key)
    if obj is None:
        inf.store.pop(key, None)
    else:
        inf.store[key] = obj
    inf._emit(copy.deepcopy(old) if old is not None else None, obj)


def unready(p: Proxier, name: str, index: int = 0) -> None:
    new = copy.deepcopy(p.slices.store[f"default/{name}-abc"])
    new["endpoints"][index]["conditions"]["ready"] = False
    put(p.slices, new)


async def test_first_sync_routes_then_loads_the_table(calls: Calls) -> None:
    p = proxier()
    assert p.config.table == "pocketkube-node-a"
    await p.sync()
    assert calls[0] == ("route", "10.43.0.0/16 dev pktbr0 src 10.42.0.1")
    assert calls[1][0] == "apply" and calls[1][1].startswith("table ip pocketkube-node-a\ndelete table")
    assert "ip daddr { 10.42.0.1, 192.0.2.7 }" in calls[1][1]  # node IPs for NodePorts, never 127/8
    await p.sync()
    assert len(calls) == 2 and p.metrics.syncs == 2 and p.metrics.applies == 1 and p.metrics.full == 1


async def test_a_change_rerenders_only_its_service(calls: Calls, monkeypatch: pytest.MonkeyPatch) -> None:
    p = proxier()
    await p.sync()
    rendered: list[str] = []
    real = proxier_module.render_fragment

    def counting(sp: ServicePort, node: NodeInfo) -> Fragment:
        rendered.append(sp.name)
        return real(sp, node)

    monkeypatch.setattr(proxier_module, "render_fragment", counting)
    unready(p, "svc-00003")
    await p.sync()
    diff = calls[-1][1]
    assert rendered == ["svc-00003"]
    assert diff.startswith("flush chain ip pocketkube-node-a svc-") and "delete chain" in diff
    assert all("default/svc-00003/" in line for line in diff.splitlines()), diff
    assert p.metrics.incremental == 1 and p.metrics.full == 1
    put(p.services, None, "default/svc-00005")  # a Service goes: its chains and map element go
    await p.sync()
    assert "delete element ip pocketkube-node-a service-ips { 10.43.16.6 . tcp . 80 }" in calls[-1][1]
    assert "delete chain ip pocketkube-node-a svc-" in calls[-1][1] and rendered == ["svc-00003"]
    ruleset = p.ruleset()
    assert ruleset is not None and "10.43.16.6 . tcp . 80" not in ruleset.maps["service-ips"]


async def test_failures_node_changes_and_the_period_reload_the_whole_table(calls: Calls) -> None:
    p = proxier()
    await p.sync()
    calls.append(("FAIL", ""))
    put(p.slices, {**p.slices.store["default/svc-00004-abc"], "endpoints": []})
    await p.sync()
    assert calls[-1][1].startswith("table ip pocketkube-node-a\n")  # whole table after the failed diff
    assert "10.43.16.5 . tcp . 80 : goto reject-chain" in calls[-1][1]
    assert p.metrics.full == 2 and p.metrics.durations and p.metrics.last_duration > 0
    calls.remove(("FAIL", ""))
    node = copy.deepcopy(p.nodes.store["node-a"])
    node["status"]["addresses"][1]["address"] = "192.0.2.8"
    put(p.nodes, node)
    await p.sync()
    assert p.metrics.full == 3 and "ip daddr { 10.42.0.1, 192.0.2.8 }" in calls[-1][1]
    node["metadata"]["resourceVersion"] = "7"  # a heartbeat: nothing to load
    put(p.nodes, copy.deepcopy(node))
    await p.sync()
    assert p.metrics.applies == 3
    p.config.full_sync_period = 0.001
    await asyncio.sleep(0.002)
    await p.sync()
    assert p.metrics.full == 4


async def applies(p: Proxier, n: int) -> None:
    async with asyncio.timeout(5):
        for _ in iter(lambda: p.metrics.applies >= n, True):
            await asyncio.sleep(0.002)


async def test_loop_syncs_at_once_after_a_quiet_spell_and_batches_a_burst(calls: Calls) -> None:
    p = proxier(min_sync_interval=0.4)
    task = asyncio.create_task(p._loop(None))
    try:
        await applies(p, 1)
        await asyncio.sleep(0.5)  # quiet spell
        start = time.monotonic()
        unready(p, "svc-00001")
        await applies(p, 2)
        assert time.monotonic() - start < 0.2  # not held back by the interval
        unready(p, "svc-00002")  # right after a sync: waits out the interval, then both in one sync
        await asyncio.sleep(0.05)
        unready(p, "svc-00003")
        await applies(p, 3)
        assert time.monotonic() - start >= 0.4
        assert "svc-00002" in calls[-1][1] and "svc-00003" in calls[-1][1] and p.metrics.incremental == 2
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
