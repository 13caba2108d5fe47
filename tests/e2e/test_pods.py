"""Real pods on a real node (runc, conmon, CNI, overlayfs), driven through the API with kubectl.

The seed's pod: two containers, one on :80 and one on :90, share one IP, reach each other on
localhost, and `kubectl get pod -o wide` shows the IP and node. Then the failure modes a user
meets: crash loops with back-off, OOM kills, liveness restarts, readiness gating Ready, an image
that cannot be pulled, a command that does not exist, a missing configMap.
"""

from __future__ import annotations

import json
import socket
import subprocess
import sys
import time
from typing import Any

from tests.e2e.cluster import NodeCluster


def _apply(cluster: NodeCluster, manifest: dict[str, Any]) -> None:
    cluster.kubectl("apply", "-f", "-", input=json.dumps(manifest))


def _pod(name: str, containers: list[dict[str, Any]], **spec: Any) -> dict[str, Any]:
    return {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": name},
            "spec": {"containers": containers, "terminationGracePeriodSeconds": 2, **spec}}


def _container(pod: dict[str, Any], name: str) -> dict[str, Any]:
    for cs in pod["status"].get("containerStatuses") or []:
        if cs["name"] == name:
            return dict(cs)
    return {}


def _curl(url: str) -> str:
    r = subprocess.run(["curl", "-s", "-m", "5", url], capture_output=True, text=True, check=False)
    return r.stdout


def test_the_seed_pod(cluster: NodeCluster) -> None:
    # web90 first fetches web80 over localhost and serves what it got, so one curl proves both
    # the shared network namespace and localhost reachability between the containers.
    _apply(cluster, _pod("seed", [
        {"name": "web80", "image": "busybox:1.36",
         "command": ["sh", "-c", "cp /www/index.html /tmp/index.html; (until wget -qO- "
                     "http://127.0.0.1:90/index.html > /tmp/f; do sleep 0.2; done; mv /tmp/f /tmp/from90) & "
                     "httpd -f -p 80 -h /tmp"],
         "ports": [{"containerPort": 80}],
         "readinessProbe": {"tcpSocket": {"port": 80}, "periodSeconds": 1}},
        {"name": "web90", "image": "busybox:1.36",
         "command": ["sh", "-c", "mkdir -p /tmp/w; echo hello from 90 > /tmp/w/index.html; "
                     "(until wget -qO- http://127.0.0.1:80/index.html > /tmp/f; do sleep 0.2; done; "
                     "mv /tmp/f /tmp/w/from80) & httpd -f -p 90 -h /tmp/w"],
         "ports": [{"containerPort": 90}],
         "readinessProbe": {"httpGet": {"port": 90, "path": "/index.html"}, "periodSeconds": 1}},
    ]))
    pod = cluster.wait_pod("seed", lambda p: p["status"].get("phase") == "Running"
                           and all(c.get("ready") for c in p["status"].get("containerStatuses") or []))
    ip = pod["status"]["podIP"]
    assert ip.startswith(cluster.cluster_cidr.split(".0.0/")[0] + ".")
    assert pod["spec"]["nodeName"] == cluster.node
    assert _curl(f"http://{ip}:80/index.html") == "hello from the pod\n"
    assert _curl(f"http://{ip}:90/index.html") == "hello from 90\n"
    deadline = time.monotonic() + 15
    while time.monotonic() < deadline and (_curl(f"http://{ip}:80/from90") != "hello from 90\n"
                                           or _curl(f"http://{ip}:90/from80") != "hello from the pod\n"):
        time.sleep(0.3)
    assert _curl(f"http://{ip}:80/from90") == "hello from 90\n"
    assert _curl(f"http://{ip}:90/from80") == "hello from the pod\n"
    wide = cluster.kubectl("get", "pod", "seed", "-o", "wide").stdout.splitlines()
    assert wide[0].split()[:7] == ["NAME", "READY", "STATUS", "RESTARTS", "AGE", "IP", "NODE"]
    row = wide[1].split()
    assert row[0] == "seed" and row[1] == "2/2" and row[2] == "Running" and row[5] == ip and row[6] == cluster.node
    cluster.kubectl("delete", "pod", "seed", "--timeout=90s", timeout=120)


def test_crash_loop_backoff_and_restart_count(cluster: NodeCluster) -> None:
    _apply(cluster, _pod("crash", [{"name": "c", "image": "busybox:1.36", "command": ["sh", "-c", "exit 3"]}]))
    pod = cluster.wait_pod("crash", lambda p: (_container(p, "c").get("restartCount") or 0) >= 1
                           and "waiting" in _container(p, "c").get("state", {}), timeout=40)
    cs = _container(pod, "c")
    assert cs["state"]["waiting"]["reason"] == "CrashLoopBackOff"
    assert cs["lastState"]["terminated"]["exitCode"] == 3
    table = cluster.kubectl("get", "pod", "crash").stdout.splitlines()[1].split()
    assert table[2] == "CrashLoopBackOff" and int(table[3]) >= 1
    cluster.kubectl("delete", "pod", "crash", "--timeout=90s", timeout=120)


def test_oom_killed(cluster: NodeCluster) -> None:
    _apply(cluster, _pod("oom", [{"name": "c", "image": "busybox:1.36",
                                  "command": ["sh", "-c", "a=xxxxxxxx; while true; do a=$a$a; done"],
                                  "resources": {"limits": {"memory": "16Mi"}}}], restartPolicy="Never"))
    pod = cluster.wait_pod("oom", lambda p: "terminated" in _container(p, "c").get("state", {}), timeout=40)
    term = _container(pod, "c")["state"]["terminated"]
    assert term["reason"] == "OOMKilled" and term["exitCode"] == 137
    assert pod["status"]["phase"] == "Failed"
    cluster.kubectl("delete", "pod", "oom", "--timeout=90s", timeout=120)


def test_liveness_restarts_and_readiness_gates(cluster: NodeCluster) -> None:
    _apply(cluster, _pod("probes", [
        {"name": "live", "image": "busybox:1.36", "command": ["sh", "-c", "touch /tmp/ok; sleep 3; rm /tmp/ok; sleep 600"],
         "livenessProbe": {"exec": {"command": ["cat", "/tmp/ok"]}, "periodSeconds": 1, "failureThreshold": 1}},
        {"name": "ready", "image": "busybox:1.36", "command": ["sleep", "600"],
         "readinessProbe": {"exec": {"command": ["cat", "/tmp/ready"]}, "periodSeconds": 1}},
    ]))
    pod = cluster.wait_pod("probes", lambda p: (_container(p, "live").get("restartCount") or 0) >= 1, timeout=60)
    assert _container(pod, "ready")["ready"] is False
    conds = {c["type"]: c["status"] for c in pod["status"]["conditions"]}
    assert conds["Ready"] == "False" and conds["ContainersReady"] == "False"
    cluster.kubectl("delete", "pod", "probes", "--timeout=90s", timeout=120)


def test_bad_inputs_are_reported(cluster: NodeCluster) -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        dead_port = s.getsockname()[1]  # nothing listens there: the pull fails on loopback
    _apply(cluster, _pod("badimage", [{"name": "c", "image": f"127.0.0.1:{dead_port}/nope:1"}]))
    _apply(cluster, _pod("nocmd", [{"name": "c", "image": "busybox:1.36", "command": ["/no/such/binary"]}]))
    _apply(cluster, _pod("nocm", [{"name": "c", "image": "busybox:1.36", "command": ["sleep", "600"],
                                   "envFrom": [{"configMapRef": {"name": "missing-config"}}]}]))
    bad = cluster.wait_pod("badimage", lambda p: _container(p, "c").get("state", {}).get("waiting", {}).get("reason")
                           == "ImagePullBackOff", timeout=40)
    assert f"127.0.0.1:{dead_port}/nope:1" in _container(bad, "c")["state"]["waiting"]["message"]
    nocmd = cluster.wait_pod("nocmd", lambda p: (_container(p, "c").get("lastState") or {}).get("terminated")
                             or _container(p, "c").get("state", {}).get("terminated"), timeout=40)
    cs = _container(nocmd, "c")
    term = (cs.get("lastState") or {}).get("terminated") or cs["state"]["terminated"]
    assert term["reason"] == "StartError" and "no/such/binary" in term["message"]
    nocm = cluster.wait_pod("nocm", lambda p: _container(p, "c").get("state", {}).get("waiting", {}).get("reason")
                            == "CreateContainerConfigError")
    assert 'configmap "missing-config" not found' in _container(nocm, "c")["state"]["waiting"]["message"]
    for name in ("badimage", "nocmd", "nocm"):
        cluster.kubectl("delete", "pod", name, "--timeout=90s", timeout=120)


def test_image_imported_while_the_agent_runs(cluster: NodeCluster, tmp_path: Any) -> None:
    """`pocketkube image import` beside a running agent; the pod uses it without any pull."""
    from tests.conftest import REPO
    from tests.support.images import build_busybox_image

    archive = str(tmp_path / "tools.tar")
    build_busybox_image(archive, ref="registry.example/tools:7", fmt="docker",
                        extra_files={"/etc/motd": b"imported live\n"})
    out = subprocess.run([sys.executable, "-m", "pocketkube", "image", "--data-dir", cluster.data_dir, "import",
                          archive], cwd=REPO, capture_output=True, text=True, check=True).stdout
    assert "registry.example/tools:7" in out
    listed = subprocess.run([sys.executable, "-m", "pocketkube", "image", "--data-dir", cluster.data_dir, "ls"],
                            cwd=REPO, capture_output=True, text=True, check=True).stdout
    assert "registry.example/tools:7" in listed
    _apply(cluster, _pod("imported", [{"name": "c", "image": "registry.example/tools:7", "imagePullPolicy": "Never",
                                       "command": ["sh", "-c", "cat /etc/motd > /dev/termination-log"]}],
                         restartPolicy="Never"))
    pod = cluster.wait_pod("imported", lambda p: "terminated" in _container(p, "c").get("state", {}))
    term = _container(pod, "c")["state"]["terminated"]
    assert term["exitCode"] == 0 and term["message"] == "imported live\n"
    cluster.kubectl("delete", "pod", "imported", "--timeout=90s", timeout=120)


def test_agent_crash_leaves_containers_running_and_readopts_them(cluster: NodeCluster) -> None:
    """kill -9 of the agent: conmon keeps the containers; the restarted agent adopts them as they are."""
    _apply(cluster, _pod("survivor", [{"name": "web", "image": "busybox:1.36",
                                       "command": ["httpd", "-f", "-p", "80", "-h", "/www"],
                                       "readinessProbe": {"tcpSocket": {"port": 80}, "periodSeconds": 1}}]))
    before = cluster.wait_pod("survivor", lambda p: _container(p, "web").get("ready") is True)
    ip = before["status"]["podIP"]
    cid = _container(before, "web")["containerID"]
    cluster.restart_agent(kill=True)
    assert _curl(f"http://{ip}/index.html") == "hello from the pod\n"  # served while no agent runs
    time.sleep(3)  # the new agent syncs the pod (it must not restart anything)
    after = cluster.wait_pod("survivor", lambda p: _container(p, "web").get("ready") is True)
    cs = _container(after, "web")
    assert cs["containerID"] == cid and cs["restartCount"] == 0
    assert after["status"]["podIP"] == ip
    assert _curl(f"http://{ip}/index.html") == "hello from the pod\n"
    cluster.kubectl("delete", "pod", "survivor", "--timeout=90s", timeout=120)
