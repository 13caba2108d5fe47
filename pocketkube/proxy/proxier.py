"""The proxy's control loop: watch Services, EndpointSlices and this Node; keep the table in step.

Like kube-proxy's `syncRunner`: informer handlers only mark the state dirty; one loop waits a short
debounce (20 ms, so a burst of slice updates becomes one sync), renders the whole table from the
informer caches (pure, nftables_render.py) and loads it in one atomic transaction only when the
text changed. A failed load is retried with backoff. On exit the table and the service route are
removed, so a stopped proxy leaves nothing behind.
"""

from __future__ import annotations

import asyncio
import collections
import ipaddress
import logging
import time
from dataclasses import dataclass, field

from pocketkube.client.informer import Informer
from pocketkube.client.rest import APIClient, ClientConfig
from pocketkube.proxy import nftables_apply
from pocketkube.proxy.model import service_ports
from pocketkube.proxy.nftables_diff import incremental_script
from pocketkube.proxy.nftables_render import NodeInfo, Ruleset, render_ruleset

log = logging.getLogger(__name__)


def table_name(node_name: str) -> str:
    """The node's own nftables table: `pocketkube-<node name>`."""
    return "pocketkube-" + "".join(c if c.isalnum() or c in "-_" else "-" for c in node_name)


@dataclass
class ProxyConfig:
    node_name: str
    bridge: str = "cbr0"
    service_cidr: str = "10.43.0.0/16"
    cluster_cidr: str = ""  # pod network; set when pods of other nodes are reached through an uplink
    table: str = ""  # default: pocketkube-<node name>
    kubeconfig: str = ""
    client_config: ClientConfig | None = None
    netns: str | None = None
    debounce: float = 0.02
    cleanup_on_exit: bool = True

    def validate(self) -> None:
        if not self.node_name:
            raise ValueError("proxy: node name must not be empty")
        ipaddress.ip_network(self.service_cidr)
        if self.cluster_cidr:
            ipaddress.ip_network(self.cluster_cidr)
        if not self.table:
            self.table = table_name(self.node_name)
        if len(self.table) > 64:
            raise ValueError("proxy: table name too long")


@dataclass
class SyncMetrics:
    """sync_proxy_rules_duration_seconds, in spirit: counts and recent durations."""

    syncs: int = 0
    applies: int = 0
    incremental: int = 0  # applies done as a diff rather than a whole-table reload
    failures: int = 0
    last_duration: float = 0.0
    durations: collections.deque[float] = field(default_factory=lambda: collections.deque(maxlen=256))


class Proxier:
    def __init__(self, client: APIClient, config: ProxyConfig) -> None:
        config.validate()
        self.client = client
        self.config = config
        self.services = Informer(client.core("services"))
        self.slices = Informer(client.resource("discovery.k8s.io", "v1", "endpointslices"))
        self.nodes = Informer(client.core("nodes"), field_selector=f"metadata.name={config.node_name}")
        self.metrics = SyncMetrics()
        self.applied: Ruleset | None = None  # the table last loaded
        self.synced_at = 0.0  # monotonic time of the last successful load
        self._dirty = asyncio.Event()
        self._route_done = False
        for inf in (self.services, self.slices, self.nodes):
            inf.add_handler(lambda old, new: self._dirty.set())

    def node_info(self, gateway: str | None) -> NodeInfo:
        ips: list[str] = []
        node = self.nodes.get(self.config.node_name)
        for addr in ((node or {}).get("status") or {}).get("addresses") or []:
            if addr.get("type") in ("InternalIP", "ExternalIP"):
                try:
                    ip = ipaddress.ip_address(addr.get("address", ""))
                except ValueError:
                    continue
                if ip.version == 4 and not ip.is_loopback and str(ip) not in ips:
                    ips.append(str(ip))
        if gateway and gateway not in ips:
            ips.append(gateway)
        return NodeInfo(table=self.config.table, node_name=self.config.node_name, bridge=self.config.bridge,
                        nodeport_ips=sorted(ips, key=ipaddress.ip_address), cluster_cidr=self.config.cluster_cidr)

    def render(self, gateway: str | None) -> Ruleset:
        return render_ruleset(service_ports(self.services.list(), self.slices.list()), self.node_info(gateway))

    async def sync(self) -> None:
        """Render from the caches and load if changed (the route first, before any DNAT)."""
        start = time.perf_counter()
        self.metrics.syncs += 1
        netns = self.config.netns
        gateway = await nftables_apply.bridge_gateway(self.config.bridge, netns=netns)
        if gateway is None:
            raise RuntimeError(f"bridge {self.config.bridge} has no address yet")
        if not self._route_done:
            await nftables_apply.ensure_service_route(self.config.service_cidr, self.config.bridge, gateway,
                                                      netns=netns)
            self._route_done = True
        ruleset = self.render(gateway)
        diff = None if self.applied is None else incremental_script(self.applied, ruleset)
        if diff != "":
            try:
                if diff is None:
                    raise nftables_apply.ApplyError("full reload")
                await nftables_apply.apply_script(diff, netns=netns)
                self.metrics.incremental += 1
            except nftables_apply.ApplyError as e:
                if diff is not None:  # the table was changed behind our back: replace it whole
                    log.info("incremental update failed (%s); reloading the table", e)
                self.applied = None
                await nftables_apply.apply_script(ruleset.script(), netns=netns)
            self.applied = ruleset
            self.metrics.applies += 1
            self.synced_at = time.monotonic()
        self.metrics.last_duration = time.perf_counter() - start
        self.metrics.durations.append(self.metrics.last_duration)
        log.debug("proxy sync took %.1f ms", self.metrics.last_duration * 1000)

    async def run(self, *, ready: asyncio.Event | None = None) -> None:
        try:
            async with asyncio.TaskGroup() as tg:
                for inf in (self.services, self.slices, self.nodes):
                    inf.start(tg)
                await asyncio.gather(self.services.synced.wait(), self.slices.synced.wait(),
                                     self.nodes.synced.wait())
                self._dirty.set()
                backoff = 0.1
                while True:
                    await self._dirty.wait()
                    await asyncio.sleep(self.config.debounce)
                    self._dirty.clear()
                    try:
                        await self.sync()
                        backoff = 0.1
                        if ready is not None:
                            ready.set()
                    except (nftables_apply.ApplyError, RuntimeError, OSError) as e:
                        self.metrics.failures += 1
                        self._route_done = False
                        log.warning("proxy sync failed (retrying in %.1fs): %s", backoff, e)
                        await asyncio.sleep(backoff)
                        backoff = min(backoff * 2, 5.0)
                        self._dirty.set()
        finally:
            if self.config.cleanup_on_exit:
                await asyncio.shield(self.cleanup())

    async def cleanup(self) -> None:
        netns = self.config.netns
        try:
            await nftables_apply.delete_table(self.config.table, netns=netns)
        except nftables_apply.ApplyError as e:
            log.warning("could not delete table %s: %s", self.config.table, e)
        await nftables_apply.delete_service_route(self.config.service_cidr, self.config.bridge, netns=netns)


async def run(config: ProxyConfig) -> None:
    """`pocketkube proxy`: the loop in its own process, until SIGTERM/SIGINT."""
    import contextlib
    import signal

    config.validate()
    client = APIClient(config.client_config or ClientConfig.from_kubeconfig(config.kubeconfig,
                                                                             user_agent="pocketkube-proxy"))
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        with contextlib.suppress(NotImplementedError, RuntimeError):
            loop.add_signal_handler(sig, stop.set)
    try:
        proxier = Proxier(client, config)
        async with asyncio.TaskGroup() as tg:
            task = tg.create_task(proxier.run(), name="proxier")
            waiter = tg.create_task(stop.wait(), name="proxy-stop")
            await asyncio.wait({task, waiter}, return_when=asyncio.FIRST_COMPLETED)
            task.cancel()
            waiter.cancel()
    finally:
        await client.close()
