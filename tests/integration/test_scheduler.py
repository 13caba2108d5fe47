"""The scheduler in-process against a real `pocketkube server --disable-agent`.

The module starts its own server (conftest.start_server) so the node count, and therefore the exact
"0/N nodes are available" messages, are not disturbed by nodes other tests register.
"""

from __future__ import annotations

import asyncio
import contextlib
import uuid
from collections.abc import AsyncIterator, Iterator
from typing import Any

import pytest

from pocketkube.client.rest import APIClient, ClientConfig, ResourceClient
from pocketkube.scheduler.run import SchedulerConfig, run
from tests.conftest import ServerProcess, start_server

Obj = dict[str, Any]


@pytest.fixture(scope="module")
def sched_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    srv = start_server(str(tmp_path_factory.mktemp("pk-sched")))
    yield srv
    srv.stop()


@contextlib.asynccontextmanager
async def scheduler_running(srv: ServerProcess) -> AsyncIterator[APIClient]:
    config = ClientConfig.from_kubeconfig(srv.kubeconfig)
    client = APIClient(config)
    task = asyncio.create_task(run(SchedulerConfig(client_config=config)))
    try:
        yield client
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
        await client.close()


async def add_node(nodes: ResourceClient, name: str, *, cpu: str, taints: list[Obj] | None = None) -> None:
    await nodes.create({"apiVersion": "v1", "kind": "Node",
                        "metadata": {"name": name, "labels": {"kubernetes.io/hostname": name}},
                        "spec": {"taints": taints or []}})
    # like a kubelet: report allocatable through /status (create drops status)
    await nodes.patch(name, {"status": {"allocatable": {"cpu": cpu, "memory": "8Gi", "pods": "110"},
                                        "capacity": {"cpu": cpu, "memory": "8Gi", "pods": "110"}}},
                      subresource="status")


def pod(name: str, cpu: str) -> Obj:
    return {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": name},
            "spec": {"containers": [{"name": "c", "image": "registry.local/pause:3.9",
                                     "resources": {"requests": {"cpu": cpu, "memory": "64Mi"}}}]}}


async def wait_for(fn: Any, timeout: float = 15.0) -> Any:
    deadline = asyncio.get_running_loop().time() + timeout
    while True:
        result = await fn()
        if result:
            return result
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError("timed out")
        await asyncio.sleep(0.1)


async def events_for(client: APIClient, ns: str, name: str, reason: str) -> list[Obj]:
    items = (await client.core("events").list(ns)).get("items") or []
    return [e for e in items if e.get("reason") == reason and (e.get("involvedObject") or {}).get("name") == name]


async def test_schedule_fail_then_fit_on_new_node(sched_server: ServerProcess) -> None:
    ns = f"s-{uuid.uuid4().hex[:6]}"
    async with scheduler_running(sched_server) as client:
        await client.core("namespaces").create({"metadata": {"name": ns}})
        nodes, pods = client.core("nodes"), client.core("pods")
        await add_node(nodes, "cp", cpu="8", taints=[{"key": "node-role.kubernetes.io/control-plane",
                                                     "effect": "NoSchedule"}])
        await add_node(nodes, "w1", cpu="2")
        await add_node(nodes, "w2", cpu="2")

        await pods.create(pod("small", "500m"), ns)

        async def small_bound() -> str:
            return str(((await pods.get("small", ns)).get("spec") or {}).get("nodeName") or "")
        assert await wait_for(small_bound) in ("w1", "w2")
        scheduled = await wait_for(lambda: events_for(client, ns, "small", "Scheduled"))
        node_name = await small_bound()
        ev = scheduled[0]
        assert ev["message"] == f"Successfully assigned {ns}/small to {node_name}"
        assert ev["type"] == "Normal" and ev["source"]["component"] == "default-scheduler"
        assert ev["reportingComponent"] == "default-scheduler" and ev["count"] == 1
        assert ev["involvedObject"]["kind"] == "Pod" and ev["firstTimestamp"] and ev["lastTimestamp"]

        await pods.create(pod("big", "3"), ns)
        failed = await wait_for(lambda: events_for(client, ns, "big", "FailedScheduling"))
        expected = ("0/3 nodes are available: 1 node(s) had untolerated taint "
                    "{node-role.kubernetes.io/control-plane: }, 2 Insufficient cpu. preemption: 0/3 nodes are "
                    "available: 3 Preemption is not helpful for scheduling.")
        assert failed[0]["message"] == expected and failed[0]["type"] == "Warning"

        async def condition() -> Obj | None:
            conds = ((await pods.get("big", ns)).get("status") or {}).get("conditions") or []
            return next((c for c in conds if c.get("type") == "PodScheduled"), None)
        cond = await wait_for(condition)
        assert cond["status"] == "False" and cond["reason"] == "Unschedulable" and cond["message"] == expected

        # a bigger node arrives: the Node add/update event moves the pod back, no polling needed
        await add_node(nodes, "w3", cpu="4")

        async def big_bound() -> str:
            return str(((await pods.get("big", ns)).get("spec") or {}).get("nodeName") or "")
        assert await wait_for(big_bound) == "w3"


async def test_deleting_pod_frees_room(sched_server: ServerProcess) -> None:
    ns = f"s-{uuid.uuid4().hex[:6]}"
    async with scheduler_running(sched_server) as client:
        await client.core("namespaces").create({"metadata": {"name": ns}})
        nodes, pods = client.core("nodes"), client.core("pods")
        node_names = [n["metadata"]["name"] for n in (await nodes.list()).get("items") or []]
        for name in node_names:  # cordon what the previous test left
            await nodes.patch(name, {"spec": {"unschedulable": True}})
        await add_node(nodes, "solo", cpu="1")
        await pods.create(pod("hog", "800m"), ns)

        async def node_of(name: str) -> str:
            return str(((await pods.get(name, ns)).get("spec") or {}).get("nodeName") or "")
        assert await wait_for(lambda: node_of("hog")) == "solo"
        await pods.create(pod("waiter", "800m"), ns)
        failed = await wait_for(lambda: events_for(client, ns, "waiter", "FailedScheduling"))
        n = len(node_names) + 1
        assert failed[0]["message"] == (
            f"0/{n} nodes are available: 1 Insufficient cpu, {n - 1} node(s) were unschedulable. "
            f"preemption: 0/{n} nodes are available: 1 No preemption victims found for incoming pod, "
            f"{n - 1} Preemption is not helpful for scheduling.")
        await pods.delete("hog", ns, grace_period_seconds=0)
        assert await wait_for(lambda: node_of("waiter")) == "solo"


async def test_binding_subresource_preconditions(sched_server: ServerProcess) -> None:
    """POST pods/binding as kube-apiserver's BindingREST: uid precondition, one binding only."""
    from pocketkube.api import errors

    ns = f"b-{uuid.uuid4().hex[:6]}"
    client = APIClient(ClientConfig.from_kubeconfig(sched_server.kubeconfig))
    try:
        await client.core("namespaces").create({"metadata": {"name": ns}})
        pods = client.core("pods")
        body = pod("p", "100m")
        body["spec"]["schedulerName"] = "nobody-schedules-this"
        uid = (await pods.create(body, ns))["metadata"]["uid"]

        def binding(node: str | None, uid: str = "") -> Obj:
            b: Obj = {"apiVersion": "v1", "kind": "Binding", "metadata": {"name": "p", **({"uid": uid} if uid else {})}}
            if node is not None:
                b["target"] = {"apiVersion": "v1", "kind": "Node", "name": node}
            return b
        with pytest.raises(errors.Conflict, match="Precondition failed: UID in precondition: wrong-uid"):
            await pods.create_subresource("p", "binding", binding("n1", "wrong-uid"), ns)
        with pytest.raises(errors.StatusError, match=r"target\.name: Required value") as invalid:
            await pods.create_subresource("p", "binding", binding(None), ns)
        assert invalid.value.code == 422
        with pytest.raises(errors.NotFound):
            await pods.create_subresource("absent", "binding", binding("n1"), ns)
        assert not (await pods.get("p", ns))["spec"].get("nodeName")
        await pods.create_subresource("p", "binding", binding("n1", uid), ns)
        got = await pods.get("p", ns)
        assert got["spec"]["nodeName"] == "n1"
        cond = next(c for c in got["status"]["conditions"] if c["type"] == "PodScheduled")
        assert cond["status"] == "True"
        with pytest.raises(errors.Conflict, match='already assigned to node "n1"'):
            await pods.create_subresource("p", "binding", binding("n2", uid), ns)
    finally:
        await client.close()
