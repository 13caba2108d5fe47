"""The proxy's control loop: watch Services, EndpointSlices and this Node; keep the table in step.

Like kube-proxy's nftables `syncProxyRules`: informer handlers only note WHICH Services changed
(a slice counts for its Service) and wake the loop. A sync after a quiet spell starts at once; one
right after another waits out `min_sync_interval` (kube-proxy's minSyncPeriod), so a burst of
events becomes one sync. A partial sync re-renders only the changed Services and sends their diff
(nftables_diff.TableState) in one atomic `nft -f`, so its cost does not grow with the number of
Services. A full sync — the first, after the node's addresses or bridge change, after a failure,
and every `full_sync_period` (kube-proxy: one hour) — renders everything and replaces the whole
table atomically. On exit the table and the service route are removed.
"""

from __future__ import annotations

import asyncio
import collections
import gc
import ipaddress
import logging
import time
from dataclasses import dataclass, field

from pocketkube.client.informer import Informer, Obj, object_key
from pocketkube.client.rest import APIClient, ClientConfig
from pocketkube.proxy import nftables_apply
from pocketkube.proxy.model import ports_of_service, service_id, slice_service_id, slices_by_service
from pocketkube.proxy.nftables_diff import TableState
from pocketkube.proxy.nftables_render import Fragment, NodeInfo, Ruleset, base_chains, render_fragment

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
    min_sync_interval: float = 0.02  # seconds between the end of a sync and the start of the next
    full_sync_period: float = 3600.0
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
        if self.min_sync_interval < 0 or self.full_sync_period <= 0:
            raise ValueError("proxy: sync intervals must be positive")


@dataclass
class SyncMetrics:
    """sync_proxy_rules_duration_seconds, in spirit: counts and recent durations."""

    syncs: int = 0
    applies: int = 0
    incremental: int = 0  # applies done as a diff of the changed Services
    full: int = 0  # whole-table loads
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
        self.state: TableState | None = None  # the table last loaded, per Service
        self.synced_at = 0.0  # monotonic time of the last successful load
        self.loaded = asyncio.Event()  # set after every successful load; waiters clear it (tests, bench)
        self._node: NodeInfo | None = None  # what the loaded table was rendered for
        self._gateway: str | None = None
        self._changed: set[str] = set()  # Service ids to re-render at the next partial sync
        self._slice_keys: dict[str, set[str]] = {}  # Service id → keys of its EndpointSlices
        self._full = True
        self._last_full = 0.0
        self._dirty = asyncio.Event()
        self._route_done = False
        self.services.add_handler(self._on_service)
        self.slices.add_handler(self._on_slice)
        self.nodes.add_handler(lambda old, new: self._dirty.set())  # node_info() is compared at sync

    def _on_service(self, old: Obj | None, new: Obj | None) -> None:
        obj = new if new is not None else old
        if obj is not None:
            self._changed.add(service_id(obj))
            self._dirty.set()

    def _on_slice(self, old: Obj | None, new: Obj | None) -> None:
        for obj, present in ((old, False), (new, True)):
            sid = slice_service_id(obj) if obj is not None else ""
            if obj is None or not sid:
                continue
            keys = self._slice_keys.setdefault(sid, set())
            (keys.add if present else keys.discard)(object_key(obj))
            self._changed.add(sid)
        self._dirty.set()

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

    def ruleset(self) -> Ruleset | None:
        """The table as last loaded (None before the first load)."""
        return self.state.ruleset() if self.state is not None else None

    def _fragments(self, sid: str, node: NodeInfo) -> list[Fragment]:
        svc = self.services.get(sid)
        if svc is None:
            return []
        slices = [s for k in sorted(self._slice_keys.get(sid, ())) if (s := self.slices.get(k)) is not None]
        return [render_fragment(sp, node) for sp in ports_of_service(svc, slices)]

    async def sync(self) -> None:
        """Load what changed since the last sync (the route first, before any DNAT)."""
        start = time.perf_counter()
        self.metrics.syncs += 1
        netns = self.config.netns
        if self._gateway is None or self._full:
            self._gateway = await nftables_apply.bridge_gateway(self.config.bridge, netns=netns)
            if self._gateway is None:
                raise RuntimeError(f"bridge {self.config.bridge} has no address yet")
        if not self._route_done:
            await nftables_apply.ensure_service_route(self.config.service_cidr, self.config.bridge, self._gateway,
                                                      netns=netns)
            self._route_done = True
        node = self.node_info(self._gateway)
        full = (self.state is None or self._full or node != self._node
                or time.monotonic() - self._last_full >= self.config.full_sync_period)
        if not full:
            full = not await self._partial_sync(node)
        if full:
            await self._full_sync(node)
        self.metrics.last_duration = time.perf_counter() - start
        self.metrics.durations.append(self.metrics.last_duration)
        log.debug("proxy sync took %.1f ms", self.metrics.last_duration * 1000)

    async def _partial_sync(self, node: NodeInfo) -> bool:
        """Send the diff of the changed Services; False when a full sync must follow."""
        assert self.state is not None
        changed, self._changed = self._changed, set()
        script = self.state.update({sid: self._fragments(sid, node) for sid in sorted(changed)})
        if script is None:
            return False
        if script:
            try:
                await nftables_apply.apply_script(script, netns=self.config.netns)
            except nftables_apply.ApplyError as e:  # the table was changed behind our back
                log.info("incremental update failed (%s); reloading the table", e)
                return False
            self.metrics.incremental += 1
            self.metrics.applies += 1
            self.synced_at = time.monotonic()
            self.loaded.set()
        return True

    async def _full_sync(self, node: NodeInfo) -> None:
        self._full, self.state = True, None  # until the load below succeeds
        self._changed.clear()  # everything is read afresh below
        state, script = self._render_all(node)
        await nftables_apply.apply_script(script, netns=self.config.netns, whole_table=True)
        self.state, self._node, self._full = state, node, False
        self._last_full = self.synced_at = time.monotonic()
        self.metrics.full += 1
        self.metrics.applies += 1
        self.loaded.set()

    def _render_all(self, node: NodeInfo) -> tuple[TableState, str]:
        """Every Service, rendered. The cyclic GC is paused meanwhile: the render makes no cycles,
        yet at 10,000 Services its allocations set off collections costing 40% of its CPU."""
        gc_was_on = gc.isenabled()
        gc.disable()
        try:
            by_svc = slices_by_service(self.slices.list())
            fragments: dict[str, list[Fragment]] = {}
            for svc in self.services.list():
                sid = service_id(svc)
                ns, _, name = sid.partition("/")
                frags = [render_fragment(sp, node) for sp in ports_of_service(svc, by_svc.get((ns, name), []))]
                if frags:
                    fragments[sid] = frags
            state = TableState(node.table, base_chains(node), fragments)
            return state, state.ruleset().script()
        finally:
            if gc_was_on:
                gc.enable()

    async def run(self, *, ready: asyncio.Event | None = None) -> None:
        try:
            async with asyncio.TaskGroup() as tg:
                for inf in (self.services, self.slices, self.nodes):
                    inf.start(tg)
                await asyncio.gather(self.services.synced.wait(), self.slices.synced.wait(),
                                     self.nodes.synced.wait())
                await self._loop(ready)
        finally:
            try:
                if self.config.cleanup_on_exit:
                    await asyncio.shield(self.cleanup())
            finally:
                nftables_apply.release(self.config.netns)

    async def _loop(self, ready: asyncio.Event | None) -> None:
        self._dirty.set()
        backoff = 0.1
        last_end = -self.config.min_sync_interval
        while True:
            until_full = self._last_full + self.config.full_sync_period - time.monotonic()
            try:
                await asyncio.wait_for(self._dirty.wait(), timeout=max(until_full, 0.001))
            except TimeoutError:
                self._full = True
            # A change after a quiet spell goes at once; right after a sync, wait out the interval so
            # a burst shares one sync. sleep(0) still lets the events already queued join this one.
            await asyncio.sleep(max(last_end + self.config.min_sync_interval - time.monotonic(), 0))
            self._dirty.clear()
            try:
                await self.sync()
                backoff = 0.1
                if ready is not None:
                    ready.set()
            except (nftables_apply.ApplyError, RuntimeError, OSError) as e:
                self.metrics.failures += 1
                self._route_done, self._full, self._gateway = False, True, None
                log.warning("proxy sync failed (retrying in %.1fs): %s", backoff, e)
                await asyncio.sleep(backoff)
                backoff = min(backoff * 2, 5.0)
                self._dirty.set()
            last_end = time.monotonic()

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
