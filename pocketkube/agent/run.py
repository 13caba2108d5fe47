"""`pocketkube agent`: one node. Joins, registers, keeps its Lease and status, runs its pods."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import signal
import socket
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from pocketkube.agent.join import client_config
from pocketkube.client.rest import APIClient, wait_until_ready
from pocketkube.hollow.fleet import Fleet, FleetConfig
from pocketkube.kubelet.lease import NodeLease
from pocketkube.kubelet.node_info import NodeFacts, runc_version
from pocketkube.kubelet.node_status import CONTROL_PLANE_TAINT, NodeConfig, NodeStatus
from pocketkube.proxy.proxier import Proxier, ProxyConfig

if TYPE_CHECKING:
    from pocketkube.kubelet.kubelet import Kubelet
    from pocketkube.kubelet.runtime_runc import RuncRuntimeService
    from pocketkube.kubelet.server import KubeletServer

log = logging.getLogger(__name__)


@dataclass
class AgentConfig:
    server: str
    token: str
    data_dir: str = "/var/lib/pocketkube/agent"
    node_name: str = field(default_factory=socket.gethostname)
    node_ip: str = "127.0.0.1"
    control_plane: bool = False
    control_plane_taint: bool = False
    lease_interval: float = 10.0
    status_interval: float = 10.0
    labels: dict[str, str] = field(default_factory=dict)
    run_pods: bool = True  # False: register and heartbeat only (no container runtime)
    bridge: str = "cbr0"
    node_netns: str | None = None
    cluster_cidr: str = "10.42.0.0/16"
    service_cidr: str = "10.43.0.0/16"
    cluster_dns: str = "10.43.0.10"
    insecure_registries: list[str] = field(default_factory=list)
    import_dirs: list[str] = field(default_factory=list)
    kubelet_port: int = 10250

    def validate(self) -> None:
        if not self.server.startswith(("https://", "http://")):
            raise ValueError("--server must be an https:// URL")
        if not self.token:
            raise ValueError("--token (or --token-file) is required")
        if not self.node_name:
            raise ValueError("--node-name must not be empty")


def _stop_on_signals() -> asyncio.Event:
    """An event set by SIGTERM or SIGINT."""
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        with contextlib.suppress(NotImplementedError, RuntimeError):
            loop.add_signal_handler(sig, stop.set)
    return stop


async def run(config: AgentConfig) -> None:
    config.validate()
    os.makedirs(config.data_dir, exist_ok=True)
    client = APIClient(await client_config(config.server, config.token, user_agent="pocketkube-agent"))
    stop = _stop_on_signals()
    try:
        await wait_until_ready(client, timeout=60)
        node_config = NodeConfig(
            name=config.node_name, internal_ip=config.node_ip, facts=NodeFacts(hostname=config.node_name),
            labels=config.labels, control_plane=config.control_plane,
            taints=[dict(CONTROL_PLANE_TAINT)] if config.control_plane_taint else [],
            runtime_version=runc_version(), status_interval=config.status_interval,
            kubelet_port=config.kubelet_port)
        status = NodeStatus(client, node_config)
        node = await status.register()
        lease = NodeLease(client, config.node_name, interval=config.lease_interval)
        lease.owner_uid = node["metadata"].get("uid")
        log.info("node %s registered", config.node_name)
        print(f"pocketkube agent: node {config.node_name} registered", flush=True)
        async with asyncio.TaskGroup() as tg:
            tasks = [tg.create_task(lease.run(), name="lease"), tg.create_task(status.run(), name="node-status")]
            if config.run_pods:
                tasks.append(tg.create_task(_run_kubelet(client, config), name="kubelet"))
                tasks.append(tg.create_task(Proxier(client, ProxyConfig(
                    node_name=config.node_name, bridge=config.bridge, service_cidr=config.service_cidr,
                    cluster_cidr=config.cluster_cidr, netns=config.node_netns)).run(), name="proxy"))
            if config.run_pods and config.node_netns:  # a node in a netns (cluster up): route to other nodes' pods
                from pocketkube.kubelet.node_routes import node_routes
                tasks.append(tg.create_task(node_routes(client, config.node_name), name="node-routes"))
            await stop.wait()
            for t in tasks:
                t.cancel()
    finally:
        await client.close()


async def run_hollow(server: str, token: str, fleet_config: FleetConfig) -> None:
    """`pocketkube agent --hollow --count N`: N simulated nodes until a signal arrives."""
    client = APIClient(await client_config(server, token, user_agent="pocketkube-hollow"))
    stop = _stop_on_signals()
    try:
        await wait_until_ready(client, timeout=60)
        fleet = Fleet(client, fleet_config)
        async with asyncio.TaskGroup() as tg:
            task = tg.create_task(fleet.run(), name="hollow-fleet")
            waiter = tg.create_task(stop.wait(), name="hollow-stop")
            await asyncio.wait({task, waiter}, return_when=asyncio.FIRST_COMPLETED)
            task.cancel()
            waiter.cancel()
    finally:
        await client.close()


async def _run_kubelet(client: APIClient, config: AgentConfig) -> None:
    """Run the kubelet; if it fails (say the bridge cannot be made yet), log and try again."""
    backoff = 1.0
    while True:
        try:
            await _kubelet_once(client, config)
            return
        except asyncio.CancelledError:
            raise
        except Exception:
            log.exception("kubelet failed; restarting in %.0fs", backoff)
            await asyncio.sleep(backoff)
            backoff = min(backoff * 2, 30.0)


async def _kubelet_once(client: APIClient, config: AgentConfig) -> None:
    from pocketkube.agent.node_runtime import NodeRuntimeConfig, build
    from pocketkube.kubelet.kubelet import Kubelet, KubeletConfig
    from pocketkube.kubelet.pod_files import DNSSettings

    runtime = await build(client, NodeRuntimeConfig(
        node_name=config.node_name, data_dir=config.data_dir, node_ip=config.node_ip, bridge=config.bridge,
        cluster_cidr=config.cluster_cidr, service_cidr=config.service_cidr, node_netns=config.node_netns,
        insecure_registries=config.insecure_registries, import_dirs=config.import_dirs))
    kubelet = Kubelet(client, runtime, KubeletConfig(node_name=config.node_name, data_dir=config.data_dir,
                                                     node_ip=config.node_ip,
                                                     dns=DNSSettings(cluster_dns=config.cluster_dns)))
    server = _kubelet_server(client, config, kubelet, runtime)
    try:
        await server.start()
    except OSError as e:  # pods still run; only logs/exec/port-forward are unavailable
        log.error("kubelet streaming server cannot listen on %s:%d: %s", config.node_ip, config.kubelet_port, e)
    print(f"pocketkube agent: kubelet running pods of node {config.node_name}", flush=True)
    try:
        await kubelet.run()
    finally:
        await server.stop()


def _kubelet_server(client: APIClient, config: AgentConfig, kubelet: Kubelet, runtime: RuncRuntimeService,
                    ) -> KubeletServer:
    """The streaming server (logs, exec, attach, port-forward) the API server proxies to."""
    from pocketkube.kubelet.server import KubeletServer, KubeletServerConfig

    containers = runtime.runtime

    def exited(cid: str) -> bool:
        return containers.exit_status(cid) is not None or not os.path.isdir(containers.container_dir(cid))

    return KubeletServer(
        KubeletServerConfig(node_ip=config.node_ip, port=config.kubelet_port, data_dir=config.data_dir,
                            ca_pem=client.config.ca_pem or b"", node_name=config.node_name,
                            netns=config.node_netns),
        pods=kubelet.informer.get, records=kubelet.records, exec_fn=containers.exec, exited=exited,
        exit_code=containers.exit_code, attach_socket=containers.attach_socket)
