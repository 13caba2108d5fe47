"""/openapi/v3 documents: index, kubectl's fieldValidation probe, self-contained refs, caching, HTTP."""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from typing import Any

import orjson
import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer

from pocketkube.api.resources import ResourceInfo, ResourceTable, Subresource
from pocketkube.apiserver.openapi import OpenAPIBuilder, gv_path, openapi_routes
from pocketkube.apiserver.openapi_schemas import COMPONENTS_PREFIX

WIDGET_SCHEMA: dict[str, Any] = {
    "type": "object",
    "properties": {"spec": {"type": "object", "properties": {"size": {"type": "integer"}}}},
}


def _builder(table: ResourceTable | None = None) -> OpenAPIBuilder:
    return OpenAPIBuilder(table or ResourceTable.builtin(),
                          lambda info: WIDGET_SCHEMA if info.kind == "Widget" else None)


@pytest.fixture(scope="module")
def builder() -> OpenAPIBuilder:
    return _builder()


def _walk(node: Any) -> Iterator[dict[str, Any]]:
    stack = [node]
    while stack:
        cur = stack.pop()
        if isinstance(cur, dict):
            yield cur
            stack.extend(cur.values())
        elif isinstance(cur, list):
            stack.extend(cur)


def _patch_supports(doc: dict[str, Any], gvk: dict[str, str], param: str) -> bool:
    """cli-runtime's supportsQueryParamV3, which gates kubectl's fieldValidation=Strict."""
    for item in doc["paths"].values():
        op = item.get("patch")
        if op is None or op.get("x-kubernetes-group-version-kind") != gvk:
            continue
        return any(p["name"] == param for p in op.get("parameters", []))
    return False


def test_index_lists_every_group_version(builder: OpenAPIBuilder) -> None:
    table = builder.table
    index = builder.index()
    expected = {gv_path(g, v) for g, versions in table.groups().items() for v in versions}
    assert set(index["paths"]) == expected
    for path, entry in index["paths"].items():
        url = entry["serverRelativeURL"]
        data = builder.document_bytes(path)
        assert data is not None
        assert url == f"/openapi/v3/{path}?hash={hashlib.sha512(data).hexdigest().upper()}"


def test_pods_patch_declares_gvk_and_field_validation(builder: OpenAPIBuilder) -> None:
    doc = builder.document("api/v1")
    assert doc is not None
    patch = doc["paths"]["/api/v1/namespaces/{namespace}/pods/{name}"]["patch"]
    assert patch["x-kubernetes-group-version-kind"] == {"group": "", "kind": "Pod", "version": "v1"}
    assert patch["x-kubernetes-action"] == "patch"
    names = {p["name"] for p in patch["parameters"]}
    assert {"fieldValidation", "fieldManager", "dryRun", "force"} <= names
    assert set(patch["requestBody"]["content"]) == {
        "application/json-patch+json", "application/merge-patch+json",
        "application/strategic-merge-patch+json", "application/apply-patch+yaml"}
    for kind in ("Pod", "ConfigMap", "Namespace", "Service", "Node"):
        assert _patch_supports(doc, {"group": "", "kind": kind, "version": "v1"}, "fieldValidation"), kind


def test_paths_cover_collections_items_and_subresources(builder: OpenAPIBuilder) -> None:
    doc = builder.document("api/v1")
    assert doc is not None
    paths = doc["paths"]
    pods = paths["/api/v1/namespaces/{namespace}/pods"]
    assert {"get", "post", "delete"} <= set(pods)
    assert pods["get"]["x-kubernetes-action"] == "list"
    assert pods["delete"]["x-kubernetes-action"] == "deletecollection"
    assert paths["/api/v1/pods"]["get"]["operationId"] == "listCoreV1PodForAllNamespaces"
    assert paths["/api/v1/namespaces/{namespace}/pods/{name}"]["get"]["operationId"] == \
        "readCoreV1NamespacedPod"
    assert "/api/v1/nodes/{name}" in paths and "/api/v1/namespaces/{namespace}/nodes" not in paths
    assert "put" in paths["/api/v1/namespaces/{namespace}/pods/{name}/status"]
    assert paths["/api/v1/namespaces/{namespace}/pods/{name}/exec"]["get"]["x-kubernetes-action"] == "connect"
    assert "post" in paths["/api/v1/namespaces/{namespace}/pods/{name}/binding"]
    assert "delete" not in paths["/api/v1/namespaces/{namespace}/services"]  # no deletecollection


def test_every_ref_resolves_inside_its_document(builder: OpenAPIBuilder) -> None:
    for path in builder.index()["paths"]:
        doc = builder.document(path)
        assert doc is not None
        schemas = doc["components"]["schemas"]
        for node in _walk(doc):
            ref = node.get("$ref")
            if isinstance(ref, str):
                assert ref.startswith(COMPONENTS_PREFIX), ref
                assert ref[len(COMPONENTS_PREFIX):] in schemas, (path, ref)
                assert set(node) == {"$ref"}, f"sibling keys not wrapped in allOf: {node}"
            t = node.get("type")
            if t is not None and not isinstance(t, dict):  # a property named "type" is a dict
                assert isinstance(t, str), (path, node)


def test_apps_v1_has_deployment_and_scale(builder: OpenAPIBuilder) -> None:
    doc = builder.document("apis/apps/v1")
    assert doc is not None
    schemas = doc["components"]["schemas"]
    assert {"io.k8s.api.apps.v1.Deployment", "io.k8s.api.apps.v1.DeploymentList",
            "io.k8s.api.autoscaling.v1.Scale"} <= set(schemas)
    scale = doc["paths"]["/apis/apps/v1/namespaces/{namespace}/deployments/{name}/scale"]["patch"]
    assert scale["x-kubernetes-group-version-kind"] == {"group": "autoscaling", "kind": "Scale", "version": "v1"}
    assert "io.k8s.api.core.v1.Pod" not in schemas  # only what apps/v1 reaches (PodTemplateSpec, not Pod)
    deployment = schemas["io.k8s.api.apps.v1.Deployment"]
    assert "enum" not in deployment["properties"]["kind"]
    assert schemas["io.k8s.apimachinery.pkg.util.intstr.IntOrString"]["format"] == "int-or-string"


def test_unknown_paths_have_no_document(builder: OpenAPIBuilder) -> None:
    assert builder.document("apis/nope.example.com/v1") is None
    assert builder.document("api/v2") is None
    assert builder.document("version") is None


def test_hash_is_stable_and_cache_follows_table_generation() -> None:
    table = ResourceTable.builtin()
    first, second = _builder(table), _builder(ResourceTable.builtin())
    assert first.index_bytes() == second.index_bytes()
    before = first.cached("api/v1")
    assert first.cached("api/v1") is before  # cached object, not rebuilt
    table.add(ResourceInfo(group="example.com", version="v1", kind="Widget", plural="widgets",
                           singular="widget", namespaced=True, custom=True,
                           subresources=(Subresource("status", "Widget", ("get", "patch", "update")),)))
    index = first.index()
    assert "apis/example.com/v1" in index["paths"]
    doc = first.document("apis/example.com/v1")
    assert doc is not None
    widget = doc["components"]["schemas"]["com.example.v1.Widget"]
    assert widget["x-kubernetes-group-version-kind"] == [{"group": "example.com", "kind": "Widget", "version": "v1"}]
    assert widget["properties"]["spec"]["properties"]["size"] == {"type": "integer"}
    assert "io.k8s.apimachinery.pkg.apis.meta.v1.ObjectMeta" in doc["components"]["schemas"]
    assert "com.example.v1.WidgetList" in doc["components"]["schemas"]
    patch = doc["paths"]["/apis/example.com/v1/namespaces/{namespace}/widgets/{name}"]["patch"]
    assert "application/strategic-merge-patch+json" not in patch["requestBody"]["content"]
    assert _patch_supports(doc, {"group": "example.com", "kind": "Widget", "version": "v1"}, "fieldValidation")


async def test_http_hash_etag_and_redirect(builder: OpenAPIBuilder) -> None:
    app = web.Application()
    app.add_routes(openapi_routes(builder))
    async with TestClient(TestServer(app)) as client:
        resp = await client.get("/openapi/v3")
        assert resp.status == 200
        index = orjson.loads(await resp.read())
        url = index["paths"]["api/v1"]["serverRelativeURL"]
        resp = await client.get(url)
        assert resp.status == 200
        assert resp.headers["Cache-Control"] == "public, immutable"
        etag = resp.headers["ETag"]
        assert orjson.loads(await resp.read())["openapi"] == "3.0.0"
        resp = await client.get(url, headers={"If-None-Match": etag})
        assert resp.status == 304
        resp = await client.get("/openapi/v3/api/v1?hash=STALE", allow_redirects=False)
        assert resp.status == 301
        assert resp.headers["Location"] == url
        resp = await client.get("/openapi/v3/apis/nope/v1")
        assert resp.status == 404
        resp = await client.get(url, headers={"Accept": "application/com.github.proto-openapi.spec.v3@v1.0+protobuf"})
        assert resp.status == 406
