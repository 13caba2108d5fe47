"""`pocketkube cluster up|down`: a multi-node cluster on one machine, nodes as network namespaces.

`up` makes the switch and the node namespaces (network.py), writes `<data-dir>/cluster.json`
first (so `down` can undo even a half-made cluster), then starts a detached supervisor
(`pocketkube cluster supervise`) which runs, as restarted children:

* the server (`pocketkube server --disable-agent`, API on 172.31.<x>.1, with that IP as TLS SAN,
  plus its controller-manager and scheduler);
* one agent per node, `nsenter --net=/run/netns/pk<name>-node<i> python -m pocketkube agent …`:
  node0 is the master (labelled control-plane and tainted NoSchedule, so it runs system pods
  only, as in the seed), node1..N are workers;
* one cluster DNS per node, in the node's namespace on the DNS Service IP (10.43.0.10 on its lo).

The supervisor records its children's pids in `<data-dir>/pids.json`. `up` returns when every
node is Ready and prints the admin kubeconfig path.

`stop-node` / `start-node` (node_power.py) kill one agent and keep it down through a hold file
the supervisor honours, then let it start again: a failed node, on demand.

`down` cordons the nodes and deletes the pods first (so each kubelet tears its sandboxes down),
then stops the supervisor and every process of the cluster by pid (its descendants, anything
left in a node namespace or a node cgroup), then removes the namespaces, veths, the switch (and
with it the host route), nftables tables named for the cluster, cgroups, run dirs and data dir.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import glob
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from dataclasses import asdict, dataclass, field
from typing import Any

import pocketkube
from pocketkube.agent.cleanup import cleanup_node
from pocketkube.client.rest import APIClient, ClientConfig
from pocketkube.cluster import network, node_power
from pocketkube.server.control_plane import cluster_dns_ip
from pocketkube.server.supervisor import ChildProcess

DEFAULT_ROOT = "/var/lib/pocketkube/clusters"
STATE_FILE = "cluster.json"
PIDS_FILE = "pids.json"
SERVICE_CIDR = "10.43.0.0/16"


@dataclass
class NodeSpec:
    name: str
    netns: str
    veth: str
    ip: str
    master: bool


@dataclass
class ClusterState:
    name: str
    data_dir: str
    octet: int
    port: int
    cluster_cidr: str
    service_cidr: str = SERVICE_CIDR
    nodes: list[NodeSpec] = field(default_factory=list)
    supervisor_pid: int = 0
    server_args: list[str] = field(default_factory=list)  # passed through to `pocketkube server`
    agent_args: list[str] = field(default_factory=list)  # and to every `pocketkube agent`

    @property
    def bridge(self) -> str:
        return network.bridge_name(self.name)

    @property
    def server_ip(self) -> str:
        return f"172.31.{self.octet}.1"

    @property
    def server_dir(self) -> str:
        return os.path.join(self.data_dir, "server")

    @property
    def kubeconfig(self) -> str:
        return os.path.join(self.server_dir, "kubeconfig.yaml")

    @property
    def images_dir(self) -> str:
        """Tarballs every node imports at start (the agents' shared import dir)."""
        return os.path.join(self.data_dir, "nodes", "images")

    def node_dir(self, node: NodeSpec) -> str:
        return os.path.join(self.data_dir, "nodes", node.name)

    def hold_path(self, node: NodeSpec) -> str:
        """While this file exists the supervisor leaves the node's agent stopped (`stop-node`)."""
        return os.path.join(self.node_dir(node), "stopped")

    def save(self) -> None:
        os.makedirs(self.data_dir, exist_ok=True)
        tmp = os.path.join(self.data_dir, STATE_FILE + ".tmp")
        with open(tmp, "w") as f:
            json.dump(asdict(self), f, indent=1)
        os.replace(tmp, os.path.join(self.data_dir, STATE_FILE))

    @classmethod
    def load(cls, data_dir: str) -> ClusterState:
        with open(os.path.join(data_dir, STATE_FILE)) as f:
            raw = json.load(f)
        raw["nodes"] = [NodeSpec(**n) for n in raw.get("nodes") or []]
        return cls(**raw)


def default_data_dir(name: str) -> str:
    return os.path.join(DEFAULT_ROOT, name)


def load_state(name: str, data_dir: str) -> ClusterState:
    """The cluster recorded in `data_dir` (default: the one named `name`); ValueError if another."""
    state = ClusterState.load(os.path.abspath(data_dir or default_data_dir(name)))
    if state.name != name:
        raise ValueError(f"{state.data_dir} holds cluster {state.name!r}, not {name!r}")
    return state


def add_parser(sub: Any) -> None:
    """Register `cluster up|down|stop-node|start-node|supervise` on the top-level subparsers."""
    cluster = sub.add_parser("cluster", help="a multi-node cluster on this machine (nodes as network namespaces)")
    csub = cluster.add_subparsers(dest="cluster_command", required=True)
    up = csub.add_parser("up", help="create the switch, node namespaces, server and agents; wait until Ready")
    up.add_argument("--nodes", type=int, default=2, help="worker nodes besides the master (default 2)")
    up.add_argument("--name", default="pk", help="cluster name, [a-z][a-z0-9]{0,8} (default pk)")
    up.add_argument("--data-dir", default="", help=f"state, logs, kubeconfig (default {DEFAULT_ROOT}/<name>)")
    up.add_argument("--port", type=int, default=0,
                    help="API server port on the switch IP (default 6443, or a free one if that is taken)")
    up.add_argument("--cluster-cidr", default="10.42.0.0/16", help="pod network; a /24 per node (default %(default)s)")
    up.add_argument("--image", action="append", default=[], help="image tarball every node imports (repeatable)")
    up.add_argument("--timeout", type=float, default=180.0, help="seconds to wait for all nodes Ready")
    up.add_argument("--server-arg", action="append", default=[], metavar="ARG",
                    help="extra flag for the server, e.g. --server-arg=--node-monitor-grace-period=10 (repeatable)")
    up.add_argument("--agent-arg", action="append", default=[], metavar="ARG",
                    help="extra flag for every agent, e.g. --agent-arg=--lease-interval=2 (repeatable)")
    down = csub.add_parser("down", help="delete pods, stop every process, remove namespaces, links, state")
    down.add_argument("--name", default="pk", help="cluster name (default pk)")
    down.add_argument("--data-dir", default="", help=f"the cluster's data dir (default {DEFAULT_ROOT}/<name>)")
    sup = csub.add_parser("supervise", help=argparse.SUPPRESS)
    sup.add_argument("--data-dir", required=True)
    node_power.add_parsers(csub, DEFAULT_ROOT)


def main(args: argparse.Namespace) -> int:
    if args.cluster_command == "supervise":
        asyncio.run(supervise(args.data_dir))
        return 0
    if args.cluster_command in node_power.COMMANDS:
        return node_power.main(args, load_state)
    if not network.NAME_RE.match(args.name):
        print(f"pocketkube cluster: invalid name {args.name!r} (want [a-z][a-z0-9]{{0,8}})", file=sys.stderr)
        return 2
    data_dir = os.path.abspath(args.data_dir or default_data_dir(args.name))
    if os.geteuid() != 0:
        print("pocketkube cluster: needs root (namespaces, bridges, runc)", file=sys.stderr)
        return 2
    if args.cluster_command == "up":
        return up(args, data_dir)
    return down(args.name, data_dir)


# ---- up ----------------------------------------------------------------------------------------

def up(args: argparse.Namespace, data_dir: str) -> int:
    if not 1 <= args.nodes <= 200:
        print("pocketkube cluster up: --nodes must be within 1..200", file=sys.stderr)
        return 2
    if os.path.exists(os.path.join(data_dir, STATE_FILE)):
        print(f"pocketkube cluster up: {data_dir} already holds a cluster; run `pocketkube cluster down "
              f"--name {args.name} --data-dir {data_dir}` first", file=sys.stderr)
        return 1
    if network.cluster_links(args.name) or network.cluster_netns(args.name):
        print(f"pocketkube cluster up: links or namespaces of a cluster {args.name!r} already exist; "
              f"run `pocketkube cluster down --name {args.name}` first", file=sys.stderr)
        return 1
    try:
        network.check_cluster_cidr(args.cluster_cidr)
        octet = network.pick_switch_octet(args.name)
    except (network.ClusterNetworkError, ValueError) as e:
        print(f"pocketkube cluster up: {e}", file=sys.stderr)
        return 1
    state = ClusterState(name=args.name, data_dir=data_dir, octet=octet, port=args.port,
                         cluster_cidr=args.cluster_cidr, server_args=list(args.server_arg),
                         agent_args=list(args.agent_arg))
    state.nodes = [NodeSpec(name=network.netns_name(args.name, i), netns=network.netns_name(args.name, i),
                            veth=network.veth_name(args.name, i), ip=f"172.31.{octet}.{10 + i}", master=i == 0)
                   for i in range(args.nodes + 1)]
    state.save()
    try:
        network.create_switch(state.bridge, f"{state.server_ip}/24")
        for node in state.nodes:
            network.create_node(state.bridge, node.netns, node.veth, f"{node.ip}/24")
        network.route_cluster_cidr(state.cluster_cidr, state.nodes[0].ip, state.bridge)
    except network.ClusterNetworkError as e:
        print(f"pocketkube cluster up: {e}", file=sys.stderr)
        return 1
    if not args.port:
        state.port = free_port(state.server_ip)
        state.save()
    os.makedirs(state.images_dir, exist_ok=True)
    for path in args.image:
        shutil.copy(path, state.images_dir)
    log = open(os.path.join(data_dir, "supervisor.log"), "ab")
    proc = subprocess.Popen([sys.executable, "-m", "pocketkube", "cluster", "supervise", "--data-dir", data_dir],
                            stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
                            env=child_env(), cwd="/")
    log.close()
    state.supervisor_pid = proc.pid
    state.save()
    try:
        asyncio.run(wait_ready(state, proc, args.timeout))
    except (TimeoutError, RuntimeError) as e:
        print(f"pocketkube cluster up: {e}\n(logs in {data_dir}; clean up with `pocketkube cluster down "
              f"--name {args.name} --data-dir {data_dir}`)", file=sys.stderr)
        return 1
    print(f"pocketkube: cluster {args.name} is up: 1 control-plane node and {args.nodes} workers on "
          f"{state.bridge} (172.31.{octet}.0/24)")
    print(f"pocketkube: kubeconfig: {state.kubeconfig}")
    print(f"  KUBECONFIG={state.kubeconfig} kubectl get nodes")
    return 0


def free_port(ip: str) -> int:
    """6443 if nobody listens there on `ip` (or on the wildcard address), else a free port."""
    for port in (6443, 0):
        with socket.socket() as s:
            try:
                s.bind((ip, port))
            except OSError:
                continue
            return int(s.getsockname()[1])
    raise RuntimeError(f"no free port on {ip}")


def child_env() -> dict[str, str]:
    """The environment children run with: this very pocketkube source on PYTHONPATH."""
    src = os.path.dirname(os.path.dirname(os.path.abspath(pocketkube.__file__)))
    path = os.environ.get("PYTHONPATH", "")
    return {**os.environ, "PYTHONPATH": f"{src}:{path}" if path else src}


async def wait_ready(state: ClusterState, proc: subprocess.Popen[bytes], timeout: float) -> None:
    """Until every node of `state` is registered, has a podCIDR and is Ready."""
    deadline = time.monotonic() + timeout
    want = {n.name for n in state.nodes}
    client: APIClient | None = None
    last = "the API server never came up"
    try:
        while time.monotonic() < deadline:
            if proc.poll() is not None:
                raise RuntimeError(f"the cluster supervisor exited with {proc.returncode}")
            if client is None and os.path.exists(state.kubeconfig):
                with contextlib.suppress(Exception):
                    client = APIClient(ClientConfig.from_kubeconfig(state.kubeconfig, user_agent="pocketkube-cluster"))
            if client is not None:
                try:
                    nodes = (await client.core("nodes").list()).get("items") or []
                    ready = {n["metadata"]["name"] for n in nodes if (n.get("spec") or {}).get("podCIDR")
                             and any(c.get("type") == "Ready" and c.get("status") == "True"
                                     for c in (n.get("status") or {}).get("conditions") or [])}
                    if want <= ready:
                        return
                    last = f"nodes not Ready yet: {', '.join(sorted(want - ready))}"
                except Exception as e:
                    last = f"API server: {e}"
            await asyncio.sleep(0.5)
        raise TimeoutError(f"cluster not ready after {timeout:.0f}s: {last}")
    finally:
        if client is not None:
            await client.close()


# ---- supervise ---------------------------------------------------------------------------------

async def supervise(data_dir: str) -> None:
    """Run the server and every node's agent as restarted children until SIGTERM/SIGINT."""
    state = ClusterState.load(data_dir)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    py = [sys.executable, "-m", "pocketkube"]
    os.makedirs(state.server_dir, exist_ok=True)
    server = ChildProcess("server", [
        *py, "server", "--disable-agent", "--data-dir", state.server_dir, "--port", str(state.port),
        "--bind-address", state.server_ip, "--advertise-address", state.server_ip, "--tls-san", state.server_ip,
        "--cluster-cidr", state.cluster_cidr, *state.server_args], log_path=os.path.join(data_dir, "server.log"),
        env=child_env())
    agents: list[ChildProcess] = []
    token_file = os.path.join(state.server_dir, "token")
    for node in state.nodes:
        node_dir = state.node_dir(node)
        os.makedirs(node_dir, exist_ok=True)
        netns_path = os.path.join(network.NETNS_DIR, node.netns)
        agents.append(ChildProcess(f"agent-{node.name}", [
            "nsenter", f"--net={netns_path}", "--", *py, "agent",
            "--server", f"https://{state.server_ip}:{state.port}", "--token-file", token_file,
            "--data-dir", node_dir, "--node-name", node.name, "--node-ip", node.ip, "--node-netns", netns_path,
            "--cluster-cidr", state.cluster_cidr, "--service-cidr", state.service_cidr,
            *(["--control-plane", "--control-plane-taint"] if node.master else []), *state.agent_args],
            log_path=os.path.join(node_dir, "agent.log"), env=child_env(), hold_path=state.hold_path(node)))
    tasks: list[asyncio.Task[None]] = [asyncio.create_task(server.run(), name="server")]
    agents += dns_children(state, py)
    recorder = asyncio.create_task(_record_pids(data_dir, [server, *agents]), name="pids")
    try:
        for _ in range(6000):  # the server writes the join token once it serves
            if os.path.exists(token_file) or stop.is_set():
                break
            await asyncio.sleep(0.1)
        tasks += [asyncio.create_task(a.run(), name=a.name) for a in agents]
        await stop.wait()
    finally:
        for child in agents:  # agents first: they leave containers running, and are re-adoptable
            await child.stop()
        await server.stop(grace=10.0)
        recorder.cancel()
        for t in tasks:
            t.cancel()
        await asyncio.gather(recorder, *tasks, return_exceptions=True)


def dns_children(state: ClusterState, py: list[str]) -> list[ChildProcess]:
    """Cluster DNS on every node, on the DNS Service IP added to the node's own lo (as the
    single-node server does on the host): pods reach it without leaving their node."""
    return [ChildProcess(f"dns-{node.name}", [
        "nsenter", f"--net={os.path.join(network.NETNS_DIR, node.netns)}", "--", *py, "dns",
        "--kubeconfig", state.kubeconfig, "--listen", f"{cluster_dns_ip(state.service_cidr)}:53", "--bind-dev", "lo"],
        log_path=os.path.join(state.node_dir(node), "dns.log"), env=child_env()) for node in state.nodes]


async def _record_pids(data_dir: str, children: list[ChildProcess]) -> None:
    last: dict[str, int] = {}
    while True:
        now = {c.name: c.proc.pid for c in children if c.proc is not None and c.proc.returncode is None}
        if now != last:
            tmp = os.path.join(data_dir, PIDS_FILE + ".tmp")
            with open(tmp, "w") as f:
                json.dump(now, f)
            os.replace(tmp, os.path.join(data_dir, PIDS_FILE))
            last = now
        await asyncio.sleep(0.5)


# ---- down --------------------------------------------------------------------------------------

def down(name: str, data_dir: str) -> int:
    state: ClusterState | None = None
    with contextlib.suppress(OSError, ValueError, TypeError):
        state = ClusterState.load(data_dir)
    if state is not None and state.name != name:
        print(f"pocketkube cluster down: {data_dir} holds cluster {state.name!r}, not {name!r}", file=sys.stderr)
        return 1
    netns_names = sorted({*network.cluster_netns(name), *(n.netns for n in (state.nodes if state else []))})
    node_names = sorted({*netns_names, *(n.name for n in (state.nodes if state else []))})
    if state is not None and state.supervisor_pid and network.alive(state.supervisor_pid):
        for spec in state.nodes:  # stopped agents come back, so their kubelets tear their pods down
            with contextlib.suppress(FileNotFoundError):
                os.unlink(state.hold_path(spec))
        try:
            asyncio.run(drain(state))
        except Exception as e:
            print(f"pocketkube cluster down: could not delete pods first ({e}); stopping anyway", file=sys.stderr)
    # Every process of the cluster, by pid: the supervisor and its descendants (server, control
    # loops, agents), and whatever still runs in a node namespace (conmon monitors, plugins).
    inodes = {i for i in (network.netns_inode(n) for n in netns_names) if i is not None}
    pids: list[int] = []
    if state is not None and state.supervisor_pid and network.alive(state.supervisor_pid):
        pids = [state.supervisor_pid, *network.descendants(state.supervisor_pid)]
        network.signal_pids([state.supervisor_pid], signal.SIGTERM)
        network.wait_gone([state.supervisor_pid], 20.0)
    # The data dir is unique to this cluster: anything still running with it in its command line
    # (a server or agent orphaned by a killed supervisor, a conmon) is ours.
    mine = network.pids_with_arg(state.data_dir.rstrip("/") + "/") if state is not None and len(state.data_dir) > 4 else []
    network.terminate([*pids, *network.pids_in_netns(inodes), *mine], grace=5.0)
    if state is not None:
        # The agents' own records: containers in runc's state dir, conmon pid files, mounts, pod
        # network namespaces named in the CNI cache, the node's cgroups and run dir.
        for spec in state.nodes:
            with contextlib.suppress(Exception):
                cleanup_node(node_name=spec.name, data_dir=state.node_dir(spec))
    for node in node_names:
        network.remove_cgroups(node)
    network.terminate(network.pids_in_netns(inodes), grace=2.0)
    for link in network.cluster_links(name):
        if not link.endswith("sw"):
            network.delete_link(link)
    for ns in [*netns_names, *leftover_pod_netns(data_dir)]:
        network.delete_netns(ns)
    network.delete_link(network.bridge_name(name))  # the host route to the cluster CIDR goes with it
    network.delete_nft_tables(name)
    for node in node_names:
        shutil.rmtree(os.path.join("/run/pocketkube", node), ignore_errors=True)
    if state is not None or os.path.exists(os.path.join(data_dir, STATE_FILE)):
        network.unmount_under(data_dir)
        shutil.rmtree(data_dir, ignore_errors=True)
    print(f"pocketkube: cluster {name} is down")
    return 0


def leftover_pod_netns(data_dir: str) -> list[str]:
    """Pod namespaces still recorded in the nodes' CNI caches (pods whose kubelet could not tear
    them down: a drain that failed, an agent that was gone)."""
    out = []
    for path in glob.glob(os.path.join(data_dir, "nodes", "*", "cni", "cache", "**", "*"), recursive=True):
        with contextlib.suppress(OSError, ValueError, AttributeError), open(path) as f:
            netns = str(json.load(f).get("netns") or "")
            if os.path.dirname(netns) == network.NETNS_DIR:
                out.append(os.path.basename(netns))
    return sorted(set(out))


async def drain(state: ClusterState, timeout: float = 90.0) -> None:
    """Cordon every node, delete workload controllers' pods' owners and all pods, and wait until no
    pod is bound to a node any more (each kubelet has then torn its sandboxes down)."""
    client = APIClient(ClientConfig.from_kubeconfig(state.kubeconfig, user_agent="pocketkube-cluster"))
    try:
        nodes = client.core("nodes")
        for node in (await nodes.list()).get("items") or []:
            with contextlib.suppress(Exception):
                await nodes.patch(node["metadata"]["name"], {"spec": {"unschedulable": True}})
        with contextlib.suppress(Exception):
            daemonsets = client.resource("apps", "v1", "daemonsets")
            for ds in (await daemonsets.list()).get("items") or []:
                await daemonsets.delete(ds["metadata"]["name"], ds["metadata"]["namespace"])
        pods = client.core("pods")
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            bound = [p for p in (await pods.list()).get("items") or [] if (p.get("spec") or {}).get("nodeName")]
            if not bound:
                return
            for p in bound:
                if not (p.get("metadata") or {}).get("deletionTimestamp"):
                    with contextlib.suppress(Exception):
                        await pods.delete(p["metadata"]["name"], p["metadata"]["namespace"])
            await asyncio.sleep(0.5)
        raise TimeoutError("pods still bound to nodes after deletion")
    finally:
        await client.close()
