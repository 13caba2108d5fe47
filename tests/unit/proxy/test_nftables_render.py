"""The nftables renderer: golden scripts (PK_UPDATE_GOLDEN=1 rewrites them) and the rules that
matter — exact round-robin over ready endpoints, affinity sets, Local policy, reject when empty."""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import time

import pytest

from pocketkube.proxy.model import service_ports
from pocketkube.proxy.nftables_render import NodeInfo, render
from tests.unit.proxy.fixtures import endpoint, endpoint_slice, many, service

GOLDEN = os.path.join(os.path.dirname(os.path.abspath(__file__)), "golden")
NODE = NodeInfo(table="pkttest", node_name="node-a", bridge="pktbr0", nodeport_ips=["10.42.0.1", "192.0.2.10"])
HTTP = [{"name": "http", "port": 8080, "protocol": "TCP"}]


def golden(name: str, text: str) -> None:
    path = os.path.join(GOLDEN, name)
    if os.environ.get("PK_UPDATE_GOLDEN") == "1":
        os.makedirs(GOLDEN, exist_ok=True)
        with open(path, "w") as f:
            f.write(text)
        return
    if not os.path.exists(path):
        pytest.fail(f"golden file {path} missing; rerun with PK_UPDATE_GOLDEN=1")
    with open(path) as f:
        assert text == f.read(), f"{name} differs from the golden file (PK_UPDATE_GOLDEN=1 rewrites it)"


def mixed() -> tuple[list[dict[str, object]], list[dict[str, object]]]:
    services = [
        service("web", "10.43.0.20", [{"name": "http", "port": 80, "protocol": "TCP", "targetPort": "http"}]),
        service("sticky", "10.43.0.21", [{"name": "http", "port": 80, "protocol": "TCP"}],
                sessionAffinity="ClientIP", sessionAffinityConfig={"clientIP": {"timeoutSeconds": 60}}),
        service("np", "10.43.0.22", [{"name": "http", "port": 80, "protocol": "TCP", "nodePort": 30080},
                                     {"name": "dns", "port": 53, "protocol": "UDP", "nodePort": 30053}],
                type_="NodePort"),
        service("lb", "10.43.0.23", [{"name": "http", "port": 80, "protocol": "TCP", "nodePort": 30081}],
                type_="LoadBalancer", externalTrafficPolicy="Local"),
        service("empty", "10.43.0.24", [{"port": 80, "protocol": "TCP", "nodePort": 30082}], type_="NodePort"),
        service("headless", "None", [{"port": 80}]),
    ]
    services[3]["status"] = {"loadBalancer": {"ingress": [{"ip": "192.0.2.50"}]}}
    slices = [
        endpoint_slice("web", [endpoint("10.42.0.3"), endpoint("10.42.0.2"), endpoint("10.42.0.4"),
                               endpoint("10.42.0.5", ready=False),
                               endpoint("10.42.0.6", ready=False, terminating=True)], HTTP),
        endpoint_slice("sticky", [endpoint("10.42.0.7"), endpoint("10.42.0.8")], HTTP),
        endpoint_slice("np", [endpoint("10.42.0.9")],
                       [*HTTP, {"name": "dns", "port": 5353, "protocol": "UDP"}]),
        endpoint_slice("lb", [endpoint("10.42.0.10"), endpoint("10.42.1.11", node="node-b")], HTTP),
        endpoint_slice("empty", [], []),
    ]
    return services, slices


def test_mixed_golden() -> None:
    services, slices = mixed()
    golden("mixed.nft", render(service_ports(services, slices), NODE))


def test_mixed_fib_local_golden() -> None:
    services, slices = mixed()
    golden("mixed-fib-local.nft", render(service_ports(services, slices),
                                         NodeInfo(table="pkttest", node_name="node-a", bridge="pktbr0")))


def test_thousand_services_golden() -> None:
    services, slices = many(1000)
    start = time.perf_counter()
    text = render(service_ports(services, slices), NODE)
    elapsed = time.perf_counter() - start
    assert text.count("numgen inc mod 2 vmap") == 1000
    # the whole script is ~600 kB: keep its digest and shape as the golden, not the text
    summary = (f"sha256 {hashlib.sha256(text.encode()).hexdigest()}\nlines {text.count(chr(10))}\n"
               f"chains {text.count('  chain ')}\n")
    golden("services-1000.summary", summary)
    assert elapsed < 5.0


def test_round_robin_over_ready_endpoints_only() -> None:
    services, slices = mixed()
    text = render(service_ports(services, slices), NODE)
    web = [line.strip() for line in text.splitlines() if "numgen" in line and "default/web/" in line]
    assert len(web) == 1
    assert web[0].startswith("numgen inc mod 3 vmap { 0 : goto ep-")
    assert [part.split("__")[1].split("/")[0] for part in web[0].split("goto ")[1:]] == [
        "10.42.0.2", "10.42.0.3", "10.42.0.4"]
    assert "10.42.0.5" not in text and "10.42.0.6" not in text
    # named targetPort resolved through the slice's port
    assert "meta l4proto tcp dnat to 10.42.0.2:8080" in text


def test_session_affinity_sets() -> None:
    services, slices = mixed()
    text = render(service_ports(services, slices), NODE)
    assert text.count("timeout 60s") == 2 and text.count("flags dynamic,timeout") == 2
    sticky = text[text.index("chain svc-") :]
    assert "ip saddr @aff-" in text and "update @aff-" in text and "default/sticky" in sticky


def test_local_policy_uses_local_endpoints_only() -> None:
    services, slices = mixed()
    ports = service_ports(services, slices)
    text = render(ports, NODE)
    svl = text[text.index("chain svl-") :].split("}", 1)[0]
    assert "10.42.0.10" in svl and "10.42.1.11" not in svl
    assert "192.0.2.50 . tcp . 80 : goto ext-" in text
    other = render(ports, NodeInfo(table="pkttest", node_name="node-c", bridge="pktbr0"))
    assert other[other.index("chain svl-") :].split("}", 1)[0].strip().endswith("drop")


def test_no_ready_endpoints_rejects() -> None:
    services, slices = mixed()
    text = render(service_ports(services, slices), NODE)
    assert "10.43.0.24 . tcp . 80 : goto reject-chain" in text
    assert "tcp . 30082 : goto reject-chain" in text
    assert "meta l4proto tcp reject with tcp reset" in text
    assert "default/empty" not in text  # no chain for it


def test_hairpin_masquerade_only_toward_the_bridge() -> None:
    text = render([], NODE)
    assert 'oifname "pktbr0" meta mark & 0x4000 == 0x4000 masquerade' in text
    assert text.count("masquerade") == 1
    assert text.startswith("table ip pkttest\ndelete table ip pkttest\ntable ip pkttest {\n")


def test_nodes_behind_an_uplink_masquerade_external_traffic_to_other_nodes_pods() -> None:
    # a NodePort/LoadBalancer hit DNATed to a pod on another node must come back through this node
    node = NodeInfo(table="pkttest", node_name="node-a", bridge="pktbr0", cluster_cidr="10.42.0.0/16")
    text = render([], node)
    assert "ip daddr 10.42.0.0/16 meta mark & 0x4000 == 0x4000 masquerade" in text
    assert text.count("masquerade") == 2


@pytest.mark.skipif(os.geteuid() != 0 or shutil.which("nft") is None, reason="nft -c needs root")
def test_golden_scripts_parse_with_nft() -> None:
    services, slices = mixed()
    for node in (NODE, NodeInfo(table="pkttest", node_name="node-a", bridge="pktbr0", cluster_cidr="10.42.0.0/16")):
        r = subprocess.run(["nft", "-c", "-f", "-"], input=render(service_ports(services, slices), node),
                           capture_output=True, text=True, check=False)
        assert r.returncode == 0, r.stderr
