"""Strategic merge patch against the real v1.32 schemas: merge keys, directives, ordering, kubectl."""

from __future__ import annotations

import copy
import json
from typing import Any

import pytest
import yaml

from pocketkube.api import schema as k8s_schema
from pocketkube.api.errors import BadRequest
from pocketkube.api.strategic_merge import apply_strategic_merge_patch, supports_strategic_merge_patch

POD = k8s_schema.definition_for("", "v1", "Pod")
DEPLOYMENT = k8s_schema.definition_for("apps", "v1", "Deployment")
SERVICE = k8s_schema.definition_for("", "v1", "Service")


def pod_spec(**spec: Any) -> dict[str, Any]:
    return {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "p"}, "spec": spec}


def c(name: str, **fields: Any) -> dict[str, Any]:
    return {"name": name, **fields}


LAST_APPLIED = "kubectl.kubernetes.io/last-applied-configuration"

# (id, original, patch, expected) — all against the Pod schema.
POD_CASES: list[tuple[str, dict[str, Any], dict[str, Any], dict[str, Any]]] = [
    (
        "containers merge by name",
        pod_spec(containers=[c("a", image="x"), c("b", image="y")]),
        {"spec": {"containers": [c("b", image="z")]}},
        pod_spec(containers=[c("a", image="x"), c("b", image="z")]),
    ),
    (
        # Upstream quirk kept: without $setElementOrder, items new to the object sort first.
        "new container without order goes first",
        pod_spec(containers=[c("a", image="x")]),
        {"spec": {"containers": [c("b", image="y")]}},
        pod_spec(containers=[c("b", image="y"), c("a", image="x")]),
    ),
    (
        "new container with order",
        pod_spec(containers=[c("a", image="x")]),
        {"spec": {"$setElementOrder/containers": [c("a"), c("b")], "containers": [c("b", image="y")]}},
        pod_spec(containers=[c("a", image="x"), c("b", image="y")]),
    ),
    (
        "ports merge by containerPort",
        pod_spec(containers=[c("a", ports=[{"containerPort": 80}, {"containerPort": 443}])]),
        {"spec": {"containers": [c("a", ports=[{"containerPort": 80, "name": "http"}])]}},
        pod_spec(containers=[c("a", ports=[{"containerPort": 80, "name": "http"}, {"containerPort": 443}])]),
    ),
    (
        "args replaced (no strategy)",
        pod_spec(containers=[c("a", args=["1", "2"])]),
        {"spec": {"containers": [c("a", args=["3"])]}},
        pod_spec(containers=[c("a", args=["3"])]),
    ),
    (
        "env delete directive",
        pod_spec(containers=[c("a", env=[{"name": "X", "value": "1"}, {"name": "Y", "value": "2"}])]),
        {"spec": {"containers": [c("a", env=[{"$patch": "delete", "name": "X"}])]}},
        pod_spec(containers=[c("a", env=[{"name": "Y", "value": "2"}])]),
    ),
    (
        "list replace directive",
        pod_spec(containers=[c("a"), c("b")]),
        {"spec": {"containers": [c("c"), {"$patch": "replace"}]}},
        pod_spec(containers=[c("c")]),
    ),
    (
        "map replace directive",
        pod_spec(nodeSelector={"a": "1", "b": "2"}),
        {"spec": {"nodeSelector": {"c": "3", "$patch": "replace"}}},
        pod_spec(nodeSelector={"c": "3"}),
    ),
    (
        "map delete directive",
        pod_spec(nodeSelector={"a": "1"}, hostname="h"),
        {"spec": {"nodeSelector": {"$patch": "delete"}}},
        pod_spec(nodeSelector={}, hostname="h"),
    ),
    (
        "null deletes key",
        pod_spec(hostname="h", subdomain="s"),
        {"spec": {"hostname": None, "missing": None}},
        pod_spec(subdomain="s"),
    ),
    (
        "nulls in new values dropped",
        pod_spec(),
        {"spec": {"securityContext": {"runAsUser": None, "fsGroup": 1}}},
        pod_spec(securityContext={"fsGroup": 1}),
    ),
    (
        "set element order",
        pod_spec(containers=[c("a", image="1"), c("b", image="2"), c("c", image="3")]),
        {"spec": {"$setElementOrder/containers": [c("c"), c("a"), c("b")], "containers": [c("a", image="9")]}},
        pod_spec(containers=[c("c", image="3"), c("a", image="9"), c("b", image="2")]),
    ),
    (
        "set element order without the list",
        pod_spec(containers=[c("a"), c("b")]),
        {"spec": {"$setElementOrder/containers": [c("b"), c("a")]}},
        pod_spec(containers=[c("b"), c("a")]),
    ),
    (
        "finalizers union",
        {"metadata": {"finalizers": ["a", "b"]}},
        {"metadata": {"finalizers": ["c", "a"]}},
        {"metadata": {"finalizers": ["c", "a", "b"]}},
    ),
    (
        "delete from primitive list",
        {"metadata": {"finalizers": ["a", "b", "c"]}},
        {"metadata": {"$deleteFromPrimitiveList/finalizers": ["b"]}},
        {"metadata": {"finalizers": ["a", "c"]}},
    ),
    (
        "delete from missing primitive list is a no-op",
        {"metadata": {"name": "x"}},
        {"metadata": {"$deleteFromPrimitiveList/finalizers": ["b"]}},
        {"metadata": {"name": "x"}},
    ),
    (
        "labels merge",
        {"metadata": {"labels": {"a": "1", "b": "2"}}},
        {"metadata": {"labels": {"a": None, "c": "3"}}},
        {"metadata": {"labels": {"b": "2", "c": "3"}}},
    ),
    (
        "directives dropped from new values, other $ keys kept",
        pod_spec(),
        {"spec": {"affinity": {"$retainKeys": ["x"], "$ref": "kept", "nodeAffinity": {"$patch": "replace"}}}},
        pod_spec(affinity={"$ref": "kept", "nodeAffinity": {}}),
    ),
    (
        "type change replaces",
        pod_spec(nodeSelector={"a": "1"}),
        {"spec": {"nodeSelector": "x"}},
        pod_spec(nodeSelector="x"),
    ),
    (
        "ownerReferences merge by uid",
        {"metadata": {"ownerReferences": [{"uid": "1", "name": "a"}]}},
        {"metadata": {"ownerReferences": [{"uid": "2", "name": "b"}]}},
        {"metadata": {"ownerReferences": [{"uid": "2", "name": "b"}, {"uid": "1", "name": "a"}]}},
    ),
    (
        "volumes merge by name, nested replace keeps sibling",
        pod_spec(volumes=[{"name": "v", "emptyDir": {}}, {"name": "w", "configMap": {"name": "cm"}}]),
        {"spec": {"volumes": [{"name": "w", "configMap": {"name": "cm2"}}]}},
        pod_spec(volumes=[{"name": "v", "emptyDir": {}}, {"name": "w", "configMap": {"name": "cm2"}}]),
    ),
    (
        "tolerations replaced (no merge strategy)",
        pod_spec(tolerations=[{"key": "a"}]),
        {"spec": {"tolerations": [{"key": "b"}]}},
        pod_spec(tolerations=[{"key": "b"}]),
    ),
]


@pytest.mark.parametrize(("original", "patch", "expected"), [x[1:] for x in POD_CASES], ids=[x[0] for x in POD_CASES])
def test_pod_cases(original: dict[str, Any], patch: dict[str, Any], expected: dict[str, Any]) -> None:
    before = copy.deepcopy((original, patch))
    assert apply_strategic_merge_patch(original, patch, POD) == expected
    assert (original, patch) == before


def deployment(containers: list[dict[str, Any]], **meta: Any) -> dict[str, Any]:
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": "web", "namespace": "default", **meta},
        "spec": {
            "replicas": 1,
            "selector": {"matchLabels": {"app": "web"}},
            "strategy": {"type": "RollingUpdate", "rollingUpdate": {"maxSurge": "25%", "maxUnavailable": "25%"}},
            "template": {"metadata": {"labels": {"app": "web"}}, "spec": {"containers": containers}},
        },
    }


def test_kubectl_client_side_apply_patch() -> None:
    live = deployment([c("nginx", image="nginx:1.25"), c("sidecar", image="busybox")])
    applied = deployment([c("nginx", image="nginx:1.27"), c("sidecar", image="busybox")])
    patch = {
        "metadata": {"annotations": {LAST_APPLIED: json.dumps(applied)}},
        "spec": {
            "template": {
                "spec": {
                    "$setElementOrder/containers": [c("nginx"), c("sidecar")],
                    "containers": [c("nginx", image="nginx:1.27")],
                }
            }
        },
    }
    result = apply_strategic_merge_patch(live, patch, DEPLOYMENT)
    assert result["metadata"]["annotations"] == {LAST_APPLIED: json.dumps(applied)}
    assert result["spec"]["template"]["spec"]["containers"] == applied["spec"]["template"]["spec"]["containers"]
    assert result["spec"]["replicas"] == 1


def test_kubectl_edit_removes_env_and_renames_port() -> None:
    live = deployment([c("app", image="a", env=[{"name": "X", "value": "1"}, {"name": "Y", "value": "2"}])])
    patch = {
        "spec": {
            "template": {
                "spec": {
                    "$setElementOrder/containers": [c("app")],
                    "containers": [
                        {
                            "$setElementOrder/env": [{"name": "Y"}],
                            "env": [{"$patch": "delete", "name": "X"}],
                            "name": "app",
                        }
                    ],
                }
            }
        }
    }
    result = apply_strategic_merge_patch(live, patch, DEPLOYMENT)
    assert result["spec"]["template"]["spec"]["containers"] == [c("app", image="a", env=[{"name": "Y", "value": "2"}])]


def test_rollout_restart_annotation() -> None:
    live = deployment([c("app", image="a")])
    patch = {"spec": {"template": {"metadata": {"annotations": {"kubectl.kubernetes.io/restartedAt": "now"}}}}}
    result = apply_strategic_merge_patch(live, patch, DEPLOYMENT)
    assert result["spec"]["template"]["metadata"] == {
        "labels": {"app": "web"},
        "annotations": {"kubectl.kubernetes.io/restartedAt": "now"},
    }


def test_retain_keys_switches_deployment_strategy() -> None:
    live = deployment([c("app")])
    patch = {"spec": {"strategy": {"$retainKeys": ["type"], "type": "Recreate", "rollingUpdate": None}}}
    assert apply_strategic_merge_patch(live, patch, DEPLOYMENT)["spec"]["strategy"] == {"type": "Recreate"}


def test_service_ports_merge_by_port() -> None:
    live = {"spec": {"ports": [{"port": 80, "targetPort": 8080}, {"port": 443}]}}
    patch = {"spec": {"ports": [{"port": 80, "targetPort": 9090}]}}
    result = apply_strategic_merge_patch(live, patch, SERVICE)
    assert result["spec"]["ports"] == [{"port": 80, "targetPort": 9090}, {"port": 443}]


def test_custom_resource_falls_back_to_merge_patch() -> None:
    assert not supports_strategic_merge_patch(None)
    assert supports_strategic_merge_patch(POD)
    live = {"spec": {"items": [{"name": "a"}], "x": 1}}
    result = apply_strategic_merge_patch(live, {"spec": {"items": [{"name": "b"}], "x": None}}, None)
    assert result == {"spec": {"items": [{"name": "b"}]}}


BAD_PATCHES: list[tuple[str, dict[str, Any], dict[str, Any]]] = [
    ("unknown map directive", pod_spec(), {"spec": {"$patch": "explode"}}),
    ("unknown list directive", pod_spec(containers=[c("a")]), {"spec": {"containers": [{"$patch": "zap", "name": "a"}]}}),
    ("merge list directive", pod_spec(containers=[c("a")]), {"spec": {"containers": [{"$patch": "merge"}]}}),
    ("delete without merge key", pod_spec(containers=[c("a")]), {"spec": {"containers": [{"$patch": "delete"}]}}),
    ("element without merge key", pod_spec(containers=[c("a")]), {"spec": {"containers": [{"image": "x"}]}}),
    ("mixed element types", pod_spec(containers=[c("a")]), {"spec": {"containers": ["a"]}}),
    ("list of lists", {"metadata": {"finalizers": ["a"]}}, {"metadata": {"finalizers": [["b"]]}}),
    ("retainKeys not a list", pod_spec(), {"spec": {"$retainKeys": "x"}}),
    ("key outside retainKeys", pod_spec(), {"spec": {"$retainKeys": ["a"], "hostname": "h"}}),
    (
        "setElementOrder mismatch",
        pod_spec(containers=[c("a"), c("b")]),
        {"spec": {"$setElementOrder/containers": [c("a")], "containers": [c("b", image="x")]}},
    ),
    ("setElementOrder not a list", pod_spec(containers=[c("a")]), {"spec": {"$setElementOrder/containers": "a"}}),
    ("bad prefix", {"metadata": {}}, {"metadata": {"$deleteFromPrimitiveList": ["a"]}}),
]


@pytest.mark.parametrize(("original", "patch"), [x[1:] for x in BAD_PATCHES], ids=[x[0] for x in BAD_PATCHES])
def test_malformed_patches_are_bad_requests(original: dict[str, Any], patch: dict[str, Any]) -> None:
    with pytest.raises(BadRequest) as info:
        apply_strategic_merge_patch(original, patch, POD)
    assert info.value.code == 400 and info.value.message


def test_non_object_patch_is_bad_request() -> None:
    with pytest.raises(BadRequest):
        apply_strategic_merge_patch({}, [], POD)  # type: ignore[arg-type]


# --- upstream semantics on a synthetic type (like patch_test.go's MergeItem) ----------------

ITEM: dict[str, Any] = {"type": "object", "properties": {}}
ITEM["properties"].update(
    {
        "name": {"type": "string"},
        "value": {"type": "string"},
        "other": {"type": "string"},
        "mergingList": {
            "type": "array",
            "items": ITEM,
            "x-kubernetes-patch-strategy": "merge",
            "x-kubernetes-patch-merge-key": "name",
        },
        "nonMergingList": {"type": "array", "items": ITEM},
        "mergingIntList": {"type": "array", "items": {"type": "integer"}, "x-kubernetes-patch-strategy": "merge"},
        "nonMergingIntList": {"type": "array", "items": {"type": "integer"}},
        "simpleMap": {"type": "object", "additionalProperties": {"type": "string"}},
        "replacingItem": {"type": "object", "x-kubernetes-patch-strategy": "replace"},
        "retainKeysMap": {"type": "object", "properties": {}, "x-kubernetes-patch-strategy": "retainKeys"},
        "retainKeysMergingList": {
            "type": "array",
            "items": ITEM,
            "x-kubernetes-patch-strategy": "merge,retainKeys",
            "x-kubernetes-patch-merge-key": "name",
        },
    }
)

SYNTHETIC = """
- [unique scalars, {mergingIntList: [1, 2]}, {mergingIntList: [2, 3]}, {mergingIntList: [1, 2, 3]}]
- [non-merging scalars replaced, {nonMergingIntList: [1, 2]}, {nonMergingIntList: [3]}, {nonMergingIntList: [3]}]
- [delete nested map, {simpleMap: {a: "1"}}, {simpleMap: {$patch: delete}}, {simpleMap: {}}]
- [replace list with nothing, {mergingList: [{name: a}, {name: b}]}, {mergingList: [{$patch: replace}]}, {mergingList: []}]
- [empty lists, {mergingList: []}, {mergingList: []}, {mergingList: []}]
- [replace whole object, {name: a, value: b}, {$patch: replace, other: c}, {other: c}]
- [delete every duplicate, {mergingList: [{name: a}, {name: a}, {name: b}]}, {mergingList: [{name: a, $patch: delete}]}, {mergingList: [{name: b}]}]
- [empty map patch keeps retainKeys map, {retainKeysMap: {name: a, value: b}}, {retainKeysMap: {}}, {retainKeysMap: {name: a, value: b}}]
- [retainKeys clears others, {retainKeysMap: {name: a, value: b}}, {retainKeysMap: {$retainKeys: [value, other], other: c}}, {retainKeysMap: {value: b, other: c}}]
- [retainKeys in list items, {retainKeysMergingList: [{name: a, value: b}]}, {retainKeysMergingList: [{name: a, $retainKeys: [name, other], other: c}]}, {retainKeysMergingList: [{name: a, other: c}]}]
- [patch order wins, {mergingList: [{name: "1"}, {name: "2", value: b}, {name: "3"}]}, {mergingList: [{name: "3", value: c}, {name: "1", value: a}]}, {mergingList: [{name: "2", value: b}, {name: "3", value: c}, {name: "1", value: a}]}]
- [patch order wins for ints, {mergingIntList: [1, 2, 3]}, {mergingIntList: [3, 1]}, {mergingIntList: [2, 3, 1]}]
- [order list may name absent items, {mergingList: [{name: "1"}, {name: "3"}]}, {$setElementOrder/mergingList: [{name: "3"}, {name: "2"}, {name: "1"}], mergingList: [{name: "3", value: "3"}, {name: "1", value: "1"}]}, {mergingList: [{name: "3", value: "3"}, {name: "1", value: "1"}]}]
- [order alone reorders ints, {mergingIntList: [1, 3]}, {$setElementOrder/mergingIntList: [3, 2, 1]}, {mergingIntList: [3, 1]}]
- [server-only items interleave, {mergingList: [{name: "1", other: a}, {name: "2", other: b}]}, {$setElementOrder/mergingList: [{name: "4"}, {name: "1"}, {name: "2"}, {name: "3"}], mergingList: [{name: "4", value: "4"}, {name: "3", value: "3"}]}, {mergingList: [{name: "4", value: "4"}, {name: "1", other: a}, {name: "2", other: b}, {name: "3", value: "3"}]}]
- [delete and order scalars, {mergingIntList: [1, 2, 3, 4]}, {$setElementOrder/mergingIntList: [1, 2], $deleteFromPrimitiveList/mergingIntList: [3]}, {mergingIntList: [1, 2, 4]}]
- [add and delete scalars, {mergingIntList: [1, 2, 3]}, {$setElementOrder/mergingIntList: [1, 2, 4], $deleteFromPrimitiveList/mergingIntList: [3], mergingIntList: [4]}, {mergingIntList: [1, 2, 4]}]
- [replace strategy map, {replacingItem: {a: 1, b: 2}}, {replacingItem: {c: 3}}, {replacingItem: {c: 3}}]
- [nested merging lists, {mergingList: [{name: a, mergingList: [{name: x, value: "1"}]}]}, {mergingList: [{name: a, mergingList: [{name: x, other: o}]}]}, {mergingList: [{name: a, mergingList: [{name: x, value: "1", other: o}]}]}]
- [non-merging list of maps replaced, {nonMergingList: [{name: a}, {name: b}]}, {nonMergingList: [{name: c}]}, {nonMergingList: [{name: c}]}]
"""


def _synthetic_cases() -> list[Any]:
    return [pytest.param(*case[1:], id=case[0]) for case in yaml.safe_load(SYNTHETIC)]


@pytest.mark.parametrize(("original", "patch", "expected"), _synthetic_cases())
def test_upstream_semantics(original: dict[str, Any], patch: dict[str, Any], expected: dict[str, Any]) -> None:
    assert apply_strategic_merge_patch(original, patch, ITEM) == expected


@pytest.mark.parametrize(
    ("original", "patch", "message"),
    [
        (
            {"mergingList": [{"name": "1"}, {"name": "3"}, {"name": "2"}]},
            {"$setElementOrder/mergingList": [{"name": "1"}, {"name": "2"}, {"name": "3"}],
             "mergingList": [{"name": "3", "value": "3"}, {"name": "1", "value": "1"}]},
            "doesn't match",
        ),
        ({"mergingIntList": [1, 3, 2]}, {"$setElementOrder/mergingIntList": [1, 2, 3], "mergingIntList": [3, 1]}, "doesn't match"),
        ({"mergingList": [{"name": "1"}]}, {"mergingList": [{"value": "b"}]}, "does not contain declared merge key"),
        ({"retainKeysMap": {"name": "a"}}, {"retainKeysMap": {"$retainKeys": ["name"], "value": "b"}}, "retainKeys"),
    ],
)
def test_upstream_errors(original: dict[str, Any], patch: dict[str, Any], message: str) -> None:
    with pytest.raises(BadRequest, match=message):
        apply_strategic_merge_patch(original, patch, ITEM)
