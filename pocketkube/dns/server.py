"""The DNS server: the wire cache, then the zone, then the upstream resolver, over UDP and TCP.

The UDP hot path is `UDPProtocol.datagram_received`: one dict lookup on the query bytes after the
ID and one `sendto` of the ID + the stored bytes — no dnslib, no allocation beyond two slices
(bench/bench_dns.py measures it against a bare UDP reflector). Everything else — the zone
(answer.py), forwarded answers counted down by age (cache.py), forwarding — is the miss path.

`set_zone` swaps the zone and empties the cache in one synchronous step of the event loop, so no
query is ever answered from a cache older than the zone it is answered with. Names outside the
domain (and reverse names not in the zone) are relayed unchanged to the upstream resolver, over
UDP; a TCP asker whose upstream answer came back truncated is relayed over TCP.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import struct
from collections.abc import Callable
from typing import cast

from pocketkube.dns import wire
from pocketkube.dns.answer import answer
from pocketkube.dns.cache import AnswerCache
from pocketkube.dns.records import Zone

log = logging.getLogger(__name__)


class DNSServer:
    """The query handler shared by the UDP and TCP listeners."""

    def __init__(self, zone: Zone, *, upstream: tuple[str, int] | None = None, upstream_timeout: float = 2.0,
                 cache: AnswerCache | None = None) -> None:
        self.zone = zone
        self.upstream = upstream
        self.upstream_timeout = upstream_timeout
        self.cache = cache or AnswerCache()
        self.misses = 0  # queries that were not answered from the cache (hits are not counted: hot path)

    def set_zone(self, zone: Zone) -> None:
        if zone == self.zone:
            return  # e.g. a pod's status changed but not its IP: keep the cache warm
        self.zone = zone
        self.cache.clear()

    def answer_local(self, data: bytes, *, udp: bool = True) -> bytes | None:
        """Cache, else the zone (caching what may be): the reply, b"" to drop, None to forward."""
        hit = self.cache.get(data)
        if hit is not None:
            return hit
        self.misses += 1
        out = answer(self.zone, data, udp=udp)
        if out is None:
            return None
        if out.cacheable:
            self.cache.put(data, out.packed)
        return out.packed

    async def answer(self, data: bytes, *, udp: bool = True) -> bytes:
        out = self.answer_local(data, udp=udp)
        if out is not None:
            return out
        return await self.forward(data, tcp=not udp)

    async def forward(self, data: bytes, *, tcp: bool = False) -> bytes:
        if self.upstream is None:
            return wire.header_reply(data, wire.SERVFAIL)
        generation = self.cache.generation
        try:
            reply = await asyncio.wait_for(self._relay_udp(data), self.upstream_timeout)
            if tcp and wire.truncated(reply):
                # Not cached: a UDP asker with the same bytes must get the truncated answer.
                return await asyncio.wait_for(self._relay_tcp(data), self.upstream_timeout)
        except (TimeoutError, OSError, asyncio.IncompleteReadError) as e:
            log.debug("upstream %s: %r", self.upstream, e)
            return wire.header_reply(data, wire.SERVFAIL)
        self.cache.put_forwarded(data, reply, generation=generation)
        return reply

    async def _relay_udp(self, data: bytes) -> bytes:
        assert self.upstream is not None
        loop = asyncio.get_running_loop()
        done: asyncio.Future[bytes] = loop.create_future()
        question = data[12:wire.question_end(data)]

        class _Relay(asyncio.DatagramProtocol):
            def datagram_received(self, reply: bytes, addr: tuple[str, int]) -> None:
                # the same ID and the same question, byte for byte (letter case included)
                if reply[:2] == data[:2] and reply[12:12 + len(question)] == question and not done.done():
                    done.set_result(reply)

        transport, _ = await loop.create_datagram_endpoint(_Relay, remote_addr=self.upstream)
        try:
            transport.sendto(data)
            return await done
        finally:
            transport.close()

    async def _relay_tcp(self, data: bytes) -> bytes:
        assert self.upstream is not None
        reader, writer = await asyncio.open_connection(*self.upstream)
        try:
            writer.write(struct.pack("!H", len(data)) + data)
            size = struct.unpack("!H", await reader.readexactly(2))[0]
            return await reader.readexactly(size)
        finally:
            writer.close()
            with contextlib.suppress(ConnectionError):
                await writer.wait_closed()


class UDPProtocol(asyncio.DatagramProtocol):
    def __init__(self, server: DNSServer, tasks: set[asyncio.Task[None]]) -> None:
        self.server = server
        self.tasks = tasks
        self.lookup: Callable[[bytes], bytes | None] = server.cache.exact.get  # never rebound, see cache.py
        self.transport: asyncio.DatagramTransport | None = None
        self.sendto: Callable[[bytes, tuple[str, int]], None] = lambda data, addr: None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.DatagramTransport, transport)
        self.sendto = self.transport.sendto

    def datagram_received(self, data: bytes, addr: tuple[str, int]) -> None:
        hit = self.lookup(data[2:])
        if hit is not None:
            self.sendto(data[:2] + hit, addr)
            return
        out = self.server.answer_local(data)
        if out:
            self.sendto(out, addr)
        elif out is None:
            # Forwarding waits on the network: hand it to a task kept in a set we drain on close.
            task = asyncio.get_running_loop().create_task(self._forward(data, addr))
            self.tasks.add(task)
            task.add_done_callback(self.tasks.discard)

    async def _forward(self, data: bytes, addr: tuple[str, int]) -> None:
        out = await self.server.forward(data)
        if self.transport is not None and not self.transport.is_closing():
            self.transport.sendto(out, addr)


async def handle_tcp(server: DNSServer, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    try:
        while True:
            size = struct.unpack("!H", await reader.readexactly(2))[0]
            data = await reader.readexactly(size)
            out = await server.answer(data, udp=False)
            if not out:
                break
            writer.write(struct.pack("!H", len(out)) + out)
            await writer.drain()
    except (asyncio.IncompleteReadError, ConnectionError):
        pass
    finally:
        writer.close()
        with contextlib.suppress(ConnectionError):
            await writer.wait_closed()


async def serve(server: DNSServer, host: str, port: int, *, ready: asyncio.Event | None = None,
                reuse_port: bool = False) -> None:
    """Listen on host:port over UDP and TCP until cancelled."""
    loop = asyncio.get_running_loop()
    tasks: set[asyncio.Task[None]] = set()
    transport, _ = await loop.create_datagram_endpoint(lambda: UDPProtocol(server, tasks), local_addr=(host, port),
                                                       reuse_port=reuse_port or None)
    try:
        tcp = await asyncio.start_server(lambda r, w: handle_tcp(server, r, w), host, port,
                                         reuse_port=reuse_port or None)
    except BaseException:
        transport.close()  # e.g. the TCP port is taken: leave nothing bound
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
