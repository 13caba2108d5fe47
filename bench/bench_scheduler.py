"""Scheduler throughput: pods bound per second with 1,000 and 5,000 nodes and 10,000 pods.

Mode "stub" runs the real loop in-process (queue → filter → score → assume → bind task) with a
binder that only yields: the scheduler's own CPU cost per pod, no API.

Mode "hollow" is the issue-4 figure. Real processes on 127.0.0.1: `pocketkube apiserver` (no control
loops), `pocketkube agent --hollow --count N` (Nodes registered and Ready; Lease interval 3600 s so
the API server's CPU goes to pods) and, once the pods are pending, `pocketkube scheduler`, timed until
every pod is bound (seen on a watch). Run twice per node count:
  - `status=off`: the fleet leaves bound pods alone — what kube's scheduler_perf measures (its nodes
    are bare Node objects, no kubelet moves pods to Running);
  - `status=on`: the fleet PATCHes each bound pod to Running, as a kubelet would, competing with
    the scheduler for the API server on the same two cores.
Floor, same run, before the scheduler starts: a plain client POSTs pods/binding for `--floor-pods`
pods (another namespace, a schedulerName nobody serves) at the scheduler's bind concurrency — the
rate the API server binds at when the client does no scheduling at all.
CPU is utime+stime from /proc/<pid>/stat per process; "other" is the rest of the machine.

    python bench/bench_scheduler.py [--mode stub|hollow|both] [--nodes 1000,5000] [--pods 10000]
                                    [--status off,on] [--floor-pods 2000] [--profile DIR]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
import time
from typing import Any

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TESTS = os.path.join(REPO, "tests")
sys.path.insert(0, REPO)

from pocketkube.scheduler.cache import SchedulerCache  # noqa: E402
from pocketkube.scheduler.framework.registry import Profile, new_framework  # noqa: E402
from pocketkube.scheduler.queue import SchedulingQueue  # noqa: E402
from pocketkube.scheduler.scheduler import Scheduler  # noqa: E402
from pocketkube.scheduler.types import PodInfo  # noqa: E402

Obj = dict[str, Any]


def node_obj(i: int) -> Obj:
    return {"apiVersion": "v1", "kind": "Node",
            "metadata": {"name": f"node-{i:05d}", "labels": {"kubernetes.io/hostname": f"node-{i:05d}"}},
            "spec": {}, "status": {"allocatable": {"cpu": "32", "memory": "128Gi", "pods": "110"},
                                   "capacity": {"cpu": "32", "memory": "128Gi", "pods": "110"}}}


def pod_obj(i: int, ns: str = "bench") -> Obj:
    return {"apiVersion": "v1", "kind": "Pod",
            "metadata": {"name": f"pod-{i:05d}", "namespace": ns, "uid": f"uid-{i}", "labels": {"app": "bench"},
                         "ownerReferences": [{"apiVersion": "apps/v1", "kind": "ReplicaSet", "name": "bench",
                                              "uid": "rs-bench", "controller": True}]},
            "spec": {"schedulerName": "default-scheduler",
                     "containers": [{"name": "c", "image": "pause",
                                     "resources": {"requests": {"cpu": "100m", "memory": "128Mi"}}}]}}


async def bench_stub(num_nodes: int, num_pods: int, percentage: int = 0) -> tuple[float, float]:
    """-> (pods/s by the wall clock, pods per CPU-second of this process: steadier on a busy host)."""
    cache = SchedulerCache()
    fw = new_framework(Profile(percentage_of_nodes_to_score=percentage), cache)
    queue = SchedulingQueue(events=fw.events)

    async def bind(pod: PodInfo, node: str) -> None:
        await asyncio.sleep(0)

    sched = Scheduler(framework=fw, cache=cache, queue=queue, binder=bind)
    for i in range(num_nodes):
        sched.on_node(None, node_obj(i))
    pods = [pod_obj(i) for i in range(num_pods)]
    t0, c0 = time.perf_counter(), time.process_time()
    for p in pods:
        sched.on_pod(None, p)
    task = asyncio.create_task(sched.run())
    while sched.bound < num_pods:  # noqa: ASYNC110 - polling a counter, not waiting for an event
        await asyncio.sleep(0.05)
    elapsed, cpu = time.perf_counter() - t0, time.process_time() - c0
    task.cancel()
    try:
        await task
    except asyncio.CancelledError:
        pass
    return num_pods / elapsed, num_pods / cpu


def raw_floor(num_nodes: int, num_pods: int) -> float:
    """Pods/s if each pod only touched every node it must consider once (an attribute read)."""
    cache = SchedulerCache()
    for i in range(num_nodes):
        cache.add_node(node_obj(i))
    nodes = cache.node_list()
    from pocketkube.scheduler.framework.runtime import num_feasible_nodes_to_find
    k = num_feasible_nodes_to_find(num_nodes)
    sample = min(num_pods, 2000)
    t0 = time.perf_counter()
    for _ in range(sample):
        total = 0
        for n in nodes[:k]:
            total += n.alloc_cpu
    return sample / (time.perf_counter() - t0)


def api_pod(i: int, ns: str, *, scheduler: str = "default-scheduler") -> Obj:
    obj = pod_obj(i, ns)
    del obj["metadata"]["uid"]  # the server assigns it
    # the ownerReference (a ReplicaSet that does not exist) stays: `pocketkube apiserver` runs no
    # garbage collector, and it makes the scheduler spread the pods as a Deployment's
    obj["spec"]["schedulerName"] = scheduler
    obj["spec"]["terminationGracePeriodSeconds"] = 0
    return obj


async def create_pods(client: Any, ns: str, count: int, scheduler: str = "default-scheduler") -> float:
    rc, sem = client.core("pods"), asyncio.Semaphore(32)

    async def one(i: int) -> None:
        async with sem:
            await rc.create(api_pod(i, ns, scheduler=scheduler), ns)
    t0 = time.perf_counter()
    await asyncio.gather(*(one(i) for i in range(count)))
    return count / (time.perf_counter() - t0)


async def binding_floor(client: Any, srv_pid: int, nodes: list[str], count: int,
                        concurrency: int = 16) -> tuple[float, float]:
    """POST pods/binding for `count` pending pods of namespace floor -> (bindings/s, API server ms each)."""
    from bench_scale import cpu_seconds

    rc = client.core("pods")
    sem = asyncio.Semaphore(concurrency)

    async def bind(i: int) -> None:
        name = f"pod-{i:05d}"
        body = {"apiVersion": "v1", "kind": "Binding", "metadata": {"name": name},
                "target": {"apiVersion": "v1", "kind": "Node", "name": nodes[i % len(nodes)]}}
        async with sem:
            await rc.create_subresource(name, "binding", body, "floor")
    c0, t0 = cpu_seconds(srv_pid), time.perf_counter()
    await asyncio.gather(*(bind(i) for i in range(count)))
    dt, api = time.perf_counter() - t0, cpu_seconds(srv_pid) - c0
    return count / dt, 1000 * api / count


async def bench_hollow(num_nodes: int, num_pods: int, *, pod_status: bool, floor_pods: int,
                       sched_args: tuple[str, ...], profile: str, concurrency: int = 16) -> float:
    from bench_scale import (
        CPUWindow,
        NodeWatch,
        PodWatch,
        cluster,
        follow,
        loadavg,
        start_fleet,
        start_profilers,
        start_scheduler,
        stop_pid,
        stop_profilers,
        wait_for,
    )

    from pocketkube.client.rest import APIClient, ClientConfig

    label = f"hollow nodes={num_nodes} pods={num_pods} status={'on' if pod_status else 'off'}"
    print(f"\n== {label}  ({time.strftime('%H:%M:%S UTC', time.gmtime())}, loadavg {loadavg()})", flush=True)
    with cluster("apiserver") as srv:
        fleet = start_fleet(srv, num_nodes, "hollow-", 3600.0, ("--hollow-pod-status", "on" if pod_status else "off"))
        client = APIClient(ClientConfig.from_kubeconfig(srv.kubeconfig))
        sched = None
        profilers: list[Any] = []
        nw, pw = NodeWatch("hollow-"), PodWatch()
        try:
            async with asyncio.TaskGroup() as tg:
                listed = [asyncio.Event(), asyncio.Event()]
                watches = [tg.create_task(follow(client.core("nodes"), None, nw.on_event, listed[0]))]
                try:
                    t = await wait_for(lambda: nw.count_ready() >= num_nodes, 600, "nodes Ready",
                                       lambda: f"{nw.count_ready()}/{num_nodes}")
                    for ns in ("bench", "floor"):
                        await client.core("namespaces").create({"metadata": {"name": ns}})
                    rate = await create_pods(client, "bench", num_pods)
                    await create_pods(client, "floor", floor_pods, scheduler="bench-floor-nobody")
                    print(f"  {num_nodes} nodes Ready in {t:.1f}s; {num_pods} pods created at {rate:.0f}/s "
                          f"(+{floor_pods} for the floor); loadavg {loadavg()}", flush=True)
                    tag = f"{num_nodes}-{'on' if pod_status else 'off'}"
                    if profile:
                        profilers = start_profilers({"apiserver": srv.proc.pid}, os.path.join(profile, tag, "floor"))
                    floor, floor_ms = await binding_floor(client, srv.proc.pid, sorted(nw.ready), floor_pods,
                                                          concurrency)
                    stop_profilers(profilers)
                    profilers = []
                    print(f"  floor: plain client POST pods/binding x{floor_pods}, {concurrency} in flight: "
                          f"**{floor:.0f} bindings/s**, API server {floor_ms:.2f} ms CPU each; loadavg {loadavg()}",
                          flush=True)
                    watches.append(tg.create_task(follow(client.core("pods"), "bench", pw.on_event, listed[1])))
                    await listed[1].wait()
                    sched = start_scheduler(srv, sched_args)
                    win = CPUWindow({"scheduler": sched.pid, "apiserver": srv.proc.pid, "hollow fleet": fleet.pid,
                                     "bench": os.getpid()})
                    if profile:
                        profilers = start_profilers({"scheduler": sched.pid, "apiserver": srv.proc.pid},
                                                    os.path.join(profile, tag))
                    first: dict[str, float] = {}

                    def done() -> bool:
                        if pw.bound and not first:
                            first.update({k: win.used(k) + win.cpu0[k] for k in win.pids})
                        return len(pw.bound) >= num_pods
                    took = await wait_for(done, 900, "pods bound", lambda: f"{len(pw.bound)}/{num_pods} bound")
                    bound = sorted(pw.bound.values())
                    span = max(bound[-1] - bound[0], 1e-3)
                    rate = num_pods / span
                    cpu = win.used("scheduler")
                    cpu_steady = cpu + win.cpu0["scheduler"] - first["scheduler"]
                    api = win.used("apiserver")
                    api_steady = api + win.cpu0["apiserver"] - first["apiserver"]
                    print(f"  {label}: **{rate:.0f} pods bound/s** first to last bind ({span:.1f}s); "
                          f"{num_pods / took:.0f}/s including the scheduler's start-up ({took:.1f}s)")
                    print(f"    scheduler CPU: {1000 * cpu_steady / num_pods:.2f} s per 1,000 pods while binding "
                          f"({1000 * cpu / num_pods:.2f} s incl. start-up: informer lists); "
                          f"API server {100 * api_steady / span:.0f}% of a core while binding "
                          f"({1000 * api_steady / num_pods:.2f} ms per pod); floor {floor:.0f} bindings/s "
                          f"({rate / floor:.2f}x of it)")
                    if pod_status:
                        running = len(pw.running)
                        print(f"    pods Running when the last was bound: {running}/{num_pods}")
                    print(win.report(), flush=True)
                    return rate
                finally:
                    for w in watches:
                        w.cancel()
        finally:
            stop_profilers(profilers)
            if sched is not None:
                stop_pid(sched)
            await client.close()
            stop_pid(fleet)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--nodes", default="1000,5000")
    ap.add_argument("--pods", type=int, default=10_000)
    ap.add_argument("--mode", default="both", choices=["stub", "hollow", "both"])
    ap.add_argument("--status", default="off,on", help="hollow mode: fleet pod-status movement, off and/or on")
    ap.add_argument("--floor-pods", type=int, default=2000)
    ap.add_argument("--percentage", type=int, default=0, help="percentageOfNodesToScore (0: kube's adaptive)")
    ap.add_argument("--bind-concurrency", type=int, default=16, help="the scheduler's bindings in flight (hollow)")
    ap.add_argument("--profile", default="", metavar="DIR", help="py-spy the scheduler and API server (hollow)")
    args = ap.parse_args()
    try:
        import uvloop
        uvloop.install()
    except ImportError:
        pass
    sys.path.insert(0, os.path.join(REPO, "bench"))
    sys.path.insert(0, TESTS)
    sched_args = ("--percentage-of-nodes-to-score", str(args.percentage),
                  "--bind-concurrency", str(args.bind_concurrency))
    print(f"bench_scheduler: {time.strftime('%Y-%m-%d %H:%M:%S UTC', time.gmtime())}, "
          f"loadavg {' '.join(open('/proc/loadavg').read().split()[:3])}, {os.cpu_count()} CPUs", flush=True)
    for n in (int(x) for x in args.nodes.split(",")):
        if args.mode in ("stub", "both"):
            floor = raw_floor(n, args.pods)
            rate, cpu_rate = asyncio.run(bench_stub(n, args.pods, args.percentage))
            print(f"stub   nodes={n:5d} pods={args.pods}: {rate:8.0f} pods/s wall, {cpu_rate:8.0f} pods/cpu-s "
                  f"= {1000 / cpu_rate:.2f} CPU-s per 1,000 pods (bare walk of the scored nodes: {floor:8.0f} pods/s)",
                  flush=True)
        if args.mode in ("hollow", "both"):
            for status in args.status.split(","):
                rate = asyncio.run(bench_hollow(n, args.pods, pod_status=status == "on", floor_pods=args.floor_pods,
                                                sched_args=sched_args, profile=args.profile,
                                                concurrency=args.bind_concurrency))
                if n == 5000 and status == "off":
                    print(f"  target >= 500 pods/s at 5,000 nodes: {'pass' if rate >= 500 else 'fail'}")


if __name__ == "__main__":
    main()
