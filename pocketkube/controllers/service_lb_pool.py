"""The address pool of the built-in LoadBalancer (service_lb.py), pure bookkeeping with no I/O.

`--service-lb-pool CIDR` (repeatable) gives the controller addresses to hand out instead of node
IPs, as MetalLB's IPAddressPool does: each LoadBalancer Service holds at most one address, no
address is held twice, a Service asking for one (`spec.loadBalancerIP`) gets it if it is in the
pool and free, and an address returns to the pool when its Service is deleted or stops being a
LoadBalancer. Addresses already written in Service statuses are recorded first (`observe`), so a
restarted controller hands out nothing that is in use. The network and broadcast addresses of a
CIDR are skipped, as they are for any subnet a host sits on.
"""

from __future__ import annotations

import ipaddress


class NoAddress(Exception):
    """No address can be given; the message says why (it becomes the Service's Warning event)."""


def parse_pool(cidrs: list[str]) -> list[ipaddress.IPv4Network]:
    """The pool's IPv4 networks, refusing junk, IPv6 and overlaps with a clear message."""
    nets: list[ipaddress.IPv4Network] = []
    for text in cidrs:
        for part in (p.strip() for p in text.split(",")):
            if not part:
                continue
            try:
                net = ipaddress.ip_network(part, strict=False)
            except ValueError as e:
                raise ValueError(f"--service-lb-pool {part!r}: {e}") from e
            if not isinstance(net, ipaddress.IPv4Network):
                raise ValueError(f"--service-lb-pool {part!r}: only IPv4 pools are supported")
            if any(net.overlaps(n) for n in nets):
                raise ValueError(f"--service-lb-pool {part!r} overlaps another pool range")
            nets.append(net)
    return nets


class AddressPool:
    def __init__(self, cidrs: list[str]) -> None:
        self.networks = parse_pool(cidrs)
        self._owner: dict[str, str] = {}  # address -> Service key
        self._held: dict[str, str] = {}  # Service key -> address
        self._cursor = 0  # index of the next address to try, so released ones are reused last

    def __len__(self) -> int:
        return sum(self._size(n) for n in self.networks)

    @staticmethod
    def _size(net: ipaddress.IPv4Network) -> int:
        return net.num_addresses - 2 if net.prefixlen < 31 else net.num_addresses

    def _address(self, index: int) -> str:
        """The index-th usable address, counting through the networks in order."""
        for net in self.networks:
            size = self._size(net)
            if index < size:
                first = int(net.network_address) + (1 if net.prefixlen < 31 else 0)
                return str(ipaddress.IPv4Address(first + index))
            index -= size
        raise IndexError(index)

    def contains(self, ip: str) -> bool:
        try:
            addr = ipaddress.ip_address(ip)
        except ValueError:
            return False
        for net in self.networks:
            if addr in net:
                return net.prefixlen >= 31 or addr not in (net.network_address, net.broadcast_address)
        return False

    def holder(self, ip: str) -> str | None:
        return self._owner.get(ip)

    def held_by(self, key: str) -> str | None:
        return self._held.get(key)

    def observe(self, key: str, ip: str) -> bool:
        """Record an address a Service already shows; False when it is not ours to record
        (outside the pool, or already held by another Service: that one keeps it)."""
        if not self.contains(ip) or self._owner.get(ip, key) != key:
            return False
        if self._held.get(key) not in (None, ip):
            return False
        self._owner[ip] = key
        self._held[key] = ip
        return True

    def allocate(self, key: str, requested: str = "") -> str:
        """The Service's address: the one it holds, else the requested one, else the next free."""
        held = self._held.get(key)
        if requested:
            if held == requested:
                return held
            if not self.contains(requested):
                raise NoAddress(f"requested loadBalancerIP {requested} is not in the pool "
                                f"{', '.join(map(str, self.networks))}")
            owner = self._owner.get(requested)
            if owner is not None and owner != key:
                raise NoAddress(f"requested loadBalancerIP {requested} is already allocated to {owner}")
            self.release(key)
            self._take(key, requested)
            return requested
        if held is not None:
            return held
        total = len(self)
        if total > len(self._owner):
            for step in range(total):  # a free one exists: stops well before `total` unless nearly full
                index = (self._cursor + step) % total
                ip = self._address(index)
                if ip not in self._owner:
                    self._cursor = (index + 1) % total
                    self._take(key, ip)
                    return ip
        raise NoAddress(f"no free address left in the pool {', '.join(map(str, self.networks))}")

    def _take(self, key: str, ip: str) -> None:
        self._owner[ip] = key
        self._held[key] = ip

    def release(self, key: str) -> str | None:
        ip = self._held.pop(key, None)
        if ip is not None and self._owner.get(ip) == key:
            del self._owner[ip]
        return ip

