"""The wire cache through a real UDP/TCP listener on loopback: ID patching, 0x20 letter case, EDNS,
truncation and TCP fallback, invalidation on zone changes, negative caching, and forwarded answers
kept for their TTL (counted down) or not at all — with a fake clock and a local stub upstream."""

from __future__ import annotations

import asyncio
import socket
import struct
from collections.abc import AsyncIterator
from typing import cast

import pytest
from dnslib import EDNS0, QTYPE, RCODE, RR, SOA, A, DNSRecord

from pocketkube.dns.cache import AnswerCache
from pocketkube.dns.records import build_zone
from pocketkube.dns.server import DNSServer
from tests.unit.dns.dns_support import Obj, listening, objects


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


class Upstream(asyncio.DatagramProtocol):
    """A local resolver whose answer per name the test sets; counts what it was asked."""

    def __init__(self) -> None:
        self.asked: list[str] = []
        self.delay = 0.0

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.DatagramTransport, transport)

    def datagram_received(self, data: bytes, addr: tuple[str, int]) -> None:
        req = DNSRecord.parse(data)
        name = str(req.q.qname)
        self.asked.append(name)
        reply = req.reply()
        if name.startswith("short."):
            reply.add_answer(RR(req.q.qname, QTYPE.A, rdata=A("192.0.2.2"), ttl=0))
        elif name.startswith("broken."):
            reply.header.rcode = RCODE.SERVFAIL
        elif name.startswith("missing."):
            reply.header.rcode = RCODE.NXDOMAIN
            reply.add_auth(RR("example.", QTYPE.SOA, ttl=60,
                              rdata=SOA("ns.example.", "h.example.", (1, 2, 3, 4, 8))))
        elif name.startswith("big."):
            reply.header.tc = 1  # the full answer only over TCP (big_over_tcp)
        elif name.startswith("bare-nx."):
            reply.header.rcode = RCODE.NXDOMAIN  # no SOA: must not be cached (RFC 2308)
        else:
            reply.add_answer(RR(req.q.qname, QTYPE.A, rdata=A("192.0.2.1"), ttl=30))
        loop = asyncio.get_running_loop()
        loop.call_later(self.delay, self.transport.sendto, reply.pack(), addr)


async def big_over_tcp(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    size = struct.unpack("!H", await reader.readexactly(2))[0]
    req = DNSRecord.parse(await reader.readexactly(size))
    reply = req.reply()
    for i in range(1, 61):
        reply.add_answer(RR(req.q.qname, QTYPE.A, rdata=A(f"192.0.2.{i}"), ttl=30))
    packed = reply.pack()
    writer.write(struct.pack("!H", len(packed)) + packed)
    await writer.drain()
    writer.close()
    await writer.wait_closed()


@pytest.fixture
async def env() -> AsyncIterator[tuple[DNSServer, int, Upstream, Clock]]:
    loop = asyncio.get_running_loop()
    up = Upstream()
    for _ in range(20):  # a UDP and a TCP upstream on one port
        stub, _ = await loop.create_datagram_endpoint(lambda: up, local_addr=("127.0.0.1", 0))
        try:
            stub_tcp = await asyncio.start_server(big_over_tcp, *stub.get_extra_info("sockname"))
            break
        except OSError:
            stub.close()
    clock = Clock()
    server = DNSServer(build_zone(*objects()), upstream=stub.get_extra_info("sockname"),
                       cache=AnswerCache(clock=clock))
    async with listening(server) as port:
        yield server, port, up, clock
    stub.close()
    stub_tcp.close()
    await stub_tcp.wait_closed()


async def udp(port: int, data: bytes) -> bytes:
    def send() -> bytes:
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
            s.settimeout(2)
            s.sendto(data, ("127.0.0.1", port))
            return s.recv(65535)
    return await asyncio.get_running_loop().run_in_executor(None, send)


async def tcp(port: int, data: bytes) -> bytes:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(struct.pack("!H", len(data)) + data)
    size = struct.unpack("!H", await reader.readexactly(2))[0]
    raw = await reader.readexactly(size)
    writer.close()
    await writer.wait_closed()
    return raw


def query(name: str, qtype: str = "A", *, qid: int = 0x1234, edns: int = 0, version: int = 0) -> bytes:
    q = DNSRecord.question(name, qtype)
    q.header.id = qid
    if edns:
        q.add_ar(EDNS0(udp_len=edns, version=version))
    return bytes(q.pack())


def ips(raw: bytes) -> list[str]:
    return [str(rr.rdata) for rr in DNSRecord.parse(raw).rr]


async def test_hit_patches_the_id_and_skips_parsing(env: tuple[DNSServer, int, Upstream, Clock]) -> None:
    server, port, _, _ = env
    first = await udp(port, query("web.default.svc.cluster.local", qid=0x0101))
    misses = server.misses
    second = await udp(port, query("web.default.svc.cluster.local", qid=0xBEEF))
    assert server.misses == misses  # a hit: no dnslib on the way
    assert first[:2] == b"\x01\x01" and second[:2] == b"\xbe\xef" and first[2:] == second[2:]
    assert ips(second) == ["10.43.0.20"] and DNSRecord.parse(second).header.id == 0xBEEF


async def test_0x20_mixed_case_gets_its_own_case_back(env: tuple[DNSServer, int, Upstream, Clock]) -> None:
    server, port, _, _ = env
    names = ["wEb.DeFaUlT.sVc.ClUsTeR.lOcAl", "WEB.default.svc.cluster.LOCAL", "wEb.DeFaUlT.sVc.ClUsTeR.lOcAl",
             "web.default.svc.cluster.local"]
    misses = server.misses
    for qid, name in enumerate(names):
        raw = await udp(port, query(name, qid=qid))
        reply = DNSRecord.parse(raw)
        assert reply.header.id == qid and raw[12:12 + len(name) + 2] == query(name)[12:12 + len(name) + 2]
        assert str(reply.q.qname) == name + "."  # the question echoed byte for byte
        assert [str(rr.rname) for rr in reply.rr] == [name + "."]  # and the answer's owner name too
        assert [str(rr.rdata) for rr in reply.rr] == ["10.43.0.20"]
    assert server.misses == misses + 1  # only the first spelling was parsed: the rest hit the folded table
    srv = DNSRecord.parse(await udp(port, query("_HTTP._tcp.Web.default.svc.cluster.local", "SRV")))
    assert [str(rr.rdata).lower() for rr in srv.rr] == ["0 100 80 web.default.svc.cluster.local."]
    srv = DNSRecord.parse(await udp(port, query("_http._TCP.web.default.svc.cluster.local", "SRV")))
    assert str(srv.q.qname) == "_http._TCP.web.default.svc.cluster.local."
    assert [str(rr.rname) for rr in srv.rr] == ["_http._TCP.web.default.svc.cluster.local."]
    assert [str(rr.rdata).lower() for rr in srv.rr] == ["0 100 80 web.default.svc.cluster.local."]
    assert [str(rr.rdata) for rr in srv.ar] == ["10.43.0.20"]
    assert server.misses == misses + 2
    for qtype in (65, 97):  # 0x0041 and 0x0061: folding lowercases the name, never QTYPE's bytes
        q = DNSRecord.question("Web.default.svc.cluster.local")
        q.q.qtype = qtype
        assert DNSRecord.parse(await udp(port, bytes(q.pack()))).q.qtype == qtype
    nx = DNSRecord.parse(await udp(port, query("NoPe.default.svc.cluster.local")))
    assert nx.header.rcode == RCODE.NXDOMAIN and str(nx.q.qname) == "NoPe.default.svc.cluster.local."


async def test_edns_opt_echoed_and_cached_apart(env: tuple[DNSServer, int, Upstream, Clock]) -> None:
    _, port, _, _ = env
    plain = DNSRecord.parse(await udp(port, query("web.default.svc.cluster.local")))
    assert not [rr for rr in plain.ar if rr.rtype == QTYPE.OPT]
    for _ in range(2):  # miss, then hit: both carry an OPT
        edns = DNSRecord.parse(await udp(port, query("web.default.svc.cluster.local", edns=4096)))
        opts = [rr for rr in edns.ar if rr.rtype == QTYPE.OPT]
        assert len(opts) == 1 and opts[0].rclass == 1232 and [str(rr.rdata) for rr in edns.rr] == ["10.43.0.20"]
    bad = DNSRecord.parse(await udp(port, query("web.default.svc.cluster.local", edns=4096, version=1)))
    opt = next(rr for rr in bad.ar if rr.rtype == QTYPE.OPT)
    assert (opt.ttl >> 24) == 1 and not bad.rr  # BADVERS = 16: extended rcode 1, header rcode 0


def big_headless(count: int) -> tuple[list[Obj], list[Obj], list[Obj]]:
    services, slices, pods = objects()
    slices[0]["endpoints"] = [{"addresses": [f"10.42.1.{i}"], "conditions": {"ready": True}}
                              for i in range(1, count + 1)]
    return services, slices, pods


async def test_large_answer_truncated_over_udp_full_over_tcp(env: tuple[DNSServer, int, Upstream, Clock]) -> None:
    server, port, _, _ = env
    server.set_zone(build_zone(*big_headless(60)))  # 60 A records: ~1 KB, over 512, under 1232
    name = "db.prod.svc.cluster.local"
    for _ in range(2):
        small = DNSRecord.parse(await udp(port, query(name)))
        assert small.header.tc == 1 and not small.rr
    assert not server.cache.exact  # a truncated answer is never cached
    assert len(ips(await tcp(port, query(name)))) == 60  # the TCP fallback gets all of them
    assert DNSRecord.parse(await udp(port, query(name))).header.tc == 1  # ...and UDP still not
    assert len(ips(await udp(port, query(name, edns=1232)))) == 60  # EDNS makes room
    assert len(ips(await udp(port, query(name, edns=1232)))) == 60  # (from the cache)
    server.set_zone(build_zone(*big_headless(120)))  # ~2 KB: over any UDP size we send
    assert DNSRecord.parse(await udp(port, query(name, edns=4096))).header.tc == 1
    assert len(ips(await tcp(port, query(name, edns=4096)))) == 120


async def test_zone_change_is_never_answered_stale(env: tuple[DNSServer, int, Upstream, Clock]) -> None:
    server, port, _, _ = env
    services, slices, pods = objects()
    for _ in range(3):
        assert ips(await udp(port, query("web.default.svc.cluster.local"))) == ["10.43.0.20"]
        assert DNSRecord.parse(await udp(port, query("new.default.svc.cluster.local"))).header.rcode == RCODE.NXDOMAIN
        assert ips(await tcp(port, query("web.default.svc.cluster.local"))) == ["10.43.0.20"]
    services[0]["spec"]["clusterIP"] = "10.43.0.99"
    services.append({"metadata": {"name": "new", "namespace": "default"}, "spec": {"clusterIP": "10.43.0.50"}})
    server.set_zone(build_zone(services, slices, pods))
    assert ips(await udp(port, query("web.default.svc.cluster.local"))) == ["10.43.0.99"]
    assert ips(await tcp(port, query("web.default.svc.cluster.local"))) == ["10.43.0.99"]
    assert ips(await udp(port, query("new.default.svc.cluster.local"))) == ["10.43.0.50"]  # NXDOMAIN not kept
    slices[0]["endpoints"][0]["conditions"]["ready"] = False  # an endpoint leaves: its name goes
    server.set_zone(build_zone(services, slices, pods))
    assert ips(await udp(port, query("db.prod.svc.cluster.local"))) == ["10.42.0.8"]
    gone = DNSRecord.parse(await udp(port, query("db-0.db.prod.svc.cluster.local")))
    assert gone.header.rcode == RCODE.NXDOMAIN


async def test_unchanged_zone_keeps_the_cache(env: tuple[DNSServer, int, Upstream, Clock]) -> None:
    server, port, _, _ = env
    await udp(port, query("web.default.svc.cluster.local"))
    generation = server.cache.generation
    server.set_zone(build_zone(*objects()))  # e.g. a pod's status changed, not its IP
    assert server.cache.generation == generation and server.cache.exact


async def test_negative_answer_carries_soa_minimum(env: tuple[DNSServer, int, Upstream, Clock]) -> None:
    server, port, _, _ = env
    for _ in range(2):
        nx = DNSRecord.parse(await udp(port, query("nope.default.svc.cluster.local")))
        soa = nx.auth[0]
        assert nx.header.rcode == RCODE.NXDOMAIN and soa.rtype == QTYPE.SOA
        assert soa.ttl == soa.rdata.times[-1] == 5  # negative TTL = min(SOA TTL, MINIMUM)
    assert any(b"nope" in k for k in server.cache.exact)


async def test_forwarded_answer_lives_for_its_ttl(env: tuple[DNSServer, int, Upstream, Clock]) -> None:
    _, port, up, clock = env
    assert ips(await udp(port, query("example.org"))) == ["192.0.2.1"]
    clock.now += 10
    again = DNSRecord.parse(await udp(port, query("example.org", qid=77)))
    assert again.header.id == 77 and again.rr[0].ttl == 20 and up.asked == ["example.org."]  # counted down
    clock.now += 20  # 30 s: expired
    assert DNSRecord.parse(await udp(port, query("example.org"))).rr[0].ttl == 30
    assert up.asked == ["example.org."] * 2


async def test_forwarded_uncacheable_answers_are_not_kept(env: tuple[DNSServer, int, Upstream, Clock]) -> None:
    server, port, up, clock = env
    for name in ("short.example.", "broken.example.", "bare-nx.example."):
        for _ in range(2):
            await udp(port, query(name))
        assert up.asked.count(name) == 2, name
    for _ in range(2):
        nx = DNSRecord.parse(await udp(port, query("missing.example")))
    assert nx.header.rcode == RCODE.NXDOMAIN and up.asked.count("missing.example.") == 1
    clock.now += 8  # min(SOA TTL 60, MINIMUM 8)
    await udp(port, query("missing.example"))
    assert up.asked.count("missing.example.") == 2
    assert not server.cache.exact


async def test_answer_in_flight_across_a_zone_change_is_not_cached(
        env: tuple[DNSServer, int, Upstream, Clock]) -> None:
    server, port, up, _ = env
    up.delay = 0.2
    pending = asyncio.ensure_future(udp(port, query("77.0.42.10.in-addr.arpa", "PTR")))  # not in the zone yet
    await asyncio.sleep(0.05)
    services, slices, pods = objects()
    pods.append({"metadata": {"name": "q", "namespace": "default"}, "spec": {}, "status": {"podIP": "10.42.0.77"}})
    server.set_zone(build_zone(services, slices, pods))
    await pending
    assert not server.cache.forwarded
    assert ips(await udp(port, query("77.0.42.10.in-addr.arpa", "PTR"))) == ["10-42-0-77.default.pod.cluster.local."]


async def test_responses_dropped_and_other_opcodes_refused(env: tuple[DNSServer, int, Upstream, Clock]) -> None:
    server, port, _, _ = env
    q = bytearray(query("web.default.svc.cluster.local"))
    q[2] |= 0x80  # a response, not a query: answering it could loop two servers forever
    assert server.answer_local(bytes(q)) == b""
    q[2] = (q[2] & 0x87) | (4 << 3)  # opcode NOTIFY
    q[2] &= 0x7F
    reply = await udp(port, bytes(q))
    assert reply[3] & 0x0F == 4 and (reply[2] >> 3) & 0x0F == 4  # NOTIMP, opcode echoed


async def test_forwarded_truncated_answer_relayed_over_tcp_not_cached(
        env: tuple[DNSServer, int, Upstream, Clock]) -> None:
    server, port, up, _ = env
    assert len(ips(await tcp(port, query("big.example")))) == 60  # TC over UDP upstream: retried over TCP
    small = DNSRecord.parse(await udp(port, query("big.example")))
    assert small.header.tc == 1 and not small.rr  # the 60-record answer was not cached for UDP askers
    assert not server.cache.forwarded and up.asked.count("big.example.") == 2


def test_tables_stay_bounded_and_drop_the_oldest_first() -> None:
    cache = AnswerCache(limit=10)
    queries = [query(f"n{i}.default.svc.cluster.local", qid=i) for i in range(25)]
    for q in queries:
        reply = DNSRecord.parse(q).reply()
        cache.put(q, bytes(reply.pack()))
    assert len(cache.exact) <= 10 and len(cache.folded) <= 10
    assert cache.get(queries[-1]) is not None and cache.get(queries[0]) is None
