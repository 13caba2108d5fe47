"""The proxy's nftables sync at 1,000 and 10,000 Services, beside the raw `nft -f` floor of the
same ruleset, and network programming latency (change → rule in the kernel) at 1,000 Services.

Everything runs in a throwaway network namespace `pkt<rand>` with a bridge `pktbr0` (created here,
deleted at the end), with a unique table name, so no rule ever touches the host. Per size:

- full sync: the real `Proxier.sync()` from filled informer caches: model + render (Python CPU)
  and one atomic `nft -f -` replacing the table (nft's user CPU = its parser, sys CPU = kernel);
- floor: `nft -f FILE` of the very same text from the shell (no Python at all), first load and
  reload; beside it the same ruleset as JSON (`nft -j list` turned into `nft -j -f` input) and a
  table of N plain `ip daddr X tcp dport 80 dnat to Y` rules (the least any N-Service table costs);
- change → rule: the proxier's loop runs; an EndpointSlice update (one endpoint flips ready) is
  delivered as the informer delivers a watch event, and the time until the proxier's `nft -f` of
  the diff has returned is recorded (kube-proxy's network_programming_duration, minus the watch);
  changes come at random 0-100 ms after the previous one was applied;
- with `--api`: the same end to end from a real `pocketkube apiserver` on loopback — PUT of the
  EndpointSlice → watch → informer → diff → kernel.

Each size runs with diffs through libnftables in-process and through the `nft -f -` CLI
(`--backends`); whole-table loads always go through the CLI. With libnftables nft's parser and the
kernel's work count as the proxier's own ("py") CPU.

Run (root): .venv/bin/python bench/bench_proxy.py [--sizes 1000,10000] [--changes 200] [--api]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import copy
import json
import os
import random
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable, Iterator
from typing import Any

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, REPO)

from pocketkube.client.informer import Informer, object_key  # noqa: E402
from pocketkube.client.rest import APIClient, ClientConfig  # noqa: E402
from pocketkube.proxy import nftables_apply  # noqa: E402
from pocketkube.proxy.proxier import Proxier, ProxyConfig  # noqa: E402
from tests.unit.proxy.fixtures import many  # noqa: E402

Obj = dict[str, Any]


def loadavg() -> str:
    with open("/proc/loadavg") as f:
        return " ".join(f.read().split()[:3])


def child_cpu() -> tuple[float, float]:
    r = resource.getrusage(resource.RUSAGE_CHILDREN)
    return r.ru_utime, r.ru_stime


class Cost:
    """Wall time, our own CPU and the CPU of the children (nft) that ended meanwhile."""

    def __enter__(self) -> Cost:
        self.wall, self.cpu, (self.user, self.sys) = time.perf_counter(), time.process_time(), child_cpu()
        return self

    def __exit__(self, *exc: object) -> None:
        user, sys_ = child_cpu()
        self.wall, self.cpu = time.perf_counter() - self.wall, time.process_time() - self.cpu
        self.user, self.sys = user - self.user, sys_ - self.sys

    def __str__(self) -> str:
        return f"{self.wall * 1000:7.0f} ms (py {self.cpu * 1000:5.0f}, nft user {self.user * 1000:5.0f}, " \
               f"kernel {self.sys * 1000:5.0f})"


@contextlib.contextmanager
def netns() -> Iterator[str]:
    name = f"pkt{random.randrange(16**6):06x}"
    subprocess.run(["ip", "netns", "add", name], check=True)
    try:
        for cmd in (["link", "set", "lo", "up"], ["link", "add", "pktbr0", "type", "bridge"],
                    ["addr", "add", "10.42.0.1/16", "dev", "pktbr0"], ["link", "set", "pktbr0", "up"]):
            subprocess.run(["ip", "-n", name, *cmd], check=True)
        yield f"/run/netns/{name}"
    finally:
        subprocess.run(["ip", "netns", "delete", name], check=False)


def nft(ns: str, *args: str, stdin: str | None = None) -> str:
    return subprocess.run(["nsenter", f"--net={ns}", "nft", *args], input=stdin, capture_output=True, text=True,
                          check=True).stdout


def put(inf: Informer, obj: Obj) -> None:
    """What an informer does with a watch event: store it, then call the handlers with (old, new)."""
    key = object_key(obj)
    old = inf.store.get(key)
    inf.store[key] = obj
    inf._emit(old, obj)


def plain_floor(table: str, n: int) -> str:
    rules = [f"    ip daddr 10.43.{16 + i // 250}.{1 + i % 250} tcp dport 80 dnat to 10.42.{i // 250 % 250}.{1 + i % 250}"
             for i in range(n)]
    return (f"table ip {table} {{\n  chain pre {{\n    type nat hook prerouting priority -100; policy accept;\n"
            + "\n".join(rules) + "\n  }\n}\n")


def as_json_input(listing: str) -> str:
    """`nft -j list table` output as a script that (re)creates the table."""
    items = [i for i in json.loads(listing)["nftables"] if "metainfo" not in i]
    table = next(i["table"] for i in items if "table" in i)
    ref = {"family": table["family"], "name": table["name"]}
    head = [{"add": {"table": ref}}, {"delete": {"table": ref}}, {"add": {"table": ref}}]
    rank = {"table": 0, "chain": 1, "set": 2, "map": 2, "rule": 3}  # jump targets before their users
    ordered = sorted(((kind, obj) for i in items for kind, obj in i.items() if kind != "table"), key=lambda x: rank[x[0]])
    body = [{"add": {kind: {k: v for k, v in obj.items() if k != "handle"}}} for kind, obj in ordered]
    return json.dumps({"nftables": head + body})


def timed_nft(ns: str, *args: str) -> Cost:
    with Cost() as c:
        nft(ns, *args)
    return c


def proxier(ns: str, table: str, server: str = "http://127.0.0.1:1", client: APIClient | None = None) -> Proxier:
    config = ProxyConfig(node_name="node-a", bridge="pktbr0", service_cidr="10.43.0.0/16", table=table, netns=ns,
                         cleanup_on_exit=False)
    return Proxier(client or APIClient(ClientConfig(server=server)), config)


async def full_sync_bench(n: int, ns: str, tmp: str, *, floors: bool) -> Proxier:
    table = f"pkt{random.randrange(16**6):06x}"
    services, slices = many(n)
    p = proxier(ns, table)
    for s in services:
        put(p.services, s)
    for s in slices:
        put(p.slices, s)
    with Cost() as first:
        await p.sync()
    ruleset = p.ruleset()
    assert ruleset is not None
    script = ruleset.script()
    p._full = True
    with Cost() as reload:
        await p.sync()
    backend = nftables_apply.BACKEND
    print(f"{n:>6} Services, script {len(script) / 1e6:.2f} MB, diffs via {backend} (whole tables via the CLI), "
          f"load {loadavg()}\n"
          f"  proxier full sync, first load   {first}\n"
          f"  proxier full sync, reload       {reload}", flush=True)
    if not floors:
        return p
    path = os.path.join(tmp, f"{table}.nft")
    with open(path, "w") as f:
        f.write(script)
    floor_reload = timed_nft(ns, "-f", path)
    json_path = os.path.join(tmp, f"{table}.json")
    with open(json_path, "w") as f:
        f.write(as_json_input(nft(ns, "-j", "list", "table", "ip", table)))
    nft(ns, "delete", "table", "ip", table)
    floor_first = timed_nft(ns, "-f", path)
    nft(ns, "delete", "table", "ip", table)
    json_first = timed_nft(ns, "-j", "-f", json_path)
    plain_path = os.path.join(tmp, f"{table}p.nft")
    with open(plain_path, "w") as f:
        f.write(plain_floor(table + "p", n))
    plain = timed_nft(ns, "-f", plain_path)
    nft(ns, "delete", "table", "ip", table + "p")
    nft(ns, "-f", path)  # back to the proxier's own table for the change runs
    print(f"  floor: nft -f same text, first  {floor_first}\n"
          f"  floor: nft -f same text, reload {floor_reload}\n"
          f"  same ruleset as JSON, nft -j -f {json_first}\n"
          f"  {n} plain dnat rules, nft -f{' ' * (7 - len(str(n)))}{plain}", flush=True)
    return p


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q / 100 * (len(ordered) - 1)))]


def report(label: str, latencies: list[float], cpu: float) -> None:
    ms = [v * 1000 for v in latencies]
    print(f"  {label}: {len(ms)} changes, p50 {statistics.median(ms):.1f} ms, p99 {percentile(ms, 99):.1f} ms, "
          f"max {max(ms):.1f} ms; CPU per change {cpu / len(ms) * 1000:.1f} ms (proxier + nft); load {loadavg()}",
          flush=True)


async def change_bench(p: Proxier, n: int, changes: int, *,
                       flip: Callable[[Obj], Awaitable[None]] | None = None) -> None:
    """Flip one endpoint of a random Service per change; time until its diff is in the kernel.
    Without `flip` the change is handed to the informer as a watch event and the proxier's loop is
    run here; with it, `flip` writes through the API and the proxier's own run() is going."""
    rnd = random.Random(n)
    task = asyncio.create_task(p._loop(None), name="proxier-loop") if flip is None else None
    latencies: list[float] = []
    to_event: list[float] = []  # of which: until the informer had the event (the API and watch part)
    seen = [0.0]
    p.slices.add_handler(lambda old, new: seen.__setitem__(0, time.monotonic()))
    cpu = 0.0
    full = p.metrics.full
    try:
        await asyncio.sleep(0.2)
        last = ""
        for _ in range(changes):
            last = f"default/svc-{rnd.randrange(n):05d}-abc"
            new = copy.deepcopy(p.slices.store[last])
            cond = new["endpoints"][0]["conditions"]
            cond["ready"] = not cond["ready"]
            p.loaded.clear()
            with Cost() as c:
                start = time.monotonic()
                if flip is None:
                    put(p.slices, new)
                else:
                    await flip(new)
                await asyncio.wait_for(p.loaded.wait(), 30)
            latencies.append(p.synced_at - start)
            to_event.append(seen[0] - start)
            cpu += c.cpu + c.user + c.sys
            await asyncio.sleep(rnd.uniform(0, 0.1))
        assert p.metrics.full == full, p.metrics  # every change went as a diff
        # the last change is in the kernel: its Service chain has as many ready endpoints as the slice
        name = p.slices.store[last]["metadata"]["labels"]["kubernetes.io/service-name"]
        ready = sum(1 for e in p.slices.store[last]["endpoints"] if e["conditions"]["ready"] is not False)
        listing = nft(p.config.netns or "", "list", "table", "ip", p.config.table)
        chain = next(part for part in listing.split("chain svc-")[1:] if f"default/{name}/" in part.split("{")[0])
        assert chain.split("}")[0].count("goto ep-") == ready, chain
    finally:
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
    report(f"{n} Services, change -> rule via {nftables_apply.BACKEND}"
           + (" (API PUT -> watch -> kernel)" if flip else " (informer event -> kernel)"), latencies, cpu)
    if flip is not None:
        ms = [v * 1000 for v in to_event]
        print(f"    of which PUT -> watch event in the informer: p50 {statistics.median(ms):.1f} ms, "
              f"p99 {percentile(ms, 99):.1f} ms", flush=True)


async def floor_changes(ns: str, table: str, n: int, changes: int) -> None:
    """The floor of change -> rule: one minimal transaction of the same shape (a chain with a dnat
    rule and a map element), through the same backend, against the same table, same pacing."""
    rnd = random.Random(n)
    latencies: list[float] = []
    cpu = 0.0
    for _ in range(changes):
        script = (f"add chain ip {table} pkfloor\nadd rule ip {table} pkfloor meta l4proto tcp dnat to 10.42.250.1:80\n"
                  f"add element ip {table} service-ips {{ 10.43.250.1 . tcp . 80 : goto pkfloor }}\n")
        with Cost() as c:
            start = time.monotonic()
            await nftables_apply.apply_script(script, netns=ns)
        latencies.append(time.monotonic() - start)
        cpu += c.cpu + c.user + c.sys
        await nftables_apply.apply_script(f"delete element ip {table} service-ips {{ 10.43.250.1 . tcp . 80 }}\n"
                                          f"delete chain ip {table} pkfloor\n", netns=ns)
        await asyncio.sleep(rnd.uniform(0, 0.1))
    report(f"floor: one bare nft transaction via {nftables_apply.BACKEND}", latencies, cpu)


async def api_bench(n: int, ns: str, changes: int) -> None:
    """The same against a real API server: PUT the slice, the proxier watches it."""
    from tests.conftest import start_server  # the test harness, only for --api

    with tempfile.TemporaryDirectory(prefix="pk-proxy-bench-") as d:
        srv = start_server(d, command="apiserver", timeout=60)
        try:
            client = APIClient(ClientConfig.from_kubeconfig(srv.kubeconfig))
            services, slices = many(n)
            svc_rc = client.core("services")
            slice_rc = client.resource("discovery.k8s.io", "v1", "endpointslices")
            sem = asyncio.Semaphore(32)

            async def create(rc: Any, obj: Obj) -> None:
                async with sem:
                    await rc.create(obj, "default")

            await asyncio.gather(*(create(svc_rc, s) for s in services))
            await asyncio.gather(*(create(slice_rc, s) for s in slices))
            p = proxier(ns, f"pkt{random.randrange(16**6):06x}", client=client)
            ready = asyncio.Event()
            run = asyncio.create_task(p.run(ready=ready))
            try:
                await asyncio.wait_for(ready.wait(), 120)

                async def flip(obj: Obj) -> None:
                    await slice_rc.update(obj)

                await change_bench(p, n, changes, flip=flip)
            finally:
                run.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await run
            await nftables_apply.delete_table(p.config.table, netns=ns)
            await client.close()
        finally:
            srv.stop()


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--sizes", default="1000,10000")
    parser.add_argument("--changes", type=int, default=200)
    parser.add_argument("--backends", default="lib,cli", help="libnftables in-process and/or the nft CLI")
    parser.add_argument("--api", action="store_true", help="also measure API write -> kernel at 1,000 Services")
    args = parser.parse_args()
    if os.geteuid() != 0:
        raise SystemExit("bench_proxy needs root (a network namespace and nft)")
    print(f"nft {nft('/proc/self/ns/net', '--version').strip()}, load {loadavg()}", flush=True)
    with netns() as ns, tempfile.TemporaryDirectory(prefix="pk-proxy-bench-") as tmp:

        async def go() -> None:
            for n in (int(s) for s in args.sizes.split(",")):
                for i, backend in enumerate(args.backends.split(",")):
                    nftables_apply.BACKEND = backend
                    p = await full_sync_bench(n, ns, tmp, floors=i == 0)
                    changes = args.changes if n <= 1000 else max(args.changes // 4, 10)
                    await change_bench(p, n, changes)
                    await floor_changes(ns, p.config.table, n, changes)
                    await nftables_apply.delete_table(p.config.table, netns=ns)
            if args.api:
                nftables_apply.BACKEND = args.backends.split(",")[0]
                await api_bench(1000, ns, args.changes)
            nftables_apply.release(ns)

        asyncio.run(go())


if __name__ == "__main__":
    main()
