"""Watch streams over HTTP (in-process app, memory store): bursts arrive whole and in order, and a
watcher that falls behind is told so with a 410 ERROR event before its stream ends."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import orjson
import pytest
from aiohttp.test_utils import TestClient, TestServer

from pocketkube.apiserver.authn import User
from pocketkube.apiserver.registry.store import WriteOptions
from pocketkube.apiserver.server import APIServer, APIServerConfig
from pocketkube.storage.memory import MemoryStorage

TOKEN = "watch-stream-test-token"
URL = "/api/v1/namespaces/default/configmaps"


@pytest.fixture
async def api(tmp_path: Any) -> AsyncIterator[tuple[APIServer, TestClient[Any, Any]]]:
    server = APIServer(APIServerConfig(data_dir=str(tmp_path), compaction_interval=0, tls=False),
                       storage=MemoryStorage())
    await server.storage.start()
    await server.cache.start()
    await server._bootstrap()
    server.authn.add_token(TOKEN, User("admin", ("system:masters", "system:authenticated")))
    async with TestClient(TestServer(server.make_app())) as client:
        yield server, client
    await server.cache.stop()
    await server.storage.close()


def cm(name: str) -> dict[str, Any]:
    return {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": name}, "data": {"k": name}}


async def _current_rv(client: TestClient[Any, Any]) -> str:
    resp = await client.get(URL, headers={"Authorization": f"Bearer {TOKEN}"})
    assert resp.status == 200
    rv: str = orjson.loads(await resp.read())["metadata"]["resourceVersion"]
    return rv


async def test_burst_of_events_arrives_whole_and_in_order(api: tuple[APIServer, TestClient[Any, Any]]) -> None:
    server, client = api
    store = server.store_by_kind("", "v1", "configmaps")
    rv = await _current_rv(client)
    n = 300
    resp = await client.get(URL, params={"watch": "true", "resourceVersion": rv, "timeoutSeconds": "30"},
                            headers={"Authorization": f"Bearer {TOKEN}"})
    assert resp.status == 200
    for i in range(n):  # back to back: the stream gets them in bursts, several lines per write
        await store.create("default", cm(f"c-{i:03d}"), WriteOptions(field_manager="test"))
    events = []
    async for line in resp.content:
        events.append(orjson.loads(line))
        if len(events) == n:
            break
    resp.close()
    assert [e["type"] for e in events] == ["ADDED"] * n
    assert [e["object"]["metadata"]["name"] for e in events] == [f"c-{i:03d}" for i in range(n)]
    revisions = [int(e["object"]["metadata"]["resourceVersion"]) for e in events]
    assert revisions == sorted(revisions) and len(set(revisions)) == n


async def test_watcher_that_falls_behind_gets_410_error(api: tuple[APIServer, TestClient[Any, Any]]) -> None:
    server, client = api
    server.cache.watcher_capacity = 5
    rv = await _current_rv(client)
    resp = await client.get(URL, params={"watch": "true", "resourceVersion": rv, "timeoutSeconds": "30"},
                            headers={"Authorization": f"Bearer {TOKEN}"})
    assert resp.status == 200
    # Twenty writes land in the cache before the stream's task runs again: its queue of five overflows.
    for i in range(20):
        await server.storage.create(f"/registry/core/configmaps/default/o-{i:02d}", orjson.dumps(cm(f"o-{i:02d}")))
    events = [orjson.loads(line) async for line in resp.content]
    assert events, "the stream ended without a word"
    assert events[-1]["type"] == "ERROR"
    assert events[-1]["object"]["code"] == 410
    assert all(e["type"] == "ADDED" for e in events[:-1]) and len(events) - 1 < 20
