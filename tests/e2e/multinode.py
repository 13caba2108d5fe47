"""A real multi-node cluster for end-to-end tests, made by `pocketkube cluster up` itself.

A master and two workers, each a network namespace on the cluster's own switch bridge; names are
unique per run (`t<hex>`: bridge `pkt<hex>sw`, namespaces `pkt<hex>-node<i>`), the cluster CIDR is
a random 10.<20..99>.0.0/16 (routed on the host only to that bridge), and the busybox test image
is imported on every node (`cluster up --image`, which drops it into the agents' import dir). At
teardown `pocketkube cluster down` deletes the pods, stops every process and removes it all.
"""

from __future__ import annotations

import json
import os
import random
import subprocess
import sys
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

from tests.conftest import REPO, kubectl_binaries


@dataclass
class MultiNodeCluster:
    name: str
    data_dir: str
    kubeconfig: str
    master: str
    workers: list[str]
    cluster_cidr: str
    is_down: bool = field(default=False)

    @property
    def nodes(self) -> list[str]:
        return [self.master, *self.workers]

    def kubectl(self, *args: str, check: bool = True, input: str | None = None,
                timeout: float = 60.0) -> subprocess.CompletedProcess[str]:
        binary = kubectl_binaries().get("kubectl-1.32") or "kubectl"
        home = os.path.join(os.path.dirname(self.data_dir), f"{self.name}-home")
        os.makedirs(home, exist_ok=True)
        result = subprocess.run([binary, "--kubeconfig", self.kubeconfig, "--cache-dir", os.path.join(home, "cache"),
                                 *args], input=input, capture_output=True, text=True, timeout=timeout,
                                check=False, env={**os.environ, "HOME": home})
        if check and result.returncode != 0:
            raise AssertionError(f"kubectl {' '.join(args)} failed ({result.returncode}):\n{result.stdout}\n"
                                 f"{result.stderr}")
        return result

    def apply(self, manifest: dict[str, Any]) -> None:
        self.kubectl("apply", "-f", "-", input=json.dumps(manifest))

    def get(self, *args: str) -> dict[str, Any]:
        out: dict[str, Any] = json.loads(self.kubectl("get", *args, "-o", "json").stdout)
        return out

    def wait_pod(self, name: str, predicate: Callable[[dict[str, Any]], bool], *,
                 timeout: float = 90.0) -> dict[str, Any]:
        deadline = time.monotonic() + timeout
        last: dict[str, Any] = {}
        while time.monotonic() < deadline:
            r = self.kubectl("get", "pod", name, "-o", "json", check=False)
            if r.returncode == 0:
                last = json.loads(r.stdout)
                if predicate(last):
                    return last
            time.sleep(0.3)
        raise AssertionError(f"pod {name} never reached the expected state; last: "
                             f"{json.dumps(last.get('status'), indent=1)}\n{self.logs()}")

    def logs(self) -> str:
        out = []
        for rel in ("supervisor.log", "server.log", *(f"nodes/{n}/agent.log" for n in self.nodes)):
            try:
                with open(os.path.join(self.data_dir, rel), errors="replace") as f:
                    out.append(f"--- {rel}:\n{f.read()[-2000:]}")
            except OSError:
                pass
        return "\n".join(out)

    def down(self) -> subprocess.CompletedProcess[str]:
        self.is_down = True
        return cluster_command("down", "--name", self.name, "--data-dir", self.data_dir, timeout=240)


def cluster_command(*args: str, timeout: float) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "pocketkube", "cluster", *args], capture_output=True, text=True,
                          timeout=timeout, check=False, cwd=REPO, env={**os.environ, "PYTHONPATH": REPO})


def start_multi_node_cluster(base: str, *, workers: int = 2, image_archives: list[str],
                             extra_args: Sequence[str] = ()) -> Iterator[MultiNodeCluster]:
    """`extra_args` go to `cluster up` as they are (e.g. `--server-arg=--node-monitor-grace-period=8`)."""
    name = f"t{random.randrange(16**4):04x}"
    data_dir = os.path.join(base, name)
    cluster = MultiNodeCluster(name=name, data_dir=data_dir, kubeconfig=os.path.join(data_dir, "server", "kubeconfig.yaml"),
                               master=f"pk{name}-node0", workers=[f"pk{name}-node{i}" for i in range(1, workers + 1)],
                               cluster_cidr="")
    try:
        for _ in range(5):  # another test's cluster may hold the random CIDR: cluster up refuses it
            cluster.cluster_cidr = f"10.{random.randrange(20, 100)}.0.0/16"
            up = cluster_command("up", "--nodes", str(workers), "--name", name, "--data-dir", data_dir,
                                 "--cluster-cidr", cluster.cluster_cidr, "--timeout", "180",
                                 *(a for path in image_archives for a in ("--image", path)), *extra_args,
                                 timeout=240)
            if "overlaps" not in up.stderr:
                break
        if up.returncode != 0:
            raise RuntimeError(f"cluster up failed:\n{up.stdout}\n{up.stderr}\n{cluster.logs()}")
        assert cluster.kubeconfig in up.stdout, up.stdout
        yield cluster
    finally:
        if not cluster.is_down:
            cluster.down()
