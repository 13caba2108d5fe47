"""The rendered table in a real kernel: new connections to a ClusterIP go round-robin exactly, both
through the rule chain (few endpoints) and through the vmap (many), and ClientIP affinity sticks.

Inside a throwaway network namespace with a portless bridge: UDP datagrams from fresh sockets (one new
conntrack each) go to the ClusterIP, the nat output hook DNATs them, and a counting table at
postrouting (after nat) counts them per endpoint address. Nothing leaves the namespace.
"""

from __future__ import annotations

import json
import os
import random
import shutil
import subprocess
from collections.abc import Iterator

import pytest

from pocketkube.proxy.model import service_ports
from pocketkube.proxy.nftables_render import RULE_CHAIN_MAX, NodeInfo, render
from tests.unit.proxy.fixtures import endpoint, endpoint_slice, scratch_netns, service

HTTP = [{"name": "http", "port": 8080, "protocol": "UDP"}]
# each datagram from its own source port: a reused one would match the earlier conntrack entry
# and skip the nat chain (random ephemeral ports collide often enough to make the test flaky)
SEND = """
import socket, sys
for i in range(int(sys.argv[2])):
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.bind(("0.0.0.0", int(sys.argv[3]) + i))
    s.sendto(b"x", (sys.argv[1], 80))
    s.close()
"""


@pytest.fixture
def netns() -> Iterator[str]:
    if os.geteuid() != 0 or shutil.which("nft") is None:
        pytest.skip("needs root and nft")
    with scratch_netns(["link", "set", "lo", "up"], ["link", "add", "pktd0", "type", "bridge"],
                       ["addr", "add", "10.42.0.1/16", "dev", "pktd0"], ["link", "set", "pktd0", "up"],
                       ["route", "add", "10.43.0.0/16", "dev", "pktd0", "src", "10.42.0.1"]) as path:
        yield path


def _nft(netns: str, script: str) -> None:
    subprocess.run(["nsenter", f"--net={netns}", "nft", "-f", "-"], input=script, text=True, check=True)


def _counts(netns: str, table: str) -> dict[str, int]:
    out = subprocess.run(["nsenter", f"--net={netns}", "nft", "-j", "list", "table", "ip", table],
                         capture_output=True, text=True, check=True).stdout
    counts: dict[str, int] = {}
    for item in json.loads(out)["nftables"]:
        if "rule" in item:
            exprs = item["rule"]["expr"]
            ip = next(e["match"]["right"] for e in exprs if "match" in e)
            counts[ip] = next(e["counter"]["packets"] for e in exprs if "counter" in e)
    return counts


def _send(netns: str, vip: str, n: int, first_port: int) -> None:
    subprocess.run(["nsenter", f"--net={netns}", "python3", "-c", SEND, vip, str(n), str(first_port)], check=True)


def test_round_robin_is_exact_and_affinity_sticks(netns: str) -> None:
    table, counter = f"pkt{random.randrange(16**6):06x}", f"pkt{random.randrange(16**6):06x}c"
    few = [f"10.42.1.{i}" for i in range(1, 4)]
    many = [f"10.42.2.{i}" for i in range(1, RULE_CHAIN_MAX + 2)]
    sticky = [f"10.42.3.{i}" for i in range(1, 4)]
    udp = [{"name": "http", "port": 80, "protocol": "UDP"}]
    services = [service("few", "10.43.0.11", udp), service("many", "10.43.0.12", udp),
                service("sticky", "10.43.0.13", udp, sessionAffinity="ClientIP")]
    slices = [endpoint_slice(name, [endpoint(ip) for ip in ips], HTTP)
              for name, ips in (("few", few), ("many", many), ("sticky", sticky))]
    node = NodeInfo(table=table, node_name="node-a", bridge="pktd0", nodeport_ips=["10.42.0.1"])
    script = render(service_ports(services, slices), node)
    assert "vmap {" in script and "numgen inc mod 3 == 0 goto" in script  # both forms are exercised
    rules = "\n".join(f"    ip daddr {ip} counter" for ip in few + many + sticky)
    try:
        _nft(netns, script)
        _nft(netns, f"table ip {counter} {{\n  chain post {{\n"
                    f"    type filter hook postrouting priority 200; policy accept;\n{rules}\n  }}\n}}\n")
        _send(netns, "10.43.0.11", 3 * 10, 20000)
        _send(netns, "10.43.0.12", len(many) * 3, 21000)
        _send(netns, "10.43.0.13", 9, 22000)
        counts = _counts(netns, counter)
        assert [counts[ip] for ip in few] == [10, 10, 10]
        assert [counts[ip] for ip in many] == [3] * len(many)
        assert sorted(counts[ip] for ip in sticky) == [0, 0, 9]  # one client address: one endpoint
    finally:
        for t in (table, counter):
            subprocess.run(["nsenter", f"--net={netns}", "nft", "delete", "table", "ip", t], check=False)
