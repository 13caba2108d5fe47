"""In-process CPU cost of the API server's create / GET / LIST paths (MemoryStorage, no HTTP).

Measures CPU time (time.process_time) per operation of what the handlers do for a POST (decode,
fieldValidation, store.create with defaults, validation, admission, managedFields, encode, render),
a GET and a LIST, so figures are comparable on a loaded machine. Usage:

    PYTHONPATH=. /work/main/.venv/bin/python bench/bench_create_path.py [--n 2000] [--profile]
"""

from __future__ import annotations

import argparse
import asyncio
import cProfile
import pstats
import sys
import tempfile
import time
from typing import Any

import orjson
from aiohttp.test_utils import make_mocked_request

sys.path.insert(0, "bench")
from bench_apiserver import configmap, pod

from pocketkube.apiserver import negotiation
from pocketkube.apiserver.registry.store import WriteOptions
from pocketkube.apiserver.server import APIServer, APIServerConfig
from pocketkube.storage.memory import MemoryStorage


async def main(args: argparse.Namespace) -> None:
    server = APIServer(APIServerConfig(data_dir=tempfile.mkdtemp(), compaction_interval=0),
                       storage=MemoryStorage())
    await server.storage.start()
    await server.cache.start()
    ns = server.store_by_kind("", "v1", "namespaces")
    await ns.create("", {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "b"}},
                    WriteOptions(field_manager="bench"))
    await server.cache.sync()
    h = server.handlers
    accept = negotiation.parse_accept("application/json")

    async def run(plural: str, make: Any, n: int) -> float:
        """Best of three rounds of n creates (CPU us per create); the first n objects stay."""
        store = server.store_by_kind("", "v1", plural)
        info = store.info
        best = float("inf")
        for r in range(args.rounds):
            bodies = [orjson.dumps(make(i + r * n)) for i in range(n)]
            t = time.process_time()
            for raw in bodies:
                obj = negotiation.decode_object(raw, "application/json")
                h.check_kind(info, obj)
                warnings = server.check_fields(info, obj, raw, "Strict")
                created = await store.create("b", obj, WriteOptions(field_manager="bench"))
                h.render_object(info, created, accept, status=201, warnings=warnings)
            best = min(best, (time.process_time() - t) / n * 1e6)
        return best

    async def reads(plural: str, name: str, n: int) -> tuple[float, float]:
        store = server.store_by_kind("", "v1", plural)
        info = store.info
        await server.cache.sync()
        from multidict import MultiDict

        from pocketkube.apiserver.request_info import RequestInfo

        ri = RequestInfo(is_resource=True, path="", verb="get", namespace="b", resource=plural, name=name)
        request = make_mocked_request("GET", f"/api/v1/namespaces/b/{plural}/{name}")
        get_us = float("inf")
        for _ in range(args.rounds):
            t = time.process_time()
            for _ in range(n):
                await h.handle(request, ri, info)
            get_us = min(get_us, (time.process_time() - t) / n * 1e6)
        ri = RequestInfo(is_resource=True, path="", verb="list", namespace="b", resource=plural)
        list_ms = float("inf")
        for _ in range(5):
            t = time.process_time()
            await h.list(store, ri, info, accept, MultiDict())
            list_ms = min(list_ms, (time.process_time() - t) * 1e3)
        return get_us, list_ms

    async def app_gets(path: str, n: int) -> tuple[float, float]:
        """CPU us per GET through the whole aiohttp app (router, middleware, authentication,
        handler, response object; no sockets, no TLS), beside a trivial one-route aiohttp app."""
        from aiohttp import web
        from multidict import CIMultiDict

        class Transport:  # what authentication reads: the verified client certificate's subject
            peer = {"subject": ((("organizationName", "system:masters"),), (("commonName", "admin"),))}

            def get_extra_info(self, name: str, default: Any = None) -> Any:
                return self.peer if name == "peercert" else default

            def is_closing(self) -> bool:
                return False

        body = orjson.dumps(configmap(0))

        async def constant(request: web.Request) -> web.Response:
            return web.Response(body=body, content_type="application/json")

        trivial = web.Application()
        trivial.router.add_get("/x", constant)
        headers = CIMultiDict({"Accept": "application/json", "User-Agent": "bench", "Host": "127.0.0.1"})
        out = []
        for app, url in ((server.make_app(), path), (trivial, "/x")):
            app.freeze()
            best = float("inf")
            for _ in range(args.rounds):
                requests = [make_mocked_request("GET", url, headers=headers, transport=Transport()) for _ in range(n)]
                t = time.process_time()
                for request in requests:
                    resp = await app._handle(request)
                    assert resp.status == 200, resp.status
                best = min(best, (time.process_time() - t) / n * 1e6)
            out.append(best)
        return out[0], out[1]

    prof = cProfile.Profile() if args.profile else None
    if prof:
        prof.enable()
    cm = await run("configmaps", configmap, args.n)
    pods = await run("pods", pod, args.n) if args.pods else float("nan")
    if prof:
        prof.disable()
    get_cm, list_cm = await reads("configmaps", "cm-000001", args.n)
    get_pod, list_pod = (await reads("pods", "web-7d4b9c8f6d-00001", args.n) if args.pods
                         else (float("nan"), float("nan")))
    print(f"create ConfigMap {cm:7.0f} us   create Pod {pods:7.0f} us")
    print(f"GET ConfigMap    {get_cm:7.0f} us   GET Pod    {get_pod:7.0f} us   (handler only)")
    app_get, trivial_get = await app_gets("/api/v1/namespaces/b/configmaps/cm-000001", min(args.n, 3000))
    print(f"GET ConfigMap through the app {app_get:5.1f} us   trivial aiohttp app {trivial_get:5.1f} us")
    total = args.n * args.rounds
    print(f"LIST {total} ConfigMaps {list_cm:6.1f} ms   LIST {total} Pods {list_pod:6.1f} ms")
    if prof:
        pstats.Stats(prof).sort_stats(args.sort).print_stats(40)


if __name__ == "__main__":
    p = argparse.ArgumentParser()
    p.add_argument("--n", type=int, default=2000)
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--profile", action="store_true")
    p.add_argument("--sort", default="cumulative")
    p.add_argument("--no-pods", dest="pods", action="store_false", help="ConfigMaps only (e.g. to profile them)")
    asyncio.run(main(p.parse_args()))
