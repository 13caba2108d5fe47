"""The built-in LoadBalancer against real servers, their controller-managers and real kubectl.

Two servers of this module's own: one with `--service-lb-pool` (addresses from the pool, a
requested `loadBalancerIP`, release on type change and delete), one in node mode, whose Nodes are
written here as a kubelet would (InternalIPs, Ready), so `kubectl get svc` shows the node IPs as
EXTERNAL-IP and follows a cordon. No traffic is sent: the addresses are TEST-NET ones.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from typing import Any

import pytest

from tests.conftest import REPO, ServerProcess, run_kubectl, start_server

POOL = "198.51.100.0/29"  # TEST-NET-2: .1 … .6 usable


@pytest.fixture(scope="module")
def pool_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    srv = start_server(str(tmp_path_factory.mktemp("pk-lbpool")), extra_args=("--service-lb-pool", POOL))
    yield srv
    srv.stop()


@pytest.fixture(scope="module")
def node_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    # the Nodes below have no kubelet renewing a Lease: keep the lifecycle controller off them
    srv = start_server(str(tmp_path_factory.mktemp("pk-lbnode")), extra_args=("--node-monitor-grace-period", "600"))
    yield srv
    srv.stop()


def lb_service(name: str, port: int = 80, **spec: Any) -> str:
    return json.dumps({"apiVersion": "v1", "kind": "Service", "metadata": {"name": name},
                       "spec": {"type": "LoadBalancer", "selector": {"app": name},
                                "ports": [{"port": port, "targetPort": 8080}], **spec}})


def ingress(srv: ServerProcess, name: str) -> list[str]:
    r = run_kubectl(srv, "get", "svc", name, "-o", "json", check=False)
    if r.returncode != 0:
        return []
    status = json.loads(r.stdout).get("status") or {}
    return [i.get("ip", "") for i in (status.get("loadBalancer") or {}).get("ingress") or []]


def wait_ingress(srv: ServerProcess, name: str, want: list[str], timeout: float = 15.0) -> None:
    deadline = time.monotonic() + timeout
    got: list[str] = []
    while time.monotonic() < deadline:
        got = ingress(srv, name)
        if got == want:
            return
        time.sleep(0.1)
    raise AssertionError(f"service {name}: ingress {got}, want {want}\n{srv.log()[-3000:]}")


def external_ip_column(srv: ServerProcess, name: str) -> str:
    out = run_kubectl(srv, "get", "svc", name).stdout.splitlines()
    header, row = out[0].split(), out[1].split()
    return row[header.index("EXTERNAL-IP")]


def test_pool_addresses_show_in_kubectl_and_are_released(pool_server: ServerProcess) -> None:
    srv = pool_server
    run_kubectl(srv, "apply", "-f", "-", input=lb_service("first"))
    run_kubectl(srv, "apply", "-f", "-", input=lb_service("asks", loadBalancerIP="198.51.100.5"))
    wait_ingress(srv, "first", ["198.51.100.1"])
    wait_ingress(srv, "asks", ["198.51.100.5"])
    assert external_ip_column(srv, "first") == "198.51.100.1"
    svc = json.loads(run_kubectl(srv, "get", "svc", "first", "-o", "json").stdout)
    assert svc["status"]["loadBalancer"]["ingress"] == [{"ip": "198.51.100.1", "ipMode": "VIP"}]

    # outside the pool: pending, with a Warning event naming the pool
    run_kubectl(srv, "apply", "-f", "-", input=lb_service("outside", loadBalancerIP="192.0.2.9"))
    deadline = time.monotonic() + 15
    while "not in the pool" not in run_kubectl(srv, "get", "events", "--field-selector",
                                               "involvedObject.name=outside").stdout:
        assert time.monotonic() < deadline, "no AllocationFailed event"
        time.sleep(0.2)
    assert external_ip_column(srv, "outside") == "<pending>"

    # no longer a LoadBalancer: the status goes and the address is free for a Service asking for it
    run_kubectl(srv, "patch", "svc", "asks", "--type=merge", "-p",
                '{"spec": {"type": "ClusterIP", "loadBalancerIP": null}}')
    wait_ingress(srv, "asks", [])
    assert external_ip_column(srv, "asks") == "<none>"
    run_kubectl(srv, "apply", "-f", "-", input=lb_service("takes", loadBalancerIP="198.51.100.5"))
    wait_ingress(srv, "takes", ["198.51.100.5"])
    run_kubectl(srv, "delete", "svc", "takes", "first", "outside", "asks")


def node_manifest(name: str, ip: str) -> str:
    return json.dumps({"apiVersion": "v1", "kind": "Node", "metadata": {"name": name}, "spec": {}})


def add_node(srv: ServerProcess, name: str, ip: str) -> None:
    run_kubectl(srv, "apply", "-f", "-", input=node_manifest(name, ip))
    status = {"status": {"addresses": [{"type": "InternalIP", "address": ip}, {"type": "Hostname", "address": name}],
                         "conditions": [{"type": "Ready", "status": "True", "reason": "KubeletReady",
                                         "lastHeartbeatTime": "2026-01-01T00:00:00Z",
                                         "lastTransitionTime": "2026-01-01T00:00:00Z"}]}}
    run_kubectl(srv, "patch", "node", name, "--subresource=status", "--type=merge", "-p", json.dumps(status))


def test_node_addresses_show_in_kubectl_and_follow_cordon(node_server: ServerProcess) -> None:
    srv = node_server
    add_node(srv, "lb-a", "192.0.2.11")
    add_node(srv, "lb-b", "192.0.2.12")
    run_kubectl(srv, "apply", "-f", "-", input=lb_service("web"))
    wait_ingress(srv, "web", ["192.0.2.11", "192.0.2.12"])
    assert external_ip_column(srv, "web") == "192.0.2.11,192.0.2.12"
    run_kubectl(srv, "cordon", "lb-b")
    wait_ingress(srv, "web", ["192.0.2.11"])
    run_kubectl(srv, "uncordon", "lb-b")
    add_node(srv, "lb-c", "192.0.2.13")
    wait_ingress(srv, "web", ["192.0.2.11", "192.0.2.12", "192.0.2.13"])
    run_kubectl(srv, "delete", "node", "lb-a")
    wait_ingress(srv, "web", ["192.0.2.12", "192.0.2.13"])
    run_kubectl(srv, "delete", "svc", "web")
    run_kubectl(srv, "delete", "node", "lb-b", "lb-c")


@pytest.mark.parametrize("pool", ["nonsense", "fd00::/64"])
def test_a_bad_pool_is_refused_at_start(tmp_path: Any, pool: str) -> None:
    r = subprocess.run([sys.executable, "-m", "pocketkube", "server", "--disable-agent", "--data-dir", str(tmp_path),
                        "--service-lb-pool", pool], capture_output=True, text=True, timeout=30, cwd=REPO,
                       env={**os.environ, "PYTHONPATH": REPO}, check=False)
    assert r.returncode == 2 and "--service-lb-pool" in r.stderr, r.stderr


def test_bad_ingress_status_is_422(pool_server: ServerProcess) -> None:
    srv = pool_server
    run_kubectl(srv, "apply", "-f", "-", input=lb_service("badstatus", port=81, loadBalancerClass="example.com/other"))
    for status, message in (({"ip": "300.1.1.1"}, "must be a valid IP address"),
                            ({"hostname": "lb.example.com", "ipMode": "VIP"}, "may not be set when `ip` is empty"),
                            ({"ip": "198.51.100.9", "ipMode": "Teleport"}, "Unsupported value")):
        r = run_kubectl(srv, "patch", "svc", "badstatus", "--subresource=status", "--type=merge", "-p",
                        json.dumps({"status": {"loadBalancer": {"ingress": [status]}}}), check=False)
        assert r.returncode == 1 and "is invalid" in r.stderr and message in r.stderr, r.stderr
    # another class's balancer may write its status; ours leaves it alone
    run_kubectl(srv, "patch", "svc", "badstatus", "--subresource=status", "--type=merge", "-p",
                json.dumps({"status": {"loadBalancer": {"ingress": [{"ip": "203.0.113.4", "ipMode": "Proxy"}]}}}))
    time.sleep(1)
    assert ingress(srv, "badstatus") == ["203.0.113.4"]
    run_kubectl(srv, "delete", "svc", "badstatus")
