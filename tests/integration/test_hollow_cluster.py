"""Desired state kept true on simulated nodes: Deployments spread and replaced, node failure.

Hollow nodes (`pocketkube agent --hollow`) register, renew Leases and move the pods bound to them
to Running without containers, so the whole control plane (scheduler, ReplicaSet/Deployment
controllers, node lifecycle, garbage collector) runs for real against them.
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

DEPLOY = """
apiVersion: apps/v1
kind: Deployment
metadata: {name: web}
spec:
  replicas: 4
  selector: {matchLabels: {app: web}}
  template:
    metadata: {labels: {app: web}}
    spec:
      terminationGracePeriodSeconds: 0
      containers: [{name: web, image: busybox:1.36, resources: {requests: {cpu: 100m}}}]
"""


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    srv = start_server(str(tmp_path_factory.mktemp("pk-hollow")),
                       extra_args=("--node-monitor-grace-period", "4", "--default-unreachable-toleration-seconds", "2",
                                   "--default-not-ready-toleration-seconds", "2"))
    yield srv
    srv.stop()


def fleet(server: ServerProcess, prefix: str, count: int) -> subprocess.Popen[bytes]:
    with open(os.path.join(server.data_dir, "token")) as f:
        token = f.read().strip()
    return subprocess.Popen([sys.executable, "-m", "pocketkube", "agent", "--hollow", "--count", str(count),
                             "--name-prefix", prefix, "--server", server.url, "--token", token,
                             "--lease-interval", "1"], cwd=REPO, stdin=subprocess.DEVNULL,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def pods(server: ServerProcess) -> list[dict[str, Any]]:
    items: list[dict[str, Any]] = json.loads(run_kubectl(server, "get", "pods", "-l", "app=web", "-o", "json")
                                             .stdout)["items"]
    return items


def wait(predicate: Any, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(0.2)
    raise AssertionError("condition not met in time")


def running(server: ServerProcess) -> list[dict[str, Any]]:
    return [p for p in pods(server) if p["status"].get("phase") == "Running"
            and not p["metadata"].get("deletionTimestamp")]


def test_deployment_survives_node_failure(server: ServerProcess) -> None:
    a = fleet(server, "hollow-a-", 2)
    b = fleet(server, "hollow-b-", 2)
    try:
        wait(lambda: len(json.loads(run_kubectl(server, "get", "nodes", "-o", "json").stdout)["items"]) == 4)
        run_kubectl(server, "apply", "-f", "-", input=DEPLOY)
        wait(lambda: len(running(server)) == 4)
        run_kubectl(server, "rollout", "status", "deploy/web", "--timeout=30s")
        nodes = {p["spec"]["nodeName"] for p in running(server)}
        assert len(nodes) >= 3, f"the scheduler should spread one controller's pods, got {nodes}"
        # One pod deleted → replaced.
        victim = running(server)[0]["metadata"]["name"]
        run_kubectl(server, "delete", "pod", victim, "--wait=false")
        wait(lambda: len(running(server)) == 4 and victim not in {p["metadata"]["name"] for p in running(server)})
        # Scale 4 → 10 → 2.
        run_kubectl(server, "scale", "deploy/web", "--replicas=10")
        wait(lambda: len(running(server)) == 10)
        run_kubectl(server, "scale", "deploy/web", "--replicas=4")
        wait(lambda: len(running(server)) == 4)
        # Node failure: fleet a stops renewing its Leases.
        a.kill()
        a.wait(10)
        wait(lambda: all(c["status"] == "Unknown" for n in json.loads(run_kubectl(
            server, "get", "nodes", "-o", "json").stdout)["items"] if n["metadata"]["name"].startswith("hollow-a-")
            for c in n["status"]["conditions"] if c["type"] == "Ready"), timeout=20)
        taints = json.loads(run_kubectl(server, "get", "node", "hollow-a-0", "-o", "json").stdout)["spec"]["taints"]
        assert {"key": "node.kubernetes.io/unreachable", "effect": "NoExecute"} in [
            {"key": t["key"], "effect": t["effect"]} for t in taints]
        wait(lambda: len(running(server)) == 4
             and all(p["spec"]["nodeName"].startswith("hollow-b-") for p in running(server)), timeout=30)
        table = run_kubectl(server, "get", "nodes").stdout
        assert "NotReady" in table
    finally:
        for proc in (a, b):
            if proc.poll() is None:
                proc.terminate()
                proc.wait(10)


def test_control_plane_taint_keeps_user_pods_off(server: ServerProcess) -> None:
    c = fleet(server, "hollow-c-", 1)
    try:
        wait(lambda: run_kubectl(server, "get", "node", "hollow-c-0", check=False).returncode == 0)
        run_kubectl(server, "taint", "nodes", "hollow-c-0", "node-role.kubernetes.io/control-plane=:NoSchedule")
        for n in json.loads(run_kubectl(server, "get", "nodes", "-o", "json").stdout)["items"]:
            if n["metadata"]["name"] != "hollow-c-0":
                run_kubectl(server, "cordon", n["metadata"]["name"], check=False)
        pod = {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "plain"},
               "spec": {"containers": [{"name": "c", "image": "busybox:1.36"}]}}
        tolerant = {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "tolerant"},
                    "spec": {"containers": [{"name": "c", "image": "busybox:1.36"}],
                             "tolerations": [{"key": "node-role.kubernetes.io/control-plane", "operator": "Exists",
                                              "effect": "NoSchedule"}]}}
        run_kubectl(server, "apply", "-f", "-", input=json.dumps(pod))
        run_kubectl(server, "apply", "-f", "-", input=json.dumps(tolerant))
        wait(lambda: json.loads(run_kubectl(server, "get", "pod", "tolerant", "-o", "json").stdout)["spec"]
             .get("nodeName") == "hollow-c-0")
        time.sleep(1)
        plain = json.loads(run_kubectl(server, "get", "pod", "plain", "-o", "json").stdout)
        assert not plain["spec"].get("nodeName")
        events = run_kubectl(server, "get", "events", "--field-selector", "involvedObject.name=plain,reason=FailedScheduling",
                             "-o", "json").stdout
        messages = [e["message"] for e in json.loads(events)["items"]]
        assert any("untolerated taint {node-role.kubernetes.io/control-plane: }" in m for m in messages), messages
    finally:
        c.terminate()
        c.wait(10)


def test_out_of_service_taint_releases_pods_stuck_terminating_on_a_dead_node(server: ServerProcess) -> None:
    # Non-graceful node shutdown: pods deleted on a dead node stay Terminating (no kubelet confirms)
    # until an operator taints the node out-of-service; then the pod GC force-deletes them.
    d = fleet(server, "hollow-d-", 1)
    try:
        wait(lambda: run_kubectl(server, "get", "node", "hollow-d-0", check=False).returncode == 0)
        pod = {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "stuck", "labels": {"app": "stuck"}},
               "spec": {"nodeSelector": {"kubernetes.io/hostname": "hollow-d-0"}, "terminationGracePeriodSeconds": 600,
                        "containers": [{"name": "c", "image": "busybox:1.36"}]}}
        run_kubectl(server, "apply", "-f", "-", input=json.dumps(pod))
        wait(lambda: json.loads(run_kubectl(server, "get", "pod", "stuck", "-o", "json").stdout)["status"]
             .get("phase") == "Running")
    finally:
        d.kill()
        d.wait(10)
    # NotReady after the 4 s grace, evicted 2 s later (the default toleration): Terminating for good.
    wait(lambda: json.loads(run_kubectl(server, "get", "pod", "stuck", "-o", "json").stdout)["metadata"]
         .get("deletionTimestamp") is not None, timeout=30)
    time.sleep(2)
    assert run_kubectl(server, "get", "pod", "stuck").stdout.split("\n")[1].split()[2] == "Terminating"
    run_kubectl(server, "taint", "nodes", "hollow-d-0", "node.kubernetes.io/out-of-service=nodeshutdown:NoExecute")
    wait(lambda: run_kubectl(server, "get", "pod", "stuck", check=False).returncode != 0, timeout=15)
    run_kubectl(server, "delete", "node", "hollow-d-0")
