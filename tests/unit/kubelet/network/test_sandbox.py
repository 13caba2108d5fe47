"""Pure helpers of the sandbox network: names, hostnames, host ports (no root)."""

from __future__ import annotations

from pathlib import Path

import pytest

from pocketkube.kubelet.network.cni import CNI, PodNetwork, PortMapping
from pocketkube.kubelet.network.sandbox import (
    SandboxNetwork,
    host_port_mappings,
    netns_name_for_uid,
    pod_hostname,
)

UID = "3f1c2a9e-5b7d-4c11-9a2e-0123456789ab"


def test_netns_name_is_a_uid_prefix() -> None:
    assert netns_name_for_uid(UID) == "pk-3f1c2a9e5b7d4c11"
    assert netns_name_for_uid(UID, "pkt1-") == "pkt1-3f1c2a9e5b7d4c11"


def test_hostname() -> None:
    pod = {"metadata": {"name": "web-" + "x" * 70, "uid": UID}, "spec": {}}
    assert pod_hostname(pod, "node1") == ("web-" + "x" * 70)[:63]
    assert pod_hostname({"metadata": {"name": "a"}, "spec": {"hostname": "h"}}, "n") == "h"
    assert pod_hostname({"metadata": {"name": "a-" + "b" * 60 + "-c"}, "spec": {}}, "n").endswith("b")
    assert pod_hostname({"metadata": {"name": "a"}, "spec": {"hostNetwork": True}}, "node1") == "node1"


def test_host_ports() -> None:
    spec = {"containers": [
        {"name": "a", "ports": [{"containerPort": 80, "hostPort": 8080}, {"containerPort": 81}]},
        {"name": "b", "ports": [{"containerPort": 53, "hostPort": 53, "protocol": "UDP", "hostIP": "127.0.0.1"}]},
    ]}
    assert host_port_mappings({"spec": spec}) == [PortMapping(8080, 80), PortMapping(53, 53, "udp", "127.0.0.1")]
    assert host_port_mappings({"spec": {**spec, "hostNetwork": True}}) == []


async def test_host_network_pod_needs_no_cni(tmp_path: Path) -> None:
    cni = CNI(bin_dir=str(tmp_path), ipam_dir=str(tmp_path / "ipam"), node_netns="/run/netns/pkt-node")
    sandbox = SandboxNetwork(cni, node_ip="172.31.0.5")
    pod = {"metadata": {"name": "hn", "uid": UID}, "spec": {"hostNetwork": True}}
    assert await sandbox.setup(pod) == ("/run/netns/pkt-node", PodNetwork("172.31.0.5", "", "", ""))
    assert sandbox.netns_path(pod) == "/run/netns/pkt-node"
    await sandbox.teardown(pod)
    with pytest.raises(ValueError, match="uid"):
        sandbox.netns_name({"metadata": {"name": "x"}})
