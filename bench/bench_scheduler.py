"""Scheduler throughput: pods bound per second with 1,000 and 5,000 synthetic nodes.

Mode "stub" runs the real loop (queue → filter → score → assume → bind task) with a binder that
only yields, so it measures the scheduler's own CPU cost. Mode "server" starts a real
`pocketkube apiserver` (no control loops: the server's own scheduler would race the measured one and
the count would never complete), creates the nodes and pods through the API and runs the real
scheduler (informers, POST binding, events) against it, counting pods whose binding succeeded.
The raw floor printed next to each figure is the bare cost of iterating the nodes once per pod.

    python bench/bench_scheduler.py [--nodes 1000,5000] [--pods 10000] [--mode stub|server|both]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
import tempfile
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


async def bench_stub(num_nodes: int, num_pods: int) -> tuple[float, float]:
    """-> (pods/s by the wall clock, pods per CPU-second of this process: steadier on a busy host)."""
    cache = SchedulerCache()
    fw = new_framework(Profile(), cache)
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


async def bench_server(num_nodes: int, num_pods: int) -> tuple[float, float]:
    sys.path.insert(0, TESTS)
    from conftest import start_server

    from pocketkube.client.rest import APIClient, ClientConfig
    from pocketkube.scheduler.run import SchedulerConfig, build

    with tempfile.TemporaryDirectory() as d:
        srv = start_server(d, command="apiserver")
        try:
            client = APIClient(ClientConfig.from_kubeconfig(srv.kubeconfig))
            nodes, pods = client.core("nodes"), client.core("pods")
            sem = asyncio.Semaphore(32)

            async def create(rc: Any, obj: Obj, ns: str | None = None) -> None:
                async with sem:
                    await rc.create(obj, ns)

            await client.core("namespaces").create({"metadata": {"name": "bench"}})
            await asyncio.gather(*(create(nodes, node_obj(i)) for i in range(num_nodes)))

            async def set_status(i: int) -> None:
                async with sem:
                    await nodes.patch(f"node-{i:05d}", {"status": node_obj(i)["status"]}, subresource="status")
            await asyncio.gather(*(set_status(i) for i in range(num_nodes)))
            def api_pod(i: int) -> Obj:
                obj = pod_obj(i)
                del obj["metadata"]["uid"]  # the server assigns it
                return obj

            t_create = time.perf_counter()
            await asyncio.gather(*(create(pods, api_pod(i), "bench") for i in range(num_pods)))
            print(f"  (created {num_nodes} nodes + {num_pods} pods through the API; pod creation "
                  f"{num_pods / (time.perf_counter() - t_create):.0f} pods/s)")
            sched, informers = build(SchedulerConfig(client_config=client.config), client)
            t0, c0 = time.perf_counter(), time.process_time()
            async with asyncio.TaskGroup() as tg:
                tasks = [tg.create_task(inf.run()) for inf in informers]
                tasks.append(tg.create_task(sched.run()))
                while sched.bound < num_pods:  # noqa: ASYNC110
                    await asyncio.sleep(0.1)
                elapsed, cpu = time.perf_counter() - t0, time.process_time() - c0
                for t in tasks:
                    t.cancel()
            await client.close()
            return num_pods / elapsed, num_pods / cpu
        finally:
            srv.stop()


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--nodes", default="1000,5000")
    ap.add_argument("--pods", type=int, default=10_000)
    ap.add_argument("--mode", default="stub", choices=["stub", "server", "both"])
    args = ap.parse_args()
    try:
        import uvloop
        uvloop.install()
    except ImportError:
        pass
    for n in (int(x) for x in args.nodes.split(",")):
        floor = raw_floor(n, args.pods)
        if args.mode in ("stub", "both"):
            rate, cpu_rate = asyncio.run(bench_stub(n, args.pods))
            print(f"stub   nodes={n:5d} pods={args.pods}: {rate:8.0f} pods/s wall, {cpu_rate:8.0f} pods/cpu-s "
                  f"(raw floor: {floor:8.0f} pods/s)")
        if args.mode in ("server", "both"):
            rate, cpu_rate = asyncio.run(bench_server(n, args.pods))
            print(f"server nodes={n:5d} pods={args.pods}: {rate:8.0f} pods/s wall, {cpu_rate:8.0f} pods per "
                  f"scheduler-cpu-s (raw floor: {floor:8.0f} pods/s)")


if __name__ == "__main__":
    main()
