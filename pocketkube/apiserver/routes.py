"""URL routing: non-resource endpoints (version, health, discovery, OpenAPI) and the resource tree."""

from __future__ import annotations

from typing import TYPE_CHECKING

from aiohttp import web

from pocketkube.api import errors
from pocketkube.apiserver import discovery
from pocketkube.apiserver.handlers import json_response
from pocketkube.apiserver.request_info import parse_request

if TYPE_CHECKING:
    from pocketkube.apiserver.server import APIServer


def setup_routes(app: web.Application, server: APIServer) -> None:
    async def version(request: web.Request) -> web.Response:
        return json_response(server.version_info())

    async def health(request: web.Request) -> web.Response:
        ok = server.ready
        name = request.path.strip("/").split("/")[0]
        if "verbose" in request.query:
            text = f"[{'+' if ok else '-'}]ping ok\n[{'+' if ok else '-'}]etcd ok\n{name} check {'passed' if ok else 'failed'}\n"
        else:
            text = "ok" if ok else f"[-]{name} failed: not ready"
        return web.Response(text=text, status=200 if ok else 500, content_type="text/plain")

    async def openapi_v2(request: web.Request) -> web.Response:
        raise errors.NotFound("the server could not find the requested resource (openapi v2 is not served; use /openapi/v3)")

    async def resource(request: web.Request) -> web.StreamResponse:
        ri = parse_request(request.method, request.path, request.query)
        if not ri.is_resource:
            path = request.path.rstrip("/") or "/"
            if request.method not in ("GET", "HEAD"):
                raise errors.MethodNotAllowed("the server does not allow this method on the requested resource")
            if path in ("/api", "/apis"):
                version_wanted = _aggregated_version(request.headers.get("Accept", ""))
                doc = server.discovery.get("aggregated:" + path)
                if version_wanted and doc is not None:
                    if version_wanted == "v2beta1":
                        doc = doc.replace(b'"apidiscovery.k8s.io/v2"', b'"apidiscovery.k8s.io/v2beta1"', 1)
                    ctype = discovery.AGGREGATED_V2 if version_wanted == "v2" else discovery.AGGREGATED_V2BETA1
                    return web.Response(body=doc, headers={"Content-Type": ctype, "Vary": "Accept"})
            doc = server.discovery.get(path)
            if doc is None:
                raise errors.NotFound("the server could not find the requested resource")
            return json_response(doc)
        info = server.table.get(ri.group, ri.version, ri.resource)
        if info is None:
            raise errors.NotFound("the server could not find the requested resource")
        return await server.handlers.handle(request, ri, info)

    async def cacerts(request: web.Request) -> web.Response:
        # Public, like k3s: agents check it against the CA hash in their join token.
        return web.Response(body=server.ca_pem(), content_type="application/x-pem-file")

    app.router.add_get("/cacerts", cacerts)
    app.router.add_get("/version", version)
    app.router.add_get("/version/", version)
    for p in ("/healthz", "/livez", "/readyz"):
        app.router.add_get(p, health)
        app.router.add_get(p + "/{check:.*}", health)
    from pocketkube.apiserver.openapi import openapi_routes

    app.router.add_routes(openapi_routes(server.openapi))
    app.router.add_get("/openapi/v2", openapi_v2)
    app.router.add_route("*", "/{tail:.*}", resource)


def _aggregated_version(accept: str) -> str:
    """The apidiscovery version the client prefers ("v2", "v2beta1"), or "" for legacy discovery."""
    for part in accept.split(","):
        params = dict(p.strip().split("=", 1) for p in part.split(";")[1:] if "=" in p)
        if params.get("g") == "apidiscovery.k8s.io" and params.get("as") == "APIGroupDiscoveryList":
            if params.get("v") in ("v2", "v2beta1"):
                return params["v"]
        elif part.strip():
            return ""
    return ""
