"""The generic store's Kubernetes semantics over the memory backend and the watch cache."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from pocketkube.api import errors
from pocketkube.api.resources import ResourceTable
from pocketkube.api.selectors import FieldSelector, parse_label_selector
from pocketkube.apiserver.registry.store import DeleteOptions, ListOptions, Store, WriteOptions
from pocketkube.apiserver.registry.strategies import strategy_for
from pocketkube.apiserver.watch_cache import WatchCache
from pocketkube.storage.memory import MemoryStorage

TABLE = ResourceTable.builtin()


@pytest.fixture
async def stores() -> AsyncIterator[dict[str, Store]]:
    storage = MemoryStorage()
    await storage.start()
    cache = WatchCache(storage)
    await cache.start()
    out = {}
    for plural, group in (("configmaps", ""), ("pods", ""), ("namespaces", ""), ("deployments", "apps")):
        info = TABLE.get(group, "v1", plural)
        assert info is not None
        out[plural] = Store(info, strategy_for(info), storage, cache)
    yield out
    await cache.stop()
    await storage.close()


def cm(name: str, **labels: str) -> dict[str, object]:
    return {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": name, "labels": labels}, "data": {"a": "1"}}


async def test_create_sets_metadata_and_rejects_duplicates(stores: dict[str, Store]) -> None:
    s = stores["configmaps"]
    obj = await s.create("default", cm("a"), WriteOptions())
    md = obj["metadata"]
    assert md["uid"] and md["creationTimestamp"] and int(md["resourceVersion"]) > 0
    assert md["namespace"] == "default"
    with pytest.raises(errors.AlreadyExists):
        await s.create("default", cm("a"), WriteOptions())


async def test_generate_name(stores: dict[str, Store]) -> None:
    obj = await stores["configmaps"].create("default", {"metadata": {"generateName": "x-"}, "data": {}}, WriteOptions())
    assert obj["metadata"]["name"].startswith("x-") and len(obj["metadata"]["name"]) == 7


async def test_stale_resource_version_conflicts(stores: dict[str, Store]) -> None:
    s = stores["configmaps"]
    obj = await s.create("default", cm("a"), WriteOptions())
    stale = obj["metadata"]["resourceVersion"]
    obj["data"] = {"a": "2"}
    updated = await s.update("default", "a", obj, WriteOptions())
    assert updated["metadata"]["resourceVersion"] != stale
    obj["metadata"]["resourceVersion"] = stale
    with pytest.raises(errors.Conflict) as e:
        await s.update("default", "a", obj, WriteOptions())
    assert "the object has been modified" in e.value.message


async def test_generation_bumps_on_spec_change_only(stores: dict[str, Store]) -> None:
    s = stores["deployments"]
    d = {"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "web"},
         "spec": {"selector": {"matchLabels": {"app": "web"}},
                  "template": {"metadata": {"labels": {"app": "web"}},
                               "spec": {"containers": [{"name": "c", "image": "busybox"}]}}}}
    obj = await s.create("default", d, WriteOptions())
    assert obj["metadata"]["generation"] == 1
    obj["metadata"]["labels"] = {"x": "y"}
    obj = await s.update("default", "web", obj, WriteOptions())
    assert obj["metadata"]["generation"] == 1
    obj["spec"]["replicas"] = 5
    obj = await s.update("default", "web", obj, WriteOptions())
    assert obj["metadata"]["generation"] == 2
    # status written through the main resource is ignored
    obj["status"] = {"replicas": 9}
    obj = await s.update("default", "web", obj, WriteOptions())
    assert "replicas" not in obj.get("status", {})
    obj["status"] = {"replicas": 9}
    obj = await s.update("default", "web", obj, WriteOptions(), subresource="status")
    assert obj["status"]["replicas"] == 9 and obj["metadata"]["generation"] == 2


async def test_finalizers_hold_deletion(stores: dict[str, Store]) -> None:
    s = stores["configmaps"]
    obj = cm("f")
    obj["metadata"]["finalizers"] = ["example.com/hold"]  # type: ignore[index]
    await s.create("default", obj, WriteOptions())
    held, deleted_now = await s.delete("default", "f", DeleteOptions())
    assert not deleted_now and held["metadata"]["deletionTimestamp"]
    held["metadata"]["finalizers"] = []
    await s.update("default", "f", held, WriteOptions())
    with pytest.raises(errors.NotFound):
        await s.get("default", "f")


async def test_graceful_pod_deletion(stores: dict[str, Store]) -> None:
    s = stores["pods"]
    pod = {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "p"},
           "spec": {"nodeName": "n1", "containers": [{"name": "c", "image": "busybox"}]}}
    await s.create("default", pod, WriteOptions())
    obj, now = await s.delete("default", "p", DeleteOptions())
    assert not now and obj["metadata"]["deletionGracePeriodSeconds"] == 30
    obj, now = await s.delete("default", "p", DeleteOptions(grace_period_seconds=0))
    assert now


async def test_list_selectors_and_pagination(stores: dict[str, Store]) -> None:
    s = stores["configmaps"]
    for i in range(7):
        await s.create("default", cm(f"c{i}", parity="even" if i % 2 == 0 else "odd"), WriteOptions())
    everything = FieldSelector()
    res = await s.list("default", ListOptions(parse_label_selector("parity=even"), everything))
    assert [co.obj["metadata"]["name"] for co in res.items] == ["c0", "c2", "c4", "c6"]
    names: list[str] = []
    token = ""
    while True:
        page = await s.list("default", ListOptions(parse_label_selector(""), everything, limit=3, continue_token=token))
        names += [co.obj["metadata"]["name"] for co in page.items]
        token = page.continue_token
        if not token:
            break
    assert names == [f"c{i}" for i in range(7)]
