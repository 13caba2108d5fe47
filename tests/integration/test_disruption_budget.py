"""PodDisruptionBudgets kept by the disruption controller and honoured by pods/eviction.

A real server with its control loops and two hollow nodes (pods go Running and Ready without
containers); real kubectl: `get pdb` shows the status the controller computes, a raw Eviction is
refused with 429 while the budget allows no disruption, and `kubectl drain` (which evicts) waits
on the budget: it is told "Cannot evict pod ..." and retries until the replacement is Ready.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from tests.conftest import REPO, ServerProcess, run_kubectl, start_server

VIOLATION = "Cannot evict pod as it would violate the pod's disruption budget."


def _deployment(name: str, replicas: int) -> dict[str, Any]:
    return {"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": name},
            "spec": {"replicas": replicas, "selector": {"matchLabels": {"app": name}},
                     "template": {"metadata": {"labels": {"app": name}}, "spec": {
                         "terminationGracePeriodSeconds": 0,
                         "containers": [{"name": "c", "image": "busybox:1.36"}]}}}}


def _pdb(name: str, app: str, **spec: Any) -> dict[str, Any]:
    return {"apiVersion": "policy/v1", "kind": "PodDisruptionBudget", "metadata": {"name": name},
            "spec": {"selector": {"matchLabels": {"app": app}}, **spec}}


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    srv = start_server(str(tmp_path_factory.mktemp("pk-pdb")))
    with open(os.path.join(srv.data_dir, "token")) as f:
        token = f.read().strip()
    fleet = subprocess.Popen([sys.executable, "-m", "pocketkube", "agent", "--hollow", "--count", "2",
                              "--name-prefix", "pdb-node-", "--server", srv.url, "--token", token,
                              "--lease-interval", "1"], cwd=REPO, stdin=subprocess.DEVNULL,
                             stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        yield srv
    finally:
        fleet.terminate()
        fleet.wait(10)
        srv.stop()


def _apply(server: ServerProcess, obj: dict[str, Any]) -> None:
    run_kubectl(server, "apply", "-f", "-", input=json.dumps(obj))


def _get(server: ServerProcess, *args: str) -> dict[str, Any]:
    out: dict[str, Any] = json.loads(run_kubectl(server, "get", *args, "-o", "json").stdout)
    return out


def _wait(what: str, check: Callable[[], bool], timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if check():
            return
        time.sleep(0.2)
    raise AssertionError(f"{what}: not within {timeout:.0f}s")


def _ready_pods(server: ServerProcess, app: str) -> list[dict[str, Any]]:
    return [p for p in _get(server, "pods", "-l", f"app={app}")["items"] if not p["metadata"].get("deletionTimestamp")
            and any(c["type"] == "Ready" and c["status"] == "True" for c in p["status"].get("conditions") or [])]


def _status(server: ServerProcess, name: str) -> tuple[int, int, int, int]:
    st = _get(server, "pdb", name).get("status") or {}
    return (st.get("currentHealthy", -1), st.get("desiredHealthy", -1), st.get("expectedPods", -1),
            st.get("disruptionsAllowed", -1))


def _evict(server: ServerProcess, pod: str) -> subprocess.CompletedProcess[str]:
    body = {"apiVersion": "policy/v1", "kind": "Eviction", "metadata": {"name": pod, "namespace": "default"}}
    return run_kubectl(server, "create", "--raw", f"/api/v1/namespaces/default/pods/{pod}/eviction", "-f", "-",
                       input=json.dumps(body), check=False)


def test_invalid_budgets_are_refused(server: ServerProcess) -> None:
    both = _pdb("both", "x", minAvailable=1, maxUnavailable=1)
    r = run_kubectl(server, "apply", "-f", "-", input=json.dumps(both), check=False)
    assert r.returncode != 0 and "minAvailable and maxUnavailable cannot be both set" in r.stderr, r.stderr
    bad = _pdb("bad", "x", minAvailable="150%", unhealthyPodEvictionPolicy="Sometimes")
    r = run_kubectl(server, "apply", "-f", "-", input=json.dumps(bad), check=False)
    assert "spec.minAvailable: Invalid value: 150%: must not be greater than 100%" in r.stderr, r.stderr
    assert 'spec.unhealthyPodEvictionPolicy: Unsupported value: "Sometimes"' in r.stderr, r.stderr


def test_status_follows_the_pods_and_the_controllers_scale(server: ServerProcess) -> None:
    _wait("2 hollow nodes", lambda: len(_get(server, "nodes")["items"]) == 2)
    _apply(server, _deployment("web", 3))
    _wait("3 web pods ready", lambda: len(_ready_pods(server, "web")) == 3)
    _apply(server, _pdb("web-min", "web", minAvailable=2))
    _wait("web-min status", lambda: _status(server, "web-min") == (3, 2, 3, 1))
    pdb = _get(server, "pdb", "web-min")
    assert pdb["status"]["observedGeneration"] == pdb["metadata"]["generation"]
    assert [(c["type"], c["status"], c["reason"]) for c in pdb["status"]["conditions"]] == [
        ("DisruptionAllowed", "True", "SufficientPods")]
    rows = run_kubectl(server, "get", "pdb", "web-min").stdout.splitlines()
    assert rows[0].split() == ["NAME", "MIN", "AVAILABLE", "MAX", "UNAVAILABLE", "ALLOWED", "DISRUPTIONS", "AGE"]
    assert rows[1].split()[:4] == ["web-min", "2", "N/A", "1"]
    described = run_kubectl(server, "describe", "pdb", "web-min").stdout
    for line in ("Min available:  2", "Selector:       app=web", "Allowed disruptions:  1", "Current:              3",
                 "Desired:              2", "Total:                3"):
        assert line in described, described
    # maxUnavailable counts against the Deployment's replicas, not the pods that happen to exist.
    _apply(server, _deployment("api", 4))
    _wait("4 api pods ready", lambda: len(_ready_pods(server, "api")) == 4)
    _apply(server, _pdb("api-max", "api", maxUnavailable="25%"))
    _wait("api-max status", lambda: _status(server, "api-max") == (4, 3, 4, 1))
    run_kubectl(server, "scale", "deploy/api", "--replicas=8")
    _wait("api-max follows the scale", lambda: _status(server, "api-max") == (8, 6, 8, 2))


def test_eviction_is_refused_while_the_budget_allows_no_disruption(server: ServerProcess) -> None:
    _apply(server, _pdb("web-min", "web", minAvailable=3))
    _wait("web-min allows none", lambda: _status(server, "web-min") == (3, 3, 3, 0))
    victim = _ready_pods(server, "web")[0]["metadata"]["name"]
    r = _evict(server, victim)
    assert r.returncode != 0 and f"(TooManyRequests): {VIOLATION}" in r.stderr, r.stderr
    assert not _get(server, "pod", victim)["metadata"].get("deletionTimestamp")
    # With one disruption allowed, one eviction goes through and takes it; the next is refused
    # while the replacement cannot be Ready (every node cordoned, so it stays Pending).
    _apply(server, _pdb("web-min", "web", minAvailable=2))
    _wait("web-min allows one", lambda: _status(server, "web-min")[3] == 1)
    nodes = [n["metadata"]["name"] for n in _get(server, "nodes")["items"]]
    for node in nodes:
        run_kubectl(server, "cordon", node)
    first, second = (p["metadata"]["name"] for p in _ready_pods(server, "web")[:2])
    r = _evict(server, first)
    assert r.returncode == 0, r.stderr
    r = _evict(server, second)
    assert r.returncode != 0 and VIOLATION in r.stderr, r.stderr
    _wait("first gone", lambda: first not in {p["metadata"]["name"] for p in _get(server, "pods")["items"]})
    _wait("budget exhausted", lambda: _status(server, "web-min") == (2, 2, 3, 0))
    for node in nodes:
        run_kubectl(server, "uncordon", node)
    _wait("replacement ready", lambda: len(_ready_pods(server, "web")) == 3)
    _wait("budget restored", lambda: _status(server, "web-min") == (3, 2, 3, 1))
    assert second in {p["metadata"]["name"] for p in _ready_pods(server, "web")}


def test_drain_waits_for_the_budget(server: ServerProcess) -> None:
    _apply(server, _pdb("web-min", "web", minAvailable=3))
    _wait("web-min allows none", lambda: _status(server, "web-min")[3] == 0)
    node = _ready_pods(server, "web")[0]["spec"]["nodeName"]
    r = run_kubectl(server, "drain", node, "--ignore-daemonsets", "--timeout=4s", check=False, timeout=60)
    assert r.returncode != 0 and VIOLATION in r.stderr, r.stdout + r.stderr
    assert "will retry after 5s" in r.stderr
    # Loosened, the drain completes: each eviction waits for the previous replacement (on the
    # other node, the drained one being cordoned) to be Ready.
    _apply(server, _pdb("web-min", "web", minAvailable=2))
    r = run_kubectl(server, "drain", node, "--ignore-daemonsets", "--timeout=60s", check=False, timeout=90)
    assert r.returncode == 0, r.stdout + r.stderr
    assert f"node/{node} drained" in r.stdout
    on_node = [p for p in _get(server, "pods")["items"] if p["spec"].get("nodeName") == node]
    assert not on_node, [p["metadata"]["name"] for p in on_node]
    assert len(_ready_pods(server, "web")) == 3
    run_kubectl(server, "uncordon", node)
