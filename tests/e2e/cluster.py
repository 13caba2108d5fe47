"""A real one-node cluster for end-to-end tests: server + agent running pods with runc and CNI.

Everything the test creates has unique names: the pod bridge `pkt<rand>br`, the cluster and
service CIDRs (10.<rand>.0.0/16 — routed only to that bridge), the node name, the data dir. At
teardown every pod is deleted (so the kubelet tears its sandboxes down), then the agent and the
server are stopped by pid, and the bridge, cgroups and runc state of this node are removed.
"""

from __future__ import annotations

import contextlib
import json
import os
import random
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass

from pocketkube.agent.cleanup import cleanup_node, mounts_under
from tests.conftest import REPO, ServerProcess, free_port, run_kubectl, start_server


@dataclass
class NodeCluster:
    server: ServerProcess
    agent: subprocess.Popen[bytes]
    node: str
    bridge: str
    cluster_cidr: str
    data_dir: str
    service_cidr: str = ""
    agent_argv: tuple[str, ...] = ()

    def restart_agent(self, *, kill: bool) -> None:
        """Stop the agent (SIGKILL when `kill`, as a crash) and start it again with the same flags."""
        if kill:
            self.agent.kill()
        else:
            self.agent.terminate()
        self.agent.wait(15)
        log = open(os.path.join(self.data_dir, "agent.log"), "ab")
        self.agent = subprocess.Popen(list(self.agent_argv), cwd=REPO, stdout=log, stderr=subprocess.STDOUT,
                                      stdin=subprocess.DEVNULL)
        log.close()

    @property
    def dns_ip(self) -> str:
        return self.service_cidr.split("/")[0].rsplit(".", 1)[0] + ".10"

    def kubectl(self, *args: str, check: bool = True, input: str | None = None,
                timeout: float = 60.0) -> subprocess.CompletedProcess[str]:
        return run_kubectl(self.server, *args, check=check, input=input, timeout=timeout)

    def pod(self, name: str, namespace: str = "default") -> dict[str, object]:
        out: dict[str, object] = json.loads(self.kubectl("-n", namespace, "get", "pod", name, "-o", "json").stdout)
        return out

    def wait_pod(self, name: str, predicate: object, *, namespace: str = "default", timeout: float = 60.0) -> dict[str, object]:
        deadline = time.monotonic() + timeout
        last: dict[str, object] = {}
        while time.monotonic() < deadline:
            r = self.kubectl("-n", namespace, "get", "pod", name, "-o", "json", check=False)
            if r.returncode == 0:
                last = json.loads(r.stdout)
                if predicate(last):  # type: ignore[operator]
                    return last
            time.sleep(0.2)
        raise AssertionError(f"pod {name} never reached the expected state; last status: "
                             f"{json.dumps(last.get('status'), indent=1)}\nagent log tail:\n{self.agent_log()[-3000:]}")

    def agent_log(self) -> str:
        try:
            with open(os.path.join(self.data_dir, "agent.log"), errors="replace") as f:
                return f.read()
        except OSError:
            return ""


def start_node_cluster(base: str, *, image_archives: list[str],
                       server_args: tuple[str, ...] = ()) -> Iterator[NodeCluster]:
    tag = f"{random.randrange(16**4):04x}"
    octet = random.randrange(100, 250)
    cluster_cidr, service_cidr = f"10.{octet}.0.0/16", f"10.{octet + 1 if octet < 254 else octet - 1}.0.0/16"
    bridge = f"pkt{tag}br"
    node = f"pkt{tag}-node"
    dns_ip = service_cidr.split("/")[0].rsplit(".", 1)[0] + ".10"
    server = start_server(os.path.join(base, "server"), extra_args=("--cluster-cidr", cluster_cidr,
                                                                      "--service-cidr", service_cidr,
                                                                      "--node-monitor-grace-period", "40",
                                                                      *server_args))
    agent_dir = os.path.join(base, "agent")
    import_dir = os.path.join(agent_dir, "images-import")
    os.makedirs(import_dir, exist_ok=True)
    for path in image_archives:
        shutil.copy(path, import_dir)
    with open(os.path.join(server.data_dir, "token")) as f:
        token = f.read().strip()
    log = open(os.path.join(base, "agent.log"), "ab")
    argv = (sys.executable, "-m", "pocketkube", "agent", "--server", server.url, "--token", token,
            "--data-dir", agent_dir, "--node-name", node, "--node-ip", "127.0.0.1", "--bridge", bridge,
            "--cluster-cidr", cluster_cidr, "--service-cidr", service_cidr, "--cluster-dns", dns_ip,
            "--lease-interval", "2", "--kubelet-port", str(free_port()))
    agent = subprocess.Popen(list(argv), cwd=REPO, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
    log.close()
    cluster = NodeCluster(server, agent, node, bridge, cluster_cidr, base, service_cidr, argv)
    try:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            if agent.poll() is not None:
                raise RuntimeError(f"agent exited:\n{cluster.agent_log()}")
            if "kubelet running pods" in cluster.agent_log():
                break
            time.sleep(0.2)
        else:
            raise RuntimeError(f"agent never started its kubelet:\n{cluster.agent_log()}")
        yield cluster
    finally:
        # Controllers first (or they re-create what we delete), then pods so the kubelet tears
        # their sandboxes down; then stop the agent and remove whatever is left by its records.
        with contextlib.suppress(Exception):
            run_kubectl(server, "delete", "deployments,replicasets,daemonsets,statefulsets,jobs,cronjobs", "--all", "-A",
                        "--wait=false", check=False, timeout=60)
            run_kubectl(server, "delete", "pods", "--all", "-A", "--timeout=60s", check=False, timeout=90)
        agent = cluster.agent
        agent.terminate()
        try:
            agent.wait(15)
        except subprocess.TimeoutExpired:
            agent.kill()
            agent.wait(5)
        server.stop()
        # the proxy removes its table and route on exit; this is the backstop if it was killed
        tables = subprocess.run(["nft", "list", "tables"], capture_output=True, text=True, check=False).stdout
        leaked = f"table ip pocketkube-{node}" in tables.splitlines()
        subprocess.run(["nft", "delete", "table", "ip", f"pocketkube-{node}"], capture_output=True, check=False)
        subprocess.run(["ip", "route", "del", service_cidr, "dev", bridge], capture_output=True, check=False)
        cleanup_node(node_name=node, data_dir=agent_dir, bridge=bridge)
        leaks = [m for m in mounts_under(base)] + [n for n in os.listdir("/run/netns")
                                                     if n.startswith("pk-") and n in _netns_of(agent_dir)]
        assert not leaks, f"left behind: {leaks}"
        assert not leaked, f"the proxy left nftables table pocketkube-{node} behind"


def _netns_of(agent_dir: str) -> set[str]:
    from pocketkube.kubelet.network.sandbox import netns_name_for_uid

    cache = os.path.join(agent_dir, "cni", "cache")
    names = os.listdir(cache) if os.path.isdir(cache) else []
    return {netns_name_for_uid(n[:-5].split("-", 1)[1]) for n in names if n.endswith(".json") and "-" in n}
