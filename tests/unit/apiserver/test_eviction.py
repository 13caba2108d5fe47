"""pods/eviction over the memory backend: a PodDisruptionBudget's disruptions are taken by
compare-and-swap, a budget with none left answers 429, and the pods that may always go do."""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import pytest

from pocketkube.api import errors
from pocketkube.api.resources import ResourceTable
from pocketkube.apiserver.eviction import VIOLATION, evict
from pocketkube.apiserver.registry.store import Store, WriteOptions
from pocketkube.apiserver.registry.strategies import strategy_for
from pocketkube.apiserver.watch_cache import WatchCache
from pocketkube.storage.memory import MemoryStorage

TABLE = ResourceTable.builtin()
Obj = dict[str, Any]


@dataclass
class Server:
    stores: dict[str, Store]

    def store_by_kind(self, group: str, version: str, plural: str) -> Store:
        return self.stores[plural]


@pytest.fixture
async def server() -> AsyncIterator[Server]:
    storage = MemoryStorage()
    await storage.start()
    cache = WatchCache(storage)
    await cache.start()
    stores = {}
    for group, plural in (("", "pods"), ("policy", "poddisruptionbudgets")):
        info = TABLE.get(group, "v1", plural)
        assert info is not None
        stores[plural] = Store(info, strategy_for(info), storage, cache)
    yield Server(stores)
    await cache.stop()
    await storage.close()


async def add_pod(s: Server, name: str, *, ready: bool = True, phase: str = "Running", app: str = "web") -> None:
    pods = s.stores["pods"]
    await pods.create("ns", {"metadata": {"name": name, "labels": {"app": app}},
                             "spec": {"nodeName": "n1", "containers": [{"name": "c", "image": "busybox"}]}},
                      WriteOptions())

    async def set_status(pod: Obj) -> Obj:
        pod["status"] = {"phase": phase, "conditions": [{"type": "Ready", "status": "True" if ready else "False"}]}
        return pod

    await pods.guaranteed_update("ns", name, set_status, WriteOptions(), subresource="status")


async def add_pdb(s: Server, name: str, *, allowed: int, healthy: int = 3, desired: int = 2,
                  observed: int | None = None, **spec: Any) -> None:
    pdbs = s.stores["poddisruptionbudgets"]
    created = await pdbs.create("ns", {"metadata": {"name": name},
                                       "spec": {"selector": {"matchLabels": {"app": "web"}}, "minAvailable": desired,
                                                **spec}}, WriteOptions())
    generation = created["metadata"]["generation"]

    async def set_status(pdb: Obj) -> Obj:
        pdb["status"] = {"disruptionsAllowed": allowed, "currentHealthy": healthy, "desiredHealthy": desired,
                         "expectedPods": 3, "observedGeneration": generation if observed is None else observed}
        return pdb

    await pdbs.guaranteed_update("ns", name, set_status, WriteOptions(), subresource="status")


async def deleting(s: Server, name: str) -> bool:
    try:
        pod = await s.stores["pods"].get("ns", name)
    except errors.NotFound:
        return True
    return bool(pod["metadata"].get("deletionTimestamp"))


async def budget(s: Server, name: str = "b") -> Obj:
    status: Obj = (await s.stores["poddisruptionbudgets"].get("ns", name))["status"]
    return status


async def test_without_a_budget_the_pod_is_deleted(server: Server) -> None:
    await add_pod(server, "p1")
    await evict(server, server.stores["pods"], "ns", "p1", {}, False)  # type: ignore[arg-type]
    assert await deleting(server, "p1")


async def test_one_disruption_is_taken_and_the_next_eviction_refused(server: Server) -> None:
    for name in ("p1", "p2", "p3"):
        await add_pod(server, name)
    await add_pdb(server, "b", allowed=1)
    await evict(server, server.stores["pods"], "ns", "p1", {}, False)  # type: ignore[arg-type]
    assert await deleting(server, "p1")
    pod = await server.stores["pods"].get("ns", "p1")  # graceful: still there, terminating
    assert [(c["reason"], c["message"]) for c in pod["status"]["conditions"] if c["type"] == "DisruptionTarget"] == [
        ("EvictionByEvictionAPI", "Eviction API: evicting")]
    status = await budget(server)
    assert status["disruptionsAllowed"] == 0 and set(status["disruptedPods"]) == {"p1"}
    assert [(c["type"], c["status"], c["reason"]) for c in status["conditions"]] == [
        ("DisruptionAllowed", "False", "InsufficientPods")]
    with pytest.raises(errors.TooManyRequests) as refused:
        await evict(server, server.stores["pods"], "ns", "p2", {}, False)  # type: ignore[arg-type]
    st = refused.value.to_status()
    assert (st["code"], st["reason"], st["message"]) == (429, "TooManyRequests", VIOLATION)
    assert st["details"]["causes"] == [{"reason": "DisruptionBudget",
                                        "message": "The disruption budget b needs 2 healthy pods and has 3 currently"}]
    assert not await deleting(server, "p2")


async def test_dry_run_takes_nothing(server: Server) -> None:
    await add_pod(server, "p1")
    await add_pdb(server, "b", allowed=1)
    await evict(server, server.stores["pods"], "ns", "p1", {}, True)  # type: ignore[arg-type]
    assert not await deleting(server, "p1")
    assert (await budget(server))["disruptionsAllowed"] == 1


async def test_a_budget_not_yet_observed_refuses_with_retry_after(server: Server) -> None:
    await add_pod(server, "p1")
    await add_pdb(server, "b", allowed=1, observed=0)
    with pytest.raises(errors.TooManyRequests) as refused:
        await evict(server, server.stores["pods"], "ns", "p1", {}, False)  # type: ignore[arg-type]
    st = refused.value.to_status()
    assert st["details"]["retryAfterSeconds"] == 10
    assert "is still being processed by the server" in st["details"]["causes"][0]["message"]


async def test_pods_that_disrupt_nothing_more_go_regardless(server: Server) -> None:
    await add_pod(server, "pending", phase="Pending", ready=False)
    await add_pod(server, "unready", ready=False)
    await add_pdb(server, "b", allowed=0, healthy=2, desired=2)
    await evict(server, server.stores["pods"], "ns", "pending", {}, False)  # type: ignore[arg-type]
    # IfHealthyBudget: an unready pod may go while the healthy ones meet the budget.
    await evict(server, server.stores["pods"], "ns", "unready", {}, False)  # type: ignore[arg-type]
    assert await deleting(server, "pending") and await deleting(server, "unready")
    assert (await budget(server))["disruptionsAllowed"] == 0 and not (await budget(server)).get("disruptedPods")


async def test_unready_pods_below_the_budget_need_always_allow(server: Server) -> None:
    await add_pod(server, "u1", ready=False)
    await add_pod(server, "u2", ready=False)
    await add_pdb(server, "b", allowed=0, healthy=1, desired=2)
    with pytest.raises(errors.TooManyRequests):
        await evict(server, server.stores["pods"], "ns", "u1", {}, False)  # type: ignore[arg-type]
    await add_pdb(server, "c", allowed=0, healthy=1, desired=2, unhealthyPodEvictionPolicy="AlwaysAllow",
                  selector={"matchLabels": {"app": "other"}})
    await add_pod(server, "o1", ready=False, app="other")
    await evict(server, server.stores["pods"], "ns", "o1", {}, False)  # type: ignore[arg-type]
    assert await deleting(server, "o1") and not await deleting(server, "u1")


async def test_two_budgets_for_one_pod_are_not_supported(server: Server) -> None:
    await add_pod(server, "p1")
    await add_pdb(server, "b", allowed=1)
    await add_pdb(server, "c", allowed=1)
    with pytest.raises(errors.InternalError, match="more than one PodDisruptionBudget"):
        await evict(server, server.stores["pods"], "ns", "p1", {}, False)  # type: ignore[arg-type]


async def test_bad_input_is_a_400(server: Server) -> None:
    await add_pod(server, "p1")
    with pytest.raises(errors.BadRequest):
        await evict(server, server.stores["pods"], "ns", "p1", {"deleteOptions": []}, False)  # type: ignore[arg-type]
    with pytest.raises(errors.BadRequest):
        await evict(server, server.stores["pods"], "ns", "p1", {"metadata": {"name": "p2"}}, False)  # type: ignore[arg-type]
    with pytest.raises(errors.NotFound):
        await evict(server, server.stores["pods"], "ns", "nope", {}, False)  # type: ignore[arg-type]
    for body in ({"metadata": []}, {"deleteOptions": {"gracePeriodSeconds": "5"}},
                 {"deleteOptions": {"preconditions": "x"}}):
        with pytest.raises(errors.BadRequest):
            await evict(server, server.stores["pods"], "ns", "p1", body, False)  # type: ignore[arg-type]


async def test_preconditions_hold_for_the_pod_as_the_caller_saw_it(server: Server) -> None:
    await add_pod(server, "p1")
    rv = (await server.stores["pods"].get("ns", "p1"))["metadata"]["resourceVersion"]
    with pytest.raises(errors.Conflict):
        await evict(server, server.stores["pods"], "ns", "p1",  # type: ignore[arg-type]
                    {"deleteOptions": {"preconditions": {"resourceVersion": "1"}}}, False)
    with pytest.raises(errors.Conflict):
        await evict(server, server.stores["pods"], "ns", "p1",  # type: ignore[arg-type]
                    {"deleteOptions": {"preconditions": {"uid": "someone-else"}}}, False)
    assert not await deleting(server, "p1")
    await evict(server, server.stores["pods"], "ns", "p1",  # type: ignore[arg-type]
                {"deleteOptions": {"preconditions": {"resourceVersion": rv}}}, False)
    assert await deleting(server, "p1")
