"""`pocketkube cluster up --nodes 2`: the seed's picture of hosts on one switch, for real.

Nodes are listed with their roles and are Ready; a pod on one worker reaches a pod on the other
by IP with its source IP preserved (routes between pod subnets, no overlay, no NAT); the master's
control-plane taint keeps plain pods off it while a tolerating pod may land there; and
`cluster down` leaves no namespace, link or process of the cluster behind. The last test takes
the cluster down, so it stays last in this module.
"""

from __future__ import annotations

import ipaddress
import os
import subprocess
from typing import Any

from pocketkube.kubelet.network.sandbox import netns_name_for_uid
from tests.e2e.multinode import MultiNodeCluster


def _pod(name: str, command: str, **spec: Any) -> dict[str, Any]:
    return {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": name},
            "spec": {"containers": [{"name": "c", "image": "busybox:1.36", "command": ["sh", "-c", command]}],
                     "terminationGracePeriodSeconds": 1, **spec}}


def _running(pod: dict[str, Any]) -> bool:
    return bool(pod["status"].get("phase") == "Running" and pod["status"].get("podIP"))


def _terminated(pod: dict[str, Any]) -> bool:
    return pod["status"].get("phase") in ("Succeeded", "Failed")


def test_nodes_are_listed_with_roles_and_ready(multi_node_cluster: MultiNodeCluster) -> None:
    c = multi_node_cluster
    rows = {line.split()[0]: line.split() for line in c.kubectl("get", "nodes").stdout.splitlines()[1:]}
    assert set(rows) == set(c.nodes)
    assert rows[c.master][1:3] == ["Ready", "control-plane"]
    for w in c.workers:
        assert rows[w][1:3] == ["Ready", "<none>"]
    nodes = {n["metadata"]["name"]: n for n in c.get("nodes")["items"]}
    assert {"key": "node-role.kubernetes.io/control-plane", "effect": "NoSchedule"} in (
        nodes[c.master]["spec"].get("taints") or [])
    cidrs = [ipaddress.ip_network(n["spec"]["podCIDR"]) for n in nodes.values()]
    assert len(set(cidrs)) == 3 and all(x.subnet_of(ipaddress.ip_network(c.cluster_cidr)) for x in cidrs)
    ips = {n["metadata"]["name"]: n["status"]["addresses"] for n in nodes.values()}
    for i, name in enumerate(c.nodes):
        assert {"type": "InternalIP", "address": ips[name][0]["address"]} in ips[name]
        assert ips[name][0]["address"].startswith("172.31.") and ips[name][0]["address"].endswith(f".{10 + i}")


def test_pod_reaches_pod_on_another_node_with_its_own_source_ip(multi_node_cluster: MultiNodeCluster) -> None:
    c = multi_node_cluster
    a_node, b_node = c.workers
    # B serves /www and logs each client (httpd -v) into /www/log, so A can read back who B saw.
    web = _pod("web-b", "touch /www/log; httpd -f -v -p 80 -h /www 2>>/www/log", nodeName=b_node)
    web["spec"]["containers"][0]["readinessProbe"] = {"tcpSocket": {"port": 80}, "periodSeconds": 1}
    c.apply(web)
    b = c.wait_pod("web-b", lambda p: _running(p) and all(s.get("ready") for s in p["status"]["containerStatuses"]))
    b_ip = b["status"]["podIP"]
    c.apply(_pod("client-a", f"(timeout 5 wget -qO- http://{b_ip}/index.html; timeout 5 wget -qO- "
                             f"http://{b_ip}/log) > /dev/termination-log 2>&1",
                 nodeName=a_node, restartPolicy="Never"))
    a = c.wait_pod("client-a", _terminated)
    message = a["status"]["containerStatuses"][0]["state"]["terminated"]["message"]
    assert a["status"]["phase"] == "Succeeded", message
    assert "hello from the pod" in message
    a_ip = a["status"]["podIP"]
    assert a_ip != b_ip and a_ip in message, f"B saw other clients than A ({a_ip}):\n{message}"
    nodes = {n["metadata"]["name"]: n for n in c.get("nodes")["items"]}
    assert ipaddress.ip_address(a_ip) in ipaddress.ip_network(nodes[a_node]["spec"]["podCIDR"])
    assert ipaddress.ip_address(b_ip) in ipaddress.ip_network(nodes[b_node]["spec"]["podCIDR"])


def test_logs_and_exec_reach_the_kubelet_in_each_node_namespace(multi_node_cluster: MultiNodeCluster) -> None:
    # The API server (on the switch) proxies to the kubelet listening inside the node's namespace.
    c = multi_node_cluster
    c.wait_pod("web-b", _running)
    r = c.kubectl("exec", "web-b", "--", "sh", "-c", "hostname; exit 5", check=False)
    assert (r.returncode, r.stdout) == (5, "web-b\n"), r.stderr
    assert c.kubectl("logs", "client-a").stdout == ""  # its output went to the termination log
    assert c.kubectl("exec", "web-b", "--", "cat", "/www/index.html").stdout == "hello from the pod\n"


def test_plain_pods_stay_off_the_master_and_a_tolerating_pod_may_land_there(
        multi_node_cluster: MultiNodeCluster) -> None:
    c = multi_node_cluster
    for i in range(3):
        c.apply(_pod(f"plain-{i}", "sleep 3600"))
    c.apply(_pod("tolerating", "sleep 3600",
                 tolerations=[{"key": "node-role.kubernetes.io/control-plane", "operator": "Exists",
                               "effect": "NoSchedule"}],
                 nodeSelector={"node-role.kubernetes.io/control-plane": ""}))
    for i in range(3):
        pod = c.wait_pod(f"plain-{i}", _running)
        assert pod["spec"]["nodeName"] in c.workers
    pod = c.wait_pod("tolerating", _running)
    assert pod["spec"]["nodeName"] == c.master


def test_cluster_down_leaves_nothing_behind(multi_node_cluster: MultiNodeCluster) -> None:
    c = multi_node_cluster
    pod_netns = [netns_name_for_uid(p["metadata"]["uid"]) for p in c.get("pods", "-A")["items"]
                 if p["spec"].get("nodeName")]
    assert pod_netns, "earlier tests left pods to clean up"
    result = c.down()
    assert result.returncode == 0, result.stdout + result.stderr
    netns = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True, check=True).stdout
    assert f"pk{c.name}-" not in netns
    assert not [n for n in pod_netns if n in netns], netns
    links = subprocess.run(["ip", "-o", "link"], capture_output=True, text=True, check=True).stdout
    assert f"pk{c.name}" not in links
    routes = subprocess.run(["ip", "route"], capture_output=True, text=True, check=True).stdout
    assert c.cluster_cidr not in routes
    procs = subprocess.run(["pgrep", "-af", c.data_dir], capture_output=True, text=True, check=False).stdout
    assert not [line for line in procs.splitlines() if "pgrep" not in line], procs
    assert not os.path.exists(c.data_dir)
    assert not os.path.exists(f"/run/pocketkube/{c.master}")
