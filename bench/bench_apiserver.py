"""The API server end to end, each figure beside the raw floor measured in the same run.

A real `pocketkube server` process (HTTPS on 127.0.0.1, admin client certificate) is driven by an
aiohttp client (uvloop) over keep-alive connections. Floors measured in the same run:

- store: plain sqlite3 INSERT+COMMIT (WAL, synchronous=FULL) in the server's data dir, one row per
  commit and 50 per commit; for etcd, raw aetcd puts with 50 in flight against the same etcd;
- HTTP: a trivial aiohttp+uvloop HTTPS server (same TLS setup, same client) that echoes POSTs and
  answers GETs with a constant ConfigMap, so the cost of TLS + HTTP/1.1 + the client is visible;
- LIST: reading the same 10k pod values straight from the store.

Benchmarks: ConfigMap creates/s (50 clients), GET latency p50/p99 (50 clients), LIST of 10k pods
(JSON and Table), watch fan-out (100 watchers x N writes, every event checked), idle RSS, start
to /readyz (fresh, and restart with 10k objects). Everything is capped in count and time; all
traffic stays on 127.0.0.1; etcd (if asked for) is started here and killed by pid. Run:

    /work/main/.venv/bin/python bench/bench_apiserver.py [--backend sqlite|etcd|both] [--quick]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import platform
import shutil
import sqlite3
import ssl
import subprocess
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import aiohttp
import orjson

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path[:0] = [REPO, os.path.join(REPO, "bench")]

from bench_storage import etcd_server  # noqa: E402

from tests.conftest import ServerProcess, free_port, start_server  # noqa: E402

CONCURRENCY = 50
WATCHERS = 100
TABLE_ACCEPT = "application/json;as=Table;g=meta.k8s.io;v=v1,application/json"


@dataclass
class Settings:
    seconds: float  # per throughput/latency phase
    max_ops: int  # per throughput/latency phase
    pods: int
    watch_writes: int
    list_rounds: int


FULL = Settings(seconds=5.0, max_ops=50_000, pods=10_000, watch_writes=500, list_rounds=3)
QUICK = Settings(seconds=2.0, max_ops=10_000, pods=2_000, watch_writes=100, list_rounds=1)


def configmap(i: int, prefix: str = "cm") -> dict[str, Any]:
    """A ~1 KB ConfigMap (the serialized object is ~1 KB once the server adds its metadata)."""
    return {"apiVersion": "v1", "kind": "ConfigMap",
            "metadata": {"name": f"{prefix}-{i:06d}", "labels": {"app": "bench", "shard": str(i % 16)}},
            "data": {"settings.yaml": "key: value\n" * 64, "mode": "production"}}


def pod(i: int) -> dict[str, Any]:
    """A realistic Deployment-made pod: two containers, probes, resources, env, volumes."""
    name = f"web-7d4b9c8f6d-{i:05d}"
    return {
        "apiVersion": "v1", "kind": "Pod",
        "metadata": {
            "name": name,
            "labels": {"app": "web", "tier": "frontend", "pod-template-hash": "7d4b9c8f6d", "shard": str(i % 10)},
            "annotations": {"kubectl.kubernetes.io/restartedAt": "2026-11-25T10:00:00Z",
                            "prometheus.io/scrape": "true", "prometheus.io/port": "9113"},
            "ownerReferences": [{"apiVersion": "apps/v1", "kind": "ReplicaSet", "name": "web-7d4b9c8f6d",
                                 "uid": "6c1c0f3e-3f0a-4d55-9d0e-6f7f3c1a2b4d", "controller": True,
                                 "blockOwnerDeletion": True}],
        },
        "spec": {
            "containers": [
                {"name": "web", "image": "registry.example.com/web/nginx:1.27.3",
                 "ports": [{"name": "http", "containerPort": 8080, "protocol": "TCP"}],
                 "env": [{"name": "MODE", "value": "production"},
                         {"name": "POD_NAME", "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}}},
                         {"name": "POD_IP", "valueFrom": {"fieldRef": {"fieldPath": "status.podIP"}}}],
                 "resources": {"requests": {"cpu": "100m", "memory": "128Mi"},
                               "limits": {"cpu": "500m", "memory": "256Mi"}},
                 "readinessProbe": {"httpGet": {"path": "/healthz", "port": 8080}, "periodSeconds": 10},
                 "livenessProbe": {"httpGet": {"path": "/livez", "port": 8080}, "initialDelaySeconds": 15},
                 "volumeMounts": [{"name": "config", "mountPath": "/etc/web", "readOnly": True},
                                  {"name": "cache", "mountPath": "/var/cache/nginx"}]},
                {"name": "exporter", "image": "registry.example.com/nginx/exporter:1.4.0",
                 "args": ["--nginx.scrape-uri=http://localhost:8080/stub_status"],
                 "ports": [{"name": "metrics", "containerPort": 9113, "protocol": "TCP"}],
                 "resources": {"requests": {"cpu": "10m", "memory": "16Mi"}}},
            ],
            "volumes": [{"name": "config", "configMap": {"name": "web-config"}},
                        {"name": "cache", "emptyDir": {"sizeLimit": "1Gi"}}],
            "nodeName": f"node-{i % 100:03d}",
            "affinity": {"podAntiAffinity": {"preferredDuringSchedulingIgnoredDuringExecution": [
                {"weight": 100, "podAffinityTerm": {"labelSelector": {"matchLabels": {"app": "web"}},
                                                    "topologyKey": "kubernetes.io/hostname"}}]}},
        },
    }


# ---- measurement helpers ---------------------------------------------------------------------

def pct(sorted_values: list[float], q: float) -> float:
    return sorted_values[min(len(sorted_values) - 1, int(q * len(sorted_values)))] if sorted_values else float("nan")


def cpu_seconds(pid: int) -> float:
    """utime + stime of a process, from /proc/<pid>/stat."""
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def machine_busy() -> float:
    """Busy CPU seconds of the whole machine so far (every core), from /proc/stat."""
    with open("/proc/stat") as f:
        fields = [int(x) for x in f.readline().split()[1:]]
    idle = fields[3] + fields[4]  # idle + iowait
    return (sum(fields[:8]) - idle) / os.sysconf("SC_CLK_TCK")


def rss_mb(pid: int, field_name: str = "VmRSS") -> float:
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith(field_name + ":"):
                return int(line.split()[1]) / 1024
    return float("nan")


@dataclass
class Load:
    ops: int
    seconds: float
    latencies: list[float] = field(default_factory=list)
    server_cpu: float = 0.0  # fraction of one core
    client_cpu: float = 0.0
    others_cpu: float = 0.0  # every other process on the machine: the run is noisy if this is high

    @property
    def rate(self) -> float:
        return self.ops / self.seconds

    def cpu(self) -> str:
        return (f"server CPU {self.server_cpu:.0%}, client CPU {self.client_cpu:.0%}, "
                f"other processes {self.others_cpu:.0%} of a core")


async def load(seconds: float, max_ops: int, concurrency: int, op: Callable[[int], Awaitable[None]],
               pid: int | None) -> Load:
    """Run op(i) for i = 0, 1, ... from `concurrency` tasks until the time or the count is up."""
    counter = 0
    latencies: list[float] = []
    deadline = time.perf_counter() + seconds

    async def worker() -> None:
        nonlocal counter
        while counter < max_ops and time.perf_counter() < deadline:
            i = counter
            counter += 1
            t = time.perf_counter()
            await op(i)
            latencies.append(time.perf_counter() - t)

    cpu0, client0, busy0 = (cpu_seconds(pid) if pid else 0.0), time.process_time(), machine_busy()
    start = time.perf_counter()
    async with asyncio.TaskGroup() as tg:
        for _ in range(concurrency):
            tg.create_task(worker())
    elapsed = time.perf_counter() - start
    result = Load(len(latencies), elapsed, sorted(latencies))
    result.server_cpu = ((cpu_seconds(pid) - cpu0) / elapsed) if pid else 0.0
    result.client_cpu = (time.process_time() - client0) / elapsed
    ours = result.server_cpu + result.client_cpu
    result.others_cpu = max(0.0, (machine_busy() - busy0) / elapsed - ours)
    return result


def session(ctx: ssl.SSLContext, limit: int = CONCURRENCY) -> aiohttp.ClientSession:
    # One keep-alive connection per client: the pool never needs more than `limit`.
    return aiohttp.ClientSession(connector=aiohttp.TCPConnector(ssl=ctx, limit=limit),
                                 timeout=aiohttp.ClientTimeout(total=120))


async def expect(resp: aiohttp.ClientResponse, status: int) -> bytes:
    body = await resp.read()
    if resp.status != status:
        raise RuntimeError(f"{resp.method} {resp.url}: {resp.status} (wanted {status}): {body[:300]!r}")
    return body


async def post(s: aiohttp.ClientSession, url: str, obj: dict[str, Any] | bytes) -> bytes:
    data = obj if isinstance(obj, bytes) else orjson.dumps(obj)
    async with s.post(url, data=data, headers={"Content-Type": "application/json"}) as resp:
        return await expect(resp, 201)


async def get(s: aiohttp.ClientSession, url: str, accept: str = "application/json") -> bytes:
    async with s.get(url, headers={"Accept": accept}) as resp:
        return await expect(resp, 200)


# ---- raw floors ------------------------------------------------------------------------------

def raw_sqlite(path: str, seconds: float, max_rows: int, batch: int, value: bytes) -> float:
    """Rows per second of plain sqlite3 INSERT+COMMIT (WAL, synchronous=FULL), `batch` rows per commit."""
    conn = sqlite3.connect(path, isolation_level=None)
    conn.execute("PRAGMA journal_mode = WAL")
    conn.execute("PRAGMA synchronous = FULL")
    conn.execute("CREATE TABLE t (id INTEGER PRIMARY KEY AUTOINCREMENT, name TEXT, value BLOB)")
    n, start = 0, time.perf_counter()
    deadline = start + seconds
    while time.perf_counter() < deadline and n < max_rows:
        conn.execute("BEGIN IMMEDIATE")
        for _ in range(batch):
            conn.execute("INSERT INTO t (name, value) VALUES (?, ?)", (f"/k/{n}", value))
            n += 1
        conn.execute("COMMIT")
    elapsed = time.perf_counter() - start
    conn.close()
    os.unlink(path)
    for suffix in ("-wal", "-shm"):
        with contextlib.suppress(FileNotFoundError):
            os.unlink(path + suffix)
    return n / elapsed


def etcd_client(url: str) -> Any:
    import aetcd

    host, port = url.removeprefix("http://").split(":")
    return aetcd.Client(host, int(port), options={"grpc.max_receive_message_length": 256 * 1024 * 1024})


async def raw_etcd_puts(url: str, seconds: float, max_ops: int, value: bytes) -> Load:
    async with etcd_client(url) as client:
        async def put(i: int) -> None:
            await client.put(f"/raw/{i}".encode(), value)

        return await load(seconds, max_ops, CONCURRENCY, put, None)


def raw_list_sqlite(db: str, prefix: str) -> tuple[float, int, int]:
    """Seconds to read every live value under prefix from the server's SQLite file, joined as a list."""
    conn = sqlite3.connect(f"file:{db}?mode=ro", uri=True)
    t = time.perf_counter()
    # The newest row of each key (the log keeps every revision until compaction).
    rows = conn.execute("SELECT l.value FROM log l WHERE l.name >= ? AND l.name < ? AND l.deleted = 0 AND "
                        "l.id = (SELECT MAX(m.id) FROM log m WHERE m.name = l.name)",
                        (prefix, prefix + "\xff")).fetchall()
    body = b"[" + b",".join(r[0] for r in rows) + b"]"
    elapsed = time.perf_counter() - t
    conn.close()
    return elapsed, len(rows), len(body)


async def raw_list_etcd(url: str, prefix: str) -> tuple[float, int, int]:
    async with etcd_client(url) as client:
        t = time.perf_counter()
        got = await client.get_prefix(prefix.encode())
        body = b"[" + b",".join(kv.value for kv in got) + b"]"
        return time.perf_counter() - t, len(got), len(body)


# ---- the HTTP floor: a trivial aiohttp server with the same TLS setup -------------------------

def floor_server_main(port: int, tls_dir: str) -> None:
    """Run in a child process: echo POST bodies (201) and answer GET with a constant ConfigMap."""
    import uvloop
    from aiohttp import web

    body = orjson.dumps({**configmap(0), "metadata": {**configmap(0)["metadata"], "resourceVersion": "1"}})

    async def handle_get(request: web.Request) -> web.Response:
        return web.Response(body=body, content_type="application/json")

    async def handle_blob(request: web.Request) -> web.Response:
        # A body of the asked size, built per request as a LIST handler would build its answer.
        n = int(request.match_info["n"])
        return web.Response(body=b"[" + b"x" * (n - 2) + b"]", content_type="application/json")

    async def handle_post(request: web.Request) -> web.Response:
        raw = await request.read()
        return web.Response(body=orjson.dumps(orjson.loads(raw)), status=201, content_type="application/json")

    async def main() -> None:
        ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        ctx.load_cert_chain(os.path.join(tls_dir, "serving.crt"), os.path.join(tls_dir, "serving.key"))
        ctx.load_verify_locations(os.path.join(tls_dir, "ca.crt"))
        ctx.verify_mode = ssl.CERT_OPTIONAL
        app = web.Application()
        app.router.add_get("/x", handle_get)
        app.router.add_post("/x", handle_post)
        app.router.add_get("/blob/{n}", handle_blob)
        runner = web.AppRunner(app, access_log=None)
        await runner.setup()
        await web.TCPSite(runner, "127.0.0.1", port, ssl_context=ctx, backlog=1024).start()
        await asyncio.Event().wait()

    uvloop.run(main())


@contextlib.contextmanager
def floor_server(tls_dir: str) -> Iterator[tuple[str, int]]:
    port = free_port()
    proc = subprocess.Popen([sys.executable, os.path.abspath(__file__), "--floor-server", str(port), tls_dir],
                            stdin=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            with contextlib.suppress(OSError), __import__("socket").create_connection(("127.0.0.1", port), 0.2):
                break
            time.sleep(0.05)
        yield f"https://127.0.0.1:{port}/x", proc.pid
    finally:
        proc.kill()
        proc.wait()


# ---- the benchmarks --------------------------------------------------------------------------

@dataclass
class Report:
    backend: str
    rows: dict[str, Any] = field(default_factory=dict)

    def add(self, name: str, value: Any) -> None:
        self.rows[name] = value
        print(f"  {name:38} {value}", flush=True)


async def bench_http_floor(ctx: ssl.SSLContext, tls_dir: str, cfg: Settings, rep: Report) -> None:
    body = orjson.dumps(configmap(0))
    with floor_server(tls_dir) as (url, pid):
        async with session(ctx) as s:
            await get(s, url)
            posts = await load(cfg.seconds, cfg.max_ops, CONCURRENCY, lambda i: post(s, url, body), pid)
            gets = await load(cfg.seconds, cfg.max_ops, CONCURRENCY, lambda i: get(s, url), pid)
            one = await load(cfg.seconds / 2, cfg.max_ops, 1, lambda i: get(s, url), pid)
    rep.add("floor: HTTP echo POST/s", f"{posts.rate:,.0f}/s ({posts.cpu()})")
    rep.add("floor: HTTP GET p50/p99", f"{pct(gets.latencies, .5) * 1e3:.2f} / {pct(gets.latencies, .99) * 1e3:.2f} ms"
            f" at {gets.rate:,.0f}/s ({gets.cpu()})")
    rep.add("floor: HTTP GET p50/p99, 1 client", f"{pct(one.latencies, .5) * 1e3:.2f} / "
            f"{pct(one.latencies, .99) * 1e3:.2f} ms")
    rep.rows["floor_http_post"] = posts.rate
    rep.rows["floor_http_get1"] = (pct(one.latencies, .5), pct(one.latencies, .99))
    rep.rows["floor_http_get"] = (pct(gets.latencies, .5), pct(gets.latencies, .99), gets.rate)


async def create_namespace(s: aiohttp.ClientSession, base: str, name: str) -> None:
    await post(s, f"{base}/api/v1/namespaces", {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": name}})


async def bench_creates_and_gets(srv: ServerProcess, ctx: ssl.SSLContext, cfg: Settings, rep: Report) -> None:
    pid, base = srv.proc.pid, srv.url
    async with session(ctx) as s:
        await create_namespace(s, base, "bench-cm")
        url = f"{base}/api/v1/namespaces/bench-cm/configmaps"
        bodies = [orjson.dumps(configmap(i)) for i in range(cfg.max_ops)]
        stored = await post(s, url, orjson.dumps(configmap(0, "probe")))
        creates = await load(cfg.seconds, cfg.max_ops, CONCURRENCY, lambda i: post(s, url, bodies[i]), pid)
        rep.add("creates/s (ConfigMap, 50 clients)", f"{creates.rate:,.0f}/s, {len(stored)} B objects, "
                f"p50/p99 {pct(creates.latencies, .5) * 1e3:.1f}/{pct(creates.latencies, .99) * 1e3:.1f} ms "
                f"({creates.cpu()})")
        rep.rows["creates"] = creates.rate
        n = creates.ops
        gets = await load(cfg.seconds, cfg.max_ops, CONCURRENCY,
                          lambda i: get(s, f"{url}/cm-{(i * 7919) % n:06d}"), pid)
        rep.add("GET p50/p99 (50 clients)", f"{pct(gets.latencies, .5) * 1e3:.2f} / "
                f"{pct(gets.latencies, .99) * 1e3:.2f} ms at {gets.rate:,.0f}/s ({gets.cpu()})")
        rep.rows["get"] = (pct(gets.latencies, .5), pct(gets.latencies, .99), gets.rate)
        one = await load(cfg.seconds / 2, cfg.max_ops, 1, lambda i: get(s, f"{url}/cm-{(i * 7919) % n:06d}"), pid)
        rep.add("GET p50/p99, 1 client", f"{pct(one.latencies, .5) * 1e3:.2f} / {pct(one.latencies, .99) * 1e3:.2f} ms")
        rep.rows["get1"] = (pct(one.latencies, .5), pct(one.latencies, .99))
    rep.rows["objects"] = rep.rows.get("objects", 0) + creates.ops + 1


async def bench_list(srv: ServerProcess, ctx: ssl.SSLContext, cfg: Settings, rep: Report,
                     raw_list: Callable[[str], Awaitable[tuple[float, int, int]]]) -> None:
    pid, base = srv.proc.pid, srv.url
    async with session(ctx) as s:
        await create_namespace(s, base, "bench-pods")
        url = f"{base}/api/v1/namespaces/bench-pods/pods"
        bodies = [orjson.dumps(pod(i)) for i in range(cfg.pods)]
        made = await load(600, cfg.pods, CONCURRENCY, lambda i: post(s, url, bodies[i]), pid)
        rep.add(f"pod creates/s ({cfg.pods:,} pods)", f"{made.rate:,.0f}/s ({made.cpu()})")
        rep.rows["pod_creates"] = made.rate
        rep.rows["objects"] = rep.rows.get("objects", 0) + made.ops
        for label, accept in (("JSON", "application/json"), ("Table", TABLE_ACCEPT)):
            times, size, items = [], 0, 0
            for _ in range(cfg.list_rounds):
                t = time.perf_counter()
                body = await get(s, f"{base}/api/v1/pods", accept)
                times.append(time.perf_counter() - t)
                size = len(body)
                decoded = orjson.loads(body)
                items = len(decoded.get("items") or decoded.get("rows") or [])
            times.sort()
            rep.add(f"LIST {items:,} pods as {label}", f"{times[len(times) // 2]:.3f} s median of {len(times)} "
                    f"(best {times[0]:.3f}), {size / 1e6:.1f} MB")
            rep.rows[f"list_{label}"] = (times[len(times) // 2], size, items)
        from pocketkube.api.resources import ResourceTable

        info = ResourceTable.builtin().get("", "v1", "pods")
        assert info is not None
        raw_s, raw_n, raw_size = await raw_list(info.key_prefix("bench-pods"))
        rep.add("floor: raw store read of the pods", f"{raw_s:.3f} s for {raw_n:,} values, {raw_size / 1e6:.1f} MB")
        rep.rows["floor_list"] = (raw_s, raw_size)
        json_size = rep.rows["list_JSON"][1]
        with floor_server(os.path.join(srv.data_dir, "tls")) as (floor_url, _):
            blob = floor_url.removesuffix("/x") + f"/blob/{json_size}"
            await get(s, blob)
            times = []
            for _ in range(cfg.list_rounds):
                t = time.perf_counter()
                await get(s, blob)
                times.append(time.perf_counter() - t)
        times.sort()
        rep.add("floor: HTTPS transfer of as many bytes", f"{times[len(times) // 2]:.3f} s median of {len(times)} "
                f"({json_size / 1e6:.1f} MB from the trivial server)")
        rep.rows["floor_list_http"] = times[len(times) // 2]
    rep.add("RSS after LIST", f"{rss_mb(pid):.0f} MB (peak {rss_mb(pid, 'VmHWM'):.0f} MB)")
    rep.rows["rss_after_list"] = rss_mb(pid)


async def bench_watch(srv: ServerProcess, ctx: ssl.SSLContext, cfg: Settings, rep: Report) -> None:
    pid, base, n = srv.proc.pid, srv.url, cfg.watch_writes
    async with session(ctx) as s, session(ctx, limit=WATCHERS + 1) as ws:
        await create_namespace(s, base, "bench-watch")
        url = f"{base}/api/v1/namespaces/bench-watch/configmaps"
        rv = orjson.loads(await get(s, url))["metadata"]["resourceVersion"]
        expected = {f"w-{i:06d}" for i in range(n)}
        got: list[set[str]] = [set() for _ in range(WATCHERS)]
        errors: list[str] = []
        done_at: list[float] = []
        opened = asyncio.Semaphore(0)

        async def watcher(k: int) -> None:
            async with ws.get(url, params={"watch": "true", "resourceVersion": rv, "timeoutSeconds": "120"}) as resp:
                opened.release()
                async for line in resp.content:
                    ev = orjson.loads(line)
                    if ev["type"] != "ADDED":
                        errors.append(f"watcher {k}: {ev['type']}: {str(ev['object'])[:200]}")
                        return
                    got[k].add(ev["object"]["metadata"]["name"])
                    if len(got[k]) == n:
                        done_at.append(time.perf_counter())
                        return

        bodies = [orjson.dumps(configmap(i, "w")) for i in range(n)]
        async with asyncio.TaskGroup() as tg:
            tasks = [tg.create_task(watcher(k)) for k in range(WATCHERS)]
            for _ in range(WATCHERS):
                await asyncio.wait_for(opened.acquire(), 30)
            cpu0, client0, busy0 = cpu_seconds(pid), time.process_time(), machine_busy()
            t0 = time.perf_counter()
            writes = await load(60, n, CONCURRENCY, lambda i: post(s, url, bodies[i]), None)
            t_writes = time.perf_counter() - t0
            await asyncio.wait(tasks, timeout=60)
            for t in tasks:
                t.cancel()
        elapsed = (max(done_at) if done_at else time.perf_counter()) - t0
        server_cpu = (cpu_seconds(pid) - cpu0) / elapsed
        client_cpu = (time.process_time() - client0) / elapsed
        others_cpu = max(0.0, (machine_busy() - busy0) / elapsed - server_cpu - client_cpu)
    complete = sum(1 for g in got if g == expected)
    delivered = sum(len(g) for g in got)
    rep.add(f"watch fan-out ({WATCHERS} watchers x {n} writes)",
            f"{delivered / elapsed:,.0f} events/s delivered; all {delivered:,} events in {elapsed:.2f} s "
            f"(writes alone took {t_writes:.2f} s = {writes.rate:,.0f}/s) "
            f"(server CPU {server_cpu:.0%}, client CPU {client_cpu:.0%}, other processes {others_cpu:.0%})")
    rep.add("watch: every watcher got every event", f"{complete}/{WATCHERS}" + (f" errors: {errors[:2]}" if errors else ""))
    rep.rows["watch"] = (delivered / elapsed, complete, writes.rate * WATCHERS)
    rep.rows["objects"] = rep.rows.get("objects", 0) + writes.ops


def timed_start(data_dir: str, extra_args: tuple[str, ...], port: int | None = None) -> tuple[ServerProcess, float]:
    t = time.perf_counter()
    srv = start_server(data_dir, port=port, extra_args=extra_args, timeout=60)
    return srv, time.perf_counter() - t


async def run_backend(backend: str, cfg: Settings, workdir: str, etcd_url: str | None) -> Report:
    rep = Report(backend)
    print(f"== {backend} ==", flush=True)
    data_dir = os.path.join(workdir, f"pk-{backend}")
    os.makedirs(data_dir)
    value = orjson.dumps(configmap(0))
    # Store floors first, while nothing else runs.
    if etcd_url is None:
        raw1 = raw_sqlite(os.path.join(data_dir, "raw.db"), cfg.seconds, cfg.max_ops, 1, value)
        raw50 = raw_sqlite(os.path.join(data_dir, "raw.db"), cfg.seconds, cfg.max_ops * 5, CONCURRENCY, value)
        rep.add("floor: sqlite3 INSERT+COMMIT (FULL)", f"{raw1:,.0f}/s one row per commit, "
                f"{raw50:,.0f} rows/s {CONCURRENCY} per commit")
        rep.rows["floor_store"] = raw1
    else:
        raw = await raw_etcd_puts(etcd_url, cfg.seconds, cfg.max_ops, value)
        rep.add("floor: aetcd puts (50 in flight)", f"{raw.rate:,.0f}/s")
        rep.rows["floor_store"] = raw.rate
    extra = ("--datastore", etcd_url) if etcd_url else ()
    srv, started = timed_start(data_dir, extra)
    try:
        rep.add("start to /readyz (fresh data dir)", f"{started:.2f} s")
        rep.rows["start_fresh"] = started
        ctx = srv.ssl_context()
        await bench_http_floor(ctx, os.path.join(data_dir, "tls"), cfg, rep)
        await asyncio.sleep(1.0)
        rep.add("idle RSS after start", f"{rss_mb(srv.proc.pid):.0f} MB")
        rep.rows["rss_idle"] = rss_mb(srv.proc.pid)
        await bench_creates_and_gets(srv, ctx, cfg, rep)

        async def raw_list(prefix: str) -> tuple[float, int, int]:
            if etcd_url is None:
                return raw_list_sqlite(os.path.join(data_dir, "state.db"), prefix)
            return await raw_list_etcd(etcd_url, prefix)

        await bench_list(srv, ctx, cfg, rep, raw_list)
        await bench_watch(srv, ctx, cfg, rep)
        srv.stop()
        srv, restarted = timed_start(data_dir, extra, port=srv.port)
        rep.add("start to /readyz (restart, all objects)", f"{restarted:.2f} s with {rep.rows['objects']:,} objects "
                f"({cfg.pods:,} pods)")
        rep.rows["start_restart"] = restarted
        await asyncio.sleep(1.0)
        rep.add("idle RSS after restart", f"{rss_mb(srv.proc.pid):.0f} MB")
        rep.rows["rss_restart"] = rss_mb(srv.proc.pid)
        rep.add("load average at the end", f"{os.getloadavg()[0]:.2f} (1 min; this bench alone keeps it near 1-2)")
    except BaseException:
        print(srv.log()[-3000:], file=sys.stderr)
        raise
    finally:
        srv.stop()
    return rep


async def main(args: argparse.Namespace) -> None:
    cfg = QUICK if args.quick else FULL
    backends = ["sqlite", "etcd"] if args.backend == "both" else [args.backend]
    print(f"pocketkube API server bench — {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}, "
          f"{os.cpu_count()} cores, Python {platform.python_version()}, {'quick' if args.quick else 'full'}, "
          f"load average {os.getloadavg()[0]:.2f}")
    workdir = tempfile.mkdtemp(prefix="bench-apiserver-")
    try:
        for backend in backends:
            if backend == "sqlite":
                await run_backend("sqlite", cfg, workdir, None)
            else:
                etcd_dir = os.path.join(workdir, "etcd-home")
                os.makedirs(etcd_dir)
                with etcd_server(etcd_dir) as url:
                    await run_backend("etcd", cfg, workdir, url)
    finally:
        shutil.rmtree(workdir, ignore_errors=True)


if __name__ == "__main__":
    if len(sys.argv) == 4 and sys.argv[1] == "--floor-server":
        floor_server_main(int(sys.argv[2]), sys.argv[3])
        sys.exit(0)
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--backend", choices=("sqlite", "etcd", "both"), default="sqlite")
    parser.add_argument("--quick", action="store_true", help="shorter phases and 2,000 pods instead of 10,000")
    import uvloop

    uvloop.run(main(parser.parse_args()))
