"""Incremental updates: the diff between two rendered tables, applied after a full load inside a
throwaway network namespace, must leave exactly what a full load of the new table gives."""

from __future__ import annotations

import copy
import json
import os
import random
import shutil
import subprocess
from collections.abc import Iterable, Iterator
from typing import Any

import pytest

from pocketkube.proxy import nftables_apply
from pocketkube.proxy.model import ports_of_service, service_ports
from pocketkube.proxy.nftables_diff import TableState, incremental_script
from pocketkube.proxy.nftables_render import (
    Fragment,
    NodeInfo,
    Ruleset,
    base_chains,
    render_fragment,
    render_ruleset,
)
from tests.unit.proxy.fixtures import endpoint, endpoint_slice, many, scratch_netns, service

HTTP = [{"name": "http", "port": 8080, "protocol": "TCP"}]
TAG = f"{random.randrange(16**6):06x}"  # unique table names, even inside the test's own namespace
TEST, FULL, PART = f"pkt{TAG}t", f"pkt{TAG}f", f"pkt{TAG}p"
NODE = NodeInfo(table=TEST, node_name="node-a", bridge="pktbr0", nodeport_ips=["10.42.0.1"])


def ruleset(services: list[dict[str, Any]], slices: list[dict[str, Any]], table: str = TEST) -> Ruleset:
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
    new = render_ruleset(service_ports(services, slices), NodeInfo(table=TEST, node_name="node-a",
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
    with scratch_netns() as path:
        yield path


async def test_incremental_equals_full_load(netns: str) -> None:
    seq = states()
    current = ruleset(*seq[0])
    await nftables_apply.apply_script(current.script(), netns=netns)
    for services, slices in seq[1:]:
        new = ruleset(services, slices)
        diff = incremental_script(current, new)
        assert diff
        await nftables_apply.apply_script(diff, netns=netns)
        await nftables_apply.apply_script(ruleset(services, slices, table=FULL).script(), netns=netns)
        assert _normalized(netns, TEST) == _normalized(netns, FULL)
        current = new
    await nftables_apply.delete_table(TEST, netns=netns)
    await nftables_apply.delete_table(FULL, netns=netns)


def _random_states(seed: int, steps: int) -> Iterator[tuple[set[str], list[dict[str, Any]], list[dict[str, Any]]]]:
    """Random edits of Services and slices; yields (changed Service ids, services, slices)."""
    rnd = random.Random(seed)
    services, slices = many(12, endpoints_each=3)
    for i in (0, 1):  # two LoadBalancers sharing an external IP and port: the later one wins
        services[i]["spec"].update(type="LoadBalancer", externalIPs=["192.0.2.99"])
        services[i]["spec"]["ports"][0]["nodePort"] = 30100 + i
    services[2]["spec"].update(sessionAffinity="ClientIP")
    yield {f"default/{s['metadata']['name']}" for s in services[:3]}, copy.deepcopy(services), copy.deepcopy(slices)
    for _ in range(steps):
        i = rnd.randrange(len(services))
        name = services[i]["metadata"]["name"]
        op = rnd.choice(["flip", "flip", "empty", "grow", "delete", "add", "affinity", "external", "port"])
        sl = next(s for s in slices if s["metadata"]["labels"]["kubernetes.io/service-name"] == name)
        if op == "flip" and sl["endpoints"]:
            cond = rnd.choice(sl["endpoints"])["conditions"]
            cond["ready"] = not cond["ready"]
        elif op == "empty":
            sl["endpoints"] = []
        elif op == "grow":
            sl["endpoints"].append(endpoint(f"10.42.{100 + i}.{rnd.randrange(1, 250)}", node=rnd.choice(["node-a", "b"])))
        elif op == "delete" and len(services) > 3:
            services.pop(i)
        elif op == "add":
            name = f"new-{rnd.randrange(10**6)}"
            services.append(service(name, f"10.43.200.{rnd.randrange(1, 250)}",
                                    [{"name": "http", "port": 80, "protocol": "TCP"}]))
            slices.append(endpoint_slice(name, [endpoint("10.42.200.1")], HTTP))
        elif op == "affinity":
            services[i]["spec"]["sessionAffinity"] = "ClientIP"
            services[i]["spec"]["sessionAffinityConfig"] = {"clientIP": {"timeoutSeconds": rnd.choice([60, 90])}}
        elif op == "external":
            services[i]["spec"].update(type="LoadBalancer", externalIPs=[f"192.0.2.{rnd.choice([99, 98])}"],
                                       externalTrafficPolicy=rnd.choice(["Local", "Cluster"]))
        elif op == "port":
            services[i]["spec"]["ports"].append({"name": "alt", "port": 81, "protocol": "UDP"})
        yield {f"default/{name}"}, copy.deepcopy(services), copy.deepcopy(slices)


def _state_fragments(services: list[dict[str, Any]], slices: list[dict[str, Any]],
                     sids: Iterable[str] | None = None) -> dict[str, list[Fragment]]:
    by_svc = {f"default/{s['metadata']['name']}": s for s in services}
    out: dict[str, list[Fragment]] = {}
    for sid in sids if sids is not None else by_svc:
        svc = by_svc.get(sid)
        mine = [s for s in slices if f"default/{s['metadata']['labels']['kubernetes.io/service-name']}" == sid]
        out[sid] = [render_fragment(sp, NODE) for sp in ports_of_service(svc, mine)] if svc else []
    return out


def test_partial_updates_match_a_full_render() -> None:
    for seed in range(20):
        first = many(12, endpoints_each=3)
        state = TableState(TEST, base_chains(NODE), _state_fragments(*first))
        for changed, services, slices in _random_states(seed, 25):
            script = state.update(_state_fragments(services, slices, changed))
            full = ruleset(services, slices)
            if script is None:  # an affinity timeout changed: the caller reloads the whole table
                state = TableState(TEST, base_chains(NODE), _state_fragments(services, slices))
            assert state.ruleset() == full, (seed, changed)


async def test_partial_updates_in_the_kernel_equal_a_full_load(netns: str) -> None:
    services, slices = many(12, endpoints_each=3)
    state = TableState(PART, base_chains(NODE), _state_fragments(services, slices))
    await nftables_apply.apply_script(state.ruleset().script(), netns=netns)
    partial = 0
    for changed, services, slices in _random_states(7, 30):
        script = state.update(_state_fragments(services, slices, changed))
        if script is None:
            state = TableState(PART, base_chains(NODE), _state_fragments(services, slices))
            script = state.ruleset().script()
        else:
            partial += 1
        if script:
            await nftables_apply.apply_script(script, netns=netns)
        full = render_ruleset(service_ports(services, slices), NodeInfo(**{**NODE.__dict__, "table": FULL}))
        await nftables_apply.apply_script(full.script(), netns=netns)
        assert _normalized(netns, PART) == _normalized(netns, FULL)
    assert partial > 20
    await nftables_apply.delete_table(PART, netns=netns)
    await nftables_apply.delete_table(FULL, netns=netns)
