"""HTTP throughput through a ClusterIP and straight to the pod IP, in the same run (issue 5).

Two throwaway network namespaces: a node `pkt<rand>n` with a bridge `pktbr0` (10.42.0.1/24) and a
pod `pkt<rand>p` on a veth behind it (10.42.0.2) running a small keep-alive HTTP server (uvloop).
The real `Proxier` loads its table into the node (1,000 Services, the benchmarked one among them)
and routes the service CIDR to the bridge, as on a node. wrk runs in the node against the pod IP,
the ClusterIP and a second VIP DNATed by one plain `dnat` rule in a table of its own (the floor of
any DNAT: the kernel's NAT without the proxier's rules), in alternating rounds; the ratio of the
medians is the figure (target >= 0.9). Beside it, CPU per request of wrk + server from their
rusage, which the other sessions' load moves much less than the request rate. Twice: keep-alive
(DNAT on each connection's first packet, NAT on every packet) and `Connection: close` (a pass
through the service chain per request). A counting table after nat checks that the ClusterIP runs
were DNATed and the pod-IP runs were not. Everything is deleted at the end; nothing leaves the
namespaces.

Run (root): .venv/bin/python bench/bench_service_http.py [--seconds 3] [--rounds 3]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import random
import re
import resource
import statistics
import subprocess
import sys
import time
from collections.abc import Iterator

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, REPO)

from pocketkube.client.informer import Informer, object_key  # noqa: E402
from pocketkube.client.rest import APIClient, ClientConfig  # noqa: E402
from pocketkube.proxy import nftables_apply  # noqa: E402
from pocketkube.proxy.proxier import Proxier, ProxyConfig  # noqa: E402
from tests.unit.proxy.fixtures import endpoint, endpoint_slice, many, service  # noqa: E402

POD_IP, VIP, PLAIN_VIP = "10.42.0.2", "10.43.0.80", "10.43.0.81"
SERVER = """
import asyncio, socket, struct, uvloop
OK = b"HTTP/1.1 200 OK\\r\\nContent-Length: 2\\r\\nContent-Type: text/plain\\r\\n\\r\\nok"
BYE = b"HTTP/1.1 200 OK\\r\\nContent-Length: 2\\r\\nConnection: close\\r\\n\\r\\nok"
class Http(asyncio.Protocol):
    def connection_made(self, transport):
        self.transport, self.buf = transport, b""
    def data_received(self, data):
        self.buf += data
        n = self.buf.count(b"\\r\\n\\r\\n")
        if n:
            close = b"onnection: close" in self.buf
            self.buf = self.buf[self.buf.rfind(b"\\r\\n\\r\\n") + 4:]
            if close:  # then reset: no TIME_WAIT here, or reused client ports would stall 1 s
                self.transport.write(BYE)
                sock = self.transport.get_extra_info("socket")
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
                self.transport.close()
            else:
                self.transport.write(OK * n)
async def main():
    server = await asyncio.get_running_loop().create_server(Http, "0.0.0.0", 8080, backlog=1024)
    print("ready", flush=True)
    await server.serve_forever()
uvloop.run(main())
"""


def loadavg() -> str:
    with open("/proc/loadavg") as f:
        return " ".join(f.read().split()[:3])


def ip(*args: str) -> None:
    subprocess.run(["ip", *args], check=True)


@contextlib.contextmanager
def namespaces() -> Iterator[tuple[str, str]]:
    prefix = f"pkt{random.randrange(16**6):06x}"
    node, pod = prefix + "n", prefix + "p"
    ip("netns", "add", node)
    try:
        ip("netns", "add", pod)
        try:
            ip("-n", node, "link", "set", "lo", "up")
            ip("-n", node, "link", "add", "pktbr0", "type", "bridge")
            ip("-n", node, "addr", "add", "10.42.0.1/24", "dev", "pktbr0")
            ip("-n", node, "link", "set", "pktbr0", "up")
            ip("-n", node, "link", "add", "pktv0", "type", "veth", "peer", "name", "eth0", "netns", pod)
            ip("-n", node, "link", "set", "pktv0", "master", "pktbr0", "up")
            ip("-n", pod, "link", "set", "lo", "up")
            ip("-n", pod, "addr", "add", f"{POD_IP}/24", "dev", "eth0")
            ip("-n", pod, "link", "set", "eth0", "up")
            ip("-n", pod, "route", "add", "default", "via", "10.42.0.1")
            yield f"/run/netns/{node}", f"/run/netns/{pod}"
        finally:
            ip("netns", "delete", pod)
    finally:
        ip("netns", "delete", node)


def put(inf: Informer, obj: dict[str, object]) -> None:
    inf.store[object_key(obj)] = obj
    inf._emit(None, obj)


def nft(ns: str, *args: str, stdin: str | None = None) -> str:
    return subprocess.run(["nsenter", f"--net={ns}", "nft", *args], input=stdin, capture_output=True, text=True,
                          check=True).stdout


def dnat_count(ns: str, table: str) -> int:
    for item in json.loads(nft(ns, "-j", "list", "table", "ip", table))["nftables"]:
        for expr in (item.get("rule") or {}).get("expr") or []:
            if "counter" in expr:
                return int(expr["counter"]["packets"])
    raise AssertionError("no counter")


TICK = os.sysconf("SC_CLK_TCK")


def proc_cpu(pid: int) -> float:
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / TICK


def wrk(ns: str, url: str, seconds: int, close: bool, server_pid: int) -> tuple[float, float]:
    """Requests/s, and CPU seconds per request of wrk + the server (both machine-load independent)."""
    argv = ["nsenter", f"--net={ns}", "wrk", "-t2", "-c32", f"-d{seconds}s", url]
    if close:
        argv[5:5] = ["-H", "Connection: close"]
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    server_before = proc_cpu(server_pid)
    out = subprocess.run(argv, capture_output=True, text=True, check=True).stdout
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (after.ru_utime + after.ru_stime - before.ru_utime - before.ru_stime) + proc_cpu(server_pid) - server_before
    if "Non-2xx" in out or ("Socket errors" in out and not close):
        raise AssertionError(f"wrk saw errors:\n{out}")
    rate = re.search(r"Requests/sec:\s+([\d.]+)", out)
    total = re.search(r"(\d+) requests in", out)
    assert rate and total, out
    return float(rate.group(1)), cpu / max(int(total.group(1)), 1)


async def load_table(node_ns: str, table: str) -> Proxier:
    p = Proxier(APIClient(ClientConfig(server="http://127.0.0.1:1")),
                ProxyConfig(node_name="node-a", bridge="pktbr0", table=table, netns=node_ns, cleanup_on_exit=False))
    services, slices = many(999)
    services.append(service("web", VIP, [{"name": "http", "port": 80, "protocol": "TCP", "targetPort": 8080}]))
    slices.append(endpoint_slice("web", [endpoint(POD_IP)], [{"name": "http", "port": 8080, "protocol": "TCP"}]))
    for s in services:
        put(p.services, s)
    for s in slices:
        put(p.slices, s)
    await p.sync()
    return p


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--seconds", type=int, default=3)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    if os.geteuid() != 0:
        raise SystemExit("bench_service_http needs root (network namespaces and nft)")
    table = f"pkt{random.randrange(16**6):06x}"
    with namespaces() as (node_ns, pod_ns):
        server = subprocess.Popen(["nsenter", f"--net={pod_ns}", sys.executable, "-c", SERVER],
                                  stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        try:
            assert server.stdout is not None and server.stdout.readline().strip() == "ready"
            p = asyncio.run(load_table(node_ns, table))
            nft(node_ns, "-f", "-", stdin=f"table ip {table}c {{\n  chain post {{\n"
                "    type filter hook postrouting priority 200; policy accept;\n"
                f"    ct state new ct status dnat ip daddr {POD_IP} tcp dport 8080 counter\n  }}\n"
                "  chain out {\n    type nat hook output priority -150; policy accept;\n"
                f"    ip daddr {PLAIN_VIP} tcp dport 80 dnat to {POD_IP}:8080\n  }}\n}}\n")
            print(f"1,000 Services in the table; wrk -t2 -c32 -d{args.seconds}s, {args.rounds} rounds each, "
                  f"load {loadavg()}", flush=True)
            for close in (False, True):
                direct: list[tuple[float, float]] = []
                via: list[tuple[float, float]] = []
                plain: list[tuple[float, float]] = []
                for _ in range(args.rounds):
                    before = dnat_count(node_ns, table + "c")
                    direct.append(wrk(node_ns, f"http://{POD_IP}:8080/", args.seconds, close, server.pid))
                    assert dnat_count(node_ns, table + "c") == before, "pod-IP traffic went through DNAT"
                    via.append(wrk(node_ns, f"http://{VIP}/", args.seconds, close, server.pid))
                    dnated = dnat_count(node_ns, table + "c") - before
                    assert dnated >= 32, f"only {dnated} connections were DNATed by the service chain"
                    plain.append(wrk(node_ns, f"http://{PLAIN_VIP}/", args.seconds, close, server.pid))
                    time.sleep(0.2)
                rate_d, rate_v, rate_p = (statistics.median(r for r, _ in runs) for runs in (direct, via, plain))
                cpu_d, cpu_v, cpu_p = (statistics.median(c for _, c in runs) * 1e6 for runs in (direct, via, plain))
                label = "Connection: close" if close else "keep-alive      "
                print(f"  {label}: pod IP {rate_d:8.0f} req/s  ClusterIP {rate_v:8.0f} req/s  ratio "
                      f"{rate_v / rate_d:.3f} | CPU per request (wrk + server) pod IP {cpu_d:.1f} us, "
                      f"ClusterIP {cpu_v:.1f} us, ratio {cpu_d / cpu_v:.3f}\n"
                      f"      floor: one plain dnat rule {rate_p:8.0f} req/s (ratio {rate_p / rate_d:.3f}), "
                      f"{cpu_p:.1f} us per request (ratio {cpu_d / cpu_p:.3f})\n"
                      f"      rounds pod {[round(r) for r, _ in direct]}, ClusterIP {[round(r) for r, _ in via]}, "
                      f"plain dnat {[round(r) for r, _ in plain]}; load {loadavg()}", flush=True)
            asyncio.run(nftables_apply.delete_table(p.config.table, netns=node_ns))
            nft(node_ns, "delete", "table", "ip", table + "c")
        finally:
            nftables_apply.release(node_ns)
            server.terminate()
            server.wait(5)


if __name__ == "__main__":
    main()
