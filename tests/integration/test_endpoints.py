"""Endpoints and EndpointSlices of Services, against a real server, controller-manager and kubectl."""

from __future__ import annotations

import asyncio
import json
import time
from typing import Any

from pocketkube.api import errors
from pocketkube.client.rest import APIClient, ClientConfig
from tests.conftest import ServerProcess, run_kubectl

APP = """
apiVersion: v1
kind: Service
metadata: {name: web, labels: {tier: fe}}
spec:
  selector: {app: web}
  ports: [{name: http, port: 80, targetPort: http}, {name: raw, port: 9000, targetPort: 9000}]
---
apiVersion: v1
kind: Service
metadata: {name: web-headless}
spec:
  clusterIP: None
  selector: {app: web}
---
apiVersion: v1
kind: Service
metadata: {name: manual}
spec:
  ports: [{port: 80}]
---
apiVersion: v1
kind: Pod
metadata: {name: w1, labels: {app: web}}
spec: {containers: [{name: c, image: nginx, ports: [{name: http, containerPort: 8080}]}]}
---
apiVersion: v1
kind: Pod
metadata: {name: w2, labels: {app: web}}
spec: {containers: [{name: c, image: nginx, ports: [{name: http, containerPort: 8081}]}]}
"""
MANUAL_ENDPOINTS = """
apiVersion: v1
kind: Endpoints
metadata: {name: manual}
subsets: [{addresses: [{ip: 192.0.2.10}], ports: [{port: 8000}]}]
"""


def status_patch(ip: str, ready: bool) -> str:
    return json.dumps({"status": {"phase": "Running", "podIP": ip, "podIPs": [{"ip": ip}],
                                  "conditions": [{"type": "Ready", "status": "True" if ready else "False"}]}})


def get_json(server: ServerProcess, ns: str, *what: str) -> Any:
    return json.loads(run_kubectl(server, "-n", ns, "get", *what, "-o", "json").stdout)


def wait_for(predicate: Any, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(0.1)
    raise AssertionError("condition not met in time")


def slices(server: ServerProcess, ns: str, svc: str) -> list[dict[str, Any]]:
    items: list[dict[str, Any]] = get_json(server, ns, "endpointslices", "-l",
                                           f"kubernetes.io/service-name={svc}")["items"]
    return items


def ready_by_pod(items: list[dict[str, Any]]) -> dict[str, bool]:
    return {ep["targetRef"]["name"]: ep["conditions"]["ready"] for s in items for ep in s.get("endpoints") or []}


def test_slices_and_endpoints_follow_pods(server: ServerProcess, namespace: str) -> None:
    run_kubectl(server, "-n", namespace, "apply", "-f", "-", input=APP)
    run_kubectl(server, "-n", namespace, "patch", "pod", "w1", "--subresource=status", "--type=merge",
                "-p", status_patch("10.42.0.5", True))
    run_kubectl(server, "-n", namespace, "patch", "pod", "w2", "--subresource=status", "--type=merge",
                "-p", status_patch("10.42.0.6", False))
    wait_for(lambda: ready_by_pod(slices(server, namespace, "web")) == {"w1": True, "w2": False})
    items = slices(server, namespace, "web")
    assert len(items) == 2  # the two pods resolve `http` to different ports
    svc = get_json(server, namespace, "service", "web")
    for s in items:
        md = s["metadata"]
        assert s["addressType"] == "IPv4" and md["generateName"] == "web-"
        assert md["labels"] == {"tier": "fe", "kubernetes.io/service-name": "web",
                                "endpointslice.kubernetes.io/managed-by": "endpointslice-controller.k8s.io"}
        assert md["ownerReferences"][0]["uid"] == svc["metadata"]["uid"]
        ep = s["endpoints"][0]
        port = {"w1": 8080, "w2": 8081}[ep["targetRef"]["name"]]
        assert sorted((p["name"], p["port"]) for p in s["ports"]) == [("http", port), ("raw", 9000)]
        assert ep["conditions"]["serving"] == ep["conditions"]["ready"] and not ep["conditions"]["terminating"]
    ep = get_json(server, namespace, "endpoints", "web")
    assert ep["metadata"]["labels"] == {"tier": "fe"}
    ready = {a["ip"] for s in ep["subsets"] for a in s.get("addresses", [])}
    not_ready = {a["ip"] for s in ep["subsets"] for a in s.get("notReadyAddresses", [])}
    assert ready == {"10.42.0.5"} and not_ready == {"10.42.0.6"}
    # headless services get endpoints; services without a selector are left to their users
    wait_for(lambda: ready_by_pod(slices(server, namespace, "web-headless")) == {"w1": True, "w2": False})
    headless = slices(server, namespace, "web-headless")[0]
    assert headless["metadata"]["labels"]["service.kubernetes.io/headless"] == ""
    assert slices(server, namespace, "manual") == []
    assert run_kubectl(server, "-n", namespace, "get", "endpoints", "manual", check=False).returncode != 0
    # ...whose own Endpoints are mirrored to EndpointSlices for slice readers
    run_kubectl(server, "-n", namespace, "apply", "-f", "-", input=MANUAL_ENDPOINTS)
    wait_for(lambda: [ep["addresses"] for s in slices(server, namespace, "manual") for ep in s["endpoints"]]
             == [["192.0.2.10"]])
    mirrored = slices(server, namespace, "manual")[0]
    assert mirrored["metadata"]["labels"]["endpointslice.kubernetes.io/managed-by"] == (
        "endpointslicemirroring-controller.k8s.io")
    assert mirrored["ports"] == [{"name": "", "port": 8000, "protocol": "TCP"}]
    run_kubectl(server, "-n", namespace, "delete", "endpoints", "manual")
    wait_for(lambda: slices(server, namespace, "manual") == [])
    described = run_kubectl(server, "-n", namespace, "describe", "service", "web").stdout
    assert "10.42.0.5:8080" in described and "10.42.0.5:9000" in described
    # deleting a pod removes it; deleting the service removes its Endpoints
    run_kubectl(server, "-n", namespace, "delete", "pod", "w2", "--grace-period=0", "--force")
    wait_for(lambda: ready_by_pod(slices(server, namespace, "web")) == {"w1": True})
    assert len(slices(server, namespace, "web")) == 1
    run_kubectl(server, "-n", namespace, "delete", "service", "web")
    wait_for(lambda: run_kubectl(server, "-n", namespace, "get", "endpoints", "web", check=False).returncode != 0)


def test_ready_transitions_reach_slices_and_endpoints_within_a_second(server: ServerProcess, namespace: str) -> None:
    run_kubectl(server, "-n", namespace, "apply", "-f", "-", input=APP)

    async def flip() -> list[float]:
        client = APIClient(ClientConfig.from_kubeconfig(server.kubeconfig))
        pods = client.core("pods")
        eps = client.core("endpoints")
        sl = client.resource("discovery.k8s.io", "v1", "endpointslices")

        async def observed(ready: bool) -> None:
            while True:
                items = (await sl.list(namespace, label_selector="kubernetes.io/service-name=web"))["items"]
                try:
                    subsets = (await eps.get("web", namespace)).get("subsets") or []
                except errors.NotFound:
                    subsets = []
                key = "addresses" if ready else "notReadyAddresses"
                if ready_by_pod(items).get("w1") is ready and any(
                        a["ip"] == "10.42.1.5" for s in subsets for a in s.get(key, [])):
                    return
                await asyncio.sleep(0.01)

        try:
            await pods.patch("w1", json.loads(status_patch("10.42.1.5", False)), namespace, subresource="status")
            await asyncio.wait_for(observed(False), 10)
            delays = []
            for ready in (True, False, True):
                start = time.monotonic()
                await pods.patch("w1", json.loads(status_patch("10.42.1.5", ready)), namespace, subresource="status")
                await asyncio.wait_for(observed(ready), 5)
                delays.append(time.monotonic() - start)
            return delays
        finally:
            await client.close()

    delays = asyncio.run(flip())
    print("ready/not-ready propagation (s):", [round(d, 3) for d in delays])
    assert max(delays) < 1.0, delays
