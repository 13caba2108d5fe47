"""A real node fails: its agent dies, the control plane moves its pods, the agent comes back.

Its own `pocketkube cluster up` cluster (a master and two workers) with a short node-monitor
grace period and 1 s Lease renewals, so a dead agent shows in seconds rather than 40 s. A
Deployment whose pods tolerate the unreachable/not-ready taints for TOLERATION seconds is spread
over both workers; `cluster stop-node` kills one worker's agent (its containers keep running, as
on a machine whose kubelet crashed). Then, as in Kubernetes:
- the node turns NotReady (Ready=Unknown) with the unreachable NoSchedule/NoExecute taints, and
  its pods Ready=False (one, tolerating the taint forever, stays bound through it all);
- TOLERATION seconds later its pods are deleted (a DisruptionTarget condition first); the delete
  is graceful and nobody can finish it, so they stay Terminating, while the ReplicaSet (which
  ignores terminating pods) creates replacements that run on the other worker;
- `cluster start-node` brings the agent back: it tears down the containers of the terminating
  pods and of one pod force-deleted meanwhile (no longer in the API at all), re-adopts the
  tolerating pod's container (not restarted, Ready again), and the node is Ready and untainted.
`cluster down`, with the other worker's agent just stopped, then leaves no namespace, link,
nftables table, mount or process behind. The tests share one cluster and run in order.
"""

from __future__ import annotations

import json
import os
import subprocess
import time
from collections.abc import Callable, Iterator
from datetime import datetime
from typing import Any

import pytest

from pocketkube.kubelet.network.sandbox import netns_name_for_uid
from tests.e2e.multinode import MultiNodeCluster, cluster_command, start_multi_node_cluster
from tests.support.images import build_busybox_image

GRACE = 8  # --node-monitor-grace-period (8 Lease renewals: a loaded machine must not flap)
TOLERATION = 3  # tolerationSeconds for unreachable/not-ready
SLACK = 6.0  # allowed lateness of each step (a loaded 2-core machine, controller resync periods)
UNREACHABLE = "node.kubernetes.io/unreachable"
NOT_READY = "node.kubernetes.io/not-ready"

DEPLOYMENT: dict[str, Any] = {
    "apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "survivor"},
    "spec": {
        "replicas": 4, "selector": {"matchLabels": {"app": "survivor"}},
        "template": {"metadata": {"labels": {"app": "survivor"}}, "spec": {
            "terminationGracePeriodSeconds": 5,  # > 0: deleted on a dead node, they stay Terminating
            "containers": [{"name": "c", "image": "busybox:1.36", "command": ["sleep", "3600"]}],
            "tolerations": [{"key": key, "operator": "Exists", "effect": "NoExecute", "tolerationSeconds": TOLERATION}
                            for key in (UNREACHABLE, NOT_READY)],
            "topologySpreadConstraints": [{"maxSkew": 1, "topologyKey": "kubernetes.io/hostname",
                                           "whenUnsatisfiable": "ScheduleAnyway",
                                           "labelSelector": {"matchLabels": {"app": "survivor"}}}]}}}}


@pytest.fixture(scope="module")
def failing_cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[MultiNodeCluster]:
    if os.geteuid() != 0:
        pytest.fail("end-to-end tests need root (namespaces, runc, CNI)")
    base = str(tmp_path_factory.mktemp("pk-fail"))
    archive = os.path.join(base, "busybox.tar")
    build_busybox_image(archive, ref="docker.io/library/busybox:1.36")
    yield from start_multi_node_cluster(base, workers=2, image_archives=[archive], extra_args=(
        f"--server-arg=--node-monitor-grace-period={GRACE}", "--agent-arg=--lease-interval=1"))


class State:
    """What one test hands the next (the tests form one story on one cluster)."""
    victim_node = ""
    other_node = ""
    victims: dict[str, str] = {}  # pod name -> uid
    forced = ""
    not_ready_at = 0.0
    steadfast_container = ""


def _pods(c: MultiNodeCluster) -> list[dict[str, Any]]:
    items: list[dict[str, Any]] = c.get("pods", "-l", "app=survivor")["items"]
    return items


def _is_ready(pod: dict[str, Any]) -> bool:
    return any(x["type"] == "Ready" and x["status"] == "True" for x in pod["status"].get("conditions") or [])


def _serving(c: MultiNodeCluster) -> list[dict[str, Any]]:
    return [p for p in _pods(c) if p["status"].get("phase") == "Running" and not p["metadata"].get("deletionTimestamp")
            and _is_ready(p)]


def _until(what: str, check: Callable[[], bool], timeout: float, c: MultiNodeCluster) -> float:
    """Poll `check` until true; returns the monotonic time it first was."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if check():
            return time.monotonic()
        time.sleep(0.2)
    raise AssertionError(f"{what}: not within {timeout:.0f}s\n{c.kubectl('get', 'pods', '-o', 'wide').stdout}\n"
                         f"{c.kubectl('get', 'nodes').stdout}\n{c.logs()}")


def _ready(node: dict[str, Any]) -> str:
    return str(next(x["status"] for x in node["status"]["conditions"] if x["type"] == "Ready"))


def _containers(node: str, uids: list[str]) -> list[str]:
    out = subprocess.run(["runc", "--root", f"/run/pocketkube/{node}/runc", "list", "-q"], capture_output=True,
                         text=True, check=False).stdout.split()
    return [cid for cid in out if any(cid.startswith(uid) for uid in uids)]


def _epoch(rfc3339: str) -> float:
    return datetime.fromisoformat(rfc3339.replace("Z", "+00:00")).timestamp()


def _agent_pid(c: MultiNodeCluster, node: str) -> int:
    with open(os.path.join(c.data_dir, "pids.json")) as f:
        return int(json.load(f).get(f"agent-{node}") or 0)


def test_default_toleration_seconds_are_added_to_pods_without_their_own(
        failing_cluster: MultiNodeCluster) -> None:
    plain = {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "plain"},
             "spec": {"containers": [{"name": "c", "image": "busybox:1.36"}]}}
    out = json.loads(failing_cluster.kubectl("create", "--dry-run=server", "-o", "json", "-f", "-",
                                     input=json.dumps(plain)).stdout)
    tolerations = {(t["key"], t.get("effect"), t.get("tolerationSeconds")) for t in out["spec"]["tolerations"]}
    assert tolerations == {(NOT_READY, "NoExecute", 300), (UNREACHABLE, "NoExecute", 300)}


def test_deployment_spreads_over_both_workers(failing_cluster: MultiNodeCluster) -> None:
    c = failing_cluster
    c.apply(DEPLOYMENT)
    _until("4 pods serving", lambda: len(_serving(c)) == 4, 120, c)
    by_node: dict[str, list[dict[str, Any]]] = {}
    for p in _serving(c):
        by_node.setdefault(p["spec"]["nodeName"], []).append(p)
    assert set(by_node) == set(c.workers), f"pods should spread over both workers: {by_node.keys()}"
    State.victim_node = c.workers[0]
    State.other_node = c.workers[1]
    State.victims = {p["metadata"]["name"]: p["metadata"]["uid"] for p in by_node[State.victim_node]}
    assert len(_containers(State.victim_node, list(State.victims.values()))) >= 2 * len(State.victims)  # + pause
    # A pod tolerating the failure forever stays bound to the victim through it all.
    c.apply({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "steadfast", "labels": {"app": "steadfast"}},
             "spec": {"nodeName": State.victim_node, "terminationGracePeriodSeconds": 1,
                      "containers": [{"name": "c", "image": "busybox:1.36", "command": ["sleep", "3600"]}],
                      "tolerations": [{"key": key, "operator": "Exists", "effect": "NoExecute"}
                                      for key in (UNREACHABLE, NOT_READY)]}})
    steadfast = c.wait_pod("steadfast", _is_ready)
    State.steadfast_container = steadfast["status"]["containerStatuses"][0]["containerID"]


def test_stopped_agent_makes_its_node_not_ready_and_tainted(failing_cluster: MultiNodeCluster) -> None:
    c = failing_cluster
    pid = _agent_pid(c, State.victim_node)
    assert pid > 0
    stopped = cluster_command("stop-node", "--name", c.name, "--data-dir", c.data_dir, State.victim_node, timeout=60)
    assert stopped.returncode == 0, stopped.stderr
    stopped_at = time.monotonic()
    assert not os.path.exists(f"/proc/{pid}"), "stop-node must kill the agent"
    time.sleep(1.5)  # the supervisor would have restarted a crashed agent by now (0.5 s backoff)
    assert _agent_pid(c, State.victim_node) == 0, "the supervisor restarted a stopped agent"

    def unknown() -> bool:
        return _ready(c.get("node", State.victim_node)) == "Unknown"

    State.not_ready_at = _until("node Ready=Unknown", unknown, GRACE + 30, c)
    print(f"\nnode-failure: Ready=Unknown {State.not_ready_at - stopped_at:.1f}s after the agent died (grace {GRACE}s)")
    assert State.not_ready_at - stopped_at <= GRACE + SLACK, "NotReady too late after the last Lease renewal"
    node = c.get("node", State.victim_node)
    cond = next(x for x in node["status"]["conditions"] if x["type"] == "Ready")
    assert (cond["reason"], cond["message"]) == ("NodeStatusUnknown", "Kubelet stopped posting node status.")
    _until("unreachable taints", lambda: {(t["key"], t["effect"]) for t in c.get("node", State.victim_node)["spec"]
                                          .get("taints") or []} >= {(UNREACHABLE, "NoSchedule"),
                                                                    (UNREACHABLE, "NoExecute")}, 10, c)
    rows = {line.split()[0]: line.split()[1] for line in c.kubectl("get", "nodes").stdout.splitlines()[1:]}
    assert rows[State.victim_node] == "NotReady" and rows[State.other_node] == "Ready"
    # Its pods are NotReady (MarkPodsNotReady), so Services stop sending them traffic.
    _until("pods on the node NotReady", lambda: not _is_ready(c.get("pod", "steadfast")), 15, c)
    # The containers of the dead agent keep running: nobody is there to stop them.
    assert len(_containers(State.victim_node, list(State.victims.values()))) >= 2 * len(State.victims)


def test_pods_are_evicted_after_their_toleration_and_replaced_on_the_other_worker(
        failing_cluster: MultiNodeCluster) -> None:
    c = failing_cluster

    def evicted() -> bool:
        pods = {p["metadata"]["name"]: p for p in _pods(c)}
        return all(pods.get(n, {}).get("metadata", {}).get("deletionTimestamp") for n in State.victims)

    evicted_at = _until("victims marked for deletion", evicted, TOLERATION + 30, c)
    assert evicted_at - State.not_ready_at <= TOLERATION + SLACK, "eviction later than tolerationSeconds allows"
    taint = next(t for t in c.get("node", State.victim_node)["spec"]["taints"]
                 if (t["key"], t["effect"]) == (UNREACHABLE, "NoExecute"))
    pods = {p["metadata"]["name"]: p for p in _pods(c)}
    for name in State.victims:
        conds = {x["type"]: x for x in pods[name]["status"].get("conditions") or []}
        assert conds["Ready"]["status"] == "False"
        assert (conds["DisruptionTarget"]["status"], conds["DisruptionTarget"]["reason"]) == (
            "True", "DeletionByTaintManager")
        # Server clocks, second resolution: deleted tolerationSeconds after the taint, not before.
        waited = _epoch(conds["DisruptionTarget"]["lastTransitionTime"]) - _epoch(taint["timeAdded"])
        assert TOLERATION - 1 <= waited <= TOLERATION + SLACK, waited
    # They stay Terminating (a graceful delete no kubelet finishes), shown so by kubectl ...
    table = {line.split()[0]: line.split()[2] for line in c.kubectl("get", "pods").stdout.splitlines()[1:]}
    assert all(table[n] == "Terminating" for n in State.victims), table

    # ... while their replacements run on the other worker.
    def replaced() -> bool:
        serving = _serving(c)
        return len(serving) == 4 and all(p["spec"]["nodeName"] == State.other_node for p in serving)

    replaced_at = _until("4 pods serving on the other worker", replaced, 60, c)
    print(f"\nnode-failure: evicted {evicted_at - State.not_ready_at:.1f}s and replaced (Running, Ready) "
          f"{replaced_at - State.not_ready_at:.1f}s after NotReady (tolerationSeconds {TOLERATION})")
    assert replaced_at - State.not_ready_at <= TOLERATION + 3 * SLACK, "replacements too slow"
    events = c.get("events", "--field-selector", "reason=TaintManagerEviction")["items"]
    assert {e["involvedObject"]["name"] for e in events} >= set(State.victims)
    assert all(p["metadata"]["name"] in State.victims for p in _pods(c) if p["metadata"].get("deletionTimestamp"))
    assert not c.get("pod", "steadfast")["metadata"].get("deletionTimestamp"), "a forever toleration was not honoured"
    # A user force-deletes one of them (as the docs advise for pods on an unreachable node): it
    # leaves the API at once, while its containers still run on the dead node.
    State.forced = sorted(State.victims)[0]
    c.kubectl("delete", "pod", State.forced, "--force", "--grace-period=0")
    assert State.forced not in {p["metadata"]["name"] for p in _pods(c)}


def test_returning_agent_tears_down_what_was_deleted_while_it_was_away(
        failing_cluster: MultiNodeCluster) -> None:
    c = failing_cluster
    uids = list(State.victims.values())
    assert _containers(State.victim_node, uids), "the dead agent's containers should still be there"
    t0 = time.monotonic()
    started = cluster_command("start-node", "--name", c.name, "--data-dir", c.data_dir, State.victim_node,
                              "--timeout", "120", timeout=180)
    assert started.returncode == 0, started.stdout + started.stderr + c.logs()
    assert _agent_pid(c, State.victim_node) > 0
    ready_at = time.monotonic()
    _until("terminating pods gone from the API",
           lambda: not {p["metadata"]["name"] for p in _pods(c)} & set(State.victims), 60, c)
    _until("their containers removed", lambda: not _containers(State.victim_node, uids), 30, c)
    print(f"\nnode-failure: agent back and node Ready {ready_at - t0:.1f}s after start-node; the deleted pods' "
          f"containers removed {time.monotonic() - ready_at:.1f}s later")
    netns = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True, check=True).stdout
    assert not [u for u in uids if netns_name_for_uid(u) in netns], netns
    _until("node Ready and untainted", lambda: _ready(c.get("node", State.victim_node)) == "True" and not [
        t for t in c.get("node", State.victim_node)["spec"].get("taints") or []
        if t["key"] in (UNREACHABLE, NOT_READY)], 30, c)
    assert len(_serving(c)) == 4
    # The pod that stayed is re-adopted, not restarted, and Ready again.
    steadfast = c.wait_pod("steadfast", _is_ready, timeout=30)
    status = steadfast["status"]["containerStatuses"][0]
    assert (status["containerID"], status["restartCount"]) == (State.steadfast_container, 0)


def test_cluster_down_leaves_nothing_behind_even_with_an_agent_stopped(
        failing_cluster: MultiNodeCluster) -> None:
    c = failing_cluster
    uids = [p["metadata"]["uid"] for p in [*_pods(c), c.get("pod", "steadfast")]]
    # The worker running every pod loses its agent just before the cluster goes down: down must
    # still stop and remove those containers.
    stopped = cluster_command("stop-node", "--name", c.name, "--data-dir", c.data_dir, State.other_node, timeout=60)
    assert stopped.returncode == 0, stopped.stderr
    assert _containers(State.other_node, uids)
    result = c.down()
    assert result.returncode == 0, result.stdout + result.stderr
    netns = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True, check=True).stdout
    assert f"pk{c.name}-" not in netns and not [u for u in uids if netns_name_for_uid(u) in netns], netns
    links = subprocess.run(["ip", "-o", "link"], capture_output=True, text=True, check=True).stdout
    assert f"pk{c.name}" not in links
    tables = subprocess.run(["nft", "list", "tables"], capture_output=True, text=True, check=False).stdout
    assert f"pk{c.name}" not in tables, tables
    with open("/proc/self/mountinfo") as f:
        mounts = f.read()
    assert c.data_dir not in mounts and f"/run/pocketkube/{c.master}" not in mounts
    procs = subprocess.run(["pgrep", "-af", c.data_dir], capture_output=True, text=True, check=False).stdout
    assert not [line for line in procs.splitlines() if "pgrep" not in line], procs
    for node in c.nodes:
        assert not os.path.exists(f"/run/pocketkube/{node}")
    assert not os.path.exists(c.data_dir)
