"""Incremental updates: the diff between two rendered tables, applied after a full load inside a
throwaway network namespace, must leave exactly what a full load of the new table gives."""

from __future__ import annotations

import copy
import json
import os
import random
import shutil
import subprocess
from collections.abc import Iterator
from typing import Any

import pytest

from pocketkube.proxy import nftables_apply
from pocketkube.proxy.model import service_ports
from pocketkube.proxy.nftables_diff import incremental_script
from pocketkube.proxy.nftables_render import NodeInfo, Ruleset, render_ruleset
from tests.unit.proxy.fixtures import endpoint, endpoint_slice, many, service

HTTP = [{"name": "http", "port": 8080, "protocol": "TCP"}]


def ruleset(services: list[dict[str, Any]], slices: list[dict[str, Any]], table: str = "pkttest") -> Ruleset:
    return render_ruleset(service_ports(services, slices),
                          NodeInfo(table=table, node_name="node-a", bridge="pktbr0", nodeport_ips=["10.42.0.1"]))


def states() -> list[tuple[list[dict[str, Any]], list[dict[str, Any]]]]:
    services, slices = many(20)
    out = [(copy.deepcopy(services), copy.deepcopy(slices))]
    slices[3]["endpoints"][0]["conditions"]["ready"] = False  # one endpoint leaves
    slices[4]["endpoints"] = []  # a Service loses all: reject
    services.append(service("sticky", "10.43.0.30", [{"name": "http", "port": 80, "protocol": "TCP",
                                                      "nodePort": 30090}], type_="NodePort",
                            sessionAffinity="ClientIP"))
    slices.append(endpoint_slice("sticky", [endpoint("10.42.9.1"), endpoint("10.42.9.2")], HTTP))
    out.append((copy.deepcopy(services), copy.deepcopy(slices)))
    del services[5:10]  # Services go away
    slices[-1]["endpoints"].pop()  # the sticky one shrinks: a set and a chain go
    slices[4]["endpoints"] = [endpoint("10.42.8.8")]  # and the empty one comes back
    out.append((copy.deepcopy(services), copy.deepcopy(slices)))
    services.pop()  # the affinity Service goes entirely
    out.append((copy.deepcopy(services), copy.deepcopy(slices)))
    return out


def test_diff_is_empty_when_nothing_changed() -> None:
    services, slices = many(5)
    assert incremental_script(ruleset(services, slices), ruleset(services, slices)) == ""


def test_diff_touches_only_the_changed_service() -> None:
    services, slices = many(100)
    old = ruleset(services, slices)
    slices[42]["endpoints"][1]["conditions"]["ready"] = False
    diff = incremental_script(old, ruleset(services, slices))
    assert diff is not None
    assert all("default/svc-00042/" in line for line in diff.splitlines()), diff
    assert "flush chain" in diff and "delete chain" in diff


def test_base_changes_need_a_full_reload() -> None:
    services, slices = many(3)
    old = ruleset(services, slices)
    new = render_ruleset(service_ports(services, slices), NodeInfo(table="pkttest", node_name="node-a",
                                                                   bridge="otherbr", nodeport_ips=["10.42.0.1"]))
    assert incremental_script(old, new) is None


def _normalized(netns: str, table: str) -> dict[str, Any]:
    out = subprocess.run(["nsenter", f"--net={netns}", "nft", "-j", "list", "table", "ip", table],
                         capture_output=True, text=True, check=True).stdout
    chains: dict[str, list[str]] = {}
    maps: dict[str, list[str]] = {}
    sets: dict[str, str] = {}
    for item in json.loads(out)["nftables"]:
        if "chain" in item:
            chains.setdefault(item["chain"]["name"], [])
        elif "rule" in item:
            chains.setdefault(item["rule"]["chain"], []).append(json.dumps(item["rule"]["expr"], sort_keys=True))
        elif "map" in item:
            maps[item["map"]["name"]] = sorted(json.dumps(e, sort_keys=True) for e in item["map"].get("elem", []))
        elif "set" in item:
            s = item["set"]
            sets[s["name"]] = json.dumps({k: s.get(k) for k in ("type", "flags", "timeout")}, sort_keys=True)
    return {"chains": chains, "maps": maps, "sets": sets}


@pytest.fixture
def netns() -> Iterator[str]:
    if os.geteuid() != 0 or shutil.which("nft") is None:
        pytest.skip("needs root and nft")
    name = f"pkt{random.randrange(16**6):06x}"
    subprocess.run(["ip", "netns", "add", name], check=True)
    try:
        yield f"/run/netns/{name}"
    finally:
        subprocess.run(["ip", "netns", "delete", name], check=False)


async def test_incremental_equals_full_load(netns: str) -> None:
    seq = states()
    current = ruleset(*seq[0])
    await nftables_apply.apply_script(current.script(), netns=netns)
    for services, slices in seq[1:]:
        new = ruleset(services, slices)
        diff = incremental_script(current, new)
        assert diff
        await nftables_apply.apply_script(diff, netns=netns)
        await nftables_apply.apply_script(ruleset(services, slices, table="pktfull").script(), netns=netns)
        assert _normalized(netns, "pkttest") == _normalized(netns, "pktfull")
        current = new
    await nftables_apply.delete_table("pkttest", netns=netns)
    await nftables_apply.delete_table("pktfull", netns=netns)
