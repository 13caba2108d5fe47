"""The official `kubernetes` Python client, unchanged, against a real pocketkube server.

Each test drives one thing a program written for a real cluster does: CRUD through the typed
APIs, selectors and pagination, watches that resume (and get 410 Gone once compacted), every
patch type, `utils.create_from_yaml`, subresources, deletion propagation and dry-run. The client
is configured from the server's admin kubeconfig exactly as a user would.
"""

from __future__ import annotations

import base64
import os
import textwrap
import time
import uuid
from collections.abc import Iterator
from typing import Any

import pytest
from kubernetes import client, config, dynamic, utils, watch
from kubernetes.client.rest import ApiException

from tests.conftest import ServerProcess, start_server


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    """An API server without control loops: these tests check API semantics, and a Deployment
    controller writing to the same objects would race with them (as it would on any cluster)."""
    srv = start_server(str(tmp_path_factory.mktemp("pk-apiserver")), command="apiserver")
    yield srv
    srv.stop()


@pytest.fixture(scope="module")
def api(server: ServerProcess) -> Iterator[client.ApiClient]:
    with config.new_client_from_config(config_file=server.kubeconfig) as api_client:
        yield api_client


@pytest.fixture
def core(api: client.ApiClient) -> client.CoreV1Api:
    return client.CoreV1Api(api)


@pytest.fixture
def apps(api: client.ApiClient) -> client.AppsV1Api:
    return client.AppsV1Api(api)


def _cm(name: str, data: dict[str, str] | None = None, labels: dict[str, str] | None = None) -> client.V1ConfigMap:
    return client.V1ConfigMap(metadata=client.V1ObjectMeta(name=name, labels=labels), data=data)


def _deployment(name: str, replicas: int = 1, image: str = "nginx:1.27") -> dict[str, Any]:
    labels = {"app": name}
    return {
        "apiVersion": "apps/v1", "kind": "Deployment",
        "metadata": {"name": name, "labels": labels},
        "spec": {
            "replicas": replicas,
            "selector": {"matchLabels": labels},
            "template": {"metadata": {"labels": labels},
                         "spec": {"containers": [{"name": "web", "image": image,
                                                  "env": [{"name": "A", "value": "1"}]}]}},
        },
    }


def _status(exc: pytest.ExceptionInfo[ApiException]) -> int:
    return int(exc.value.status)


# ---- CRUD ----------------------------------------------------------------------------------

def test_configmap_crud(core: client.CoreV1Api, namespace: str) -> None:
    created = core.create_namespaced_config_map(namespace, _cm("cfg", {"a": "1"}, {"tier": "web"}))
    assert created.metadata.uid and created.metadata.resource_version
    assert created.metadata.creation_timestamp is not None

    got = core.read_namespaced_config_map("cfg", namespace)
    assert got.data == {"a": "1"} and got.metadata.labels == {"tier": "web"}

    got.data["b"] = "2"
    replaced = core.replace_namespaced_config_map("cfg", namespace, got)
    assert replaced.data == {"a": "1", "b": "2"}
    assert int(replaced.metadata.resource_version) > int(created.metadata.resource_version)

    with pytest.raises(ApiException) as exc:
        core.create_namespaced_config_map(namespace, _cm("cfg"))
    assert _status(exc) == 409 and "already exists" in exc.value.body

    names = [c.metadata.name for c in core.list_namespaced_config_map(namespace).items]
    assert "cfg" in names

    core.delete_namespaced_config_map("cfg", namespace)
    with pytest.raises(ApiException) as exc:
        core.read_namespaced_config_map("cfg", namespace)
    assert _status(exc) == 404


def test_secret_crud(core: client.CoreV1Api, namespace: str) -> None:
    secret = client.V1Secret(metadata=client.V1ObjectMeta(name="creds"), type="Opaque",
                             data={"user": base64.b64encode(b"admin").decode()})
    core.create_namespaced_secret(namespace, secret)
    got = core.read_namespaced_secret("creds", namespace)
    assert base64.b64decode(got.data["user"]) == b"admin"
    assert got.type == "Opaque"

    core.patch_namespaced_secret("creds", namespace, {"data": {"pass": base64.b64encode(b"s3cret").decode()}})
    got = core.read_namespaced_secret("creds", namespace)
    assert set(got.data) == {"user", "pass"}

    core.delete_namespaced_secret("creds", namespace)
    assert all(s.metadata.name != "creds" for s in core.list_namespaced_secret(namespace).items)


def test_secret_string_data_is_merged_into_data(core: client.CoreV1Api, namespace: str) -> None:
    secret = client.V1Secret(metadata=client.V1ObjectMeta(name="sd"), string_data={"token": "abc"},
                             data={"user": base64.b64encode(b"admin").decode()})
    created = core.create_namespaced_secret(namespace, secret)
    assert created.string_data is None
    assert {k: base64.b64decode(v) for k, v in created.data.items()} == {"token": b"abc", "user": b"admin"}


def test_deployment_crud_and_scale(apps: client.AppsV1Api, namespace: str) -> None:
    created = apps.create_namespaced_deployment(namespace, _deployment("web", replicas=2))
    assert created.metadata.generation == 1
    assert created.spec.replicas == 2
    assert created.spec.strategy.type == "RollingUpdate"  # defaulted by the server

    scale = apps.read_namespaced_deployment_scale("web", namespace)
    assert scale.spec.replicas == 2
    assert scale.status.selector == "app=web"

    patched = apps.patch_namespaced_deployment_scale("web", namespace, {"spec": {"replicas": 5}})
    assert patched.spec.replicas == 5
    dep = apps.read_namespaced_deployment("web", namespace)
    assert dep.spec.replicas == 5 and dep.metadata.generation == 2

    scale = apps.read_namespaced_deployment_scale("web", namespace)
    scale.spec.replicas = 1
    assert apps.replace_namespaced_deployment_scale("web", namespace, scale).spec.replicas == 1

    dep = apps.read_namespaced_deployment("web", namespace)
    dep.spec.template.spec.containers[0].image = "nginx:1.28"
    replaced = apps.replace_namespaced_deployment("web", namespace, dep)
    assert replaced.spec.template.spec.containers[0].image == "nginx:1.28"
    assert replaced.metadata.generation == 4

    apps.delete_namespaced_deployment("web", namespace)
    with pytest.raises(ApiException) as exc:
        apps.read_namespaced_deployment("web", namespace)
    assert _status(exc) == 404


def test_service_crud(core: client.CoreV1Api, namespace: str) -> None:
    svc = client.V1Service(
        metadata=client.V1ObjectMeta(name="web"),
        spec=client.V1ServiceSpec(selector={"app": "web"}, ports=[client.V1ServicePort(port=80, target_port=8080)]))
    created = core.create_namespaced_service(namespace, svc)
    assert created.spec.type == "ClusterIP"
    assert created.spec.ports[0].protocol == "TCP" and created.spec.ports[0].target_port == 8080

    patched = core.patch_namespaced_service("web", namespace, {"metadata": {"labels": {"x": "y"}}})
    assert patched.metadata.labels == {"x": "y"}

    deleted = core.delete_namespaced_service("web", namespace)
    assert deleted.metadata.name == "web"  # services answer DELETE with the object, like kube
    with pytest.raises(ApiException) as exc:
        core.read_namespaced_service("web", namespace)
    assert _status(exc) == 404


def test_service_gets_cluster_ip(core: client.CoreV1Api, namespace: str) -> None:
    svc = client.V1Service(metadata=client.V1ObjectMeta(name="ip"),
                           spec=client.V1ServiceSpec(selector={"a": "b"}, ports=[client.V1ServicePort(port=80)]))
    created = core.create_namespaced_service(namespace, svc)
    assert created.spec.cluster_ip and created.spec.cluster_ips == [created.spec.cluster_ip]


def test_custom_objects(api: client.ApiClient, namespace: str) -> None:
    group = f"g{uuid.uuid4().hex[:6]}.example.com"
    crd = {
        "apiVersion": "apiextensions.k8s.io/v1", "kind": "CustomResourceDefinition",
        "metadata": {"name": f"widgets.{group}"},
        "spec": {"group": group, "scope": "Namespaced",
                 "names": {"plural": "widgets", "singular": "widget", "kind": "Widget"},
                 "versions": [{"name": "v1", "served": True, "storage": True,
                               "subresources": {"status": {}},
                               "schema": {"openAPIV3Schema": {"type": "object", "properties": {
                                   "spec": {"type": "object", "properties": {"size": {"type": "integer"}}},
                                   "status": {"type": "object", "properties": {"ok": {"type": "boolean"}}}}}}}]},
    }
    ext = client.ApiextensionsV1Api(api)
    ext.create_custom_resource_definition(crd)
    custom = client.CustomObjectsApi(api)
    body = {"apiVersion": f"{group}/v1", "kind": "Widget", "metadata": {"name": "w1"}, "spec": {"size": 3}}
    deadline = time.monotonic() + 10
    while True:  # the new resource is served once the CRD is established
        try:
            created = custom.create_namespaced_custom_object(group, "v1", namespace, "widgets", body)
            break
        except ApiException as e:
            if e.status != 404 or time.monotonic() > deadline:
                raise
            time.sleep(0.1)
    assert created["spec"] == {"size": 3} and created["metadata"]["generation"] == 1

    got = custom.get_namespaced_custom_object(group, "v1", namespace, "widgets", "w1")
    assert got["metadata"]["uid"] == created["metadata"]["uid"]
    patched = custom.patch_namespaced_custom_object(group, "v1", namespace, "widgets", "w1", {"spec": {"size": 4}})
    assert patched["spec"]["size"] == 4 and patched["metadata"]["generation"] == 2
    status = custom.patch_namespaced_custom_object_status(group, "v1", namespace, "widgets", "w1",
                                                          {"status": {"ok": True}})
    assert status["status"] == {"ok": True} and status["metadata"]["generation"] == 2
    items = custom.list_namespaced_custom_object(group, "v1", namespace, "widgets")["items"]
    assert [i["metadata"]["name"] for i in items] == ["w1"]
    custom.delete_namespaced_custom_object(group, "v1", namespace, "widgets", "w1")
    with pytest.raises(ApiException) as exc:
        custom.get_namespaced_custom_object(group, "v1", namespace, "widgets", "w1")
    assert _status(exc) == 404
    ext.delete_custom_resource_definition(f"widgets.{group}")


def test_dynamic_client_discovers_and_drives_resources(api: client.ApiClient, namespace: str) -> None:
    dyn = dynamic.DynamicClient(api)
    deps = dyn.resources.get(api_version="apps/v1", kind="Deployment")
    assert deps.namespaced and deps.name == "deployments"
    assert "scale" in deps.subresources and "status" in deps.subresources

    created = deps.create(body=_deployment("dyn"), namespace=namespace)
    assert created.metadata.name == "dyn" and created.spec.replicas == 1
    patched = deps.patch(name="dyn", namespace=namespace, body={"spec": {"replicas": 3}},
                         content_type="application/merge-patch+json")
    assert patched.spec.replicas == 3
    scale = deps.subresources["scale"].get(name="dyn", namespace=namespace)
    assert scale.kind == "Scale" and scale.spec.replicas == 3
    listed = deps.get(namespace=namespace, label_selector="app=dyn")
    assert [d.metadata.name for d in listed.items] == ["dyn"]
    deps.delete(name="dyn", namespace=namespace)
    assert deps.get(namespace=namespace).items == []

    namespaces = dyn.resources.get(api_version="v1", kind="Namespace")
    assert not namespaces.namespaced
    assert namespaces.get(name=namespace).status.phase == "Active"


def test_discovery_and_version(api: client.ApiClient) -> None:
    version = client.VersionApi(api).get_code()
    assert (version.major, version.minor) == ("1", "32")
    groups = {g.name for g in client.ApisApi(api).get_api_versions().groups}
    assert {"apps", "apiextensions.k8s.io"} <= groups
    resources = {r.name: r for r in client.CoreV1Api(api).get_api_resources().resources}
    assert resources["configmaps"].namespaced and "watch" in resources["configmaps"].verbs
    assert "pods/status" in resources


def test_delete_collection_with_label_selector(core: client.CoreV1Api, namespace: str) -> None:
    for name, labels in [("keep", {"tier": "db"}), ("drop-1", {"tier": "cache"}), ("drop-2", {"tier": "cache"})]:
        core.create_namespaced_config_map(namespace, _cm(name, labels=labels))
    core.delete_collection_namespaced_config_map(namespace, label_selector="tier=cache")
    assert [c.metadata.name for c in core.list_namespaced_config_map(namespace).items] == ["keep"]


# ---- list: selectors and pagination -------------------------------------------------------

def test_list_with_label_and_field_selectors(core: client.CoreV1Api, namespace: str) -> None:
    for name, labels in [("a", {"env": "prod", "tier": "web"}), ("b", {"env": "dev", "tier": "web"}),
                         ("c", {"env": "prod"}), ("d", {})]:
        core.create_namespaced_config_map(namespace, _cm(name, labels=labels))

    def names(**kw: Any) -> list[str]:
        return sorted(c.metadata.name for c in core.list_namespaced_config_map(namespace, **kw).items)

    assert names(label_selector="env=prod") == ["a", "c"]
    assert names(label_selector="env!=prod") == ["b", "d"]
    assert names(label_selector="env in (prod,dev),tier") == ["a", "b"]
    assert names(label_selector="!tier") == ["c", "d"]
    assert names(field_selector="metadata.name=b") == ["b"]
    assert names(field_selector="metadata.name!=b", label_selector="env") == ["a", "c"]
    assert names(field_selector=f"metadata.namespace={namespace},metadata.name=d") == ["d"]

    everywhere = core.list_config_map_for_all_namespaces(label_selector="env=prod",
                                                         field_selector=f"metadata.namespace={namespace}")
    assert sorted(c.metadata.name for c in everywhere.items) == ["a", "c"]


def test_pagination_with_limit_and_continue(core: client.CoreV1Api, namespace: str) -> None:
    wanted = [f"cm-{i:02d}" for i in range(7)]
    for name in wanted:
        core.create_namespaced_config_map(namespace, _cm(name))

    first = core.list_namespaced_config_map(namespace, limit=3)
    assert len(first.items) == 3
    assert first.metadata._continue
    assert first.metadata.remaining_item_count == 4

    seen = [c.metadata.name for c in first.items]
    token = first.metadata._continue
    core.create_namespaced_config_map(namespace, _cm("cm-99"))  # written after the first page
    while token:
        page = core.list_namespaced_config_map(namespace, limit=3, _continue=token)
        assert page.metadata.resource_version == first.metadata.resource_version  # a consistent snapshot
        seen += [c.metadata.name for c in page.items]
        token = page.metadata._continue
    assert seen == wanted  # in name order, without the write that came later

    with pytest.raises(ApiException) as exc:
        core.list_namespaced_config_map(namespace, limit=3, _continue="not-a-token")
    assert _status(exc) == 400


# ---- watch ---------------------------------------------------------------------------------

def test_watch_resumes_from_resource_version(core: client.CoreV1Api, namespace: str) -> None:
    rv = core.create_namespaced_config_map(namespace, _cm("w", {"n": "0"})).metadata.resource_version
    core.patch_namespaced_config_map("w", namespace, {"data": {"n": "1"}})
    core.create_namespaced_config_map(namespace, _cm("w2"))
    core.delete_namespaced_config_map("w", namespace)

    events: list[tuple[str, str, dict[str, str] | None]] = []
    w = watch.Watch()
    for ev in w.stream(core.list_namespaced_config_map, namespace, resource_version=rv, timeout_seconds=5):
        events.append((ev["type"], ev["object"].metadata.name, ev["object"].data))
        if len(events) == 3:
            w.stop()
    assert events == [("MODIFIED", "w", {"n": "1"}), ("ADDED", "w2", None), ("DELETED", "w", {"n": "1"})]

    # A watch without a resourceVersion starts with the current state as ADDED events.
    w = watch.Watch()
    first = next(iter(w.stream(core.list_namespaced_config_map, namespace, timeout_seconds=5)))
    w.stop()
    assert (first["type"], first["object"].metadata.name) == ("ADDED", "w2")


def test_watch_delivers_bursts_intact(core: client.CoreV1Api, namespace: str) -> None:
    """The server coalesces the events queued for a watcher into one write: the client must still
    get every event, whole and in order, whether replayed from a resourceVersion or live."""
    import threading

    rv = core.list_namespaced_config_map(namespace).metadata.resource_version
    for i in range(150):
        core.create_namespaced_config_map(namespace, _cm(f"b{i:03d}", {"i": str(i)}))

    def live() -> None:
        for i in range(150, 250):
            core.create_namespaced_config_map(namespace, _cm(f"b{i:03d}", {"i": str(i)}))

    writer = threading.Thread(target=live)
    got: list[tuple[str, str, str]] = []
    w = watch.Watch()
    for ev in w.stream(core.list_namespaced_config_map, namespace, resource_version=rv, timeout_seconds=30):
        got.append((ev["type"], ev["object"].metadata.name, (ev["object"].data or {}).get("i", "")))
        if len(got) == 1:
            writer.start()
        if len(got) == 250:
            w.stop()
    writer.join()
    assert got == [("ADDED", f"b{i:03d}", str(i)) for i in range(250)]


def test_watch_sees_live_writes_with_selector(core: client.CoreV1Api, namespace: str) -> None:
    rv = core.list_namespaced_config_map(namespace).metadata.resource_version
    core.create_namespaced_config_map(namespace, _cm("other", labels={"keep": "no"}))
    core.create_namespaced_config_map(namespace, _cm("mine", labels={"keep": "yes"}))
    w = watch.Watch()
    got = []
    for ev in w.stream(core.list_namespaced_config_map, namespace, resource_version=rv,
                       label_selector="keep=yes", timeout_seconds=5):
        got.append((ev["type"], ev["object"].metadata.name))
        w.stop()
    assert got == [("ADDED", "mine")]
    assert w.resource_version is not None and int(w.resource_version) > int(rv)


def test_watch_bookmarks_and_list_from_cache(core: client.CoreV1Api, namespace: str) -> None:
    core.create_namespaced_config_map(namespace, _cm("bm"))
    cached = core.list_namespaced_config_map(namespace, resource_version="0")  # any recent state will do
    assert [c.metadata.name for c in cached.items] == ["bm"]
    w = watch.Watch()
    kinds = set()
    for ev in w.stream(core.list_namespaced_config_map, namespace, resource_version=cached.metadata.resource_version,
                       allow_watch_bookmarks=True, timeout_seconds=2):
        kinds.add(ev["type"])
    assert kinds <= {"BOOKMARK"}  # nothing happened; bookmarks are allowed, not required
    assert w.resource_version is not None


def test_watch_list_streams_initial_state_then_a_bookmark(core: client.CoreV1Api, namespace: str) -> None:
    """The consistent watch-list client-go's WatchList uses: resourceVersion "" + NotOlderThan."""
    for name in ("wl-a", "wl-b"):
        core.create_namespaced_config_map(namespace, _cm(name))
    w = watch.Watch()
    seen: list[tuple[str, str]] = []
    for ev in w.stream(core.list_namespaced_config_map, namespace, send_initial_events=True,
                       resource_version_match="NotOlderThan", allow_watch_bookmarks=True, timeout_seconds=5):
        if ev["type"] == "BOOKMARK":
            annotations = ev["raw_object"]["metadata"].get("annotations") or {}
            seen.append(("BOOKMARK", annotations.get("k8s.io/initial-events-end", "")))
            w.stop()
        else:
            seen.append((ev["type"], ev["object"].metadata.name))
    assert seen == [("ADDED", "wl-a"), ("ADDED", "wl-b"), ("BOOKMARK", "true")]

    with pytest.raises(ApiException) as exc:  # resourceVersionMatch on a plain watch is refused
        for _ in watch.Watch().stream(core.list_namespaced_config_map, namespace, resource_version="1",
                                      resource_version_match="NotOlderThan", timeout_seconds=1):
            pass
    assert _status(exc) == 422 and "unless sendInitialEvents is provided" in exc.value.body


def test_watch_from_compacted_resource_version_is_gone(tmp_path: Any) -> None:
    srv = start_server(str(tmp_path / "compacting"), extra_args=("--compaction-interval", "1"))
    try:
        with config.new_client_from_config(config_file=srv.kubeconfig) as api_client:
            core = client.CoreV1Api(api_client)
            core.create_namespace(client.V1Namespace(metadata=client.V1ObjectMeta(name="c")))
            old_rv = core.create_namespaced_config_map("c", _cm("x0")).metadata.resource_version
            for i in range(1, 6):
                core.create_namespaced_config_map("c", _cm(f"x{i}"))
            page = core.list_namespaced_config_map("c", limit=2)
            core.create_namespaced_config_map("c", _cm("after"))
            time.sleep(2.5)  # > 2 intervals: the compactor has passed the page's revision

            # The server answers 200 and then an ERROR event holding a 410 Expired Status; with
            # timeout_seconds the client does not retry and raises it as an ApiException.
            with pytest.raises(ApiException) as exc:
                for _ in watch.Watch().stream(core.list_namespaced_config_map, "c", resource_version=old_rv,
                                              timeout_seconds=5):
                    pass
            assert exc.value.status == 410
            assert "Expired: too old resource version" in str(exc.value)
            # Without it, the client retries once from the same resourceVersion, then raises.
            with pytest.raises(ApiException) as exc:
                for _ in watch.Watch().stream(core.list_namespaced_config_map, "c", resource_version=old_rv):
                    pass
            assert exc.value.status == 410

            # A continue token from before the compaction has expired too.
            with pytest.raises(ApiException) as exc:
                core.list_namespaced_config_map("c", limit=2, _continue=page.metadata._continue)
            assert exc.value.status == 410 and "continue parameter is too old" in exc.value.body

            # A list at an exact compacted revision is 410 too; the fix is to list fresh and rewatch.
            with pytest.raises(ApiException) as exc:
                core.list_namespaced_config_map("c", resource_version=old_rv, resource_version_match="Exact")
            assert exc.value.status == 410
            fresh = core.list_namespaced_config_map("c")
            assert len(fresh.items) == 7
            w = watch.Watch()
            core.create_namespaced_config_map("c", _cm("later"))
            ev = next(iter(w.stream(core.list_namespaced_config_map, "c",
                                    resource_version=fresh.metadata.resource_version, timeout_seconds=5)))
            w.stop()
            assert (ev["type"], ev["object"].metadata.name) == ("ADDED", "later")
    finally:
        srv.stop()
    assert "Traceback" not in srv.log()


# ---- patches -------------------------------------------------------------------------------

def test_json_patch_with_list_body(apps: client.AppsV1Api, namespace: str) -> None:
    apps.create_namespaced_deployment(namespace, _deployment("jp"))
    patched = apps.patch_namespaced_deployment("jp", namespace, [
        {"op": "replace", "path": "/spec/replicas", "value": 3},
        {"op": "add", "path": "/metadata/labels/extra", "value": "yes"},
        {"op": "test", "path": "/spec/template/spec/containers/0/name", "value": "web"},
    ])
    assert patched.spec.replicas == 3 and patched.metadata.labels["extra"] == "yes"

    with pytest.raises(ApiException) as exc:
        apps.patch_namespaced_deployment("jp", namespace, [{"op": "test", "path": "/spec/replicas", "value": 9}])
    assert _status(exc) == 422


def test_merge_patch_replaces_lists(apps: client.AppsV1Api, namespace: str) -> None:
    apps.create_namespaced_deployment(namespace, _deployment("mp"))
    patch = {"spec": {"template": {"spec": {"containers": [{"name": "side", "image": "busybox"}]}}},
             "metadata": {"labels": {"app": None, "new": "1"}}}
    patched = apps.patch_namespaced_deployment("mp", namespace, patch, _content_type="application/merge-patch+json")
    assert [c.name for c in patched.spec.template.spec.containers] == ["side"]  # the list was replaced
    assert patched.metadata.labels == {"new": "1"}  # null deletes a key


def test_strategic_merge_patch_is_the_default_for_dicts(apps: client.AppsV1Api, namespace: str) -> None:
    apps.create_namespaced_deployment(namespace, _deployment("smp"))
    patch = {"spec": {"template": {"spec": {"containers": [
        {"name": "side", "image": "busybox"},
        {"name": "web", "env": [{"name": "B", "value": "2"}]},
    ]}}}}
    patched = apps.patch_namespaced_deployment("smp", namespace, patch)
    containers = {c.name: c for c in patched.spec.template.spec.containers}
    assert set(containers) == {"web", "side"}  # merged by the `name` key, not replaced
    assert containers["web"].image == "nginx:1.27"
    assert {e.name: e.value for e in containers["web"].env} == {"A": "1", "B": "2"}

    deleted = apps.patch_namespaced_deployment("smp", namespace, {"spec": {"template": {"spec": {"containers": [
        {"name": "side", "$patch": "delete"}]}}}})
    assert [c.name for c in deleted.spec.template.spec.containers] == ["web"]


def test_server_side_apply(api: client.ApiClient, namespace: str) -> None:
    dyn = dynamic.DynamicClient(api)
    cms = dyn.resources.get(api_version="v1", kind="ConfigMap")
    body = {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "ssa", "labels": {"owner": "a"}},
            "data": {"a": "1"}}
    created = dyn.server_side_apply(cms, body=body, namespace=namespace, field_manager="tool-a")
    assert created.data.a == "1"
    managers = [m["manager"] for m in created.metadata.managedFields]
    assert managers == ["tool-a"]

    body2 = {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "ssa"}, "data": {"b": "2"}}
    merged = dyn.server_side_apply(cms, body=body2, namespace=namespace, field_manager="tool-b")
    assert dict(merged.data) == {"a": "1", "b": "2"}
    assert {m["manager"] for m in merged.metadata.managedFields} == {"tool-a", "tool-b"}

    # Taking a field another manager owns is a conflict unless forced.
    with pytest.raises(ApiException) as exc:
        dyn.server_side_apply(cms, body={**body2, "data": {"a": "x"}}, namespace=namespace, field_manager="tool-b")
    assert exc.value.status == 409
    forced = dyn.server_side_apply(cms, body={**body2, "data": {"a": "x", "b": "2"}}, namespace=namespace,
                                   field_manager="tool-b", force_conflicts=True)
    assert forced.data.a == "x"


def test_apply_patch_through_call_api(api: client.ApiClient, core: client.CoreV1Api, namespace: str) -> None:
    body = textwrap.dedent("""\
        apiVersion: v1
        kind: ConfigMap
        metadata:
          name: applied
        data:
          k: v
        """)
    path = f"/api/v1/namespaces/{namespace}/configmaps/applied"
    resp = api.call_api(*api.param_serialize(
        "PATCH", path, query_params=[("fieldManager", "raw-apply")],
        header_params={"Content-Type": "application/apply-patch+yaml", "Accept": "application/json"},
        body=body, auth_settings=["BearerToken"]))
    resp.read()
    assert resp.status == 201
    got = core.read_namespaced_config_map("applied", namespace)
    assert got.data == {"k": "v"}
    assert got.metadata.managed_fields[0].manager == "raw-apply"
    assert got.metadata.managed_fields[0].operation == "Apply"


# ---- create_from_yaml, status, delete, dry-run ---------------------------------------------

def test_create_from_multi_document_yaml(api: client.ApiClient, core: client.CoreV1Api, apps: client.AppsV1Api,
                                         namespace: str, tmp_path: Any) -> None:
    manifest = textwrap.dedent("""\
        apiVersion: v1
        kind: ConfigMap
        metadata:
          name: from-yaml
        data:
          greeting: hello
        ---
        apiVersion: v1
        kind: Service
        metadata:
          name: from-yaml
        spec:
          selector: {app: from-yaml}
          ports: [{port: 80}]
        ---
        apiVersion: apps/v1
        kind: Deployment
        metadata:
          name: from-yaml
        spec:
          replicas: 2
          selector: {matchLabels: {app: from-yaml}}
          template:
            metadata: {labels: {app: from-yaml}}
            spec:
              containers: [{name: c, image: nginx}]
        """)
    path = os.path.join(str(tmp_path), "multi.yaml")
    with open(path, "w") as f:
        f.write(manifest)
    created = utils.create_from_yaml(api, path, namespace=namespace)
    assert len(created) == 3
    assert core.read_namespaced_config_map("from-yaml", namespace).data == {"greeting": "hello"}
    assert core.read_namespaced_service("from-yaml", namespace).spec.ports[0].port == 80
    assert apps.read_namespaced_deployment("from-yaml", namespace).spec.replicas == 2

    with pytest.raises(utils.FailToCreateError) as exc:  # a second time: each object already exists
        utils.create_from_yaml(api, path, namespace=namespace)
    assert {e.status for e in exc.value.api_exceptions} == {409}


def test_status_subresource(apps: client.AppsV1Api, namespace: str) -> None:
    apps.create_namespaced_deployment(namespace, _deployment("st"))
    patched = apps.patch_namespaced_deployment_status(
        "st", namespace, {"status": {"replicas": 1, "readyReplicas": 1, "observedGeneration": 1},
                          "spec": {"replicas": 9}})
    assert patched.status.ready_replicas == 1 and patched.status.observed_generation == 1
    assert patched.spec.replicas == 1  # /status ignores spec
    assert patched.metadata.generation == 1

    dep = apps.read_namespaced_deployment("st", namespace)
    dep.status.ready_replicas = 0
    dep.spec.replicas = 2
    replaced = apps.replace_namespaced_deployment("st", namespace, dep)
    assert replaced.spec.replicas == 2
    assert replaced.status.ready_replicas == 1  # the main resource ignores status


def test_delete_with_propagation_policy(apps: client.AppsV1Api, namespace: str) -> None:
    for name in ("bg", "fg", "orphan"):
        apps.create_namespaced_deployment(namespace, _deployment(name))

    apps.delete_namespaced_deployment("bg", namespace, propagation_policy="Background")
    with pytest.raises(ApiException) as exc:
        apps.read_namespaced_deployment("bg", namespace)
    assert _status(exc) == 404

    # Foreground and Orphan hold the object with a finalizer until the garbage collector is done.
    for name, finalizer in (("fg", "foregroundDeletion"), ("orphan", "orphan")):
        apps.delete_namespaced_deployment(name, namespace, propagation_policy=name.title() if name == "orphan"
                                          else "Foreground")
        held = apps.read_namespaced_deployment(name, namespace)
        assert held.metadata.deletion_timestamp is not None
        assert held.metadata.finalizers == [finalizer]
        apps.patch_namespaced_deployment(name, namespace, {"metadata": {"finalizers": None}},
                                         _content_type="application/merge-patch+json")
        with pytest.raises(ApiException) as exc:
            apps.read_namespaced_deployment(name, namespace)
        assert _status(exc) == 404

    with pytest.raises(ApiException) as exc:
        apps.delete_namespaced_deployment("bg", namespace, propagation_policy="Sideways")
    assert _status(exc) == 400


def test_dry_run_all_persists_nothing(core: client.CoreV1Api, namespace: str) -> None:
    dry = core.create_namespaced_config_map(namespace, _cm("dry", {"a": "1"}), dry_run="All")
    assert dry.metadata.name == "dry" and dry.metadata.uid
    with pytest.raises(ApiException) as exc:
        core.read_namespaced_config_map("dry", namespace)
    assert _status(exc) == 404

    real = core.create_namespaced_config_map(namespace, _cm("dry", {"a": "1"}))
    patched = core.patch_namespaced_config_map("dry", namespace, {"data": {"a": "2"}}, dry_run="All")
    assert patched.data == {"a": "2"}
    core.delete_namespaced_config_map("dry", namespace, dry_run="All")
    kept = core.read_namespaced_config_map("dry", namespace)
    assert kept.data == {"a": "1"}
    assert kept.metadata.resource_version == real.metadata.resource_version
