"""The DNS server: answers the cluster domain from a Zone, forwards the rest, over UDP and TCP.

dnslib parses and packs (reference/libraries.md §6: 1.8x dnspython); in front of it sits a
wire-level answer cache: the key is the query's bytes after the 2-byte ID (question, flags, EDNS
all included), the value the packed answer without its ID, patched with the asker's ID on the way
out. Almost every query a cluster asks is a repeat, so the hot path is one dict lookup. The cache
holds cluster answers only and is emptied whenever the zone changes (`set_zone`). Names outside
the domain (and reverse names not in the zone) are relayed to the upstream resolver unchanged.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import struct
from typing import cast

from dnslib import CNAME, PTR, QTYPE, RCODE, RR, SOA, SRV, A, DNSError, DNSRecord

from pocketkube.dns.records import Zone

log = logging.getLogger(__name__)
TTL = 5  # seconds, as CoreDNS's kubernetes plugin
MAX_UDP = 512
CACHE_LIMIT = 100_000


def _soa(zone: Zone) -> RR:
    d = zone.domain
    return RR(d, QTYPE.SOA, ttl=TTL, rdata=SOA(f"ns.dns.{d}", f"hostmaster.{d}", (1, 7200, 1800, 86400, TTL)))


def resolve(zone: Zone, request: DNSRecord) -> DNSRecord | None:
    """The answer to a cluster query, or None when it must be forwarded."""
    q = request.q
    name = str(q.qname).lower()
    if not name.endswith("."):
        name += "."
    qtype = q.qtype
    if not zone.in_domain(name) and not (qtype == QTYPE.PTR and name in zone.ptr):
        return None
    reply = request.reply()
    reply.header.ra = 1
    rname = q.qname
    if name in zone.cname:
        reply.add_answer(RR(rname, QTYPE.CNAME, ttl=TTL, rdata=CNAME(zone.cname[name])))
        return reply
    found = False
    if qtype in (QTYPE.A, QTYPE.ANY) and name in zone.a:
        found = True
        for ip in zone.a[name]:
            reply.add_answer(RR(rname, QTYPE.A, ttl=TTL, rdata=A(ip)))
    if qtype in (QTYPE.SRV, QTYPE.ANY) and name in zone.srv:
        found = True
        for port, target in zone.srv[name]:
            reply.add_answer(RR(rname, QTYPE.SRV, ttl=TTL, rdata=SRV(0, 100, port, target)))
        for target in sorted({t for _, t in zone.srv[name]}):
            for ip in zone.a.get(target, []):
                reply.add_ar(RR(target, QTYPE.A, ttl=TTL, rdata=A(ip)))
    if qtype in (QTYPE.PTR, QTYPE.ANY) and name in zone.ptr:
        found = True
        reply.add_answer(RR(rname, QTYPE.PTR, ttl=TTL, rdata=PTR(zone.ptr[name])))
    if qtype == QTYPE.SOA and name == zone.domain:
        found = True
        reply.add_answer(_soa(zone))
    if not found:
        if name not in zone.names and name not in zone.ptr:
            reply.header.rcode = RCODE.NXDOMAIN
        reply.add_auth(_soa(zone))
    return reply


class DNSServer:
    """The query handler shared by the UDP and TCP listeners."""

    def __init__(self, zone: Zone, *, upstream: tuple[str, int] | None = None, upstream_timeout: float = 2.0) -> None:
        self.zone = zone
        self.upstream = upstream
        self.upstream_timeout = upstream_timeout
        self.cache: dict[bytes, bytes] = {}
        self.hits = 0
        self.misses = 0

    def set_zone(self, zone: Zone) -> None:
        self.zone = zone
        self.cache.clear()

    def answer_cached(self, data: bytes) -> bytes | None:
        """The hot path: a cached answer with the query's ID, or None."""
        hit = self.cache.get(data[2:])
        if hit is None:
            return None
        self.hits += 1
        return data[:2] + hit

    def answer_local(self, data: bytes, *, udp: bool = True) -> bytes | None:
        """Answer from the zone (and cache it); None when the name must be forwarded."""
        self.misses += 1
        try:
            request = DNSRecord.parse(data)
        except (DNSError, IndexError, struct.error, ValueError):
            return None if len(data) < 12 else _formerr(data)
        if request.header.qr or not request.questions:
            return _formerr(data)
        reply = resolve(self.zone, request)
        if reply is None:
            return None
        packed: bytes = reply.pack()
        if udp and len(packed) > MAX_UDP and request.ar == []:
            reply = request.reply()
            reply.header.tc = 1
            packed = reply.pack()
        else:
            if len(self.cache) >= CACHE_LIMIT:
                self.cache.clear()  # e.g. queries carrying random EDNS cookies: start again, stay bounded
            self.cache[data[2:]] = packed[2:]
        return packed

    async def answer(self, data: bytes, *, udp: bool = True) -> bytes | None:
        out = self.answer_cached(data) or self.answer_local(data, udp=udp)
        if out is not None or len(data) < 12:
            return out
        return await self.forward(data)

    async def forward(self, data: bytes) -> bytes | None:
        if self.upstream is None:
            with contextlib.suppress(DNSError, IndexError, struct.error, ValueError):
                reply = DNSRecord.parse(data).reply()
                reply.header.rcode = RCODE.SERVFAIL
                return bytes(reply.pack())
            return None
        loop = asyncio.get_running_loop()
        done: asyncio.Future[bytes] = loop.create_future()

        class _Relay(asyncio.DatagramProtocol):
            def datagram_received(self, reply: bytes, addr: tuple[str, int]) -> None:
                if reply[:2] == data[:2] and not done.done():
                    done.set_result(reply)

        transport, _ = await loop.create_datagram_endpoint(_Relay, remote_addr=self.upstream)
        try:
            transport.sendto(data)
            return await asyncio.wait_for(done, self.upstream_timeout)
        except TimeoutError:
            log.debug("upstream %s did not answer", self.upstream)
            return None
        finally:
            transport.close()


def _formerr(data: bytes) -> bytes:
    # header only: same ID, QR set, opcode kept, rcode FORMERR
    flags = struct.unpack("!H", data[2:4])[0] if len(data) >= 4 else 0
    return data[:2] + struct.pack("!HHHHH", 0x8000 | (flags & 0x7800) | RCODE.FORMERR, 0, 0, 0, 0)


class UDPProtocol(asyncio.DatagramProtocol):
    def __init__(self, server: DNSServer, tasks: set[asyncio.Task[None]]) -> None:
        self.server = server
        self.tasks = tasks
        self.transport: asyncio.DatagramTransport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.DatagramTransport, transport)

    def datagram_received(self, data: bytes, addr: tuple[str, int]) -> None:
        assert self.transport is not None
        out = self.server.answer_cached(data) or self.server.answer_local(data)
        if out is not None:
            self.transport.sendto(out, addr)
        elif len(data) >= 12:
            # Forwarding waits on the network: hand it to a task kept in a set we drain on close.
            task = asyncio.get_running_loop().create_task(self._forward(data, addr))
            self.tasks.add(task)
            task.add_done_callback(self.tasks.discard)

    async def _forward(self, data: bytes, addr: tuple[str, int]) -> None:
        out = await self.server.forward(data)
        if out is not None and self.transport is not None and not self.transport.is_closing():
            self.transport.sendto(out, addr)


async def handle_tcp(server: DNSServer, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    try:
        while True:
            size = struct.unpack("!H", await reader.readexactly(2))[0]
            data = await reader.readexactly(size)
            out = await server.answer(data, udp=False)
            if out is None:
                break
            writer.write(struct.pack("!H", len(out)) + out)
            await writer.drain()
    except (asyncio.IncompleteReadError, ConnectionError):
        pass
    finally:
        writer.close()
        with contextlib.suppress(ConnectionError):
            await writer.wait_closed()


async def serve(server: DNSServer, host: str, port: int, *, ready: asyncio.Event | None = None) -> None:
    """Listen on host:port over UDP and TCP until cancelled."""
    loop = asyncio.get_running_loop()
    tasks: set[asyncio.Task[None]] = set()
    transport, _ = await loop.create_datagram_endpoint(lambda: UDPProtocol(server, tasks), local_addr=(host, port))
    try:
        tcp = await asyncio.start_server(lambda r, w: handle_tcp(server, r, w), host, port)
    except BaseException:  # the TCP port may be taken even though the UDP one was free
        transport.close()
        raise
    try:
        if ready is not None:
            ready.set()
        await asyncio.Future()
    finally:
        transport.close()
        tcp.close()
        for task in list(tasks):
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        await tcp.wait_closed()
