"""Cluster DNS queries/s from a loopback client, beside two floors measured in the same run.

The method of reference/libraries.md §6 (where dnslib + a wire cache gave 137k/s): each server is
its own process (uvloop) on 127.0.0.1, pinned to core 0, with a zone of 500 Services + 500 pods;
the load is Debian's `dnsperf` pinned to the other core, `-c 4 -q 200 -l SECONDS`. Query sets:

- `A`: cached A lookups of the 500 Service names;
- `mix`: 60% A, 15% SRV (with an additional A), 15% PTR, 10% NXDOMAIN (with the SOA).

Servers, in interleaved rounds (the machine is shared: only a figure and the floors of the same
round compare):

- pocketkube: `dns.server.serve` + `DNSServer` — the production code path (wire cache);
- floor dnslib: the same zone answered by `dns.answer.answer` for every query (no cache);
- floor reflect: a uvloop DatagramProtocol that flips the QR bit and sends the query back — what
  the client, loopback and uvloop's datagram path can do at all (the ceiling for any server here);
- with `--reuseport N`: 1 and N pocketkube processes sharing the port by SO_REUSEPORT, nothing
  pinned (server processes and dnsperf share both cores, as they would in a real node).

Beside each qps: the server's own CPU time per answered query (/proc/PID/stat), which the load of
other processes on the machine does not move much — 1e6 / (µs per query) is what one core can do.
Without dnsperf on PATH (or with `--client python`), a uvloop client with `--window` queries in flight
on one socket stands in, pinned like dnsperf; it needs about as much CPU per query as dnsperf.

Run: .venv/bin/python bench/bench_dns.py [--seconds 5] [--rounds 3] [--reuseport 2]
(install the client with `apt-get install dnsperf`; hack/deps.sh does).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import random
import re
import resource
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import timeit
from typing import Any

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from dnslib import QTYPE, RCODE, DNSRecord

from pocketkube.dns.answer import answer
from pocketkube.dns.records import Zone, build_zone
from pocketkube.dns.server import DNSServer, UDPProtocol, serve

N = 500
TICK = os.sysconf("SC_CLK_TCK")


def zone() -> Zone:
    services = [{"metadata": {"name": f"svc{i}", "namespace": "default"},
                 "spec": {"clusterIP": f"10.43.{1 + i // 250}.{1 + i % 250}",
                          "ports": [{"name": "http", "port": 80, "protocol": "TCP"}]}} for i in range(N)]
    pods = [{"metadata": {"name": f"p{i}", "namespace": "default"}, "spec": {},
             "status": {"podIP": f"10.42.{i // 250}.{1 + i % 250}"}} for i in range(N)]
    return build_zone(services, [], pods)


def query_lines(kind: str) -> list[tuple[str, str]]:
    rnd = random.Random(1)
    out = []
    for _ in range(2000):
        i = rnd.randrange(N)
        r = 0.0 if kind == "A" else rnd.random()
        if r < 0.6:
            out.append((f"svc{i}.default.svc.cluster.local", "A"))
        elif r < 0.75:
            out.append((f"_http._tcp.svc{i}.default.svc.cluster.local", "SRV"))
        elif r < 0.9:
            out.append((f"{1 + i % 250}.{1 + i // 250}.43.10.in-addr.arpa", "PTR"))
        else:
            out.append((f"nope{i}.default.svc.cluster.local", "A"))
    return out


class _Floor(asyncio.DatagramProtocol):
    def __init__(self, mode: str) -> None:
        self.mode = mode
        self.zone = zone()

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport: Any = transport

    def datagram_received(self, data: bytes, addr: tuple[str, int]) -> None:
        if self.mode == "reflect":
            self.transport.sendto(data[:2] + bytes((data[2] | 0x80,)) + data[3:], addr)
            return
        out = answer(self.zone, data)
        if out is not None:
            self.transport.sendto(out.packed, addr)


async def run_server(mode: str, port: int, reuse_port: bool) -> None:
    ready = asyncio.Event()
    if mode == "pocketkube":
        task = asyncio.ensure_future(serve(DNSServer(zone()), "127.0.0.1", port, ready=ready, reuse_port=reuse_port))
        waiter = asyncio.ensure_future(ready.wait())
        await asyncio.wait({task, waiter}, return_when=asyncio.FIRST_COMPLETED)
        if not ready.is_set():  # e.g. the TCP port was taken by another process
            print(f"failed: {task.exception()!r}", flush=True)
            return
        print("ready", flush=True)
        await task
        return
    loop = asyncio.get_running_loop()
    await loop.create_datagram_endpoint(lambda: _Floor(mode), local_addr=("127.0.0.1", port))
    print("ready", flush=True)
    await asyncio.Future()


def hot_path_ns() -> float:
    """The Python work of a cache hit, without the kernel: what the wire cache adds to a reflector."""
    server = DNSServer(zone())
    proto = UDPProtocol(server, set())
    proto.sendto = lambda data, addr: None
    data = bytes(DNSRecord.question("svc7.default.svc.cluster.local", "A").pack())
    proto.datagram_received(data, ("127.0.0.1", 5353))  # miss: now cached
    assert server.cache.exact
    n = 200_000
    best = min(timeit.repeat(lambda: proto.datagram_received(data, ("127.0.0.1", 5353)), number=n, repeat=5))
    return best * 1e9 / n


def cpu_seconds(pid: int) -> float:
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / TICK


def check_answers(port: int) -> None:
    """The pocketkube server answers what the bench asks, correctly (so qps counts real answers)."""
    def ask(name: str, qtype: str) -> DNSRecord:
        return DNSRecord.parse(DNSRecord.question(name, qtype).send("127.0.0.1", port, timeout=2))
    assert [str(r.rdata) for r in ask("svc7.default.svc.cluster.local", "A").rr] == ["10.43.1.8"]
    srv = ask("_http._tcp.svc7.default.svc.cluster.local", "SRV")
    assert [str(r.rdata) for r in srv.rr] == ["0 100 80 svc7.default.svc.cluster.local."] and srv.ar
    assert [str(r.rdata) for r in ask("8.1.43.10.in-addr.arpa", "PTR").rr] == ["svc7.default.svc.cluster.local."]
    nx = ask("nope7.default.svc.cluster.local", "A")
    assert nx.header.rcode == RCODE.NXDOMAIN and nx.auth[0].rtype == QTYPE.SOA


def dnsperf(port: int, datafile: str, seconds: float, core: int | None) -> tuple[int, int, str, float]:
    cmd = ["dnsperf", "-s", "127.0.0.1", "-p", str(port), "-d", datafile, "-c", "4", "-q", "200",
           "-l", str(seconds), "-t", "1"]
    if core is not None:
        cmd = ["taskset", "-c", str(core), *cmd]
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    out = subprocess.run(cmd, capture_output=True, text=True, timeout=seconds + 30).stdout
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    done = int(re.search(r"Queries completed:\s+(\d+)", out).group(1))  # type: ignore[union-attr]
    lost = int(re.search(r"Queries lost:\s+(\d+)", out).group(1))  # type: ignore[union-attr]
    codes = re.search(r"Response codes:\s+(.*)", out)
    client_cpu = after.ru_utime + after.ru_stime - before.ru_utime - before.ru_stime
    return done, lost, codes.group(1).strip() if codes else "", client_cpu


async def py_client(port: int, lines: list[tuple[str, str]], seconds: float, window: int) -> int:
    loop = asyncio.get_running_loop()
    qs = [DNSRecord.question(n, t).pack() for n, t in lines]
    done = 0
    end = time.monotonic() + seconds

    class _Client(asyncio.DatagramProtocol):
        def connection_made(self, transport: asyncio.BaseTransport) -> None:
            self.transport: Any = transport

        def datagram_received(self, data: bytes, addr: tuple[str, int]) -> None:
            nonlocal done
            done += 1
            if not done & 1023:  # a sample: a response, NOERROR or NXDOMAIN (dnsperf checks every one)
                assert data[2] & 0x80 and data[3] & 0x0F in (0, 3), data
            if time.monotonic() < end:
                self.transport.sendto(qs[done % len(qs)])

    transport, _ = await loop.create_datagram_endpoint(_Client, remote_addr=("127.0.0.1", port))
    for i in range(window):
        transport.sendto(qs[i])
    await asyncio.sleep(seconds + 0.2)
    transport.close()
    return done


def start(mode: str, port: int, *, core: int | None, reuse_port: bool = False) -> subprocess.Popen[str] | None:
    cmd = [sys.executable, __file__, "--serve", mode, "--port", str(port)] + (["--reuse-port"] if reuse_port else [])
    if core is not None:
        cmd = ["taskset", "-c", str(core), *cmd]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, text=True)
    assert proc.stdout is not None
    if proc.stdout.readline().strip() == "ready":
        return proc
    proc.kill()
    proc.wait(5)
    return None


def start_all(mode: str, *, core: int | None, count: int) -> tuple[int, list[subprocess.Popen[str]]]:
    """`count` servers on one free port (SO_REUSEPORT when several), trying other ports if taken."""
    for _ in range(20):
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
            s.bind(("127.0.0.1", 0))
            port = s.getsockname()[1]
        procs = [start(mode, port, core=core, reuse_port=count > 1) for _ in range(count)]
        if all(procs):
            return port, [p for p in procs if p]
        for p in procs:
            if p:
                p.kill()
                p.wait(5)
    raise RuntimeError("no free loopback port")


def measure(mode: str, kind: str, files: dict[str, str], args: argparse.Namespace) -> dict[str, Any]:
    cores = os.sched_getaffinity(0)
    pin = len(cores) >= 2
    shared = mode.startswith("unpinned")  # N servers and the client all float over every core
    if shared:
        port, procs = start_all("pocketkube", core=None, count=int(mode.split("x")[1]))
    else:
        port, procs = start_all(mode, core=min(cores) if pin else None, count=1)
    try:
        if mode == "pocketkube" and kind == "mix":
            check_answers(port)
        cpu0 = sum(cpu_seconds(p.pid) for p in procs)
        t0 = time.monotonic()
        if args.client == "dnsperf":
            done, lost, codes, client_cpu = dnsperf(port, files[kind], args.seconds,
                                                    max(cores) if pin and not shared else None)
        else:
            import uvloop
            if pin and not shared:
                os.sched_setaffinity(0, {max(cores)})
            try:
                c0 = time.process_time()
                done, lost, codes = uvloop.run(py_client(port, query_lines(kind), args.seconds, args.window)), 0, ""
                client_cpu = time.process_time() - c0
            finally:
                os.sched_setaffinity(0, cores)
        wall = time.monotonic() - t0
        cpu = sum(cpu_seconds(p.pid) for p in procs) - cpu0
    finally:
        for p in procs:
            p.terminate()
        for p in procs:
            p.wait(5)
    return {"qps": done / min(wall, args.seconds + 0.2) if args.client != "dnsperf" else done / args.seconds,
            "us": cpu * 1e6 / max(done, 1), "client_us": client_cpu * 1e6 / max(done, 1), "lost": lost,
            "codes": codes}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--serve", default="")
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--reuse-port", action="store_true")
    parser.add_argument("--seconds", type=float, default=5.0)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--reuseport", type=int, default=0, help="also run N pocketkube processes on one port")
    parser.add_argument("--window", type=int, default=200, help="queries in flight (Python client)")
    parser.add_argument("--client", choices=["dnsperf", "python"], default="dnsperf" if shutil.which("dnsperf") else "python")
    args = parser.parse_args()
    import uvloop

    if args.serve:
        uvloop.run(run_server(args.serve, args.port, args.reuse_port))
        return
    runs = [("pocketkube", "A"), ("pocketkube", "mix"), ("dnslib", "mix"), ("reflect", "mix")]
    labels = {"pocketkube": "pocketkube (wire cache)", "dnslib": "floor: dnslib parse/answer/pack, no cache",
              "reflect": "floor: UDP reflector (client ceiling)"}
    if args.reuseport:
        for count in (1, args.reuseport):
            runs.append((f"unpinned x{count}", "mix"))
            labels[f"unpinned x{count}"] = f"pocketkube, {count} proc(s) SO_REUSEPORT, unpinned"
    print(f"client {args.client}, {args.seconds:g} s per run, {args.rounds} rounds, "
          f"load average at start {os.getloadavg()[0]:.2f}", flush=True)
    results: dict[tuple[str, str], list[dict[str, Any]]] = {r: [] for r in runs}
    with tempfile.TemporaryDirectory() as tmp:
        files = {}
        for kind in ("A", "mix"):
            files[kind] = os.path.join(tmp, kind)
            with open(files[kind], "w") as f:
                f.writelines(f"{n} {t}\n" for n, t in query_lines(kind))
        for rnd in range(args.rounds):
            for mode, kind in runs:
                r = measure(mode, kind, files, args)
                results[(mode, kind)].append(r)
                print(f"  round {rnd + 1} {labels[mode]:<44} {kind:<4} {r['qps']:>9,.0f} q/s "
                      f"server {r['us']:5.1f} µs CPU/q, client {r['client_us']:5.1f}  lost {r['lost']}  {r['codes']}",
                      flush=True)
    print(f"median of {args.rounds} rounds (load average at end {os.getloadavg()[0]:.2f}):")
    for mode, kind in runs:
        rs = results[(mode, kind)]
        qps = statistics.median(r["qps"] for r in rs)
        us = statistics.median(r["us"] for r in rs)
        client = statistics.median(r["client_us"] for r in rs)
        print(f"{labels[mode]:<44} {kind:<4} {qps:>9,.0f} queries/s   server {us:5.1f} µs CPU/query "
              f"(= {1e6 / us if us else 0:>9,.0f}/s per core), client {client:5.1f} µs CPU/query", flush=True)
        if mode == "reflect":
            print(f"{'':<50}two idle cores shared by this client and a server this cheap: at most "
                  f"{2e6 / (us + client):,.0f}/s", flush=True)
    print(f"hot path in Python alone (UDPProtocol.datagram_received on a hit, sendto a no-op): "
          f"{hot_path_ns():.0f} ns/query", flush=True)


if __name__ == "__main__":
    main()
