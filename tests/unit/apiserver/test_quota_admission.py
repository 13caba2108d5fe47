"""Quota admission over the memory backend: charges are compare-and-swapped, never lost or doubled."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from types import SimpleNamespace
from typing import Any, cast

import orjson
import pytest

from pocketkube.api import errors
from pocketkube.api.resources import ResourceTable
from pocketkube.apiserver.quota import QuotaAdmission
from pocketkube.apiserver.watch_cache import WatchCache
from pocketkube.storage.memory import MemoryStorage

TABLE = ResourceTable.builtin()
PODS = TABLE.get("", "v1", "pods")
QUOTAS = TABLE.get("", "v1", "resourcequotas")
assert PODS is not None and QUOTAS is not None
KEY = QUOTAS.key("ns", "q1")


@pytest.fixture
async def admission() -> AsyncIterator[QuotaAdmission]:
    storage = MemoryStorage()
    await storage.start()
    cache = WatchCache(storage)
    await cache.start()
    quota = {"metadata": {"name": "q1", "namespace": "ns"}, "spec": {"hard": {"pods": "3"}},
             "status": {"hard": {"pods": "3"}, "used": {"pods": "0"}}}
    await storage.create(KEY, orjson.dumps(quota))
    await cache.sync()
    server = SimpleNamespace(table=TABLE, cache=cache, storage=storage)
    yield QuotaAdmission(cast(Any, server))
    await cache.stop()
    await storage.close()


def pod(name: str) -> dict[str, Any]:
    return {"metadata": {"name": name, "namespace": "ns"}, "spec": {"containers": [{"name": "c"}]},
            "status": {"phase": "Pending"}}


async def used(a: QuotaAdmission) -> dict[str, str]:
    kv = await a.server.storage.get(KEY)
    result: dict[str, str] = orjson.loads(kv.value)["status"]["used"]
    return result


async def test_concurrent_creates_charge_exactly_up_to_the_limit(admission: QuotaAdmission) -> None:
    results = await asyncio.gather(*(admission.admit("create", PODS, pod(f"p{i}"), None, False) for i in range(10)),
                                   return_exceptions=True)
    assert sum(r is None for r in results) == 3
    assert all(isinstance(r, errors.Forbidden) for r in results if r is not None)
    assert str(results[-1]) == 'pods "p9" is forbidden: exceeded quota: q1, requested: pods=1, used: pods=3, limited: pods=3'
    assert await used(admission) == {"pods": "3"}


async def test_dry_run_charges_nothing(admission: QuotaAdmission) -> None:
    await admission.admit("create", PODS, pod("p"), None, True)
    assert await used(admission) == {"pods": "0"}


async def test_a_concurrent_status_write_is_retried_not_overwritten(admission: QuotaAdmission) -> None:
    storage = admission.server.storage
    real_update = storage.update
    raced = False

    async def racing_update(key: str, value: bytes, **kw: Any) -> Any:
        nonlocal raced
        if not raced:  # the controller recounts first: used pods=1
            raced = True
            current = await storage.get(KEY)
            obj = orjson.loads(current.value)
            obj["status"]["used"] = {"pods": "1"}
            await real_update(KEY, orjson.dumps(obj), expected_revision=current.mod_revision)
        return await real_update(key, value, **kw)

    storage.update = racing_update
    await admission.admit("create", PODS, pod("p"), None, False)
    assert raced and await used(admission) == {"pods": "2"}
