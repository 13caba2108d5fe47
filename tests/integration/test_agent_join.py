"""A node joins with the token: CA pinned by hash, Node registered with its facts, Lease renewed."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
import uuid

import pytest

from tests.conftest import REPO, ServerProcess, run_kubectl


def _token(server: ServerProcess) -> str:
    with open(os.path.join(server.data_dir, "token")) as f:
        return f.read().strip()


def test_agent_registers_node_and_renews_lease(server: ServerProcess, tmp_path: object) -> None:
    name = f"pk-node-{uuid.uuid4().hex[:6]}"
    proc = subprocess.Popen(
        [sys.executable, "-m", "pocketkube", "agent", "--server", server.url, "--token", _token(server),
         "--data-dir", str(tmp_path), "--node-name", name, "--node-ip", "127.0.0.1", "--lease-interval", "0.5",
         "--no-pods"],
        cwd=REPO, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, stdin=subprocess.DEVNULL)
    try:
        node = None
        deadline = time.monotonic() + 15
        while time.monotonic() < deadline:
            r = run_kubectl(server, "get", "node", name, "-o", "json", check=False)
            if r.returncode == 0:
                node = json.loads(r.stdout)
                if node.get("status", {}).get("conditions"):
                    break
            time.sleep(0.2)
        assert node is not None, "node never registered"
        conds = {c["type"]: c["status"] for c in node["status"]["conditions"]}
        assert conds == {"Ready": "True", "MemoryPressure": "False", "DiskPressure": "False", "PIDPressure": "False"}
        assert node["status"]["capacity"]["pods"] == "110"
        assert node["status"]["nodeInfo"]["kubeletVersion"].startswith("v1.32")
        assert node["metadata"]["labels"]["kubernetes.io/hostname"] == name
        lease1 = json.loads(run_kubectl(server, "-n", "kube-node-lease", "get", "lease", name, "-o", "json").stdout)
        time.sleep(1.2)
        lease2 = json.loads(run_kubectl(server, "-n", "kube-node-lease", "get", "lease", name, "-o", "json").stdout)
        assert lease2["spec"]["renewTime"] > lease1["spec"]["renewTime"]
        assert lease2["spec"]["holderIdentity"] == name
    finally:
        proc.terminate()
        proc.wait(10)
        run_kubectl(server, "delete", "node", name, "--wait=false", check=False)


def test_agent_refuses_a_token_with_the_wrong_ca_hash(server: ServerProcess, tmp_path: object) -> None:
    _, _, secret = _token(server).split("::")
    bad = f"pk1::{'0' * 64}::{secret}"
    r = subprocess.run([sys.executable, "-m", "pocketkube", "agent", "--server", server.url, "--token", bad,
                        "--data-dir", str(tmp_path), "--node-name", "never"], cwd=REPO, capture_output=True,
                       text=True, timeout=30)
    assert r.returncode != 0
    assert "does not match the join token" in r.stderr + r.stdout


@pytest.mark.parametrize("token", ["", "garbage"])
def test_agent_rejects_malformed_tokens(server: ServerProcess, tmp_path: object, token: str) -> None:
    r = subprocess.run([sys.executable, "-m", "pocketkube", "agent", "--server", server.url, "--token", token,
                        "--data-dir", str(tmp_path)], cwd=REPO, capture_output=True, text=True, timeout=30)
    assert r.returncode != 0
    assert "token" in (r.stderr + r.stdout).lower()
