"""Pod startup latency (Kubernetes' pod startup SLI) on a real node, beside the raw floor.

A real server + agent (`tests/e2e/cluster.py`: runc under conmon, CNI bridge, overlayfs, busybox
imported, so no pull) runs the pods. Latency is from the client's clock just before each POST (the
API's creationTimestamp has one-second precision) to the watch event that shows every container
running and `started: true`; scheduling is included, as in the SLI.

* one at a time: N pods, each deleted (and gone) before the next;
* a burst: M pods POSTed at once, each timed from its own POST;
* the raw floor, in the same run and on the same machine: per iteration `ip netns add` + CNI ADD
  (loopback + bridge, on a bench bridge of its own) + conmon running `runc create` of busybox from
  a prepared bundle joining that namespace + `runc start`, timed until the container's process has
  exec'd (what the kubelet waits for); torn down after each iteration; then
  as many at once as the burst has pods (what the burst costs with no orchestrator at all);
* where the time goes: the agent writes one line per pod with a timestamped span per step
  (kubelet/startup_trace.py, $POCKETKUBE_STARTUP_TRACE); the bench lines them up with its POST and
  watch times and prints the p50 of each step per phase;
* agent memory: VmRSS idle and with K pods running, conmon's per-container RSS/PSS beside it.

Targets: p99 ≤ 0.5 s one at a time, p99 ≤ 3 s in the burst of 30, p50 one at a time ≤ 5x the floor's
p50, idle agent ≤ 60 MB. The machine is shared: the load average and the CPU other processes used
are printed beside every figure. `--profile FILE` records the agent with py-spy (raw format)
during the one-at-a-time and burst phases. Needs root.

    /work/main/.venv/bin/python bench/bench_pod_startup.py [--quick] [--profile /tmp/agent.txt]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import random
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, REPO)

from bench_runtime import make_rootfs  # noqa: E402

from pocketkube.client.rest import APIClient, ClientConfig  # noqa: E402
from pocketkube.kubelet.network.cni import CNI  # noqa: E402
from pocketkube.kubelet.network.netns import create_netns, delete_netns, netns_path  # noqa: E402
from pocketkube.kubelet.runtime import ContainerRuntime, SandboxRef, build_container_spec  # noqa: E402
from pocketkube.kubelet.runtime.host_facts import remove_cgroup  # noqa: E402
from tests.e2e.cluster import NodeCluster, start_node_cluster  # noqa: E402
from tests.support.images import build_busybox_image  # noqa: E402

RUNC = "/usr/sbin/runc"
IMAGE = "docker.io/library/busybox:1.36"
TIMELINE: list[dict[str, Any]] = []  # per pod: wall-clock POST and started-seen times (--timeline)
BURST_TIMEOUT = 180.0


@dataclass
class Settings:
    sequential: int
    burst: int
    memory_pods: int
    floor: int


FULL = Settings(sequential=20, burst=30, memory_pods=50, floor=20)
QUICK = Settings(sequential=5, burst=10, memory_pods=20, floor=5)


# ---- measurement helpers ---------------------------------------------------------------------

def pct(values: list[float], q: float) -> float:
    s = sorted(values)
    return s[min(len(s) - 1, int(q * len(s)))] if s else float("nan")


def ms(v: float) -> str:
    return f"{v * 1000:.0f} ms"


def load() -> str:
    one, five, _ = os.getloadavg()
    return f"load {one:.2f}/{five:.2f}"


def cpu_seconds(pid: int, *, children: bool = False) -> float:
    """utime + stime of a process, or (children=True) of its reaped children (runc, CNI plugins,
    ip, nsenter; not conmon, which daemonizes and is reaped by init)."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    i = 13 if children else 11
    return (int(fields[i]) + int(fields[i + 1])) / os.sysconf("SC_CLK_TCK")


def machine_busy() -> float:
    with open("/proc/stat") as f:
        fields = [int(x) for x in f.readline().split()[1:]]
    return (sum(fields[:8]) - fields[3] - fields[4]) / os.sysconf("SC_CLK_TCK")


def status_kb(pid: int, key: str) -> int:
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith(key + ":"):
                    return int(line.split()[1])
    except OSError:
        pass
    return 0


def pss_kb(pid: int) -> int:
    try:
        with open(f"/proc/{pid}/smaps_rollup") as f:
            for line in f:
                if line.startswith("Pss:"):
                    return int(line.split()[1])
    except OSError:
        pass
    return 0


def mounts_under(path: str) -> list[str]:
    prefix = os.path.realpath(path) + "/"
    with open("/proc/self/mounts") as f:
        return [m for m in (line.split()[1] for line in f) if m.startswith(prefix)]


async def wait_no_mounts(path: str, timeout: float) -> float:
    """The kubelet deletes a pod from the API before it removes the containers and unmounts their
    rootfs: wait for that, so the agent is not stopped halfway (returns seconds waited)."""
    t0 = time.monotonic()
    for _ in range(int(timeout * 10)):
        if not mounts_under(path):
            break
        await asyncio.sleep(0.1)
    return time.monotonic() - t0


def conmons(node: str) -> list[int]:
    """pids of the conmon processes of this node (their runc root is /run/pocketkube/<node>/runc)."""
    out = []
    for d in os.listdir("/proc"):
        if not d.isdigit():
            continue
        try:
            with open(f"/proc/{d}/comm") as f:
                if f.read().strip() != "conmon":
                    continue
            with open(f"/proc/{d}/cmdline", "rb") as f:
                if f"/run/pocketkube/{node}/".encode() in f.read():
                    out.append(int(d))
        except OSError:
            continue
    return out


@dataclass
class Phase:
    """CPU used during a phase: the agent, the server, and everything else on the machine."""

    agent_pid: int
    server_pid: int
    t0: float = 0.0
    agent0: float = 0.0
    children0: float = 0.0
    pods: int = 0  # pods started in the phase, for CPU per pod
    server0: float = 0.0
    busy0: float = 0.0
    self0: float = 0.0
    text: str = ""

    def __enter__(self) -> Phase:
        self.t0, self.busy0 = time.monotonic(), machine_busy()
        self.agent0, self.server0 = cpu_seconds(self.agent_pid), cpu_seconds(self.server_pid)
        self.children0 = cpu_seconds(self.agent_pid, children=True)
        self.self0 = time.process_time()
        return self

    def __exit__(self, *exc: object) -> None:
        wall = max(time.monotonic() - self.t0, 1e-9)
        agent = cpu_seconds(self.agent_pid) - self.agent0
        children = cpu_seconds(self.agent_pid, children=True) - self.children0
        server = cpu_seconds(self.server_pid) - self.server0
        me = time.process_time() - self.self0
        others = machine_busy() - self.busy0 - agent - children - server - me
        per_pod = (f" (per pod: agent {agent / self.pods * 1000:.0f} ms, its subprocesses "
                   f"{children / self.pods * 1000:.0f} ms)" if self.pods else "")
        self.text = (f"{wall:.1f} s wall; CPU: agent {agent / wall:.0%} + its subprocesses {children / wall:.0%}"
                     f"{per_pod}, server {server / wall:.0%}, bench {me / wall:.0%}, other processes "
                     f"{max(others, 0) / wall:.0%} of a core; {load()}")


# ---- pods through the API ----------------------------------------------------------------------

def pod_manifest(name: str, label: str) -> dict[str, Any]:
    return {"apiVersion": "v1", "kind": "Pod",
            "metadata": {"name": name, "labels": {"pkbench": label}},
            "spec": {"containers": [{"name": "c", "image": IMAGE, "imagePullPolicy": "IfNotPresent",
                                     "command": ["sleep", "3600"]}],
                     "terminationGracePeriodSeconds": 1}}


def all_started(pod: dict[str, Any]) -> bool:
    spec = pod.get("spec") or {}
    statuses = (pod.get("status") or {}).get("containerStatuses") or []
    want = {c["name"] for c in spec.get("containers") or []}
    ok = {cs.get("name") for cs in statuses
          if "running" in (cs.get("state") or {}) and cs.get("started") is not False}
    return bool(want) and want <= ok


class PodWatch:
    """One watch on the bench's pods; futures resolve when a pod has started or is gone."""

    def __init__(self, client: APIClient, namespace: str, label: str) -> None:
        self.pods = client.core("pods")
        self.namespace = namespace
        self.label = label
        self.started: dict[str, asyncio.Future[float]] = {}
        self.gone: dict[str, asyncio.Future[float]] = {}
        self.bound: dict[str, float] = {}  # when the watch first showed the pod bound to the node
        self.task: asyncio.Task[None] | None = None

    def expect(self, name: str) -> tuple[asyncio.Future[float], asyncio.Future[float]]:
        loop = asyncio.get_running_loop()
        self.started[name] = loop.create_future()
        self.gone[name] = loop.create_future()
        return self.started[name], self.gone[name]

    async def start(self) -> None:
        listed = await self.pods.list(self.namespace, label_selector=f"pkbench={self.label}")
        rv = listed["metadata"]["resourceVersion"]
        self.task = asyncio.get_running_loop().create_task(self._run(rv))

    async def _run(self, rv: str) -> None:
        async for etype, obj in self.pods.watch(self.namespace, resource_version=rv, label_selector=f"pkbench={self.label}",
                                                timeout_seconds=3600, bookmarks=False):
            now = time.perf_counter()
            name = obj.get("metadata", {}).get("name", "")
            if name not in self.bound and (obj.get("spec") or {}).get("nodeName"):
                self.bound[name] = now + (time.time() - time.perf_counter())  # wall clock, as the traces
            if etype == "DELETED":
                fut = self.gone.get(name)
            elif all_started(obj):
                fut = self.started.get(name)
            else:
                continue
            if fut is not None and not fut.done():
                fut.set_result(now)

    async def stop(self) -> None:
        if self.task is not None:
            self.task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self.task


async def create_pods(w: PodWatch, names: list[str]) -> list[float]:
    """POST every pod at once; returns each one's latency to started (s)."""
    futs = [w.expect(n)[0] for n in names]

    async def one(name: str) -> tuple[float, float]:
        t0 = time.perf_counter()
        await w.pods.create(pod_manifest(name, w.label), w.namespace)
        return t0, time.perf_counter()

    posts = await asyncio.gather(*(one(n) for n in names))
    done = await asyncio.wait_for(asyncio.gather(*futs), BURST_TIMEOUT)
    offset = time.time() - time.perf_counter()
    for n, (t, created), d in zip(names, posts, done, strict=True):
        TIMELINE.append({"pod": n, "post": t + offset, "created": created + offset, "started_seen": d + offset})
    return [d - t for d, (t, _) in zip(done, posts, strict=True)]


async def delete_pods(w: PodWatch, names: list[str]) -> float:
    """DELETE (default grace: the kubelet stops the containers) and wait until every pod is gone."""
    t0 = time.perf_counter()
    await asyncio.gather(*(w.pods.delete(n, w.namespace) for n in names))
    await asyncio.wait_for(asyncio.gather(*(w.gone[n] for n in names)), BURST_TIMEOUT)
    return time.perf_counter() - t0


# ---- where the time goes (the agent's per-pod trace) -----------------------------------------------

TRACE_ENV = "POCKETKUBE_STARTUP_TRACE"


def read_traces(path: str) -> tuple[dict[str, dict[str, Any]], list[tuple[float, float, float]]]:
    """Per pod trace, and the agent's event-loop stalls (when, how long, loop thread CPU meanwhile)."""
    out: dict[str, dict[str, Any]] = {}
    stalls: list[tuple[float, float, float]] = []
    with contextlib.suppress(OSError), open(path) as f:
        for line in f:
            with contextlib.suppress(ValueError):
                rec = json.loads(line)
                if "stall" in rec:
                    stalls.append((rec["at"], rec["stall"], rec.get("cpu", 0.0)))
                else:
                    out[rec["pod"]] = rec
    return out, stalls


def trace_report(path: str, names: list[str], bound: dict[str, float]) -> str:
    """p50 (max) of each step over `names`: POST -> kubelet sees the pod, each span, PATCH -> watch."""
    traces, stalls = read_traces(path)
    posts = {t["pod"]: t for t in TIMELINE}
    rows: dict[str, list[float]] = {}
    order: list[str] = []

    def add(step: str, value: float) -> None:
        if step not in rows:
            rows[step] = []
            order.append(step)
        rows[step].append(value)

    for name in names:
        tr, tl = traces.get(name), posts.get(name)
        if tr is None or tl is None:
            continue
        add("POST -> 201 Created", tl["created"] - tl["post"])
        if name in bound:
            add("POST -> bench sees it bound (scheduler)", bound[name] - tl["post"])
        add("POST -> kubelet sees pod", tr["seen"] - tl["post"])
        spans = sorted(tr["spans"], key=lambda x: x[1])
        if spans:
            add("seen -> first step", spans[0][1] - tr["seen"])
        per_step: dict[str, float] = {}
        for step, a, b in spans:
            key = step.split(" ")[0]
            per_step[key] = per_step.get(key, 0.0) + (b - a)
        for key, value in per_step.items():
            add(key, value)
        if spans:
            add("sum of steps (overlaps counted twice)", sum(b - a for _, a, b in spans))
        add("PATCH done -> watch event", tl["started_seen"] - tr["reported"])
    if not rows:
        return "  (no traces)"
    lines = [f"  {step:40s} p50 {ms(pct(v, 0.5)):>8s}  max {ms(max(v)):>8s}  (n={len(v)})"
             for step in order for v in [rows[step]]]
    mine = [posts[n] for n in names if n in posts]
    if mine:
        t0, t1 = min(t["post"] for t in mine), max(t["started_seen"] for t in mine)
        hits = [(lag, cpu) for at, lag, cpu in stalls if t0 <= at <= t1 + 0.1]
        lines.append(f"  agent event-loop stalls > 50 ms: {len(hits)}" +
                     (f", longest {ms(max(h[0] for h in hits))}, {ms(sum(h[0] for h in hits))} in all, "
                      f"loop thread on CPU {ms(sum(h[1] for h in hits))} of it" if hits else ""))
    return "\n".join(lines)


# ---- the raw floor -----------------------------------------------------------------------------

@dataclass
class FloorSample:
    netns: float
    cni: float
    runc: float

    @property
    def total(self) -> float:
        return self.netns + self.cni + self.runc


@dataclass
class Floor:
    samples: list[FloorSample] = field(default_factory=list)
    teardown: list[float] = field(default_factory=list)
    span: float = 0.0  # a burst: first start to last runc return


async def raw_floor(n: int, base: str, avoid_octets: set[int], *, burst: int = 0) -> tuple[Floor, Floor]:
    """netns + CNI ADD (lo + bridge on a bridge of our own) + conmon (`runc create`) + `runc start`: n times,
    each torn down before the next; then (burst > 0) `burst` of them at once, torn down after."""
    tag = f"{random.randrange(16**4):04x}"
    octet = random.choice([o for o in range(100, 250) if o not in avoid_octets])
    bridge = f"pkf{tag}br"
    fdir = os.path.join(base, "floor")
    cni = CNI(ipam_dir=os.path.join(fdir, "ipam"), cache_dir=os.path.join(fdir, "cni-cache"),
              network_name=f"pkfloor{tag}", bridge=bridge, subnet=f"10.{octet}.0.0/24", pod_routes=())
    runtime = ContainerRuntime(os.path.join(fdir, "conmon"), os.path.join(fdir, "runc"), os.path.join(fdir, "exits"))
    cgroup = f"/pocketkube-bench-{tag}"
    rootfs = make_rootfs(fdir)
    seq, par = Floor(), Floor()

    async def up(name: str, out: Floor) -> None:
        path = netns_path(name)
        config = build_container_spec(
            pod={"metadata": {"name": name}, "spec": {}}, container={"name": "c", "command": ["sleep", "3600"]},
            image_config={"Env": ["PATH=/bin"]}, rootfs=rootfs, sandbox=SandboxRef(netns_path=path), mounts=[],
            env=[], cgroup_parent=cgroup, hostname=name, container_id=name)
        bundle = os.path.join(fdir, "bundles", name)
        os.makedirs(bundle)
        with open(os.path.join(bundle, "config.json"), "w") as f:
            json.dump(config, f)
        t0 = time.perf_counter()
        await create_netns(name)
        t1 = time.perf_counter()
        await cni.add(name, path)
        t2 = time.perf_counter()
        # conmon runs `runc create` and monitors the container; `runc start` (what the kubelet does)
        await runtime.create(name, bundle, os.path.join(fdir, "logs", f"{name}.log"))
        await runtime.start(name)
        t3 = time.perf_counter()
        out.samples.append(FloorSample(t1 - t0, t2 - t1, t3 - t2))

    async def down(name: str, out: Floor) -> None:
        t0 = time.perf_counter()
        with contextlib.suppress(Exception):
            await runtime.delete(name, force=True)
        with contextlib.suppress(Exception):
            await cni.delete(name, netns_path(name))
        await delete_netns(name)
        out.teardown.append(time.perf_counter() - t0)

    try:
        for i in range(n):
            try:
                await up(f"pkf{tag}-{i}", seq)
            finally:
                await down(f"pkf{tag}-{i}", seq)
        if burst:
            names = [f"pkf{tag}-b{i}" for i in range(burst)]
            try:
                t0 = time.perf_counter()
                await asyncio.gather(*(up(name, par) for name in names))
                par.span = time.perf_counter() - t0
            finally:
                await asyncio.gather(*(down(name, par) for name in names), return_exceptions=True)
    finally:
        remove_cgroup(cgroup)
        proc = await asyncio.create_subprocess_exec("ip", "link", "delete", bridge, stdin=subprocess.DEVNULL,
                                                    stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        await proc.wait()
        shutil.rmtree(fdir, ignore_errors=True)
    return seq, par


# ---- the run -----------------------------------------------------------------------------------

@contextlib.contextmanager
def profiler(pid: int, path: str | None) -> Iterator[None]:
    if not path:
        yield
        return
    spy = shutil.which("py-spy") or os.path.join(os.path.dirname(sys.executable), "py-spy")
    proc = subprocess.Popen([spy, "record", "--pid", str(pid), "--rate", "250", "--format", "raw", "--threads",
                             "-o", path], stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)
    try:
        yield
    finally:
        proc.send_signal(signal.SIGINT)
        try:
            proc.wait(30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(5)


def verdict(ok: bool) -> str:
    return "PASS" if ok else "FAIL"


async def run(cluster: NodeCluster, cfg: Settings, base: str, profile: str | None) -> None:
    agent_pid, server_pid = cluster.agent.pid, cluster.server.proc.pid
    client = APIClient(ClientConfig.from_kubeconfig(cluster.server.kubeconfig, user_agent="bench-pod-startup"))
    label = f"{random.randrange(16**6):06x}"
    w = PodWatch(client, "default", label)
    created: list[str] = []
    results: list[str] = []
    try:
        await asyncio.sleep(2)  # let the agent settle after registration
        idle_rss = status_kb(agent_pid, "VmRSS") / 1024
        print(f"agent idle: VmRSS {idle_rss:.1f} MB (VmHWM {status_kb(agent_pid, 'VmHWM') / 1024:.1f} MB); {load()}")

        octet = int(cluster.cluster_cidr.split(".")[1])
        with Phase(agent_pid, server_pid) as ph:
            floor, floor_burst = await raw_floor(cfg.floor, base, {octet, octet + 1, octet - 1}, burst=cfg.burst)
        totals = [s.total for s in floor.samples]
        f50, f99 = pct(totals, 0.5), pct(totals, 0.99)
        print(f"raw floor (netns + CNI ADD + conmon/runc create + runc start), n={len(totals)}: p50 {ms(f50)} p99 {ms(f99)}; "
              f"netns p50 {ms(pct([s.netns for s in floor.samples], 0.5))}, "
              f"CNI ADD p50 {ms(pct([s.cni for s in floor.samples], 0.5))}, "
              f"conmon+runc p50 {ms(pct([s.runc for s in floor.samples], 0.5))}; "
              f"teardown p50 {ms(pct(floor.teardown, 0.5))}")
        fb = [x.total for x in floor_burst.samples]
        fb99 = pct(fb, 0.99)
        print(f"raw floor, {len(fb)} at once: p50 {ms(pct(fb, 0.5))} p99 {ms(fb99)}, all in {floor_burst.span:.2f} s; "
              f"CNI ADD p50 {ms(pct([x.cni for x in floor_burst.samples], 0.5))}, conmon+runc p50 "
              f"{ms(pct([x.runc for x in floor_burst.samples], 0.5))}")
        print(f"  [{ph.text}]")

        await w.start()
        # Warm-up pod (first CNI ADD creates the bridge; first overlay mount etc.) — not counted.
        created.append(f"bench-{label}-warm")
        await create_pods(w, [f"bench-{label}-warm"])
        await delete_pods(w, [f"bench-{label}-warm"])

        seq: list[float] = []
        deletes: list[float] = []
        with profiler(agent_pid, profile):
            with Phase(agent_pid, server_pid, pods=cfg.sequential) as ph_seq:
                for i in range(cfg.sequential):
                    name = f"bench-{label}-s{i}"
                    created.append(name)
                    seq.extend(await create_pods(w, [name]))
                    deletes.append(await delete_pods(w, [name]))
            s50, s99 = pct(seq, 0.5), pct(seq, 0.99)
            print(f"one at a time, n={len(seq)}: p50 {ms(s50)} p99 {ms(s99)} (min {ms(min(seq))}, "
                  f"max {ms(max(seq))}); delete-to-gone p50 {ms(pct(deletes, 0.5))}")
            print(f"  [{ph_seq.text}]")
            print(trace_report(os.environ[TRACE_ENV], [f"bench-{label}-s{i}" for i in range(cfg.sequential)], w.bound))

            names = [f"bench-{label}-b{i}" for i in range(cfg.burst)]
            created.extend(names)
            with Phase(agent_pid, server_pid, pods=cfg.burst) as ph_burst:
                t0 = time.perf_counter()
                burst = await create_pods(w, names)
                span = time.perf_counter() - t0
            b50, b99 = pct(burst, 0.5), pct(burst, 0.99)
            print(f"burst of {len(burst)}: min {ms(min(burst))} p50 {ms(b50)} p99 {ms(b99)}; all started {span:.2f} s after the first POST")
            print(f"  [{ph_burst.text}]")
            # The watch event can beat the agent's own handling of its PATCH response, after
            # which it writes the trace line: give the last pods' lines a moment.
            await asyncio.sleep(1.0)
            print(trace_report(os.environ[TRACE_ENV], names, w.bound))
            gone = await delete_pods(w, names)
            print(f"  burst deleted and gone in {gone:.2f} s; {load()}")

        extra = cfg.memory_pods
        names = [f"bench-{label}-m{i}" for i in range(extra)]
        created.extend(names)
        with Phase(agent_pid, server_pid, pods=extra) as ph_mem:
            span_t0 = time.perf_counter()
            mem = await create_pods(w, names)
            mem_span = time.perf_counter() - span_t0
        await asyncio.sleep(2)
        busy_rss = status_kb(agent_pid, "VmRSS") / 1024
        cms = conmons(cluster.node)
        c_rss = [status_kb(p, "VmRSS") for p in cms]
        c_pss = [pss_kb(p) for p in cms]
        print(f"{extra} pods running (started: p50 {ms(pct(mem, 0.5))} p99 {ms(pct(mem, 0.99))}, "
              f"all in {mem_span:.2f} s): agent VmRSS {busy_rss:.1f} MB "
              f"(+{(busy_rss - idle_rss) * 1024 / max(extra, 1):.0f} KiB per pod)")
        if cms:
            print(f"  conmon: {len(cms)} processes (pause + app per pod), VmRSS {sum(c_rss) / len(cms) / 1024:.2f} MB "
                  f"each, PSS {sum(c_pss) / len(cms) / 1024:.2f} MB each ({sum(c_pss) / 1024:.1f} MB PSS in all)")
        print(f"  [{ph_mem.text}]")
        with Phase(agent_pid, server_pid) as ph_idle:
            await asyncio.sleep(5)  # steady state: the kubelet resyncs every pod every second
        print(f"  {extra} pods running, nothing changing for 5 s: [{ph_idle.text}]")
        gone = await delete_pods(w, names)
        print(f"  deleted and gone in {gone:.2f} s, rootfs unmounted {await wait_no_mounts(base, 60):.2f} s "
              f"later; {load()}")
        created.clear()

        results = [
            f"one at a time p99 {ms(s99)} ≤ 500 ms: {verdict(s99 <= 0.5)}",
            f"burst of {len(burst)} p99 {ms(b99)} ≤ 3000 ms: {verdict(b99 <= 3.0)}"
            + ("" if len(burst) >= 30 else " (quick: fewer than 30 pods)"),
            f"one at a time p50 {ms(s50)} ≤ 5x floor p50 {ms(f50)} (= {5 * f50 * 1000:.0f} ms), "
            f"ratio {s50 / f50:.1f}x (p99 ratio {s99 / f99:.1f}x): {verdict(s50 <= 5 * f50)}",
            f"burst p99 {ms(b99)} vs the floor's {len(fb)} at once p99 {ms(fb99)}: ratio {b99 / fb99:.1f}x (no target)",
            f"idle agent VmRSS {idle_rss:.1f} MB ≤ 60 MB: {verdict(idle_rss <= 60)}",
        ]
        print("\ntargets:")
        for r in results:
            print("  " + r)
    finally:
        if created:
            with contextlib.suppress(Exception):
                await asyncio.gather(*(w.pods.delete(n, "default") for n in created), return_exceptions=True)
        await w.stop()
        await client.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--quick", action="store_true", help="5 sequential, burst of 10, 20 pods for memory")
    parser.add_argument("--profile", help="py-spy raw output of the agent during the latency phases")
    parser.add_argument("--timeline", help="write each pod's wall-clock POST and started-seen times (JSON)")
    args = parser.parse_args()
    if os.geteuid() != 0:
        sys.exit("needs root (runc, CNI)")
    cfg = QUICK if args.quick else FULL
    base = tempfile.mkdtemp(prefix="pk-podbench-", dir="/tmp")
    print(f"{time.strftime('%Y-%m-%d %H:%M:%S UTC', time.gmtime())}; {os.cpu_count()} CPUs; {load()}; "
          f"{'quick' if args.quick else 'full'}: {cfg}")
    os.environ[TRACE_ENV] = os.path.join(base, "startup-trace.jsonl")  # inherited by the agent
    try:
        archive = os.path.join(base, "busybox.tar")
        build_busybox_image(archive, ref=IMAGE)
        with contextlib.contextmanager(start_node_cluster)(base, image_archives=[archive]) as cluster:
            import uvloop

            uvloop.run(run(cluster, cfg, base, args.profile))
    finally:
        for m in reversed(mounts_under(base)):  # only if the agent died before unmounting them
            print(f"warning: left mounted by the agent, unmounting: {m}")
            subprocess.run(["umount", "-l", m], check=False)
        shutil.rmtree(base, ignore_errors=True)
        if args.timeline:
            with open(args.timeline, "w") as f:
                json.dump(TIMELINE, f, indent=0)


if __name__ == "__main__":
    main()
