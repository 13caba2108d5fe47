"""The built-in LoadBalancer in pool mode on a real node: `--service-lb-pool` addresses answer.

A one-node cluster (tests/e2e/cluster.py) whose server runs with a pool from 198.18.0.0/15 (the
benchmarking range, never routed on the internet, and refused here if the host uses it). Two
LoadBalancer Services get pool addresses — one asked for by `spec.loadBalancerIP` — which
`kubectl get svc` shows; the proxy DNATs them and each answers from the host with the replicas'
names. The pool is routed on the host only to the test's own pod bridge (as the proxy routes the
service CIDR), so even a missing rule could not send a packet out of a real interface. A Service
that stops being a LoadBalancer loses its address, and its rule leaves the table.
"""

from __future__ import annotations

import ipaddress
import json
import os
import random
import subprocess
from collections.abc import Iterator
from typing import Any

import pytest

from pocketkube.cluster.network import used_ipv4_networks
from tests.e2e.cluster import NodeCluster, start_node_cluster
from tests.support.images import build_busybox_image
from tests.support.polling import wait_until

WEB_CMD = "mkdir -p /tmp/w && hostname > /tmp/w/index.html && exec httpd -f -p 8080 -h /tmp/w"


def _free_pool() -> str:
    used = used_ipv4_networks()
    for _ in range(50):
        net = ipaddress.ip_network(f"198.{random.randrange(18, 20)}.{random.randrange(256)}.0/28")
        if not any(net.overlaps(u) for u in used):
            return str(net)
    raise RuntimeError("no unused /28 in 198.18.0.0/15 on this host")


@pytest.fixture(scope="module")
def pool_cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[NodeCluster, str]]:
    if os.geteuid() != 0:
        pytest.fail("end-to-end tests need root (runc, CNI, nftables)")
    base = str(tmp_path_factory.mktemp("pk-lbpool"))
    archive = os.path.join(base, "busybox.tar")
    build_busybox_image(archive, ref="docker.io/library/busybox:1.36")
    pool = _free_pool()
    for cluster in start_node_cluster(base, image_archives=[archive], server_args=("--service-lb-pool", pool)):
        route = ["ip", "route", "add", pool, "dev", cluster.bridge]
        wait_until(lambda: subprocess.run(route, capture_output=True, check=False).returncode == 0  # noqa: B023
              or None, "the bridge, to route the pool to", timeout=60)
        try:
            yield cluster, pool
        finally:
            subprocess.run(["ip", "route", "del", pool, "dev", cluster.bridge], capture_output=True, check=False)


def _table(cluster: NodeCluster) -> str:
    return subprocess.run(["nft", "list", "table", "ip", f"pocketkube-{cluster.node}"], capture_output=True,
                          text=True, check=False).stdout


def _ingress(cluster: NodeCluster, name: str) -> list[str]:
    svc = json.loads(cluster.kubectl("get", "svc", name, "-o", "json").stdout)
    return [i["ip"] for i in ((svc.get("status") or {}).get("loadBalancer") or {}).get("ingress") or []]


def _lb(name: str, **spec: Any) -> str:
    return json.dumps({"apiVersion": "v1", "kind": "Service", "metadata": {"name": name},
                       "spec": {"type": "LoadBalancer", "selector": {"app": "web"},
                                "ports": [{"name": "http", "port": 80, "targetPort": 8080}], **spec}})


def test_pool_addresses_answer_from_the_host(pool_cluster: tuple[NodeCluster, str]) -> None:
    cluster, pool = pool_cluster
    hosts = [str(h) for h in ipaddress.ip_network(pool).hosts()]
    cluster.kubectl("apply", "-f", "-", input=json.dumps({
        "apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "web"},
        "spec": {"replicas": 2, "selector": {"matchLabels": {"app": "web"}},
                 "template": {"metadata": {"labels": {"app": "web"}}, "spec": {
                     "terminationGracePeriodSeconds": 1,
                     "containers": [{"name": "web", "image": "busybox:1.36", "command": ["sh", "-c", WEB_CMD],
                                     "readinessProbe": {"tcpSocket": {"port": 8080}, "periodSeconds": 1}}]}}}}))
    cluster.kubectl("apply", "-f", "-", input=_lb("asked", loadBalancerIP=hosts[4]))
    cluster.kubectl("apply", "-f", "-", input=_lb("auto"))
    wait_until(lambda: _ingress(cluster, "asked") == [hosts[4]], "the requested pool address")
    wait_until(lambda: _ingress(cluster, "auto") == [hosts[0]], "the first pool address")
    rows = cluster.kubectl("get", "svc", "asked", "auto").stdout.splitlines()
    col = rows[0].split().index("EXTERNAL-IP")
    assert {r.split()[0]: r.split()[col] for r in rows[1:]} == {"asked": hosts[4], "auto": hosts[0]}, rows

    pods = wait_until(lambda: (items := json.loads(cluster.kubectl("get", "pods", "-l", "app=web", "-o", "json").stdout)
                          ["items"]) and len([p for p in items if any(
                              c["type"] == "Ready" and c["status"] == "True"
                              for c in p["status"].get("conditions") or [])]) == 2 and items,
                 "2 ready web pods", timeout=90)
    names = {p["metadata"]["name"] for p in pods}
    for ip in (hosts[4], hosts[0]):
        wait_until(lambda: f"{ip} . tcp . 80 : goto ext-" in _table(cluster) and _table(cluster).count(":8080") >= 4,  # noqa: B023
              f"{ip} in the proxy's table")
        got = {subprocess.run(["curl", "-s", "-m", "5", f"http://{ip}/"], capture_output=True, text=True,
                              check=False).stdout.strip() for _ in range(4)}
        assert got == names, (ip, got)

    cluster.kubectl("patch", "svc", "auto", "--type=merge", "-p", '{"spec": {"type": "ClusterIP"}}')
    wait_until(lambda: _ingress(cluster, "auto") == [], "the address to leave the Service")
    wait_until(lambda: f"{hosts[0]} . tcp . 80" not in _table(cluster), "its rule to leave the table", timeout=10)
    cluster.kubectl("delete", "svc", "asked", "auto")
    cluster.kubectl("delete", "deployment", "web", "--wait=false")
