"""Control plane at scale on hollow nodes: Leases kept, a Deployment scaled out, scheduler throughput.

Starts a real `pocketkube server --disable-agent` (API server + controller-manager + scheduler as
its children) and one `pocketkube agent --hollow` process simulating the nodes, all on 127.0.0.1,
and measures from outside through the API, as a user would:

1. steady state with N hollow nodes (Lease every 10 s): Lease renewals/s seen on a watch of
   kube-node-lease, CPU of each process, Ready→NotReady flips (must be 0), and GET /healthz
   latency/rate in the same run as the empty-request floor;
2. a Deployment scaled 0 → P on those nodes: time until all P pods are Running, bind rate;
3. scheduler throughput: `pocketkube apiserver` (no loops) + hollow fleets of 1,000 and 5,000 nodes,
   10,000 pods created first, then a `pocketkube scheduler` process started and timed until every
   pod is bound.

Every figure is printed with the load average and per-process CPU seconds (utime+stime from
/proc/<pid>/stat): the machine is shared. Processes are stopped by pid, temp dirs removed.

    python bench/bench_scale.py [--nodes 1000] [--pods 1000] [--sched-nodes 1000,5000]
                                [--sched-pods 10000] [--steady 30] [--quick]
                                [--skip-fleet] [--skip-sched] [--profile DIR]

Results, floors and targets: BENCHMARKS.md, "Scale on hollow nodes".
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from typing import Any

import aiohttp

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, REPO)
sys.path.insert(0, os.path.join(REPO, "tests"))

from conftest import ServerProcess, start_server  # noqa: E402

from pocketkube.api import errors  # noqa: E402
from pocketkube.client.rest import APIClient, ClientConfig, ResourceClient  # noqa: E402

Obj = dict[str, Any]
TICK = os.sysconf("SC_CLK_TCK")


# ---------------------------------------------------------------- processes and CPU accounting

def cpu_seconds(pid: int) -> float:
    try:
        with open(f"/proc/{pid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / TICK  # utime, stime (fields 14, 15 of stat)


def machine_busy() -> float:
    """CPU seconds all processes used so far (/proc/stat, excluding idle and iowait)."""
    with open("/proc/stat") as f:
        v = [int(x) for x in f.readline().split()[1:9]]
    return (sum(v) - v[3] - v[4]) / TICK


def loadavg() -> str:
    with open("/proc/loadavg") as f:
        return " ".join(f.read().split()[:3])


def children(pid: int) -> dict[str, int]:
    """Children of the server process, by pocketkube subcommand ("controller-manager", "scheduler")."""
    out: dict[str, int] = {}
    with contextlib.suppress(OSError):
        for tid in os.listdir(f"/proc/{pid}/task"):
            with open(f"/proc/{pid}/task/{tid}/children") as f:
                for child in f.read().split():
                    with contextlib.suppress(OSError), open(f"/proc/{child}/cmdline", "rb") as c:
                        argv = c.read().split(b"\0")
                        if b"pocketkube" in argv and len(argv) > argv.index(b"pocketkube") + 1:
                            out[argv[argv.index(b"pocketkube") + 1].decode()] = int(child)
    return out


class CPUWindow:
    """CPU seconds of named processes (and of everything else on the machine) over a window."""

    def __init__(self, pids: dict[str, int]) -> None:
        self.pids = dict(pids)
        self.t0 = time.perf_counter()
        self.cpu0 = {k: cpu_seconds(p) for k, p in self.pids.items()}
        self.busy0 = machine_busy()
        self.load0 = loadavg()

    def report(self) -> str:
        dt = time.perf_counter() - self.t0
        used = {k: cpu_seconds(p) - self.cpu0[k] for k, p in self.pids.items()}
        others = machine_busy() - self.busy0 - sum(used.values())
        parts = [f"{k} {v:.1f}s ({100 * v / dt:.0f}%)" for k, v in used.items()]
        parts.append(f"other processes {max(others, 0):.1f}s ({100 * max(others, 0) / dt:.0f}%)")
        return (f"    CPU over {dt:.1f}s: " + ", ".join(parts)
                + f"\n    loadavg {self.load0} → {loadavg()}")

    def used(self, name: str) -> float:
        return cpu_seconds(self.pids[name]) - self.cpu0[name]


def stop_pid(proc: subprocess.Popen[bytes]) -> None:
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(5)


def python_cmd(*args: str) -> list[str]:
    return [sys.executable, "-m", "pocketkube", *args]


def start_fleet(srv: ServerProcess, count: int, prefix: str, lease_interval: float,
                extra: tuple[str, ...] = ()) -> subprocess.Popen[bytes]:
    with open(os.path.join(srv.data_dir, "token")) as f:
        token = f.read().strip()
    log = open(os.path.join(srv.data_dir, f"fleet-{prefix}log"), "ab")
    try:
        return subprocess.Popen(python_cmd("agent", "--hollow", "--count", str(count), "--name-prefix", prefix,
                                           "--server", srv.url, "--token", token,
                                           "--lease-interval", str(lease_interval), *extra),
                                cwd=REPO, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
                                env={**os.environ, "PYTHONPATH": REPO})
    finally:
        log.close()


def start_profilers(pids: dict[str, int], out_dir: str) -> list[subprocess.Popen[bytes]]:
    """py-spy (pip install py-spy) recording each named process, raw collapsed stacks; stop with SIGINT."""
    spy = os.path.join(os.path.dirname(sys.executable), "py-spy")
    os.makedirs(out_dir, exist_ok=True)
    return [subprocess.Popen([spy, "record", "--pid", str(pid), "--rate", "50", "--nonblocking", "--format", "raw",
                              "-o", os.path.join(out_dir, f"{name}.txt")],
                             stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            for name, pid in pids.items()]


def stop_profilers(procs: list[subprocess.Popen[bytes]]) -> None:
    for p in procs:
        p.send_signal(signal.SIGINT)
    for p in procs:
        try:
            p.wait(30)
        except subprocess.TimeoutExpired:
            p.kill()
            p.wait(5)


def start_scheduler(srv: ServerProcess, extra: tuple[str, ...] = ()) -> subprocess.Popen[bytes]:
    with open(os.path.join(srv.data_dir, "scheduler.log"), "ab") as log:
        return subprocess.Popen(python_cmd("scheduler", "--kubeconfig", srv.kubeconfig, *extra), cwd=REPO,
                                stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
                                env={**os.environ, "PYTHONPATH": REPO})


@contextlib.contextmanager
def cluster(command: str, extra: tuple[str, ...] = ()) -> Iterator[ServerProcess]:
    with tempfile.TemporaryDirectory(prefix="pk-scale-") as d:
        srv = start_server(d, command=command, extra_args=extra, timeout=60)
        try:
            yield srv
        finally:
            srv.stop()


# ---------------------------------------------------------------- watching through the API

async def follow(rc: ResourceClient, namespace: str | None, on_event: Callable[[str, Obj], None],
                 listed: asyncio.Event) -> None:
    """List then watch, forever; a relist replays ADDED for what exists (handlers are idempotent)."""
    while True:
        try:
            lst = await rc.list(namespace)
            for obj in lst.get("items") or []:
                on_event("ADDED", obj)
            listed.set()
            rv = lst["metadata"]["resourceVersion"]
            async for etype, obj in rc.watch(namespace, resource_version=rv, timeout_seconds=900):
                if etype != "BOOKMARK":
                    on_event(etype, obj)
        except (TimeoutError, OSError, aiohttp.ClientError, errors.StatusError) as e:
            print(f"    (watch {rc.info.plural} restarted: {type(e).__name__})", flush=True)
            await asyncio.sleep(0.2)


def node_ready(node: Obj) -> bool:
    for c in (node.get("status") or {}).get("conditions") or []:
        if c.get("type") == "Ready":
            return bool(c.get("status") == "True")
    return False


class NodeWatch:
    def __init__(self, prefix: str) -> None:
        self.prefix = prefix
        self.ready: dict[str, bool] = {}
        self.armed = False
        self.flips: list[str] = []

    def on_event(self, etype: str, node: Obj) -> None:
        name = node["metadata"]["name"]
        if not name.startswith(self.prefix):
            return
        now = etype != "DELETED" and node_ready(node)
        if self.armed and self.ready.get(name) and not now:
            self.flips.append(name)
        self.ready[name] = now

    def count_ready(self) -> int:
        return sum(self.ready.values())


class LeaseWatch:
    def __init__(self) -> None:
        self.renew_time: dict[str, str] = {}
        self.renewals = 0

    def on_event(self, etype: str, lease: Obj) -> None:
        name = lease["metadata"]["name"]
        t = (lease.get("spec") or {}).get("renewTime") or ""
        if etype == "MODIFIED" and self.renew_time.get(name) not in (None, t):
            self.renewals += 1
        self.renew_time[name] = t


class PodWatch:
    """First time each pod was seen, bound (spec.nodeName) and Running."""

    def __init__(self) -> None:
        self.created: dict[str, float] = {}
        self.bound: dict[str, float] = {}
        self.running: dict[str, float] = {}

    def on_event(self, etype: str, pod: Obj) -> None:
        if etype == "DELETED":
            return
        key, now = pod["metadata"]["name"], time.perf_counter()
        self.created.setdefault(key, now)
        if (pod.get("spec") or {}).get("nodeName"):
            self.bound.setdefault(key, now)
        if (pod.get("status") or {}).get("phase") == "Running":
            self.running.setdefault(key, now)


async def wait_for(pred: Callable[[], bool], timeout: float, what: str,
                   progress: Callable[[], str] | None = None) -> float:
    t0 = time.perf_counter()
    last = t0
    while not pred():
        now = time.perf_counter()
        if now - t0 > timeout:
            raise TimeoutError(f"{what}: not done after {timeout:.0f}s" + (f" ({progress()})" if progress else ""))
        if progress and now - last > 10:
            print(f"    … {what}: {progress()} after {now - t0:.0f}s", flush=True)
            last = now
        await asyncio.sleep(0.05)
    return time.perf_counter() - t0


async def healthz_floor(client: APIClient, seconds: float = 3.0, concurrency: int = 8) -> tuple[float, float, float]:
    """The empty request: GET /healthz rate with `concurrency` clients, and 1-client p50/p99 (ms)."""
    session = client.session()

    async def get() -> None:
        async with session.get("/healthz") as r:
            await r.read()

    lat: list[float] = []
    end = time.perf_counter() + 1.0
    while time.perf_counter() < end:
        t = time.perf_counter()
        await get()
        lat.append((time.perf_counter() - t) * 1000)
    done = 0
    end = time.perf_counter() + seconds

    async def worker() -> None:
        nonlocal done
        while time.perf_counter() < end:
            await get()
            done += 1
    t0 = time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(concurrency)))
    lat.sort()
    return done / (time.perf_counter() - t0), statistics.median(lat), lat[int(len(lat) * 0.99) - 1]


# ---------------------------------------------------------------- phases 1 and 2

DEPLOY: Obj = {
    "apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "scale"},
    "spec": {"replicas": 0, "selector": {"matchLabels": {"app": "scale"}},
             "template": {"metadata": {"labels": {"app": "scale"}},
                          "spec": {"terminationGracePeriodSeconds": 0,
                                   "containers": [{"name": "c", "image": "pause",
                                                   "resources": {"requests": {"cpu": "100m", "memory": "64Mi"}}}]}}},
}


async def phase_fleet(nodes: int, pods: int, steady: float, profile: str) -> None:
    print(f"\n== 1. {nodes} hollow nodes kept Ready (lease interval 10 s), then 2. a Deployment 0 → {pods}", flush=True)
    # a /24 per node (node IPAM): the default 10.42.0.0/16 holds 256 nodes, and the allocator retries
    # every node beyond that forever at O(nodes) per try (see BENCHMARKS.md), so size it like kube's
    with cluster("server", ("--cluster-cidr", "10.64.0.0/10")) as srv:
        fleet = start_fleet(srv, nodes, "hollow-", 10.0)
        client = APIClient(ClientConfig.from_kubeconfig(srv.kubeconfig))
        try:
            await run_fleet_phases(srv, fleet, client, nodes, pods, steady, profile)
        finally:
            await client.close()
            stop_pid(fleet)


async def run_fleet_phases(srv: ServerProcess, fleet: subprocess.Popen[bytes], client: APIClient,
                           nodes: int, pods: int, steady: float, profile: str) -> None:
    nw, lw, pw = NodeWatch("hollow-"), LeaseWatch(), PodWatch()
    events = [asyncio.Event() for _ in range(3)]
    async with asyncio.TaskGroup() as tg:
        watches = [
            tg.create_task(follow(client.core("nodes"), None, nw.on_event, events[0])),
            tg.create_task(follow(client.resource("coordination.k8s.io", "v1", "leases"), "kube-node-lease",
                                  lw.on_event, events[1])),
            tg.create_task(follow(client.core("pods"), "scale", pw.on_event, events[2])),
        ]
        profilers: list[subprocess.Popen[bytes]] = []
        try:
            pids = {"apiserver": srv.proc.pid, **children(srv.proc.pid), "hollow fleet": fleet.pid,
                    "bench": os.getpid()}
            if profile:
                profilers = start_profilers({k: v for k, v in pids.items() if k != "bench"}, profile)
            win = CPUWindow(pids)
            took = await wait_for(lambda: nw.count_ready() >= nodes, 300, "nodes Ready",
                                  lambda: f"{nw.count_ready()}/{nodes} Ready")
            print(f"  {nodes} nodes registered and Ready in {took:.1f}s ({nodes / took:.0f} nodes/s)")
            print(win.report())
            took = await wait_for(lambda: len(lw.renew_time) >= nodes, 120, "Leases created",
                                  lambda: f"{len(lw.renew_time)}/{nodes} Leases")
            print(f"  all {nodes} Leases created {took:.1f}s later")
            await asyncio.sleep(2)
            nw.armed = True
            pids.update(children(srv.proc.pid))
            win, r0 = CPUWindow(pids), lw.renewals
            probe: list[float] = []
            end = time.perf_counter() + steady
            session = client.session()
            while time.perf_counter() < end:  # a light latency probe: 5 GET /healthz per second
                t = time.perf_counter()
                async with session.get("/healthz") as r:
                    await r.read()
                probe.append((time.perf_counter() - t) * 1000)
                await asyncio.sleep(0.2)
            dt = time.perf_counter() - win.t0
            rate = (lw.renewals - r0) / dt
            probe.sort()
            print(f"  steady {dt:.0f}s: {rate:.1f} Lease renewals/s seen on the watch (expected {nodes / 10:.0f}/s), "
                  f"Ready {nw.count_ready()}/{nodes}, NotReady flips {len(nw.flips)}; "
                  f"GET /healthz during it p50 {statistics.median(probe):.1f} ms, max {probe[-1]:.1f} ms")
            api_cpu = win.used("apiserver")
            print(win.report())
            print(f"    API server CPU per renewal: {1000 * api_cpu / max(lw.renewals - r0, 1):.2f} ms")
            hz, p50, p99 = await healthz_floor(client)
            print(f"  floor (same run, fleet still renewing): GET /healthz {hz:.0f}/s with 8 clients; "
                  f"1 client p50 {p50:.2f} ms p99 {p99:.2f} ms; loadavg {loadavg()}")

            await client.core("namespaces").create({"metadata": {"name": "scale"}})
            deployments = client.resource("apps", "v1", "deployments")
            await deployments.create(DEPLOY, "scale")
            await asyncio.sleep(1)
            pids.update(children(srv.proc.pid))
            win = CPUWindow(pids)
            await deployments.patch("scale", {"spec": {"replicas": pods}}, "scale")
            t0 = win.t0
            took = await wait_for(lambda: len(pw.running) >= pods, 600, "pods Running",
                                  lambda: f"created {len(pw.created)} bound {len(pw.bound)} running {len(pw.running)}")
            created, bound = sorted(pw.created.values()), sorted(pw.bound.values())
            bind_span = bound[-1] - bound[0]
            print(f"  Deployment 0 → {pods}: all Running {took:.1f}s after the scale (all created {created[-1] - t0:.1f}s,"
                  f" all bound {bound[-1] - t0:.1f}s); {pods / (created[-1] - t0):.0f} pods created/s, "
                  f"{pods / max(bind_span, 1e-3):.0f} pods bound/s (first to last bind, {bind_span:.1f}s), "
                  f"{pods / took:.0f} pods Running/s end to end; NotReady flips {len(nw.flips)}")
            print(win.report())
            print(f"    scheduler CPU per pod: {1000 * win.used('scheduler') / pods:.2f} ms, controller-manager "
                  f"{1000 * win.used('controller-manager') / pods:.2f} ms, API server {1000 * win.used('apiserver') / pods:.2f} ms")
            if nw.flips:
                print(f"  !! nodes that flipped NotReady: {sorted(set(nw.flips))[:10]}")
        finally:
            stop_profilers(profilers)
            for w in watches:
                w.cancel()


# ---------------------------------------------------------------- phase 3: scheduler throughput

def sched_pod(i: int) -> Obj:
    return {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": f"pod-{i:05d}", "labels": {"app": "bench"}},
            "spec": {"terminationGracePeriodSeconds": 0,
                     "containers": [{"name": "c", "image": "pause",
                                     "resources": {"requests": {"cpu": "100m", "memory": "64Mi"}}}]}}


async def phase_scheduler(nodes: int, pods: int, lease_interval: float) -> float:
    print(f"\n== 3. scheduler: {nodes} hollow nodes (lease interval {lease_interval:.0f} s), {pods} pending pods, "
          "then `pocketkube scheduler` started", flush=True)
    with cluster("apiserver") as srv:
        fleet = start_fleet(srv, nodes, "hollow-", lease_interval)
        client = APIClient(ClientConfig.from_kubeconfig(srv.kubeconfig))
        sched: subprocess.Popen[bytes] | None = None
        nw, pw = NodeWatch("hollow-"), PodWatch()
        try:
            async with asyncio.TaskGroup() as tg:
                listed = [asyncio.Event(), asyncio.Event()]
                watches = [tg.create_task(follow(client.core("nodes"), None, nw.on_event, listed[0]))]
                try:
                    t = await wait_for(lambda: nw.count_ready() >= nodes, 600, "nodes Ready",
                                       lambda: f"{nw.count_ready()}/{nodes}")
                    print(f"  {nodes} nodes Ready in {t:.1f}s; loadavg {loadavg()}", flush=True)
                    await client.core("namespaces").create({"metadata": {"name": "bench"}})
                    sem = asyncio.Semaphore(32)
                    pod_rc = client.core("pods")

                    async def create(i: int) -> None:
                        async with sem:
                            await pod_rc.create(sched_pod(i), "bench")
                    win = CPUWindow({"apiserver": srv.proc.pid, "hollow fleet": fleet.pid, "bench": os.getpid()})
                    await asyncio.gather(*(create(i) for i in range(pods)))
                    dt = time.perf_counter() - win.t0
                    print(f"  created {pods} pods in {dt:.1f}s ({pods / dt:.0f}/s, API server CPU "
                          f"{1000 * win.used('apiserver') / pods:.2f} ms/pod); loadavg {loadavg()}", flush=True)
                    watches.append(tg.create_task(follow(pod_rc, "bench", pw.on_event, listed[1])))
                    await listed[1].wait()
                    sched = start_scheduler(srv)
                    win = CPUWindow({"scheduler": sched.pid, "apiserver": srv.proc.pid, "hollow fleet": fleet.pid,
                                     "bench": os.getpid()})
                    took = await wait_for(lambda: len(pw.bound) >= pods, 900, "pods bound",
                                          lambda: f"{len(pw.bound)}/{pods} bound")
                    bound = sorted(pw.bound.values())
                    span = bound[-1] - bound[0]
                    rate = pods / max(span, 1e-3)
                    cpu = win.used("scheduler")
                    print(f"  all {pods} bound {took:.1f}s after the scheduler process started "
                          f"(first bind at {bound[0] - win.t0:.1f}s): **{rate:.0f} pods bound/s** first to last bind, "
                          f"{pods / took:.0f}/s including start-up; {pods / max(cpu, 1e-3):.0f} pods per "
                          f"scheduler-CPU-second ({cpu:.1f}s)")
                    print(win.report())
                    return rate
                finally:
                    for w in watches:
                        w.cancel()
        finally:
            if sched is not None:
                stop_pid(sched)
            await client.close()
            stop_pid(fleet)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--nodes", type=int, default=1000)
    ap.add_argument("--pods", type=int, default=1000)
    ap.add_argument("--steady", type=float, default=30.0, help="seconds of steady-state measurement")
    ap.add_argument("--sched-nodes", default="1000,5000")
    ap.add_argument("--sched-pods", type=int, default=10_000)
    ap.add_argument("--sched-lease-interval", type=float, default=3600.0,
                    help="Lease interval of the fleets in 3 (no node lifecycle runs there; default: renew ~never, "
                         "so the API server's CPU goes to pods)")
    ap.add_argument("--quick", action="store_true", help="100 nodes, 200 pods; scheduler 100 nodes, 1,000 pods")
    ap.add_argument("--skip-fleet", action="store_true")
    ap.add_argument("--profile", default="", metavar="DIR",
                    help="record phases 1-2 with py-spy (raw collapsed stacks per process) into DIR")
    ap.add_argument("--skip-sched", action="store_true")
    args = ap.parse_args()
    if args.quick:
        args.nodes, args.pods, args.steady, args.sched_nodes, args.sched_pods = 100, 200, 15.0, "100", 1000
    if min(args.nodes, args.pods, args.sched_pods) < 1 or args.nodes > 5000 or args.sched_pods > 20_000:
        ap.error("counts must be ≥ 1, --nodes ≤ 5000, --sched-pods ≤ 20000")
    with contextlib.suppress(ImportError):
        import uvloop
        uvloop.install()
    print(f"bench_scale: {time.strftime('%Y-%m-%d %H:%M:%S UTC', time.gmtime())}, loadavg {loadavg()}, "
          f"{os.cpu_count()} CPUs", flush=True)
    if not args.skip_fleet:
        asyncio.run(phase_fleet(args.nodes, args.pods, args.steady, args.profile))
    if not args.skip_sched:
        for n in (int(x) for x in args.sched_nodes.split(",")):
            if n > 5000:
                ap.error("--sched-nodes ≤ 5000")
            rate = asyncio.run(phase_scheduler(n, args.sched_pods, args.sched_lease_interval))
            if n == 5000:
                print(f"  target ≥ 500 pods/s at 5,000 nodes: {'pass' if rate >= 500 else 'fail'} ({rate:.0f}/s)")


if __name__ == "__main__":
    main()
