"""The proxier's loop without a cluster: informer caches filled by hand, nft and ip faked; the
first sync loads the whole table after routing the service CIDR, later ones send only diffs, an
unchanged state sends nothing, and a failed diff falls back to a whole-table load."""

from __future__ import annotations

import pytest

from pocketkube.client.rest import APIClient, ClientConfig
from pocketkube.proxy import nftables_apply
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

    async def apply(script: str, *, netns: str | None = None) -> None:
        if "FAIL" in [c[0] for c in out] and not script.startswith("table ip"):
            raise nftables_apply.ApplyError("No such file or directory")
        out.append(("apply", script))

    monkeypatch.setattr(nftables_apply, "bridge_gateway", gateway)
    monkeypatch.setattr(nftables_apply, "ensure_service_route", route)
    monkeypatch.setattr(nftables_apply, "apply_script", apply)
    return out


def proxier() -> Proxier:
    p = Proxier(APIClient(ClientConfig(server="http://127.0.0.1:1")),
                ProxyConfig(node_name="node-a", bridge="pktbr0", service_cidr="10.43.0.0/16"))
    services, slices = many(10)
    p.services.store = {f"default/{s['metadata']['name']}": s for s in services}
    p.slices.store = {f"default/{s['metadata']['name']}": s for s in slices}
    p.nodes.store = {"node-a": {"metadata": {"name": "node-a"}, "status": {"addresses": [
        {"type": "InternalIP", "address": "127.0.0.1"}, {"type": "InternalIP", "address": "192.0.2.7"},
        {"type": "Hostname", "address": "node-a"}]}}}
    return p


async def test_first_sync_routes_then_loads_the_table(calls: Calls) -> None:
    p = proxier()
    assert p.config.table == "pocketkube-node-a"
    await p.sync()
    assert calls[0] == ("route", "10.43.0.0/16 dev pktbr0 src 10.42.0.1")
    assert calls[1][0] == "apply" and calls[1][1].startswith("table ip pocketkube-node-a\ndelete table")
    assert "ip daddr { 10.42.0.1, 192.0.2.7 }" in calls[1][1]  # node IPs for NodePorts, never 127/8
    await p.sync()
    assert len(calls) == 2 and p.metrics.syncs == 2 and p.metrics.applies == 1


async def test_changes_go_as_diffs_and_failures_reload(calls: Calls) -> None:
    p = proxier()
    await p.sync()
    p.slices.store["default/svc-00003-abc"]["endpoints"][0]["conditions"]["ready"] = False
    await p.sync()
    diff = calls[-1][1]
    assert diff.startswith("flush chain ip pocketkube-node-a svc-") and "delete chain" in diff
    assert p.metrics.incremental == 1
    calls.append(("FAIL", ""))
    p.slices.store["default/svc-00004-abc"]["endpoints"] = []
    await p.sync()
    assert calls[-1][1].startswith("table ip pocketkube-node-a\n")  # whole table after the failed diff
    assert "10.43.16.5 . tcp . 80 : goto reject-chain" in calls[-1][1]
    assert p.metrics.durations and p.metrics.last_duration > 0
