"""`pocketkube dns`: the cluster DNS process — watches the API, serves the zone, registers itself.

Where it runs (the design, kept simple): the server supervises it when it runs a node agent, as
`pocketkube dns --kubeconfig K --listen 10.43.0.10:53 --bind-dev lo`. It listens on the DNS
Service IP itself, added as a /32 to `--bind-dev` (and removed on exit), and keeps the `kube-dns`
Service (kube-system, that ClusterIP, ports 53/UDP and 53/TCP, no selector) plus an EndpointSlice
`kube-dns-pocketkube` whose one endpoint is that same address. The proxy therefore renders the
usual rules for it — a DNAT of 10.43.0.10:53 to 10.43.0.10:53, a no-op — and pods reach the DNS
through the route of the service CIDR like any Service; host tools (`dig @10.43.0.10`) reach it on
`lo`. No pod, image or node IP is needed, and nothing listens on a real interface.

Informers on Services, EndpointSlices and Pods mark the zone dirty; after a 20 ms debounce it is
rebuilt and the answer cache is emptied.
"""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import logging
import signal
from dataclasses import dataclass
from typing import Any

from pocketkube.api import errors
from pocketkube.client.informer import Informer
from pocketkube.client.rest import APIClient, ClientConfig
from pocketkube.dns.records import build_zone
from pocketkube.dns.server import DNSServer, serve

log = logging.getLogger(__name__)
MANAGED_BY = "pocketkube-dns"


@dataclass
class DNSConfig:
    kubeconfig: str = ""
    client_config: ClientConfig | None = None
    listen: str = "10.43.0.10:53"
    bind_dev: str = ""  # add the listen IP as a /32 here (e.g. lo) when it is not local yet
    domain: str = "cluster.local"
    upstream: str = ""  # HOST[:PORT]; default: the first nameserver of /etc/resolv.conf
    register: bool = True  # keep the kube-dns Service and EndpointSlice
    debounce: float = 0.02

    def address(self) -> tuple[str, int]:
        host, _, port = self.listen.rpartition(":")
        ipaddress.ip_address(host)
        return host, int(port or 53)

    def upstream_address(self) -> tuple[str, int] | None:
        if self.upstream:
            host, sep, port = self.upstream.rpartition(":")
            return (host, int(port)) if sep else (self.upstream, 53)
        own = self.address()[0]
        try:
            with open("/etc/resolv.conf") as f:
                for line in f:
                    parts = line.split()
                    if len(parts) >= 2 and parts[0] == "nameserver" and parts[1] != own:
                        return parts[1], 53
        except OSError:
            pass
        return None

    def validate(self) -> None:
        if not self.kubeconfig and self.client_config is None:
            raise ValueError("dns: a kubeconfig is required")
        self.address()


class ClusterDNS:
    """Informers → zone → DNSServer."""

    def __init__(self, client: APIClient, config: DNSConfig) -> None:
        self.client = client
        self.config = config
        self.services = Informer(client.core("services"))
        self.slices = Informer(client.resource("discovery.k8s.io", "v1", "endpointslices"))
        self.pods = Informer(client.core("pods"))
        self.server = DNSServer(build_zone([], [], [], config.domain), upstream=config.upstream_address())
        self._dirty = asyncio.Event()
        for inf in (self.services, self.slices, self.pods):
            inf.add_handler(lambda old, new: self._dirty.set())

    def rebuild(self) -> None:
        self.server.set_zone(build_zone(self.services.list(), self.slices.list(), self.pods.list(),
                                        self.config.domain))

    async def run(self, *, ready: asyncio.Event | None = None) -> None:
        host, port = self.config.address()
        async with asyncio.TaskGroup() as tg:
            for inf in (self.services, self.slices, self.pods):
                inf.start(tg)
            await asyncio.gather(self.services.synced.wait(), self.slices.synced.wait(), self.pods.synced.wait())
            self.rebuild()
            listening = asyncio.Event()
            tg.create_task(serve(self.server, host, port, ready=listening), name="dns-serve")
            await listening.wait()
            if self.config.register:
                await register_kube_dns(self.client, host, port)
            if ready is not None:
                ready.set()
            while True:
                await self._dirty.wait()
                await asyncio.sleep(self.config.debounce)
                self._dirty.clear()
                self.rebuild()


async def register_kube_dns(client: APIClient, ip: str, port: int) -> None:
    """Create (or fix) kube-system/kube-dns at `ip` and its EndpointSlice pointing at `ip` too."""
    services = client.core("services")
    svc_body = {"apiVersion": "v1", "kind": "Service",
                "metadata": {"name": "kube-dns", "namespace": "kube-system",
                             "labels": {"k8s-app": "kube-dns", "kubernetes.io/name": "CoreDNS"}},
                "spec": {"type": "ClusterIP", "clusterIP": ip,
                         "ports": [{"name": "dns", "port": port, "protocol": "UDP", "targetPort": port},
                                   {"name": "dns-tcp", "port": port, "protocol": "TCP", "targetPort": port}]}}
    try:
        svc = await services.create(svc_body, "kube-system", field_manager=MANAGED_BY)
    except errors.StatusError as e:
        # Several DNS processes (one per node of a `cluster up` cluster) race to create it: the
        # loser hears AlreadyExists, or 422 "already allocated" for the IP, checked first.
        if not isinstance(e, errors.AlreadyExists) and e.code != 422:
            raise
        svc = await services.get("kube-dns", "kube-system")
    if (svc.get("spec") or {}).get("clusterIP") != ip:
        log.warning("kube-system/kube-dns has ClusterIP %s, not %s", svc["spec"].get("clusterIP"), ip)
    slices = client.resource("discovery.k8s.io", "v1", "endpointslices")
    body: dict[str, Any] = {"apiVersion": "discovery.k8s.io/v1", "kind": "EndpointSlice", "addressType": "IPv4",
            "metadata": {"name": "kube-dns-pocketkube", "namespace": "kube-system",
                         "labels": {"kubernetes.io/service-name": "kube-dns",
                                    "endpointslice.kubernetes.io/managed-by": MANAGED_BY},
                         "ownerReferences": [{"apiVersion": "v1", "kind": "Service", "name": "kube-dns",
                                              "uid": svc["metadata"]["uid"]}]},
            "endpoints": [{"addresses": [ip], "conditions": {"ready": True, "serving": True, "terminating": False}}],
            "ports": [{"name": "dns", "port": port, "protocol": "UDP"},
                      {"name": "dns-tcp", "port": port, "protocol": "TCP"}]}
    try:
        await slices.create(body, "kube-system", field_manager=MANAGED_BY)
    except errors.AlreadyExists:
        current = await slices.get("kube-dns-pocketkube", "kube-system")
        body["metadata"]["resourceVersion"] = current["metadata"]["resourceVersion"]
        with contextlib.suppress(errors.Conflict):  # another node's DNS wrote the same body first
            await slices.update(body)


async def _ip(*args: str) -> int:
    proc = await asyncio.create_subprocess_exec("ip", *args, stdout=asyncio.subprocess.DEVNULL,
                                                stderr=asyncio.subprocess.DEVNULL)
    return await proc.wait()


async def run(config: DNSConfig) -> None:
    """The process: bind the address, serve until SIGTERM/SIGINT, then remove what it added."""
    config.validate()
    host, _ = config.address()
    added = bool(config.bind_dev) and await _ip("addr", "add", f"{host}/32", "dev", config.bind_dev) == 0
    client = APIClient(config.client_config or ClientConfig.from_kubeconfig(config.kubeconfig,
                                                                             user_agent="pocketkube-dns"))
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        with contextlib.suppress(NotImplementedError, RuntimeError):
            loop.add_signal_handler(sig, stop.set)
    try:
        dns = ClusterDNS(client, config)
        ready = asyncio.Event()
        async with asyncio.TaskGroup() as tg:
            task = tg.create_task(dns.run(ready=ready), name="cluster-dns")
            waiter = tg.create_task(stop.wait(), name="dns-stop")
            announcer = tg.create_task(ready.wait(), name="dns-ready")
            announcer.add_done_callback(lambda _: print(f"pocketkube dns: serving on {config.listen}", flush=True))
            await asyncio.wait({task, waiter}, return_when=asyncio.FIRST_COMPLETED)
            for t in (task, waiter, announcer):
                t.cancel()
    finally:
        await client.close()
        if added:
            await _ip("addr", "del", f"{host}/32", "dev", config.bind_dev)
