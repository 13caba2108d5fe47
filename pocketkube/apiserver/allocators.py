"""Service ClusterIP and NodePort allocation, safe across API servers and restarts.

Each allocated address or port is a key in the store (`/registry/ranges/serviceips/10.43.0.7`,
`/registry/ranges/servicenodeports/30080`) created with create-if-absent, so two API servers (or
two concurrent creates) can never hand out the same one, and allocations survive restarts. As in
kube-apiserver (KEP-3070), random ClusterIPs come from above a small lower band that is kept for
addresses asked for by name (10.43.0.1 for `kubernetes`, 10.43.0.10 for DNS).
"""

from __future__ import annotations

import ipaddress
import itertools
import random
from typing import Any

import orjson

from pocketkube.api import errors, meta
from pocketkube.api.validation_common import GoLiteral, invalid
from pocketkube.storage.interface import KeyExistsError, KeyNotFoundError, Storage

Obj = dict[str, Any]
IP_PREFIX = "/registry/ranges/serviceips/"
PORT_PREFIX = "/registry/ranges/servicenodeports/"


class Allocators:
    def __init__(self, storage: Storage, *, service_cidr: str = "10.43.0.0/16",
                 node_port_range: tuple[int, int] = (30000, 32767)) -> None:
        self.storage = storage
        self.network = ipaddress.ip_network(service_cidr)
        self.node_ports = node_port_range
        size = self.network.num_addresses
        self.band = min(max(16, size // 16), 256)

    # ---- cluster IPs -----------------------------------------------------------------------
    def _owner(self, svc: Obj) -> bytes:
        return orjson.dumps({"service": f"{meta.namespace_of(svc)}/{meta.name_of(svc)}",
                             "uid": svc.get("metadata", {}).get("uid", "")})

    async def _claim(self, key: str, svc: Obj) -> bool:
        """Record `key` for `svc` unless someone holds it (create-if-absent: safe across servers)."""
        try:
            await self.storage.create(key, self._owner(svc))
        except KeyExistsError:
            return False
        return True

    async def allocate_ip(self, svc: Obj, requested: str | None) -> str:
        if requested:
            try:
                ip = ipaddress.ip_address(requested)
            except ValueError as e:
                raise _invalid_ip(svc, requested, "must be a valid IP address") from e
            if ip not in self.network or ip in (self.network.network_address, self.network.broadcast_address):
                raise _invalid_ip(svc, requested, f"failed to allocate IP {requested}: the provided IP "
                                  f"({requested}) is not in the valid range. The range of valid IPs is {self.network}")
            try:
                await self.storage.create(IP_PREFIX + str(ip), self._owner(svc))
            except KeyExistsError as e:
                raise _invalid_ip(svc, requested, f"failed to allocate IP {requested}: provided IP is already "
                                  "allocated") from e
            return str(ip)
        base = int(self.network.network_address)
        size = self.network.num_addresses
        randoms = (random.randrange(self.band, size - 1) for _ in range(64))
        walk = range(1, size - 1)  # nearly full: walk the range once
        for offset in itertools.chain(randoms, walk):
            candidate = str(ipaddress.ip_address(base + offset))
            if await self._claim(IP_PREFIX + candidate, svc):
                return candidate
        raise errors.ServiceUnavailable(f"failed to allocate a serviceIP: range {self.network} is full")

    async def release_ip(self, ip: str) -> None:
        try:
            await self.storage.delete(IP_PREFIX + ip)
        except KeyNotFoundError:
            pass

    # ---- node ports ------------------------------------------------------------------------
    async def allocate_port(self, svc: Obj, index: int, requested: int | None) -> int:
        lo, hi = self.node_ports
        if requested:
            if not lo <= requested <= hi:
                raise _invalid_port(svc, index, requested, f"provided port is not in the valid range. The range of "
                                    f"valid ports is {lo}-{hi}")
            try:
                await self.storage.create(PORT_PREFIX + str(requested), self._owner(svc))
            except KeyExistsError as e:
                raise _invalid_port(svc, index, requested, "provided port is already allocated") from e
            return requested
        randoms = (random.randint(lo, hi) for _ in range(64))
        for port in itertools.chain(randoms, range(lo, hi + 1)):
            if await self._claim(PORT_PREFIX + str(port), svc):
                return port
        raise errors.ServiceUnavailable(f"failed to allocate a nodePort: range {lo}-{hi} is full")

    async def release_port(self, port: int) -> None:
        try:
            await self.storage.delete(PORT_PREFIX + str(port))
        except KeyNotFoundError:
            pass

    # ---- whole services --------------------------------------------------------------------
    async def allocate(self, svc: Obj, old: Obj | None = None) -> None:
        """Fill spec.clusterIP(s) and nodePorts of a created or updated Service, recording them."""
        spec = svc.setdefault("spec", {})
        svc_type = spec.get("type", "ClusterIP")
        allocated_ips: list[str] = []
        allocated_ports: list[int] = []
        old_spec = (old or {}).get("spec") or {}
        try:
            if svc_type != "ExternalName" and spec.get("clusterIP") != "None":
                if old is not None and old_spec.get("clusterIP") not in (None, "", "None"):
                    spec.setdefault("clusterIP", old_spec["clusterIP"])
                    spec.setdefault("clusterIPs", old_spec.get("clusterIPs") or [old_spec["clusterIP"]])
                else:
                    requested = spec.get("clusterIP") or (spec.get("clusterIPs") or [None])[0]
                    ip = await self.allocate_ip(svc, requested)
                    allocated_ips.append(ip)
                    spec["clusterIP"] = ip
                    spec["clusterIPs"] = [ip]
            elif spec.get("clusterIP") == "None":
                spec["clusterIPs"] = ["None"]
            if svc_type in ("NodePort", "LoadBalancer"):
                old_ports = {(p.get("port"), p.get("protocol", "TCP")): p.get("nodePort")
                             for p in old_spec.get("ports") or []}
                for i, port in enumerate(spec.get("ports") or []):
                    want = port.get("nodePort")
                    have = old_ports.get((port.get("port"), port.get("protocol", "TCP")))
                    if have and (not want or want == have):
                        port["nodePort"] = have
                        continue
                    port["nodePort"] = await self.allocate_port(svc, i, want)
                    allocated_ports.append(port["nodePort"])
            else:
                for port in spec.get("ports") or []:
                    port.pop("nodePort", None)
        except BaseException:
            for ip in allocated_ips:
                await self.release_ip(ip)
            for p in allocated_ports:
                await self.release_port(p)
            raise
        if old is not None:
            await self.release_unused(old, svc)

    async def release_unused(self, old: Obj, new: Obj | None) -> None:
        """Release what `old` held and `new` (None: deleted) no longer uses."""
        old_spec = old.get("spec") or {}
        new_spec = (new or {}).get("spec") or {}
        old_ip = old_spec.get("clusterIP")
        if old_ip and old_ip != "None" and old_ip != new_spec.get("clusterIP"):
            await self.release_ip(old_ip)
        keep = {p.get("nodePort") for p in new_spec.get("ports") or [] if p.get("nodePort")}
        for p in old_spec.get("ports") or []:
            if p.get("nodePort") and p["nodePort"] not in keep:
                await self.release_port(int(p["nodePort"]))


def _invalid_ip(svc: Obj, value: str, message: str) -> errors.Invalid:
    return errors.Invalid("", "Service", meta.name_of(svc), [
        invalid("spec.clusterIPs", GoLiteral(f'[]string{{"{value}"}}'), message)])


def _invalid_port(svc: Obj, index: int, value: int, message: str) -> errors.Invalid:
    return errors.Invalid("", "Service", meta.name_of(svc), [
        errors.FieldError(f"spec.ports[{index}].nodePort", message, value=value)])
