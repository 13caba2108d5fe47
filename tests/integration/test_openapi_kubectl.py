"""Real kubectl against /openapi/v3 as pocketkube builds it, behind a tiny stub API server.

No pocketkube server is needed: the stub here answers /version, legacy discovery from the
resource table, the /openapi/v3 routes from apiserver/openapi.py, and records POSTs (echoing the
body with 201). It proves that `kubectl explain` can walk our documents and that default
`kubectl create` (validation on) finds the fieldValidation parameter and sends
`fieldValidation=Strict` instead of failing with "failed to download openapi".
"""

from __future__ import annotations

import asyncio
import json
import os
import shutil
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import orjson
import pytest
from aiohttp import web

from pocketkube.api.resources import ResourceInfo, ResourceTable
from pocketkube.apiserver.openapi import OpenAPIBuilder, openapi_routes

KUBECTL = "/usr/bin/kubectl"
pytestmark = pytest.mark.skipif(not os.path.exists(KUBECTL), reason="no /usr/bin/kubectl")


@dataclass
class Recorded:
    method: str
    path: str
    query: dict[str, str]
    body: Any


@dataclass
class Stub:
    url: str
    requests: list[Recorded] = field(default_factory=list)
    seen_paths: list[str] = field(default_factory=list)
    objects: dict[str, Any] = field(default_factory=dict)  # path -> object answered to GET
    patch_types: list[str] = field(default_factory=list)


WIDGET_SCHEMA: dict[str, Any] = {
    "type": "object",
    "description": "A Widget is a test custom resource.",
    "properties": {"spec": {"type": "object", "description": "What the widget should be.", "properties": {
        "size": {"type": "integer", "description": "How big the widget is."}}}},
}


def _resource_list(table: ResourceTable, group: str, version: str) -> dict[str, Any]:
    gv = f"{group}/{version}" if group else version
    resources: list[dict[str, Any]] = []
    for info in sorted(table.in_group_version(group, version), key=lambda i: i.plural):
        resources.append({"name": info.plural, "singularName": info.singular, "namespaced": info.namespaced,
                          "kind": info.kind, "verbs": list(info.verbs), "shortNames": list(info.short_names)})
        for sub in info.subresources:
            resources.append({"name": f"{info.plural}/{sub.name}", "singularName": "",
                              "namespaced": info.namespaced, "kind": sub.kind, "verbs": list(sub.verbs)})
    return {"kind": "APIResourceList", "apiVersion": "v1", "groupVersion": gv, "resources": resources}


def _stub_app(table: ResourceTable, stub: Stub) -> web.Application:
    builder = OpenAPIBuilder(table, lambda info: WIDGET_SCHEMA if info.kind == "Widget" else None)
    routes = web.RouteTableDef()

    @routes.get("/version")
    async def version(request: web.Request) -> web.Response:
        return web.json_response({"major": "1", "minor": "32", "gitVersion": "v1.32.0+pocketkube",
                                  "platform": "linux/amd64"})

    @routes.get("/api")
    async def api(request: web.Request) -> web.Response:
        return web.json_response({"kind": "APIVersions", "versions": ["v1"], "serverAddressByClientCIDRs": [
            {"clientCIDR": "0.0.0.0/0", "serverAddress": request.host}]})

    @routes.get("/api/{version}")
    async def core(request: web.Request) -> web.Response:
        return web.json_response(_resource_list(table, "", request.match_info["version"]))

    @routes.get("/apis")
    async def apis(request: web.Request) -> web.Response:
        groups = []
        for group, versions in sorted(table.groups().items()):
            if not group:
                continue
            gvs = [{"groupVersion": f"{group}/{v}", "version": v} for v in versions]
            groups.append({"name": group, "versions": gvs, "preferredVersion": gvs[0]})
        return web.json_response({"kind": "APIGroupList", "apiVersion": "v1", "groups": groups})

    @routes.get("/apis/{group}/{version}")
    async def group_version(request: web.Request) -> web.Response:
        return web.json_response(_resource_list(table, request.match_info["group"],
                                                request.match_info["version"]))

    @routes.post("/{tail:.*}")
    async def record(request: web.Request) -> web.Response:
        body = orjson.loads(await request.read())
        stub.requests.append(Recorded("POST", request.path, dict(request.query), body))
        return web.json_response(body, status=201)

    @routes.patch("/{tail:.*}")
    async def record_patch(request: web.Request) -> web.Response:
        body = orjson.loads(await request.read())
        stub.requests.append(Recorded("PATCH", request.path, dict(request.query), body))
        stub.patch_types.append(request.content_type)
        return web.json_response(stub.objects.get(request.path, body))

    @routes.get("/{tail:.*}")
    async def read(request: web.Request) -> web.Response:
        obj = stub.objects.get(request.path)
        if obj is None:
            return web.json_response({"kind": "Status", "apiVersion": "v1", "status": "Failure",
                                      "reason": "NotFound", "code": 404, "message": "not found"}, status=404)
        return web.json_response(obj)

    @web.middleware
    async def log(request: web.Request, handler: Any) -> web.StreamResponse:
        stub.seen_paths.append(request.path_qs)
        resp: web.StreamResponse = await handler(request)
        return resp

    app = web.Application(middlewares=[log])
    app.add_routes(openapi_routes(builder))
    app.add_routes(routes)
    return app


@pytest.fixture
async def stub() -> AsyncIterator[Stub]:
    table = ResourceTable.builtin()
    table.add(ResourceInfo(group="example.com", version="v1", kind="Widget", plural="widgets",
                           singular="widget", namespaced=True, custom=True))
    holder = Stub(url="")
    runner = web.AppRunner(_stub_app(table, holder))
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = runner.addresses[0][1]
    holder.url = f"http://127.0.0.1:{port}"
    try:
        yield holder
    finally:
        await runner.cleanup()


async def _kubectl(stub: Stub, tmp_path: Path, *args: str) -> tuple[int, str, str]:
    kubeconfig = tmp_path / "kubeconfig"
    kubeconfig.write_text(
        "apiVersion: v1\nkind: Config\ncurrent-context: stub\n"
        f"clusters:\n- name: stub\n  cluster:\n    server: {stub.url}\n    insecure-skip-tls-verify: true\n"
        "users:\n- name: stub\n  user: {}\n"
        "contexts:\n- name: stub\n  context:\n    cluster: stub\n    user: stub\n    namespace: default\n"
    )
    env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "HOME": str(tmp_path),
           "KUBECONFIG": str(kubeconfig)}
    proc = await asyncio.create_subprocess_exec(
        KUBECTL, "--cache-dir", str(tmp_path / "cache"), *args,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE, env=env)
    try:
        out, err = await asyncio.wait_for(proc.communicate(), timeout=60)
    except TimeoutError:
        proc.kill()
        await proc.wait()
        raise
    assert proc.returncode is not None
    return proc.returncode, out.decode(), err.decode()


async def test_kubectl_explain_walks_our_document(stub: Stub, tmp_path: Path) -> None:
    code, out, err = await _kubectl(stub, tmp_path, "explain", "pods.spec.containers.image")
    assert code == 0, err
    assert "KIND:       Pod" in out
    assert "VERSION:    v1" in out
    assert "FIELD: image <string>" in out
    assert "Container image name" in out
    assert any(p.startswith("/openapi/v3/api/v1?hash=") for p in stub.seen_paths)


async def test_kubectl_explain_apps_group(stub: Stub, tmp_path: Path) -> None:
    code, out, err = await _kubectl(stub, tmp_path, "explain", "deployments.spec.replicas")
    assert code == 0, err
    assert "GROUP:      apps" in out
    assert "FIELD: replicas <integer>" in out


async def test_kubectl_explain_names_int_or_string_and_quantity_like_kube(stub: Stub, tmp_path: Path) -> None:
    code, out, err = await _kubectl(stub, tmp_path, "explain", "svc.spec.ports.targetPort")
    assert code == 0, err
    assert "FIELD: targetPort <IntOrString>" in out
    code, out, err = await _kubectl(stub, tmp_path, "explain", "pods.spec.containers.resources.limits")
    assert code == 0, err
    assert "FIELD: limits <map[string]Quantity>" in out


async def test_kubectl_create_with_default_validation_sends_strict(stub: Stub, tmp_path: Path) -> None:
    manifest = tmp_path / "cm.yaml"
    manifest.write_text("apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: demo\ndata:\n  a: b\n")
    code, out, err = await _kubectl(stub, tmp_path, "create", "-f", str(manifest))
    assert code == 0, err
    assert "configmap/demo created" in out
    [post] = stub.requests
    assert post.path == "/api/v1/namespaces/default/configmaps"
    assert post.query["fieldValidation"] == "Strict"
    assert post.query["fieldManager"] == "kubectl-create"
    assert post.body["data"] == {"a": "b"}


def test_kubectl_dispatcher_present() -> None:
    assert shutil.which(KUBECTL) is not None


_APPLIED = {"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "web", "namespace": "default"},
            "spec": {"replicas": 1, "selector": {"matchLabels": {"app": "web"}},
                     "template": {"metadata": {"labels": {"app": "web"}}, "spec": {"containers": [
                         {"name": "a", "image": "nginx:1"}, {"name": "b", "image": "busybox"}]}}}}

_DEPLOYMENT_YAML = """apiVersion: apps/v1
kind: Deployment
metadata:
  name: web
spec:
  replicas: 2
  selector:
    matchLabels: {app: web}
  template:
    metadata:
      labels: {app: web}
    spec:
      containers:
      - name: a
        image: nginx:2
"""


async def test_kubectl_client_side_apply_sends_strategic_patch(stub: Stub, tmp_path: Path) -> None:
    live = json.loads(json.dumps(_APPLIED))
    live["metadata"].update(uid="u1", resourceVersion="5", annotations={
        "kubectl.kubernetes.io/last-applied-configuration": json.dumps(_APPLIED)})
    stub.objects["/apis/apps/v1/namespaces/default/deployments/web"] = live
    manifest = tmp_path / "deploy.yaml"
    manifest.write_text(_DEPLOYMENT_YAML)
    code, out, err = await _kubectl(stub, tmp_path, "apply", "-f", str(manifest))
    assert code == 0, err
    assert "deployment.apps/web configured" in out
    [patch] = stub.requests
    assert patch.method == "PATCH"
    assert patch.query == {"fieldManager": "kubectl-client-side-apply", "fieldValidation": "Strict"}
    assert stub.patch_types == ["application/strategic-merge-patch+json"]
    pod_spec = patch.body["spec"]["template"]["spec"]
    assert pod_spec["$setElementOrder/containers"] == [{"name": "a"}]
    assert {"$patch": "delete", "name": "b"} in pod_spec["containers"]


async def test_kubectl_with_a_custom_resource(stub: Stub, tmp_path: Path) -> None:
    code, out, err = await _kubectl(stub, tmp_path, "explain", "widgets.spec.size")
    assert code == 0, err
    assert "GROUP:      example.com" in out
    assert "FIELD: size <integer>" in out
    assert "How big the widget is." in out
    manifest = tmp_path / "widget.yaml"
    manifest.write_text("apiVersion: example.com/v1\nkind: Widget\nmetadata:\n  name: w\nspec:\n  size: 3\n")
    code, out, err = await _kubectl(stub, tmp_path, "create", "-f", str(manifest))
    assert code == 0, err
    [post] = stub.requests
    assert post.path == "/apis/example.com/v1/namespaces/default/widgets"
    assert post.query["fieldValidation"] == "Strict"
