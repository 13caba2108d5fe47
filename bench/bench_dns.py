"""Cluster DNS queries/s from a loopback client, beside a raw dnslib floor, in the same run.

Each server runs in its own process (uvloop) on 127.0.0.1 with a zone of 500 Services (+ a
headless one and 500 pods); the client is one asyncio process keeping 64 queries in flight, with
the mix of reference/libraries.md §6 (60% A, 15% SRV, 15% PTR, 10% NXDOMAIN), for 3 s each:

- pocketkube: `DNSServer` (wire cache in front of dnslib);
- dnslib floor: the same resolve() but every query parsed, answered and packed (no cache);
- echo floor: a UDP socket that sends each datagram back — the client's and loopback's ceiling.

Run: /work/main/.venv/bin/python bench/bench_dns.py [--seconds 3]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import random
import socket
import subprocess
import sys
import time
from typing import Any

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from dnslib import DNSRecord

from pocketkube.dns.records import build_zone
from pocketkube.dns.server import DNSServer, resolve, serve

N = 500


def zone_objects() -> tuple[list[dict[str, Any]], list[dict[str, Any]], list[dict[str, Any]]]:
    services = [{"metadata": {"name": f"svc{i}", "namespace": "default"},
                 "spec": {"clusterIP": f"10.43.{1 + i // 250}.{1 + i % 250}",
                          "ports": [{"name": "http", "port": 80, "protocol": "TCP"}]}} for i in range(N)]
    pods = [{"metadata": {"name": f"p{i}", "namespace": "default"}, "spec": {},
             "status": {"podIP": f"10.42.{i // 250}.{1 + i % 250}"}} for i in range(N)]
    return services, [], pods


def queries() -> list[bytes]:
    rnd = random.Random(1)
    out = []
    for _ in range(2000):
        i = rnd.randrange(N)
        r = rnd.random()
        if r < 0.6:
            q = DNSRecord.question(f"svc{i}.default.svc.cluster.local", "A")
        elif r < 0.75:
            q = DNSRecord.question(f"_http._tcp.svc{i}.default.svc.cluster.local", "SRV")
        elif r < 0.9:
            q = DNSRecord.question(f"{1 + i % 250}.{1 + i // 250}.43.10.in-addr.arpa", "PTR")
        else:
            q = DNSRecord.question(f"nope{i}.default.svc.cluster.local", "A")
        out.append(q.pack())
    return out


class _Raw(asyncio.DatagramProtocol):
    def __init__(self, mode: str) -> None:
        self.mode = mode
        self.zone = build_zone(*zone_objects())

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport: Any = transport

    def datagram_received(self, data: bytes, addr: tuple[str, int]) -> None:
        if self.mode == "echo":
            self.transport.sendto(data, addr)
            return
        reply = resolve(self.zone, DNSRecord.parse(data))
        assert reply is not None
        self.transport.sendto(reply.pack(), addr)


async def run_server(mode: str, port: int) -> None:
    if mode == "pocketkube":
        await serve(DNSServer(build_zone(*zone_objects())), "127.0.0.1", port)
        return
    loop = asyncio.get_running_loop()
    await loop.create_datagram_endpoint(lambda: _Raw(mode), local_addr=("127.0.0.1", port))
    await asyncio.Future()


async def client(port: int, seconds: float, window: int = 64) -> float:
    loop = asyncio.get_running_loop()
    qs = queries()
    done = 0
    end = time.monotonic() + seconds

    class _Client(asyncio.DatagramProtocol):
        def connection_made(self, transport: asyncio.BaseTransport) -> None:
            self.transport: Any = transport

        def datagram_received(self, data: bytes, addr: tuple[str, int]) -> None:
            nonlocal done
            done += 1
            if time.monotonic() < end:
                self.transport.sendto(qs[done % len(qs)])

    transport, _ = await loop.create_datagram_endpoint(_Client, remote_addr=("127.0.0.1", port))
    start = time.monotonic()
    for i in range(window):
        transport.sendto(qs[i])
    await asyncio.sleep(seconds + 0.2)
    transport.close()
    return done / (time.monotonic() - start - 0.2)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--serve", default="")
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--seconds", type=float, default=3.0)
    args = parser.parse_args()
    import uvloop

    if args.serve:
        uvloop.run(run_server(args.serve, args.port))
        return
    for mode in ("pocketkube", "dnslib", "echo"):
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
            s.bind(("127.0.0.1", 0))
            port = s.getsockname()[1]
        proc = subprocess.Popen([sys.executable, __file__, "--serve", mode, "--port", str(port)])
        try:
            time.sleep(1.5)
            qps = uvloop.run(client(port, args.seconds))
            label = {"pocketkube": "pocketkube DNS (wire cache)", "dnslib": "floor: dnslib parse/reply/pack",
                     "echo": "floor: UDP echo (client ceiling)"}[mode]
            print(f"{label:<34} {qps:>9,.0f} queries/s", flush=True)
        finally:
            proc.terminate()
            proc.wait(5)


if __name__ == "__main__":
    main()
