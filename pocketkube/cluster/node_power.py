"""`pocketkube cluster stop-node|start-node`: a node's agent dies and comes back, on purpose.

What a machine whose kubelet crashed looks like to the control plane, made on demand (as
`minikube node stop` / `kind`'s `docker stop` do): `stop-node` writes the node's hold file (so the
cluster supervisor does not restart the agent, see server/supervisor.py) and kills the agent by
the pid the supervisor recorded in `pids.json`. Its containers keep running under their conmon
monitors, its Lease stops being renewed, and after the node-monitor grace period the node
lifecycle controller marks it NotReady and taints it unreachable. `start-node` removes the hold
file; the supervisor starts the agent again, which re-adopts the containers of pods still bound
to it and tears down those whose pods were deleted meanwhile, then reports Ready.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import signal
import sys
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from pocketkube.api import meta
from pocketkube.client.rest import APIClient, ClientConfig
from pocketkube.cluster import network

if TYPE_CHECKING:
    from pocketkube.cluster.commands import ClusterState, NodeSpec

COMMANDS = ("stop-node", "start-node")
SIGNALS = {"KILL": signal.SIGKILL, "TERM": signal.SIGTERM}


def add_parsers(csub: Any, default_root: str) -> None:
    for command, text in (("stop-node", "stop a node's agent (its containers keep running) until start-node"),
                          ("start-node", "start a stopped node's agent again and wait until the node is Ready")):
        p = csub.add_parser(command, help=text)
        p.add_argument("node", help="node name (pk<name>-node<i>) or its suffix node<i>")
        p.add_argument("--name", default="pk", help="cluster name (default pk)")
        p.add_argument("--data-dir", default="", help=f"the cluster's data dir (default {default_root}/<name>)")
        if command == "stop-node":
            p.add_argument("--signal", choices=sorted(SIGNALS), default="KILL",
                           help="KILL (default: the agent dies at once) or TERM (it shuts down)")
        else:
            p.add_argument("--timeout", type=float, default=120.0, help="seconds to wait for Ready (default 120)")


def main(args: argparse.Namespace, load_state: Callable[[str, str], ClusterState]) -> int:
    try:
        state = load_state(args.name, args.data_dir)
    except (OSError, ValueError, TypeError) as e:
        print(f"pocketkube cluster {args.cluster_command}: no cluster {args.name!r}: {e}", file=sys.stderr)
        return 1
    spec = find_node(state, args.node)
    if spec is None:
        print(f"pocketkube cluster {args.cluster_command}: cluster {state.name} has no node {args.node!r} "
              f"(nodes: {', '.join(n.name for n in state.nodes)})", file=sys.stderr)
        return 1
    if args.cluster_command == "stop-node":
        return stop_node(state, spec, SIGNALS[args.signal])
    return start_node(state, spec, args.timeout)


def find_node(state: ClusterState, name: str) -> NodeSpec | None:
    return next((n for n in state.nodes if n.name == name or n.name.endswith(f"-{name}")), None)


def agent_pid(state: ClusterState, spec: NodeSpec) -> int | None:
    """The running agent's pid from the supervisor's record, checked against the process's own
    command line (a recycled pid must never be signalled)."""
    with contextlib.suppress(OSError, ValueError):
        with open(os.path.join(state.data_dir, "pids.json")) as f:
            pid = int(json.load(f).get(f"agent-{spec.name}") or 0)
        with open(f"/proc/{pid}/cmdline", "rb") as f:
            argv = f.read().split(b"\0")
        if pid and b"agent" in argv and spec.name.encode() in argv:
            return pid
    return None


def stop_node(state: ClusterState, spec: NodeSpec, sig: int) -> int:
    hold = state.hold_path(spec)
    os.makedirs(os.path.dirname(hold), exist_ok=True)
    with open(hold, "w") as f:
        f.write(f"{time.time():.3f}\n")
    pid = agent_pid(state, spec)
    if pid is None:
        print(f"pocketkube: the agent of node {spec.name} is not running; it stays stopped")
        return 0
    network.signal_pids([pid], sig)
    if network.wait_gone([pid], 15.0):
        network.signal_pids([pid], signal.SIGKILL)
        network.wait_gone([pid], 5.0)
    print(f"pocketkube: stopped the agent of node {spec.name} (pid {pid}); its containers keep running")
    return 0


def start_node(state: ClusterState, spec: NodeSpec, timeout: float) -> int:
    with contextlib.suppress(FileNotFoundError):
        os.unlink(state.hold_path(spec))
    try:
        asyncio.run(wait_node_ready(state, spec.name, timeout))
    except TimeoutError as e:
        print(f"pocketkube cluster start-node: {e}", file=sys.stderr)
        return 1
    print(f"pocketkube: node {spec.name} is Ready again")
    return 0


async def wait_node_ready(state: ClusterState, node: str, timeout: float) -> None:
    """Until the agent runs and the node's Ready condition is True with a heartbeat newer than now
    (a Ready=True left from before the stop would not prove the agent is back)."""
    client = APIClient(ClientConfig.from_kubeconfig(state.kubeconfig, user_agent="pocketkube-cluster"))
    started = time.time()
    deadline = time.monotonic() + timeout
    last = "agent not started"
    try:
        while time.monotonic() < deadline:
            if agent_pid(state, next(n for n in state.nodes if n.name == node)) is not None:
                try:
                    obj = await client.core("nodes").get(node)
                    ready: dict[str, Any] = next((c for c in (obj.get("status") or {}).get("conditions") or []
                                                  if c.get("type") == "Ready"), {})
                    beat = _epoch(str(ready.get("lastHeartbeatTime") or ""))
                    if ready.get("status") == "True" and beat >= int(started):
                        return
                    last = f"Ready={ready.get('status')}"
                except Exception as e:
                    last = f"API server: {e}"
            await asyncio.sleep(0.5)
        raise TimeoutError(f"node {node} not Ready after {timeout:.0f}s ({last})")
    finally:
        await client.close()


def _epoch(rfc3339: str) -> float:
    t = meta.parse_time(rfc3339)
    return t.timestamp() if t else 0.0
