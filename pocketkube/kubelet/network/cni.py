"""Invoke CNI plugins directly (no libcni): loopback beside bridge + host-local, then portmap.

This is the kubelet's network plugin, what CRI-O/containerd do through libcni, kept small: one
network (a `bridge` with `host-local` IPAM, chained with `portmap` when a pod asks for host ports)
plus the `loopback` plugin for `lo`. Each plugin is executed with the CNI_* environment and its
JSON config on stdin (CNI spec 1.0.0 by default); the chain passes `prevResult` along.

The final result of each ADD is cached on disk per pod (libcni's cache does the same) so that an
agent restarted after a crash still DELs with the exact config and `prevResult` it added with —
portmap needs them to find its rules, and host-local releases by container id.

When `node_netns` is set, every plugin runs under `nsenter --net=<node netns>`: the bridge, the
host-side veths, the IPAM and the portmap rules then live in that "node" namespace
(reference/platform.md §4), while the pod namespaces themselves are created from the host mount
namespace by `netns.py`.
"""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import json
import logging
import os
import time
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass, field
from typing import Any

from pocketkube.kubelet.network.netns import NetnsError, is_netns, nsenter_argv, run_command
from pocketkube.kubelet.startup_trace import span

log = logging.getLogger(__name__)

JSON = dict[str, Any]
LOOPBACK_NETWORK = "cni-loopback"
_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"


class CNIError(Exception):
    """A CNI plugin failed; carries the plugin's JSON error (`code`, `msg`, `details`)."""

    def __init__(self, plugin: str, command: str, msg: str, *, code: int = 999, details: str = "") -> None:
        self.plugin = plugin
        self.command = command
        self.code = code
        self.msg = msg
        self.details = details
        text = f"CNI {plugin} {command} failed (code {code}): {msg}"
        super().__init__(f"{text}: {details}" if details else text)


@dataclass(frozen=True)
class PortMapping:
    """A hostPort: `host_ip:host_port` on the node forwarded to `container_port` in the pod."""

    host_port: int
    container_port: int
    protocol: str = "tcp"
    host_ip: str = ""

    def to_cni(self) -> JSON:
        out: JSON = {"hostPort": self.host_port, "containerPort": self.container_port,
                     "protocol": self.protocol.lower()}
        if self.host_ip:
            out["hostIP"] = self.host_ip
        return out


@dataclass(frozen=True)
class PodNetwork:
    """What a pod got from CNI ADD: its address, the bridge gateway, and the interfaces."""

    ip: str
    gateway: str
    interface: str
    mac: str
    prefix_len: int = 0
    host_veth: str = ""

    @classmethod
    def from_result(cls, result: JSON, *, ifname: str) -> PodNetwork:
        """Read the pod side of a CNI result (the IP on the interface inside the sandbox)."""
        interfaces: list[JSON] = result.get("interfaces") or []
        ips: list[JSON] = result.get("ips") or []
        chosen = next((ip for ip in ips if _iface_name(interfaces, ip) == ifname), ips[0] if ips else None)
        if chosen is None:
            raise CNIError("bridge", "ADD", "result has no IP addresses", details=json.dumps(result))
        iface = ipaddress.ip_interface(chosen["address"])
        mac = next((i.get("mac", "") for i in interfaces if i.get("name") == ifname and i.get("sandbox")), "")
        host_veth = next((i["name"] for i in interfaces
                          if not i.get("sandbox") and i.get("name", "").startswith("veth")), "")
        return cls(ip=str(iface.ip), gateway=chosen.get("gateway", ""), interface=ifname, mac=mac,
                   prefix_len=iface.network.prefixlen, host_veth=host_veth)


def _iface_name(interfaces: list[JSON], ip: JSON) -> str | None:
    index = ip.get("interface")
    if isinstance(index, int) and 0 <= index < len(interfaces):
        name = interfaces[index].get("name")
        return name if isinstance(name, str) else None
    return None


@dataclass(frozen=True)
class CachedAttachment:
    """The on-disk record of one ADD, enough to DEL or CHECK it later."""

    pod_id: str
    netns: str
    ifname: str
    port_mappings: tuple[PortMapping, ...]
    result: JSON
    config: JSON = field(default_factory=dict)


@dataclass
class _PodLock:
    lock: asyncio.Lock = field(default_factory=asyncio.Lock)
    users: int = 0


class CNI:
    """The pod network of one node: a bridge with host-local IPAM, plus portmap and loopback.

    `pod_routes` are the routes each pod gets via the bridge gateway. The default route
    ("0.0.0.0/0") is only safe when the node is a namespace with no route out; an agent on a real
    host passes the cluster and service CIDRs instead, so pod traffic never leaves by accident.
    """

    def __init__(self, *, bin_dir: str = "/usr/lib/cni", ipam_dir: str, cache_dir: str | None = None,
                 network_name: str = "pocketkube", bridge: str = "cbr0", subnet: str = "10.42.0.0/24",
                 gateway: str | None = None, pod_routes: Sequence[str] = ("0.0.0.0/0",),
                 cni_version: str = "1.0.0", hairpin: bool = True, ip_masq: bool = False,
                 mtu: int | None = None, ifname: str = "eth0", node_netns: str | None = None,
                 timeout: float = 30.0) -> None:
        self.bin_dir = bin_dir
        self.ipam_dir = ipam_dir
        self.cache_dir = cache_dir or os.path.join(os.path.dirname(ipam_dir.rstrip("/")) or "/", "cni-cache")
        self.network_name = network_name
        self.bridge = bridge
        self.subnet = str(ipaddress.ip_network(subnet))
        self.gateway = gateway
        self.pod_routes = [str(ipaddress.ip_network(r)) for r in pod_routes]
        self.cni_version = cni_version
        self.hairpin = hairpin
        self.ip_masq = ip_masq
        self.mtu = mtu
        self.ifname = ifname
        self.node_netns = node_netns
        self.timeout = timeout
        self._locks: dict[str, _PodLock] = {}
        self.validate()

    def validate(self) -> None:
        """Reject configs that cannot work before any plugin runs."""
        if not os.path.isdir(self.bin_dir):
            raise ValueError(f"CNI bin_dir {self.bin_dir} does not exist")
        if not self.bridge or len(self.bridge) > 15:
            raise ValueError(f"bridge name {self.bridge!r} must be 1-15 characters")
        if self.gateway is not None and ipaddress.ip_address(self.gateway) not in ipaddress.ip_network(self.subnet):
            raise ValueError(f"gateway {self.gateway} is outside subnet {self.subnet}")
        if self.mtu is not None and not 576 <= self.mtu <= 65535:
            raise ValueError(f"mtu {self.mtu} out of range")

    # ---- configs -------------------------------------------------------------------------------

    def bridge_config(self) -> JSON:
        """The bridge plugin's config (host-local IPAM, dataDir = ipam_dir)."""
        rng: JSON = {"subnet": self.subnet}
        if self.gateway:
            rng["gateway"] = self.gateway
        conf: JSON = {
            "cniVersion": self.cni_version, "name": self.network_name, "type": "bridge",
            "bridge": self.bridge, "isGateway": True, "ipMasq": self.ip_masq, "hairpinMode": self.hairpin,
            "ipam": {"type": "host-local", "ranges": [[rng]], "routes": [{"dst": r} for r in self.pod_routes],
                     "dataDir": self.ipam_dir},
        }
        if self.mtu is not None:
            conf["mtu"] = self.mtu
        return conf

    def portmap_config(self, port_mappings: Sequence[PortMapping]) -> JSON:
        """The portmap plugin's config with the pod's mappings as runtimeConfig."""
        return {"cniVersion": self.cni_version, "name": self.network_name, "type": "portmap",
                "capabilities": {"portMappings": True}, "snat": True,
                "runtimeConfig": {"portMappings": [p.to_cni() for p in port_mappings]}}

    def loopback_config(self) -> JSON:
        return {"cniVersion": self.cni_version, "name": LOOPBACK_NETWORK, "type": "loopback"}

    # ---- operations ----------------------------------------------------------------------------

    @contextlib.asynccontextmanager
    async def _lock(self, pod_id: str) -> AsyncIterator[None]:
        # One operation per pod at a time; the entry is dropped when nobody holds or awaits it.
        entry = self._locks.setdefault(pod_id, _PodLock())
        entry.users += 1
        try:
            async with entry.lock:
                yield
        finally:
            entry.users -= 1
            if entry.users == 0:
                self._locks.pop(pod_id, None)

    async def add(self, pod_id: str, netns_path: str, *,
                  port_mappings: Sequence[PortMapping] = ()) -> PodNetwork:
        """Attach the pod's namespace: lo up, eth0 on the bridge with an IP, host ports mapped.

        On failure everything added so far is deleted again before the CNIError propagates.
        """
        async with self._lock(pod_id):
            started = time.perf_counter()
            mappings = tuple(port_mappings)
            try:
                # lo and eth0 are independent (libcni runs them as two networks): one plugin
                # exec's latency instead of two. Both are awaited before an error propagates, so
                # the clean-up below never races a plugin still running.
                lo, eth0 = await asyncio.gather(
                    self._exec("loopback", "ADD", self.loopback_config(), pod_id, netns_path, "lo"),
                    self._exec("bridge", "ADD", self.bridge_config(), pod_id, netns_path, self.ifname),
                    return_exceptions=True)
                for outcome in (lo, eth0):
                    if isinstance(outcome, BaseException):
                        raise outcome
                assert isinstance(eth0, dict)
                result: JSON = eth0
                if mappings:
                    conf = {**self.portmap_config(mappings), "prevResult": result}
                    result = await self._exec("portmap", "ADD", conf, pod_id, netns_path, self.ifname)
                self._write_cache(CachedAttachment(pod_id, netns_path, self.ifname, mappings, result,
                                                   self.bridge_config()))
            except BaseException:
                with contextlib.suppress(Exception):
                    await asyncio.shield(self._delete(pod_id, netns_path, mappings, None))
                raise
            network = PodNetwork.from_result(result, ifname=self.ifname)
            log.debug("CNI ADD %s -> %s in %.1f ms", pod_id, network.ip, (time.perf_counter() - started) * 1e3)
            return network

    async def delete(self, pod_id: str, netns_path: str | None = None) -> None:
        """Detach the pod: portmap, bridge (releases the IP), loopback — in reverse. Idempotent.

        Uses the cached ADD (config, port mappings, prevResult) when there is one; without it the
        bridge DEL still releases whatever host-local holds for `pod_id`. A namespace that is
        already gone is passed as an empty CNI_NETNS, which the plugins accept. If a plugin
        fails the cache is kept, so a retry DELs with the same prevResult.
        """
        async with self._lock(pod_id):
            cached = self.cached(pod_id)
            netns = netns_path or (cached.netns if cached else None)
            mappings = cached.port_mappings if cached else ()
            await self._delete(pod_id, netns, mappings, cached)
            self._remove_cache(pod_id)

    async def _delete(self, pod_id: str, netns_path: str | None, mappings: Sequence[PortMapping],
                      cached: CachedAttachment | None) -> None:
        # Every step is attempted even if an earlier one fails (a broken portmap must not leak
        # the pod's IP); the first error is raised afterwards so the caller retries the whole DEL.
        netns = netns_path if netns_path and is_netns(netns_path) else ""
        prev = {"prevResult": cached.result} if cached else {}
        bridge_conf = cached.config if cached and cached.config else self.bridge_config()
        steps: list[tuple[str, JSON, str]] = []
        if mappings:
            steps.append(("portmap", {**self.portmap_config(mappings), **prev}, self.ifname))
        steps.append(("bridge", {**bridge_conf, **prev}, self.ifname))
        if netns:
            steps.append(("loopback", self.loopback_config(), "lo"))
        errors: list[CNIError] = []
        for plugin, conf, ifname in steps:
            try:
                await self._exec(plugin, "DEL", conf, pod_id, netns, ifname)
            except CNIError as e:
                errors.append(e)
        if errors:
            raise errors[0]

    async def check(self, pod_id: str, netns_path: str | None = None) -> None:
        """CNI CHECK the pod's eth0 (bridge, IP, routes) against its cached result; CNIError if broken."""
        cached = self.cached(pod_id)
        if cached is None:
            raise CNIError("bridge", "CHECK", f"no cached CNI result for {pod_id}")
        netns = netns_path or cached.netns
        prev = {"prevResult": cached.result}
        await self._exec("bridge", "CHECK", {**(cached.config or self.bridge_config()), **prev},
                         pod_id, netns, cached.ifname)
        # portmap is not CHECKed: 1.1.1 always looks for ip6tables chains an IPv4-only ADD never
        # made (containernetworking/plugins#819), so it would report every pod as broken.

    # ---- plugin execution ----------------------------------------------------------------------

    async def _exec(self, plugin: str, command: str, config: JSON, pod_id: str, netns: str,
                    ifname: str) -> JSON:
        env = {"CNI_COMMAND": command, "CNI_CONTAINERID": pod_id, "CNI_NETNS": netns,
               "CNI_IFNAME": ifname, "CNI_PATH": self.bin_dir, "PATH": os.environ.get("PATH", _PATH)}
        argv = nsenter_argv(self.node_netns, [os.path.join(self.bin_dir, plugin)])
        started = time.perf_counter()
        try:
            with span(f"cni.{plugin}"):
                res = await run_command(argv, input=json.dumps(config).encode(), env=env, timeout=self.timeout)
        except NetnsError as e:
            raise CNIError(plugin, command, str(e)) from e
        except TimeoutError as e:
            raise CNIError(plugin, command, f"timed out after {self.timeout} s") from e
        log.debug("CNI %s %s %s: rc %d in %.1f ms", plugin, command, pod_id, res.returncode,
                  (time.perf_counter() - started) * 1e3)
        parsed: JSON = {}
        if res.stdout.strip():
            try:
                parsed = json.loads(res.stdout)
            except ValueError:
                parsed = {}
        if res.returncode != 0:
            raise CNIError(plugin, command, str(parsed.get("msg") or res.stderr.decode(errors="replace").strip()
                                                or f"exit status {res.returncode}"),
                           code=int(parsed.get("code", 999)), details=str(parsed.get("details", "")))
        return parsed

    # ---- result cache --------------------------------------------------------------------------

    def _cache_path(self, pod_id: str) -> str:
        return os.path.join(self.cache_dir, f"{self.network_name}-{pod_id}.json")

    def cached(self, pod_id: str) -> CachedAttachment | None:
        """The cached ADD for `pod_id`, or None if it was never added (or already deleted)."""
        try:
            with open(self._cache_path(pod_id), "rb") as f:
                raw: JSON = json.load(f)
        except (FileNotFoundError, ValueError):
            return None
        return CachedAttachment(
            pod_id=raw["containerId"], netns=raw.get("netns", ""), ifname=raw.get("ifName", self.ifname),
            port_mappings=tuple(PortMapping(p["hostPort"], p["containerPort"], p.get("protocol", "tcp"),
                                            p.get("hostIP", "")) for p in raw.get("portMappings", [])),
            result=raw.get("result", {}), config=raw.get("config", {}))

    def cached_pod_ids(self) -> list[str]:
        """Pods with a cached attachment (what a restarted agent may still have to DEL)."""
        prefix = f"{self.network_name}-"
        try:
            names = os.listdir(self.cache_dir)
        except FileNotFoundError:
            return []
        return sorted(n[len(prefix):-5] for n in names if n.startswith(prefix) and n.endswith(".json"))

    def _write_cache(self, entry: CachedAttachment) -> None:
        os.makedirs(self.cache_dir, mode=0o700, exist_ok=True)
        path = self._cache_path(entry.pod_id)
        data = {"kind": "cniCacheV1", "containerId": entry.pod_id, "netns": entry.netns,
                "ifName": entry.ifname, "networkName": self.network_name,
                "portMappings": [p.to_cni() for p in entry.port_mappings],
                "config": entry.config, "result": entry.result}
        tmp = f"{path}.tmp"
        # No fsync, as libcni: the cache only has to outlive the agent, not the machine (a reboot
        # takes the namespaces with it); an fsync per pod start was 1-50 ms on this disk.
        with open(tmp, "w") as f:
            json.dump(data, f)
        os.replace(tmp, path)

    def _remove_cache(self, pod_id: str) -> None:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(self._cache_path(pod_id))
