"""ResourceQuota and LimitRange against a real server, the controller-manager and real kubectl."""

from __future__ import annotations

import asyncio
import json
import time
from typing import Any

from pocketkube.api import errors
from pocketkube.client.rest import APIClient, ClientConfig
from tests.conftest import ServerProcess, run_kubectl

QUOTA = """
apiVersion: v1
kind: ResourceQuota
metadata: {name: q1}
spec:
  hard: {requests.cpu: "1", limits.memory: 1Gi, pods: "3", count/configmaps: "1"}
"""


def pod_json(name: str, cpu: str = "", memory_limit: str = "128Mi") -> str:
    resources: dict[str, Any] = {"limits": {"memory": memory_limit}}
    if cpu:
        resources["requests"] = {"cpu": cpu}
    return json.dumps({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": name},
                       "spec": {"containers": [{"name": "c1", "image": "busybox", "resources": resources}]}})


def get_json(server: ServerProcess, ns: str, *what: str) -> Any:
    return json.loads(run_kubectl(server, "-n", ns, "get", *what, "-o", "json").stdout)


def wait_for(predicate: Any, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(0.1)
    raise AssertionError("condition not met in time")


def used(server: ServerProcess, ns: str, name: str = "q1") -> dict[str, str]:
    result: dict[str, str] = get_json(server, ns, "resourcequota", name).get("status", {}).get("used") or {}
    return result


def make_quota(server: ServerProcess, ns: str, manifest: str = QUOTA) -> None:
    run_kubectl(server, "-n", ns, "apply", "-f", "-", input=manifest)
    wait_for(lambda: used(server, ns) != {})


def test_quota_refuses_what_exceeds_it_and_describe_shows_usage(server: ServerProcess, namespace: str) -> None:
    make_quota(server, namespace)
    run_kubectl(server, "-n", namespace, "create", "-f", "-", input=pod_json("p1", "600m"))
    r = run_kubectl(server, "-n", namespace, "create", "-f", "-", input=pod_json("p2", "500m"), check=False)
    assert r.returncode != 0
    assert ('pods "p2" is forbidden: exceeded quota: q1, requested: requests.cpu=500m, used: requests.cpu=600m, '
            'limited: requests.cpu=1') in r.stderr
    r = run_kubectl(server, "-n", namespace, "create", "-f", "-", input=pod_json("p3"), check=False)
    assert 'pods "p3" is forbidden: failed quota: q1: must specify requests.cpu for: c1' in r.stderr
    # a dry run is checked but charges nothing
    run_kubectl(server, "-n", namespace, "create", "configmap", "c1", "--dry-run=server")
    run_kubectl(server, "-n", namespace, "create", "configmap", "c1")
    r = run_kubectl(server, "-n", namespace, "create", "configmap", "c2", check=False)
    assert "exceeded quota: q1, requested: count/configmaps=1, used: count/configmaps=1" in r.stderr
    out = run_kubectl(server, "-n", namespace, "describe", "quota", "q1").stdout
    lines = {line.split()[0]: line.split()[1:] for line in out.splitlines() if line.strip()}
    assert lines["Resource"] == ["Used", "Hard"]
    assert lines["requests.cpu"] == ["600m", "1"]
    assert lines["limits.memory"] == ["128Mi", "1Gi"]
    assert lines["pods"] == ["1", "3"]
    assert lines["count/configmaps"] == ["1", "1"]
    # deleting frees the quota (the controller recounts)
    run_kubectl(server, "-n", namespace, "delete", "pod", "p1", "--grace-period=0", "--force")
    wait_for(lambda: used(server, namespace).get("requests.cpu") == "0")
    run_kubectl(server, "-n", namespace, "create", "-f", "-", input=pod_json("p2", "500m"))


def test_concurrent_creates_never_exceed_the_quota(server: ServerProcess, namespace: str) -> None:
    make_quota(server, namespace, QUOTA.replace('pods: "3"', 'pods: "5"').replace('requests.cpu: "1"', 'requests.cpu: "10"'))

    async def burst() -> list[BaseException | dict[str, Any]]:
        client = APIClient(ClientConfig.from_kubeconfig(server.kubeconfig))
        try:
            pods = client.core("pods")
            return await asyncio.gather(*(pods.create(json.loads(pod_json(f"b{i}", "100m")), namespace)
                                          for i in range(20)), return_exceptions=True)
        finally:
            await client.close()

    results = asyncio.run(burst())
    created = [r for r in results if isinstance(r, dict)]
    refused = [r for r in results if isinstance(r, errors.Forbidden)]
    assert len(created) == 5 and len(refused) == 15, results
    assert all("exceeded quota: q1, requested: pods=1, used: pods=5, limited: pods=5" in str(r) for r in refused)
    assert len(get_json(server, namespace, "pods")["items"]) == 5
    time.sleep(1.5)  # the controller's recount agrees with the charges
    assert used(server, namespace)["pods"] == "5"
    assert used(server, namespace)["requests.cpu"] == "500m"


def test_limitrange_defaults_and_bounds(server: ServerProcess, namespace: str) -> None:
    run_kubectl(server, "-n", namespace, "apply", "-f", "-", input="""
apiVersion: v1
kind: LimitRange
metadata: {name: lr}
spec:
  limits:
  - type: Container
    default: {cpu: 500m, memory: 256Mi}
    defaultRequest: {cpu: 100m}
    max: {cpu: "1"}
  - type: PersistentVolumeClaim
    max: {storage: 2Gi}
""")
    run_kubectl(server, "-n", namespace, "run", "p", "--image=busybox")
    p = get_json(server, namespace, "pod", "p")
    assert p["spec"]["containers"][0]["resources"] == {"limits": {"cpu": "500m", "memory": "256Mi"},
                                                       "requests": {"cpu": "100m", "memory": "256Mi"}}
    assert p["metadata"]["annotations"]["kubernetes.io/limit-ranger"] == (
        "LimitRanger plugin set: cpu, memory request for container p; cpu, memory limit for container p")
    big = json.dumps({"spec": {"containers": [{"name": "big", "image": "busybox",
                                               "resources": {"limits": {"cpu": "2"}}}]}})
    r = run_kubectl(server, "-n", namespace, "run", "big", "--image=busybox", f"--overrides={big}", check=False)
    assert 'pods "big" is forbidden: maximum cpu usage per Container is 1, but limit is 2' in r.stderr
    r = run_kubectl(server, "-n", namespace, "apply", "-f", "-", check=False, input="""
apiVersion: v1
kind: PersistentVolumeClaim
metadata: {name: c}
spec: {accessModes: [ReadWriteOnce], resources: {requests: {storage: 5Gi}}}
""")
    assert ('persistentvolumeclaims "c" is forbidden: maximum storage usage per PersistentVolumeClaim is 2Gi, '
            'but request is 5Gi') in r.stderr
