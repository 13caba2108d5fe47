"""The seed's promise on a real node: 4 replicas stay 4, roll to a new image and back.

Real runc containers behind a Deployment: `kubectl apply` → 4 pods Running; a deleted pod is
replaced; scale 4 → 6 → 2; a rolling update to a new image, `rollout history` and `rollout undo`;
`kubectl delete deploy` removes its ReplicaSets and pods.
"""

from __future__ import annotations

import json
import time
from typing import Any

from tests.e2e.cluster import NodeCluster

DEPLOY = {
    "apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "web"},
    "spec": {"replicas": 4, "selector": {"matchLabels": {"app": "web"}},
             "template": {"metadata": {"labels": {"app": "web"}},
                          "spec": {"terminationGracePeriodSeconds": 1,
                                   "containers": [{"name": "web", "image": "busybox:1.36",
                                                   "command": ["httpd", "-f", "-p", "80", "-h", "/www"],
                                                   "readinessProbe": {"tcpSocket": {"port": 80},
                                                                      "periodSeconds": 1}}]}}},
}


def _running(cluster: NodeCluster) -> list[dict[str, Any]]:
    items: list[dict[str, Any]] = json.loads(cluster.kubectl("get", "pods", "-l", "app=web", "-o", "json").stdout)["items"]
    return [p for p in items if p["status"].get("phase") == "Running" and not p["metadata"].get("deletionTimestamp")
            and all(c.get("ready") for c in p["status"].get("containerStatuses") or [])]


def _wait(predicate: Any, timeout: float = 90.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(0.3)
    raise AssertionError("condition not met in time")


def test_deployment_on_a_real_node(cluster: NodeCluster) -> None:
    cluster.kubectl("apply", "-f", "-", input=json.dumps(DEPLOY))
    cluster.kubectl("rollout", "status", "deploy/web", "--timeout=120s", timeout=150)
    pods = _running(cluster)
    assert len(pods) == 4 and all(p["spec"]["nodeName"] == cluster.node for p in pods)
    victim = pods[0]["metadata"]["name"]
    cluster.kubectl("delete", "pod", victim, "--wait=false")
    _wait(lambda: len(_running(cluster)) == 4 and victim not in {p["metadata"]["name"] for p in _running(cluster)})
    cluster.kubectl("scale", "deploy/web", "--replicas=6")
    _wait(lambda: len(_running(cluster)) == 6)
    cluster.kubectl("scale", "deploy/web", "--replicas=2")
    _wait(lambda: len(_running(cluster)) == 2)
    # A rolling update (same image bytes under a new template: an env var), history, undo.
    cluster.kubectl("set", "env", "deploy/web", "RELEASE=2")
    cluster.kubectl("rollout", "status", "deploy/web", "--timeout=120s", timeout=150)
    history = cluster.kubectl("rollout", "history", "deploy/web").stdout
    assert [line.split()[0] for line in history.splitlines()[2:] if line.strip()] == ["1", "2"]
    assert all(any(e.get("name") == "RELEASE" for e in p["spec"]["containers"][0].get("env") or [])
               for p in _running(cluster))
    cluster.kubectl("rollout", "undo", "deploy/web")
    cluster.kubectl("rollout", "status", "deploy/web", "--timeout=120s", timeout=150)
    _wait(lambda: len(_running(cluster)) == 2 and all(
        not p["spec"]["containers"][0].get("env") for p in _running(cluster)))
    rs = json.loads(cluster.kubectl("get", "rs", "-l", "app=web", "-o", "json").stdout)["items"]
    assert len(rs) == 2
    cluster.kubectl("delete", "deploy", "web", "--timeout=90s", timeout=120)
    _wait(lambda: not json.loads(cluster.kubectl("get", "rs,pods", "-l", "app=web", "-o", "json").stdout)["items"])
