"""Server CPU per ConfigMap create and per GET, over real HTTPS, robust to a loaded machine.

bench_apiserver.py reports throughput, which on this shared 2-core VM moves with other people's
load. This bench drives the same requests (the same ConfigMaps, 50 keep-alive clients, same
client) against a real `pocketkube server --disable-agent` process and divides the API server's
CPU time (utime + stime of its process, every thread, from /proc/<pid>/stat) by the number of
requests: CPU per request barely moves with load, so before/after comparisons hold. It also runs
the trivial HTTPS server of bench_apiserver.py (same TLS, same client) and reports its CPU per
request, the floor no Python server with this stack goes under. With `--pyspy DIR` (py-spy on
PATH or `--pyspy-bin`) each phase is recorded as a raw flame file. Usage:

    /work/main/.venv/bin/python bench/bench_api_cpu.py [--n 5000] [--rounds 3] [--pyspy /tmp/prof]
"""

from __future__ import annotations

import argparse
import contextlib
import os
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Awaitable, Callable, Iterator
from typing import Any

import orjson

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path[:0] = [REPO, os.path.join(REPO, "bench")]

from bench_apiserver import (  # noqa: E402
    CONCURRENCY,
    configmap,
    cpu_seconds,
    create_namespace,
    floor_server,
    get,
    load,
    pct,
    post,
    session,
)

import tests.conftest  # noqa: E402
from tests.conftest import start_server  # noqa: E402


@contextlib.contextmanager
def pyspy(args: argparse.Namespace, pid: int, name: str) -> Iterator[None]:
    if not args.pyspy:
        yield
        return
    out = os.path.join(args.pyspy, f"{name}.txt")
    proc = subprocess.Popen([args.pyspy_bin, "record", "--pid", str(pid), "--format", "raw", "--rate", "200",
                             "--nonblocking", "--output", out], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        yield
    finally:
        proc.send_signal(2)
        try:
            proc.wait(20)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def thread_cpu(pid: int) -> dict[str, float]:
    """CPU seconds per thread of a process ("main" for the event loop thread, others by thread id)."""
    out: dict[str, float] = {}
    for tid in os.listdir(f"/proc/{pid}/task"):
        with contextlib.suppress(OSError), open(f"/proc/{pid}/task/{tid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
            out["main" if tid == str(pid) else tid] = (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    return out


def children_cpu(pid: int) -> float:
    """CPU seconds of the server's child processes (controller-manager, scheduler) so far."""
    total = 0.0
    for tid in os.listdir(f"/proc/{pid}/task"):
        with contextlib.suppress(OSError), open(f"/proc/{pid}/task/{tid}/children") as f:
            for child in f.read().split():
                with contextlib.suppress(OSError):
                    total += cpu_seconds(int(child))
    return total


async def per_op(pid: int, n: int, op: Callable[[int], Awaitable[None]]) -> tuple[float, float, float, float, float,
                                                                                 float]:
    """(server CPU us per op, ops/s, p50 ms, p99 ms, event-loop thread CPU us per op, the server's children's
    CPU as a share of one core) for n ops from 50 clients."""
    cpu0, threads0, kids0 = cpu_seconds(pid), thread_cpu(pid), children_cpu(pid)
    res = await load(600, n, CONCURRENCY, op, pid)
    cpu, main = cpu_seconds(pid) - cpu0, thread_cpu(pid).get("main", 0.0) - threads0.get("main", 0.0)
    return (cpu / res.ops * 1e6, res.rate, pct(res.latencies, .5) * 1e3, pct(res.latencies, .99) * 1e3,
            main / res.ops * 1e6, (children_cpu(pid) - kids0) / res.seconds)


async def get_pairs(args: argparse.Namespace, ctx: Any, data_dir: str, pid: int, url: str, objects: int) -> None:
    """GET latency of the server and of the trivial server, alternated in short phases: on a shared
    machine whose load moves by the minute, each pair ran under the same conditions."""
    rows: list[tuple[float, float]] = []
    with floor_server(os.path.join(data_dir, "tls")) as (floor_url, fpid):
        async with session(ctx) as fs, session(ctx) as s:
            await load(600, 200, CONCURRENCY, lambda i: get(fs, floor_url), None)
            for k in range(args.get_pairs):
                f = await per_op(fpid, args.n, lambda i: get(fs, floor_url))
                g = await per_op(pid, args.n, lambda i: get(s, f"{url}/cm-{(i * 7919) % objects:06d}"))
                rows.append((f[3], g[3]))
                print(f"pair {k}: GET p50/p99 floor {f[2]:.2f}/{f[3]:.2f} ms at {f[1]:,.0f}/s ({f[0]:.0f} us CPU/req); "
                      f"server {g[2]:.2f}/{g[3]:.2f} ms at {g[1]:,.0f}/s ({g[0]:.0f} us CPU/req; its children "
                      f"{g[5]:.0%} of a core); load {os.getloadavg()[0]:.2f}", flush=True)
    floors, ours = sorted(r[0] for r in rows), sorted(r[1] for r in rows)
    print(f"GET p99 median of {len(rows)} pairs: floor {floors[len(rows) // 2]:.2f} ms, server {ours[len(rows) // 2]:.2f} ms; "
          f"best: floor {floors[0]:.2f} ms, server {ours[0]:.2f} ms", flush=True)


async def main(args: argparse.Namespace) -> None:
    workdir = tempfile.mkdtemp(prefix="bench-api-cpu-")
    if args.pyspy:
        os.makedirs(args.pyspy, exist_ok=True)
    if args.server_repo:  # measure another checkout's server (e.g. `git archive main`) with this client
        tests.conftest.REPO = os.path.abspath(args.server_repo)
    print(f"server code {tests.conftest.REPO}; load average at start "
          f"{' '.join(f'{x:.2f}' for x in os.getloadavg())}", flush=True)
    extra = ("--datastore", args.datastore) if args.datastore else ()
    srv = start_server(os.path.join(workdir, "pk"), timeout=60, command=args.command, extra_args=extra)
    try:
        ctx = srv.ssl_context()
        pid, base = srv.proc.pid, srv.url
        body = orjson.dumps(configmap(0))
        with floor_server(os.path.join(srv.data_dir, "tls")) as (url, fpid):
            async with session(ctx) as s:
                await load(600, 200, CONCURRENCY, lambda i: get(s, url), None)  # open every connection first
                fp = await per_op(fpid, args.n, lambda i: post(s, url, body))
                fg = await per_op(fpid, args.n, lambda i: get(s, url))
        print(f"floor (trivial HTTPS): POST {fp[0]:.0f} us CPU/req ({fp[1]:,.0f}/s); GET {fg[0]:.0f} us CPU/req "
              f"({fg[1]:,.0f}/s, p50/p99 {fg[2]:.2f}/{fg[3]:.2f} ms)", flush=True)
        async with session(ctx) as s:
            await create_namespace(s, base, "bench-cm")
            # Open all 50 connections (TLS handshakes) before anything is measured.
            await load(600, 200, CONCURRENCY, lambda i: get(s, f"{base}/api/v1/namespaces/bench-cm"), None)
            url = f"{base}/api/v1/namespaces/bench-cm/configmaps"
            for r in range(args.rounds):
                bodies = [orjson.dumps(configmap(i + r * args.n)) for i in range(args.n)]
                with pyspy(args, pid, f"create-{r}"):
                    c = await per_op(pid, args.n, lambda i, b=bodies: post(s, url, b[i]))
                total = (r + 1) * args.n
                with pyspy(args, pid, f"get-{r}"):
                    g = await per_op(pid, args.n, lambda i, t=total: get(s, f"{url}/cm-{(i * 7919) % t:06d}"))
                print(f"round {r}: create {c[0]:.0f} us CPU/req (loop thread {c[4]:.0f}; {c[1]:,.0f}/s, "
                      f"p99 {c[3]:.1f} ms); "
                      f"GET {g[0]:.0f} us CPU/req (loop thread {g[4]:.0f}; {g[1]:,.0f}/s, "
                      f"p50/p99 {g[2]:.2f}/{g[3]:.2f} ms); controller-manager+scheduler {c[5]:.0%} / {g[5]:.0%} "
                      f"of a core; load {os.getloadavg()[0]:.2f}", flush=True)
            if args.get_pairs:
                await get_pairs(args, ctx, srv.data_dir, pid, url, args.rounds * args.n)
    finally:
        srv.stop()
        shutil.rmtree(workdir, ignore_errors=True)


if __name__ == "__main__":
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--n", type=int, default=5000)
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--pyspy", default="", help="directory for py-spy raw profiles, one per phase")
    p.add_argument("--command", choices=("server", "apiserver"), default="server",
                   help="server: with controller-manager and scheduler (their watches cost the API server "
                        "CPU per write, as in bench_apiserver.py); apiserver: the API server alone")
    p.add_argument("--get-pairs", type=int, default=0,
                   help="then alternate this many GET phases of the trivial server and of the server")
    p.add_argument("--datastore", default="", help="e.g. memory:// to leave the store's cost out")
    p.add_argument("--server-repo", default="", help="run the server from this checkout instead of this one")
    p.add_argument("--pyspy-bin", default=shutil.which("py-spy") or "py-spy")
    import uvloop

    uvloop.run(main(p.parse_args()))
