"""Run the control plane in this process until a signal arrives.

Readiness is passed along as in k3s: the datastore opens, then the API server serves; control
loops (controllers, scheduler) and the node agent attach as they are built, each talking to the
API server through the API only.
"""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import logging
import os
import signal
from dataclasses import dataclass, field

from pocketkube.apiserver.server import APIServer, APIServerConfig
from pocketkube.controllers.service_lb_pool import parse_pool
from pocketkube.server.supervisor import ChildProcess, pocketkube_argv

log = logging.getLogger(__name__)


def cluster_dns_ip(service_cidr: str) -> str:
    """The cluster DNS Service IP: the 10th address of the service CIDR (10.43.0.10 by default)."""
    return str(ipaddress.ip_network(service_cidr).network_address + 10)


@dataclass
class ServerConfig:
    apiserver: APIServerConfig = field(default_factory=APIServerConfig)
    disable_agent: bool = False
    disable_controllers: bool = False
    control_plane_taint: bool = False
    node_monitor_grace_period: float = 40.0
    cluster_cidr: str = "10.42.0.0/16"
    service_lb_pool: list[str] = field(default_factory=list)

    def validate(self) -> None:
        self.apiserver.validate()
        parse_pool(self.service_lb_pool)


async def run(config: ServerConfig, *, ready: asyncio.Event | None = None) -> None:
    config.validate()
    api = APIServer(config.apiserver)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        with contextlib.suppress(NotImplementedError, RuntimeError):
            loop.add_signal_handler(sig, stop.set)
    await api.start()
    log.info("pocketkube API server listening on %s; kubeconfig: %s/kubeconfig.yaml", api.server_url(),
             config.apiserver.data_dir)
    print(f"pocketkube: API server ready at {api.server_url()}", flush=True)
    print(f"pocketkube: admin kubeconfig written to {config.apiserver.data_dir}/kubeconfig.yaml", flush=True)
    children: list[ChildProcess] = []
    if not config.disable_controllers:
        kubeconfig = os.path.join(config.apiserver.data_dir, "kubeconfig.yaml")
        children.append(ChildProcess(
            "controller-manager", pocketkube_argv("controller-manager", "--kubeconfig", kubeconfig,
                                                  "--node-monitor-grace-period", str(config.node_monitor_grace_period),
                                                  "--cluster-cidr", config.cluster_cidr,
                                                  *(a for cidr in config.service_lb_pool
                                                    for a in ("--service-lb-pool", cidr))),
            log_path=os.path.join(config.apiserver.data_dir, "controller-manager.log")))
        children.append(ChildProcess(
            "scheduler", pocketkube_argv("scheduler", "--kubeconfig", kubeconfig),
            log_path=os.path.join(config.apiserver.data_dir, "scheduler.log")))
    if not config.disable_agent:
        data_dir = config.apiserver.data_dir
        dns_ip = cluster_dns_ip(config.apiserver.service_cidr)
        children.append(ChildProcess(  # cluster DNS on the DNS Service IP itself (pocketkube/dns/run.py)
            "dns", pocketkube_argv("dns", "--kubeconfig", os.path.join(data_dir, "kubeconfig.yaml"),
                                   "--listen", f"{dns_ip}:53", "--bind-dev", "lo"),
            log_path=os.path.join(data_dir, "dns.log")))
        children.append(ChildProcess(
            "agent", pocketkube_argv("agent", "--server", f"https://127.0.0.1:{api.port}", "--token-file",
                                     os.path.join(data_dir, "token"), "--data-dir", os.path.join(data_dir, "agent"),
                                     "--node-ip", config.apiserver.advertise_address, "--control-plane",
                                     "--cluster-cidr", config.cluster_cidr, "--service-cidr", config.apiserver.service_cidr,
                                     "--cluster-dns", dns_ip,
                                     *(["--control-plane-taint"] if config.control_plane_taint else [])),
            log_path=os.path.join(data_dir, "agent.log")))
    if ready is not None:
        ready.set()
    try:
        async with asyncio.TaskGroup() as tg:
            for child in children:
                tg.create_task(child.run(), name=child.name)
            await stop.wait()
            for child in children:
                await child.stop()
            raise _Stop
    except* _Stop:
        pass
    finally:
        for child in children:
            await child.stop()
        await api.stop()


class _Stop(Exception):
    """Ends the supervisor's task group on a signal."""
