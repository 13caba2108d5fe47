"""Services on a real node: the proxy's nftables table and the cluster DNS, end to end.

A 3-replica Deployment behind a ClusterIP Service takes 300 requests from a client pod, exactly
100 each; the NodePort answers on the node's bridge address; a pod going unready leaves the
rotation within a second of its EndpointSlice saying so; a Service selecting nothing refuses at
once; DNS answers A, SRV, PTR and NXDOMAIN to `dig`, and forwards other names to a local stub.
All traffic stays on loopback and the test's own bridge. The fixture (tests/e2e/cluster.py)
fails if the proxy leaves its table behind.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import threading
import time
import urllib.request
from collections.abc import Iterator
from typing import Any

import pytest
from dnslib import QTYPE, RR, A, DNSRecord

from tests.conftest import REPO
from tests.e2e.cluster import NodeCluster
from tests.support.polling import wait_until

WEB_CMD = "mkdir -p /tmp/w && hostname > /tmp/w/index.html && exec httpd -f -p 8080 -h /tmp/w"


def _apply(cluster: NodeCluster, manifest: dict[str, Any]) -> None:
    cluster.kubectl("apply", "-f", "-", input=json.dumps(manifest))


def _table(cluster: NodeCluster) -> str:
    r = subprocess.run(["nft", "list", "table", "ip", f"pocketkube-{cluster.node}"], capture_output=True,
                       text=True, check=False)
    return r.stdout


def _svc(name: str, selector: dict[str, str], *, type_: str = "ClusterIP") -> dict[str, Any]:
    return {"apiVersion": "v1", "kind": "Service", "metadata": {"name": name},
            "spec": {"type": type_, "selector": selector,
                     "ports": [{"name": "http", "port": 80, "protocol": "TCP", "targetPort": "http"}]}}


def _web_pod_spec(extra: str = "", **probe: Any) -> dict[str, Any]:
    readiness = probe or {"httpGet": {"path": "/index.html", "port": 8080}, "periodSeconds": 1}
    return {"containers": [{"name": "web", "image": "busybox:1.36", "command": ["sh", "-c", extra + WEB_CMD],
                            "ports": [{"name": "http", "containerPort": 8080}], "readinessProbe": readiness}],
            "terminationGracePeriodSeconds": 1}


def _cluster_ip(cluster: NodeCluster, name: str) -> str:
    return str(json.loads(cluster.kubectl("get", "svc", name, "-o", "json").stdout)["spec"]["clusterIP"])


def _ready_dnats(cluster: NodeCluster, ip_port_suffix: str = ":8080") -> int:
    return _table(cluster).count(ip_port_suffix)


def _gateway(cluster: NodeCluster) -> str:
    out = subprocess.run(["ip", "-j", "-4", "addr", "show", "dev", cluster.bridge], capture_output=True, text=True,
                         check=True).stdout
    return str(json.loads(out)[0]["addr_info"][0]["local"])


def _curl(url: str, timeout: float = 5) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["curl", "-s", "-m", str(timeout), url], capture_output=True, text=True, check=False)


@pytest.fixture(scope="module")
def web(cluster: NodeCluster) -> Iterator[str]:
    _apply(cluster, {"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "web"},
                     "spec": {"replicas": 3, "selector": {"matchLabels": {"app": "web"}},
                              "template": {"metadata": {"labels": {"app": "web"}}, "spec": _web_pod_spec()}}})
    _apply(cluster, _svc("web", {"app": "web"}))
    ip = _cluster_ip(cluster, "web")
    wait_until(lambda: _table(cluster).count("default/web/tcp/http__") >= 3 and "numgen inc mod 3" in _table(cluster),
          "3 ready web endpoints in the proxy's table", timeout=90)
    yield ip
    cluster.kubectl("delete", "deployment", "web", "--timeout=60s", check=False, timeout=90)


class _StubUpstream:
    """A local upstream resolver (never the internet): every A query gets 192.0.2.1."""

    def __init__(self) -> None:
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.bind(("127.0.0.1", 0))
        self.sock.settimeout(0.2)
        self.stop = False
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _run(self) -> None:
        while not self.stop:
            try:
                data, addr = self.sock.recvfrom(4096)
            except TimeoutError:
                continue
            req = DNSRecord.parse(data)
            reply = req.reply()
            reply.add_answer(RR(req.q.qname, QTYPE.A, rdata=A("192.0.2.1"), ttl=30))
            self.sock.sendto(reply.pack(), addr)

    def close(self) -> None:
        self.stop = True
        self.thread.join(2)
        self.sock.close()


@pytest.fixture(scope="module")
def dns(cluster: NodeCluster) -> Iterator[str]:
    """`pocketkube dns` as the server supervises it, on the DNS Service IP added to lo."""
    stub = _StubUpstream()
    log_path = os.path.join(cluster.data_dir, "dns.log")
    with open(log_path, "ab") as log:
        proc = subprocess.Popen(
            [sys.executable, "-m", "pocketkube", "dns", "--kubeconfig", cluster.server.kubeconfig,
             "--listen", f"{cluster.dns_ip}:53", "--bind-dev", "lo",
             "--upstream", f"127.0.0.1:{stub.sock.getsockname()[1]}"],
            cwd=REPO, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
    try:
        wait_until(lambda: "serving on" in _read(log_path) or proc.poll() is not None, "the DNS server", timeout=30)
        assert proc.poll() is None, _read(log_path)
        yield cluster.dns_ip
    finally:
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(5)
        subprocess.run(["ip", "addr", "del", f"{cluster.dns_ip}/32", "dev", "lo"], capture_output=True, check=False)
        stub.close()


def test_round_robin_from_a_pod_is_exact(cluster: NodeCluster, web: str, dns: str) -> None:
    script = (f"{{ for i in $(seq 300); do timeout 5 wget -qO- http://{web}/; done | sort | uniq -c; "
              "nslookup web.default.svc.cluster.local | grep -A1 '^Name' | tail -1; } > /dev/termination-log")
    _apply(cluster, {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "rr-client"},
                     "spec": {"restartPolicy": "Never", "terminationGracePeriodSeconds": 1,
                              "containers": [{"name": "c", "image": "busybox:1.36", "command": ["sh", "-c", script]}]}})
    pod = cluster.wait_pod("rr-client", lambda p: "terminated" in ((p["status"].get("containerStatuses") or [{}])[0]
                                                                    .get("state") or {}), timeout=180)
    message = pod["status"]["containerStatuses"][0]["state"]["terminated"]["message"]
    lines = message.strip().splitlines()
    tally = {line.split()[1]: int(line.split()[0]) for line in lines[:-1]}
    pods = json.loads(cluster.kubectl("get", "pods", "-l", "app=web", "-o", "json").stdout)["items"]
    assert sorted(tally) == sorted(p["metadata"]["name"] for p in pods), message
    assert sorted(tally.values()) == [100, 100, 100], message
    assert web in lines[-1], f"pod DNS lookup: {lines[-1]!r}"
    cluster.kubectl("delete", "pod", "rr-client", "--timeout=60s", check=False, timeout=90)


def test_node_port_and_cluster_ip_from_the_host(cluster: NodeCluster, web: str) -> None:
    _apply(cluster, _svc("web-np", {"app": "web"}, type_="NodePort"))
    svc = json.loads(cluster.kubectl("get", "svc", "web-np", "-o", "json").stdout)
    node_port = svc["spec"]["ports"][0]["nodePort"]
    assert 30000 <= node_port <= 32767
    wait_until(lambda: f"tcp . {node_port} : goto ext-" in _table(cluster), "the NodePort rule")
    names = {_curl(f"http://{_gateway(cluster)}:{node_port}/").stdout.strip() for _ in range(6)}
    assert len(names) == 3 and all(n.startswith("web-") for n in names), names
    assert _curl(f"http://{web}/").stdout.startswith("web-")
    cluster.kubectl("delete", "svc", "web-np")


def test_hairpin_a_pod_reaches_itself_through_its_service(cluster: NodeCluster, dns: str) -> None:
    # the only endpoint of "hp" asks "hp" (by name) until it answers: pod -> VIP -> itself needs the
    # masquerade mark and hairpin mode on its bridge port
    script = ("mkdir -p /tmp/w && hostname > /tmp/w/index.html && httpd -p 8080 -h /tmp/w && "
              "for i in $(seq 40); do r=$(timeout 2 wget -qO- http://hp.default.svc.cluster.local/) && break; "
              "sleep 0.5; done; echo \"got:$r\" > /dev/termination-log")
    _apply(cluster, {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "hp", "labels": {"app": "hp"}},
                     "spec": {"restartPolicy": "Never", "terminationGracePeriodSeconds": 1,
                              "containers": [{"name": "c", "image": "busybox:1.36", "command": ["sh", "-c", script],
                                              "ports": [{"name": "http", "containerPort": 8080}],
                                              "readinessProbe": {"tcpSocket": {"port": 8080}, "periodSeconds": 1}}]}})
    _apply(cluster, _svc("hp", {"app": "hp"}))
    pod = cluster.wait_pod("hp", lambda p: "terminated" in ((p["status"].get("containerStatuses") or [{}])[0]
                                                            .get("state") or {}), timeout=90)
    assert pod["status"]["containerStatuses"][0]["state"]["terminated"]["message"].strip() == "got:hp"
    cluster.kubectl("delete", "pod", "hp", "--timeout=60s", check=False, timeout=90)
    cluster.kubectl("delete", "svc", "hp")


def _slice_ready(cluster: NodeCluster, service: str) -> dict[str, bool]:
    url = (f"{cluster.server.url}/apis/discovery.k8s.io/v1/namespaces/default/endpointslices"
           f"?labelSelector=kubernetes.io/service-name%3D{service}")
    with urllib.request.urlopen(url, context=cluster.server.ssl_context(), timeout=5) as r:
        items = json.loads(r.read())["items"]
    return {ep["addresses"][0]: bool(ep["conditions"].get("ready", True))
            for s in items for ep in s.get("endpoints") or []}


def test_unready_pod_leaves_rotation_within_a_second(cluster: NodeCluster) -> None:
    # flip-b is ready until /tmp/done appears 20 s after start (no exec in kubectl yet)
    for name, extra, probe in (
            ("flip-a", "", {}),
            ("flip-b", "(sleep 20; touch /tmp/done) & ",
             {"exec": {"command": ["sh", "-c", "test ! -f /tmp/done"]}, "periodSeconds": 1})):
        _apply(cluster, {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": name, "labels": {"app": "flip"}},
                         "spec": _web_pod_spec(extra, **probe)})
    _apply(cluster, _svc("flip", {"app": "flip"}))
    b_ip = cluster.wait_pod("flip-b", lambda p: p["status"].get("podIP"))["status"]["podIP"]
    wait_until(lambda: _table(cluster).count("default/flip/tcp/http__") >= 2 and "numgen inc mod 2" in _table(cluster),
          "both flip endpoints in rotation", timeout=40)
    slice_unready_at = wait_until(lambda: _slice_ready(cluster, "flip").get(b_ip) is False and time.monotonic(),
                             "flip-b unready in its EndpointSlice", timeout=40, interval=0.05)
    gone_at = wait_until(lambda: f"{b_ip}:8080" not in _table(cluster) and time.monotonic(),
                    "flip-b out of the table", timeout=5, interval=0.02)
    assert gone_at - slice_unready_at < 1.0
    ip = _cluster_ip(cluster, "flip")
    assert {_curl(f"http://{ip}/").stdout.strip() for _ in range(6)} == {"flip-a"}
    cluster.kubectl("delete", "pod", "flip-a", "flip-b", "--timeout=60s", check=False, timeout=90)
    cluster.kubectl("delete", "svc", "flip")


def test_service_without_endpoints_refuses_at_once(cluster: NodeCluster) -> None:
    _apply(cluster, _svc("nothing", {"app": "nothing-here"}))
    ip = _cluster_ip(cluster, "nothing")
    wait_until(lambda: f"{ip} . tcp . 80 : goto reject-chain" in _table(cluster), "the reject rule")
    start = time.monotonic()
    r = _curl(f"http://{ip}/", timeout=5)
    assert r.returncode == 7, r  # connection refused, not a timeout (28)
    assert time.monotonic() - start < 1.0
    cluster.kubectl("delete", "svc", "nothing")


def _read(path: str) -> str:
    with open(path, errors="replace") as f:
        return f.read()


def _dig(server: str, *args: str) -> str:
    r = subprocess.run(["dig", f"@{server}", "+time=2", "+tries=1", *args], capture_output=True, text=True,
                       check=False, timeout=10)
    return r.stdout


def test_dns_answers_with_dig(cluster: NodeCluster, web: str, dns: str) -> None:
    kube_dns = json.loads(cluster.kubectl("-n", "kube-system", "get", "svc", "kube-dns", "-o", "json").stdout)
    assert kube_dns["spec"]["clusterIP"] == dns
    assert _dig(dns, "+short", "web.default.svc.cluster.local").split() == [web]
    assert _dig(dns, "+short", "SRV", "_http._tcp.web.default.svc.cluster.local").split() == [
        "0", "100", "80", "web.default.svc.cluster.local."]
    assert _dig(dns, "+short", "-x", web).split() == ["web.default.svc.cluster.local."]
    assert _dig(dns, "+short", "+tcp", "web.default.svc.cluster.local").split() == [web]
    pod_ip = json.loads(cluster.kubectl("get", "pods", "-l", "app=web", "-o", "json").stdout)["items"][0]["status"]["podIP"]
    pod_name = f"{pod_ip.replace('.', '-')}.default.pod.cluster.local"
    assert _dig(dns, "+short", pod_name).split() == [pod_ip]
    assert _dig(dns, "+short", "-x", pod_ip).split() == [pod_name + "."]
    nx = _dig(dns, "nope.default.svc.cluster.local")
    assert "status: NXDOMAIN" in nx and "SOA" in nx
    assert _dig(dns, "+short", "example.org").split() == ["192.0.2.1"]  # forwarded to the local stub
