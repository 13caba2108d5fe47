"""Control loops against a real server: namespace lifecycle, ReplicaSets, garbage collection."""

from __future__ import annotations

import json
import time

from tests.conftest import ServerProcess, run_kubectl

RS = """
apiVersion: apps/v1
kind: ReplicaSet
metadata: {name: %(name)s}
spec:
  replicas: %(replicas)d
  selector: {matchLabels: {app: %(name)s}}
  template:
    metadata: {labels: {app: %(name)s}}
    spec: {containers: [{name: c, image: busybox}]}
"""


def pods(server: ServerProcess, ns: str, selector: str = "") -> list[dict[str, object]]:
    args = ["-n", ns, "get", "pods", "-o", "json"] + (["-l", selector] if selector else [])
    items: list[dict[str, object]] = json.loads(run_kubectl(server, *args).stdout)["items"]
    return items


def wait_for(predicate: object, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():  # type: ignore[operator]
            return
        time.sleep(0.1)
    raise AssertionError("condition not met in time")


def test_replicaset_keeps_replicas_and_replaces_deleted_pods(server: ServerProcess, namespace: str) -> None:
    run_kubectl(server, "-n", namespace, "apply", "-f", "-", input=RS % {"name": "web", "replicas": 4})
    wait_for(lambda: len(pods(server, namespace, "app=web")) == 4)
    victim = pods(server, namespace, "app=web")[0]["metadata"]["name"]  # type: ignore[index]
    run_kubectl(server, "-n", namespace, "delete", "pod", victim)
    wait_for(lambda: len(pods(server, namespace, "app=web")) == 4
             and victim not in [p["metadata"]["name"] for p in pods(server, namespace, "app=web")])  # type: ignore[index]
    run_kubectl(server, "-n", namespace, "scale", "rs", "web", "--replicas=10")
    wait_for(lambda: len(pods(server, namespace, "app=web")) == 10)
    run_kubectl(server, "-n", namespace, "scale", "rs", "web", "--replicas=2")
    wait_for(lambda: len(pods(server, namespace, "app=web")) == 2)
    rs = json.loads(run_kubectl(server, "-n", namespace, "get", "rs", "web", "-o", "json").stdout)
    wait_for(lambda: json.loads(run_kubectl(server, "-n", namespace, "get", "rs", "web", "-o", "json").stdout)
             ["status"].get("replicas") == 2)
    assert rs["metadata"]["generation"] >= 3


def test_cascading_deletes(server: ServerProcess, namespace: str) -> None:
    for policy, name in (("background", "bg"), ("foreground", "fg"), ("orphan", "or")):
        run_kubectl(server, "-n", namespace, "apply", "-f", "-", input=RS % {"name": name, "replicas": 2})
        wait_for(lambda name=name: len(pods(server, namespace, f"app={name}")) == 2)
        run_kubectl(server, "-n", namespace, "delete", "rs", name, f"--cascade={policy}")
        if policy == "orphan":
            time.sleep(0.5)
            left = pods(server, namespace, f"app={name}")
            assert len(left) == 2
            assert all(not p["metadata"].get("ownerReferences") for p in left)  # type: ignore[union-attr]
        else:
            wait_for(lambda name=name: not pods(server, namespace, f"app={name}"))


def test_namespace_deletion_removes_contents(server: ServerProcess) -> None:
    ns = f"gone-{int(time.time() * 1000) % 100000}"
    run_kubectl(server, "create", "-f", "-", input=f'{{"apiVersion":"v1","kind":"Namespace","metadata":{{"name":"{ns}"}}}}')
    run_kubectl(server, "-n", ns, "create", "-f", "-",
                input='{"apiVersion":"v1","kind":"ConfigMap","metadata":{"name":"c"},"data":{"a":"b"}}')
    run_kubectl(server, "-n", ns, "apply", "-f", "-", input=RS % {"name": "x", "replicas": 1})
    run_kubectl(server, "delete", "namespace", ns, "--timeout=20s")
    r = run_kubectl(server, "get", "namespace", ns, check=False)
    assert r.returncode != 0 and "NotFound" in r.stderr
    # creating in a deleted namespace is refused
    r = run_kubectl(server, "-n", ns, "create", "-f", "-", check=False,
                    input='{"apiVersion":"v1","kind":"ConfigMap","metadata":{"name":"c2"}}')
    assert r.returncode != 0 and f'namespaces "{ns}" not found' in r.stderr


def test_default_service_account_created(server: ServerProcess, namespace: str) -> None:
    wait_for(lambda: run_kubectl(server, "-n", namespace, "get", "sa", "default", check=False).returncode == 0)
