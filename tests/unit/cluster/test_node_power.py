"""`cluster stop-node`: the agent is found by the supervisor's pid record, checked against its
own command line (a recycled pid is never signalled), killed, and held down by the hold file."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

from pocketkube.cluster.commands import ClusterState, NodeSpec
from pocketkube.cluster.node_power import agent_pid, find_node, stop_node


def _state(tmp_path: Path) -> ClusterState:
    nodes = [NodeSpec(name=f"pkx-node{i}", netns=f"pkx-node{i}", veth=f"pkx{i}", ip=f"172.31.9.{10 + i}",
                      master=i == 0) for i in range(2)]
    return ClusterState(name="x", data_dir=str(tmp_path), octet=9, port=6443, cluster_cidr="10.42.0.0/16",
                        nodes=nodes)


def _spawn(*argv: str) -> subprocess.Popen[bytes]:
    """A stand-in process whose command line reads like an agent's, once it has exec'd."""
    proc = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)", *argv])
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        with open(f"/proc/{proc.pid}/cmdline", "rb") as f:
            if argv[-1].encode() in f.read().split(b"\0"):
                return proc
        time.sleep(0.01)
    raise AssertionError("the stand-in never showed its command line")


def _record(tmp_path: Path, pid: int) -> None:
    (tmp_path / "pids.json").write_text(json.dumps({"server": 1, "agent-pkx-node1": pid}))


def test_nodes_are_found_by_name_or_suffix(tmp_path: Path) -> None:
    state = _state(tmp_path)
    assert find_node(state, "pkx-node1") is state.nodes[1]
    assert find_node(state, "node1") is state.nodes[1]
    assert find_node(state, "node7") is None


def test_the_recorded_agent_is_killed_and_held_down(tmp_path: Path) -> None:
    state = _state(tmp_path)
    spec = state.nodes[1]
    fake = _spawn("agent", spec.name)
    try:
        _record(tmp_path, fake.pid)
        assert agent_pid(state, spec) == fake.pid
        assert stop_node(state, spec, 9) == 0
        assert fake.wait(10) == -9
        assert os.path.exists(state.hold_path(spec))
    finally:
        if fake.poll() is None:
            fake.kill()
            fake.wait()


def test_a_pid_that_is_not_that_agent_is_left_alone(tmp_path: Path) -> None:
    state = _state(tmp_path)
    spec = state.nodes[1]
    other = _spawn("agent", "pkx-node0")
    try:
        _record(tmp_path, other.pid)
        assert agent_pid(state, spec) is None
        assert stop_node(state, spec, 9) == 0  # nothing running: it just stays down
        assert other.poll() is None
        assert os.path.exists(state.hold_path(spec))
    finally:
        other.kill()
        other.wait()
