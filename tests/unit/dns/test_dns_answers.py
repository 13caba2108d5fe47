"""The cluster DNS: zone records (A, headless, SRV, PTR, pod names, NXDOMAIN + SOA) answered
through a real UDP/TCP listener on loopback, the wire cache and its invalidation, forwarding to a
local stub upstream (never the internet)."""

from __future__ import annotations

import asyncio
import socket
import struct
from collections.abc import AsyncIterator
from typing import Any, cast

import pytest
from dnslib import QTYPE, RCODE, RR, A, DNSRecord

from pocketkube.dns.records import build_zone
from pocketkube.dns.server import DNSServer, serve

Obj = dict[str, Any]


def objects() -> tuple[list[Obj], list[Obj], list[Obj]]:
    services = [
        {"metadata": {"name": "web", "namespace": "default"},
         "spec": {"clusterIP": "10.43.0.20", "ports": [{"name": "http", "port": 80, "protocol": "TCP"}]}},
        {"metadata": {"name": "db", "namespace": "prod"},
         "spec": {"clusterIP": "None", "ports": [{"name": "pg", "port": 5432, "protocol": "TCP"}]}},
        {"metadata": {"name": "ext", "namespace": "default"},
         "spec": {"type": "ExternalName", "externalName": "example.org"}},
    ]
    slices = [{"metadata": {"name": "db-x", "namespace": "prod", "labels": {"kubernetes.io/service-name": "db"}},
               "addressType": "IPv4", "ports": [{"name": "pg", "port": 5432, "protocol": "TCP"}],
               "endpoints": [{"addresses": ["10.42.0.7"], "hostname": "db-0", "conditions": {"ready": True}},
                             {"addresses": ["10.42.0.8"], "conditions": {"ready": True}},
                             {"addresses": ["10.42.0.9"], "conditions": {"ready": False}}]}]
    pods = [{"metadata": {"name": "p", "namespace": "default"}, "spec": {},
             "status": {"podIP": "10.42.0.5", "podIPs": [{"ip": "10.42.0.5"}]}}]
    return services, slices, pods


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


class Stub(asyncio.DatagramProtocol):
    """A local upstream that answers every A query with 192.0.2.1."""

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.DatagramTransport, transport)

    def datagram_received(self, data: bytes, addr: tuple[str, int]) -> None:
        req = DNSRecord.parse(data)
        reply = req.reply()
        reply.add_answer(RR(req.q.qname, QTYPE.A, rdata=A("192.0.2.1"), ttl=30))
        self.transport.sendto(reply.pack(), addr)


@pytest.fixture
async def dns() -> AsyncIterator[tuple[DNSServer, int]]:
    loop = asyncio.get_running_loop()
    stub, _ = await loop.create_datagram_endpoint(Stub, local_addr=("127.0.0.1", 0))
    server = DNSServer(build_zone(*objects()), upstream=stub.get_extra_info("sockname"))
    for _ in range(20):  # a port free for UDP may be taken for TCP by another process: try another
        port = free_port()
        ready = asyncio.Event()
        task = asyncio.create_task(serve(server, "127.0.0.1", port, ready=ready))
        waiter = asyncio.create_task(ready.wait())
        await asyncio.wait({task, waiter}, return_when=asyncio.FIRST_COMPLETED)
        if ready.is_set():
            break
        waiter.cancel()
        await asyncio.gather(task, waiter, return_exceptions=True)
    else:
        pytest.fail("no free loopback port for the DNS server")
    yield server, port
    task.cancel()
    await asyncio.gather(task, return_exceptions=True)
    stub.close()


async def ask(port: int, name: str, qtype: str = "A", *, tcp: bool = False) -> DNSRecord:
    q = DNSRecord.question(name, qtype)
    loop = asyncio.get_running_loop()
    if tcp:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        data = q.pack()
        writer.write(struct.pack("!H", len(data)) + data)
        size = struct.unpack("!H", await reader.readexactly(2))[0]
        raw = await reader.readexactly(size)
        writer.close()
        await writer.wait_closed()
    else:
        raw = await loop.run_in_executor(None, lambda: q.send("127.0.0.1", port, timeout=2))
    reply = DNSRecord.parse(raw)
    assert reply.header.id == q.header.id
    return reply


def rdata(reply: DNSRecord) -> list[str]:
    return [str(rr.rdata) for rr in reply.rr]


async def test_service_a_and_headless(dns: tuple[DNSServer, int]) -> None:
    _, port = dns
    assert rdata(await ask(port, "web.default.svc.cluster.local")) == ["10.43.0.20"]
    assert rdata(await ask(port, "WEB.default.svc.cluster.local", tcp=True)) == ["10.43.0.20"]
    assert rdata(await ask(port, "db.prod.svc.cluster.local")) == ["10.42.0.7", "10.42.0.8"]
    assert rdata(await ask(port, "db-0.db.prod.svc.cluster.local")) == ["10.42.0.7"]
    assert rdata(await ask(port, "ext.default.svc.cluster.local")) == ["example.org."]


async def test_srv_ptr_and_pod_names(dns: tuple[DNSServer, int]) -> None:
    _, port = dns
    srv = await ask(port, "_http._tcp.web.default.svc.cluster.local", "SRV")
    assert rdata(srv) == ["0 100 80 web.default.svc.cluster.local."]
    assert [str(rr.rdata) for rr in srv.ar] == ["10.43.0.20"]
    headless = await ask(port, "_pg._tcp.db.prod.svc.cluster.local", "SRV")
    assert sorted(rdata(headless)) == ["0 100 5432 10-42-0-8.db.prod.svc.cluster.local.",
                                       "0 100 5432 db-0.db.prod.svc.cluster.local."]
    assert rdata(await ask(port, "20.0.43.10.in-addr.arpa", "PTR")) == ["web.default.svc.cluster.local."]
    assert rdata(await ask(port, "5.0.42.10.in-addr.arpa", "PTR")) == ["10-42-0-5.default.pod.cluster.local."]
    assert rdata(await ask(port, "10-42-0-5.default.pod.cluster.local")) == ["10.42.0.5"]


async def test_nxdomain_carries_soa_and_empty_names_do_not(dns: tuple[DNSServer, int]) -> None:
    _, port = dns
    nx = await ask(port, "nope.default.svc.cluster.local")
    assert nx.header.rcode == RCODE.NXDOMAIN and not nx.rr
    assert nx.auth[0].rtype == QTYPE.SOA
    assert (await ask(port, "10-42-0-6.default.pod.cluster.local")).header.rcode == RCODE.NXDOMAIN
    nodata = await ask(port, "web.default.svc.cluster.local", "AAAA")
    assert nodata.header.rcode == RCODE.NOERROR and not nodata.rr and nodata.auth


async def test_cache_hits_and_invalidation(dns: tuple[DNSServer, int]) -> None:
    server, port = dns
    await ask(port, "web.default.svc.cluster.local")
    hits = server.hits
    assert rdata(await ask(port, "web.default.svc.cluster.local")) == ["10.43.0.20"]
    assert server.hits == hits + 1
    services, slices, pods = objects()
    services[0]["spec"]["clusterIP"] = "10.43.0.99"
    server.set_zone(build_zone(services, slices, pods))
    assert rdata(await ask(port, "web.default.svc.cluster.local")) == ["10.43.0.99"]


async def test_other_names_go_upstream(dns: tuple[DNSServer, int]) -> None:
    server, port = dns
    reply = await ask(port, "example.org")
    assert rdata(reply) == ["192.0.2.1"]
    assert rdata(await ask(port, "example.org", tcp=True)) == ["192.0.2.1"]
    assert not any(k for k in server.cache if b"example" in k)


def test_garbage_gets_formerr() -> None:
    server = DNSServer(build_zone(*objects()))
    out = server.answer_local(b"\x12\x34" + b"\x01\x00" + b"\x00\x01" + b"\x00" * 6 + b"\xff")
    assert out is not None and out[:2] == b"\x12\x34" and out[3] & 0x0F == RCODE.FORMERR
