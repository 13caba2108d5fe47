"""Services across nodes on a real `pocketkube cluster up` cluster (a master + 2 workers, each a
network namespace on the cluster's switch bridge): the issue's multi-node must-shows.

A 3-replica Deployment spread over both workers (topology spread, master excluded by node
affinity) sits behind `web`. From inside a pod, `wget http://web.default.svc.cluster.local` takes
300 requests landing exactly 100 on each replica (the client's node proxy balances with
`numgen inc`; the name is answered by the cluster DNS in the client's node). The NodePort answers
on every node's IP, from the host (which sits on the switch) and from a pod, for replicas on other
nodes; the built-in LoadBalancer gives `web-lb` the nodes' IPs, `kubectl get svc` shows them and
each answers; scaling the Deployment reaches every node's table within a second of the pods'
readiness (or deletion). Each node runs its proxy in its own namespace: the host has no such table.
All traffic goes to addresses of the cluster's own bridge and namespaces.
"""

from __future__ import annotations

import json
import os
import ssl
import subprocess
import time
import urllib.request
from collections import Counter
from collections.abc import Iterator
from typing import Any

import pytest
import yaml

from tests.e2e.multinode import MultiNodeCluster
from tests.support.polling import wait_until

NS = "default"
WEB_CMD = "mkdir -p /tmp/w && hostname > /tmp/w/index.html && exec httpd -f -p 8080 -h /tmp/w"
CONTROL_PLANE = "node-role.kubernetes.io/control-plane"


def _table(node: str) -> str:
    """The proxy's table inside the node's namespace (`pocketkube-<node>`)."""
    r = subprocess.run(["nsenter", f"--net=/run/netns/{node}", "nft", "list", "table", "ip", f"pocketkube-{node}"],
                       capture_output=True, text=True, check=False, timeout=10)
    return r.stdout


def _curl(url: str, timeout: float = 5) -> str:
    r = subprocess.run(["curl", "-s", "-m", str(timeout), url], capture_output=True, text=True, check=False)
    return r.stdout.strip()


def _node_ips(c: MultiNodeCluster) -> dict[str, str]:
    return {n["metadata"]["name"]: next(a["address"] for a in n["status"]["addresses"] if a["type"] == "InternalIP")
            for n in c.get("nodes")["items"]}


def _web_pods(c: MultiNodeCluster) -> list[dict[str, Any]]:
    items: list[dict[str, Any]] = c.get("-n", NS, "pods", "-l", "app=web")["items"]
    return [p for p in items if not p["metadata"].get("deletionTimestamp")]


def _ready(pod: dict[str, Any]) -> bool:
    return any(x.get("type") == "Ready" and x.get("status") == "True" for x in pod["status"].get("conditions") or [])


def _client_pod(c: MultiNodeCluster, name: str, script: str, timeout: float = 240) -> str:
    """Run `script` in a busybox pod; its termination message (what it wrote there)."""
    c.apply({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": name, "namespace": NS},
             "spec": {"restartPolicy": "Never", "terminationGracePeriodSeconds": 1,
                      "containers": [{"name": "c", "image": "busybox:1.36",
                                      "command": ["sh", "-c", f"{{ {script} ; }} > /dev/termination-log 2>&1"]}]}})
    pod = c.wait_pod(name, lambda p: "terminated" in ((p["status"].get("containerStatuses") or [{}])[0]
                                                      .get("state") or {}), timeout=timeout)
    c.kubectl("-n", NS, "delete", "pod", name, "--wait=false", check=False)
    return str(pod["status"]["containerStatuses"][0]["state"]["terminated"].get("message") or "")


@pytest.fixture(scope="module")
def web(multi_node_cluster: MultiNodeCluster) -> Iterator[dict[str, Any]]:
    c = multi_node_cluster
    c.apply({"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "web", "namespace": NS},
             "spec": {"replicas": 3, "selector": {"matchLabels": {"app": "web"}},
                      "template": {"metadata": {"labels": {"app": "web"}}, "spec": {
                          "containers": [{"name": "web", "image": "busybox:1.36", "command": ["sh", "-c", WEB_CMD],
                                          "ports": [{"name": "http", "containerPort": 8080}],
                                          "readinessProbe": {"httpGet": {"path": "/index.html", "port": 8080},
                                                             "periodSeconds": 1}}],
                          "terminationGracePeriodSeconds": 1,
                          "affinity": {"nodeAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": {
                              "nodeSelectorTerms": [{"matchExpressions": [
                                  {"key": CONTROL_PLANE, "operator": "DoesNotExist"}]}]}}},
                          "topologySpreadConstraints": [{"maxSkew": 1, "topologyKey": "kubernetes.io/hostname",
                                                         "whenUnsatisfiable": "DoNotSchedule",
                                                         "labelSelector": {"matchLabels": {"app": "web"}}}]}}}})
    for name, type_ in (("web", "ClusterIP"), ("web-np", "NodePort"), ("web-lb", "LoadBalancer")):
        c.apply({"apiVersion": "v1", "kind": "Service", "metadata": {"name": name, "namespace": NS},
                 "spec": {"type": type_, "selector": {"app": "web"},
                          "ports": [{"name": "http", "port": 80, "protocol": "TCP", "targetPort": "http"}]}})
    wait_until(lambda: len([p for p in _web_pods(c) if _ready(p)]) == 3, "3 ready web pods", timeout=180, interval=0.5)
    # every node's proxy (client pods may land on either worker) has the three endpoints
    wait_until(lambda: all(_table(n).count(f"{NS}/web/tcp/http__") >= 3 for n in c.nodes),
          "3 web endpoints in every node's table", timeout=60)
    yield {"ips": _node_ips(c)}
    c.kubectl("-n", NS, "delete", "deployment", "web", "--wait=false", check=False)


def test_replicas_spread_over_both_workers_and_each_node_runs_its_proxy(
        multi_node_cluster: MultiNodeCluster, web: dict[str, Any]) -> None:
    c = multi_node_cluster
    spread = Counter(p["spec"]["nodeName"] for p in _web_pods(c))
    assert set(spread) == set(c.workers) and sorted(spread.values()) == [1, 2], spread
    for node in c.nodes:  # the proxy runs in the node's namespace, with the node's IP for NodePorts
        table = _table(node)
        assert f"table ip pocketkube-{node}" in table and web["ips"][node] in table, node
    host_tables = subprocess.run(["nft", "list", "tables"], capture_output=True, text=True, check=True).stdout
    assert not any(f"pocketkube-{n}" in host_tables for n in c.nodes), host_tables


def test_300_requests_by_name_from_a_pod_land_exactly_round_robin(
        multi_node_cluster: MultiNodeCluster, web: dict[str, Any]) -> None:
    c = multi_node_cluster
    out = _client_pod(c, "rr-client", f"for i in $(seq 300); do timeout 5 wget -qO- "
                                      f"http://web.{NS}.svc.cluster.local/; done | sort | uniq -c")
    tally = {line.split()[1]: int(line.split()[0]) for line in out.strip().splitlines() if len(line.split()) == 2}
    assert sorted(tally) == sorted(p["metadata"]["name"] for p in _web_pods(c)), out
    assert sorted(tally.values()) == [100, 100, 100], out


def test_node_port_answers_on_every_node_ip(multi_node_cluster: MultiNodeCluster, web: dict[str, Any]) -> None:
    c = multi_node_cluster
    node_port = c.get("-n", NS, "svc", "web-np")["spec"]["ports"][0]["nodePort"]
    names = {p["metadata"]["name"] for p in _web_pods(c)}
    for node, ip in web["ips"].items():
        # three requests through one node's numgen: each replica once, both workers' pods included,
        # also through the master, which runs none (the reply comes back through it: masquerade)
        got = [_curl(f"http://{ip}:{node_port}/") for _ in range(3)]
        assert set(got) == names, (node, got)
    # from a pod: every node's IP, so pods on the other nodes answer through their node
    script = " ; ".join(f"for i in 1 2 3; do echo {ip} $(timeout 5 wget -qO- http://{ip}:{node_port}/); done"
                        for ip in web["ips"].values())
    seen: dict[str, set[str]] = {}
    for line in _client_pod(c, "np-client", script).strip().splitlines():
        ip, _, name = line.partition(" ")
        seen.setdefault(ip, set()).add(name)
    assert seen == {ip: names for ip in web["ips"].values()}, seen


def test_load_balancer_gets_the_node_ips_and_they_answer(
        multi_node_cluster: MultiNodeCluster, web: dict[str, Any]) -> None:
    c = multi_node_cluster
    want = sorted(web["ips"].values(), key=lambda ip: tuple(int(x) for x in ip.split(".")))
    wait_until(lambda: [i["ip"] for i in (c.get("-n", NS, "svc", "web-lb")["status"].get("loadBalancer") or {})
                   .get("ingress") or []] == want, "the LoadBalancer's ingress IPs", timeout=30)
    rows = c.kubectl("-n", NS, "get", "svc", "web-lb").stdout.splitlines()
    assert rows[1].split()[rows[0].split().index("EXTERNAL-IP")] == ",".join(sorted(want)), rows
    names = {p["metadata"]["name"] for p in _web_pods(c)}
    for ip in want:
        wait_until(lambda: all(f"{ip} . tcp . 80 : goto ext-" in _table(n) for n in c.nodes),  # noqa: B023
              f"{ip}:80 in every node's table", timeout=10)
        assert {_curl(f"http://{ip}/") for _ in range(3)} == names, ip
    out = _client_pod(c, "lb-client", f"timeout 5 wget -qO- http://{want[0]}/")
    assert out.strip() in names, out


def _api(c: MultiNodeCluster) -> tuple[str, ssl.SSLContext]:
    tls = os.path.join(os.path.dirname(c.kubeconfig), "tls")
    ctx = ssl.create_default_context(cafile=os.path.join(tls, "ca.crt"))
    ctx.load_cert_chain(os.path.join(tls, "admin.crt"), os.path.join(tls, "admin.key"))
    with open(c.kubeconfig) as f:
        server = yaml.safe_load(f)["clusters"][0]["cluster"]["server"]
    return str(server), ctx


def _pods_now(url: str, ctx: ssl.SSLContext) -> list[dict[str, Any]]:
    with urllib.request.urlopen(f"{url}/api/v1/namespaces/{NS}/pods?labelSelector=app%3Dweb", context=ctx,
                                timeout=5) as r:
        items: list[dict[str, Any]] = json.loads(r.read())["items"]
        return items


def test_scaling_updates_every_node_within_a_second(multi_node_cluster: MultiNodeCluster, web: dict[str, Any]) -> None:
    c = multi_node_cluster
    url, ctx = _api(c)
    before = {p["status"]["podIP"] for p in _pods_now(url, ctx)}

    def in_tables(ips: set[str]) -> list[bool]:
        """Per node: does its table DNAT to every one of `ips`?"""
        return [all(f"dnat to {ip}:8080" in t for ip in ips) for t in (_table(n) for n in c.nodes)]

    def in_no_table(ips: set[str]) -> bool:
        return not any(f"dnat to {ip}:8080" in t for ip in ips for t in (_table(n) for n in c.nodes))

    c.kubectl("-n", NS, "scale", "deployment", "web", "--replicas=5")
    ready_at = wait_until(lambda: len([p for p in _pods_now(url, ctx) if _ready(p)]) == 5 and time.monotonic(),
                     "5 ready pods", timeout=120, interval=0.05)
    new = {p["status"]["podIP"] for p in _pods_now(url, ctx)} - before
    assert len(new) == 2
    added_at = wait_until(lambda: all(in_tables(new)) and time.monotonic(), "the new endpoints in every node's table",
                     timeout=10, interval=0.02)
    assert added_at - ready_at < 1.0, f"scale up reached the tables {added_at - ready_at:.2f}s after readiness"

    c.kubectl("-n", NS, "scale", "deployment", "web", "--replicas=3")
    leaving_at = wait_until(lambda: len(gone := {p["status"].get("podIP") for p in _pods_now(url, ctx)
                                            if p["metadata"].get("deletionTimestamp")}) == 2
                       and (time.monotonic(), gone), "2 pods being deleted", timeout=60, interval=0.05)
    removed_at = wait_until(lambda: in_no_table(leaving_at[1]) and time.monotonic(),
                       "the deleted endpoints out of every node's table", timeout=10, interval=0.02)
    assert removed_at - leaving_at[0] < 1.0, f"scale down took {removed_at - leaving_at[0]:.2f}s"
    print(f"scale up: tables {added_at - ready_at:.3f}s after readiness; "
          f"scale down: {removed_at - leaving_at[0]:.3f}s after deletion")
