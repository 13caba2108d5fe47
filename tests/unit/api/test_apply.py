"""Server-side apply and managedFields: field sets, merge, prune, conflicts and force, Update ownership."""

from __future__ import annotations

import copy
import json
from typing import Any

import pytest

from pocketkube.api import schema as k8s_schema
from pocketkube.api.apply import ApplyConflict, apply
from pocketkube.api.errors import BadRequest, Conflict
from pocketkube.api.field_paths import decode_fields, encode_fields, path_string
from pocketkube.api.managed_fields import update_managed_fields

DEPLOYMENT = k8s_schema.definition_for("apps", "v1", "Deployment")
CONFIGMAP = k8s_schema.definition_for("", "v1", "ConfigMap")
SERVICE = k8s_schema.definition_for("", "v1", "Service")
POD = k8s_schema.definition_for("", "v1", "Pod")
T0, T1, T2 = "2026-01-01T00:00:00Z", "2026-01-01T00:01:00Z", "2026-01-01T00:02:00Z"


def deployment(replicas: int | None = 1, image: str = "nginx:1.25", **extra: Any) -> dict[str, Any]:
    spec: dict[str, Any] = {
        "selector": {"matchLabels": {"app": "web"}},
        "template": {
            "metadata": {"labels": {"app": "web"}},
            "spec": {"containers": [{"name": "nginx", "image": image}]},
        },
        **extra,
    }
    if replicas is not None:
        spec["replicas"] = replicas
    return {"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "web", "namespace": "default"}, "spec": spec}


def configmap(data: dict[str, str], **meta: Any) -> dict[str, Any]:
    return {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "cm", **meta}, "data": data}


def entries(obj: dict[str, Any]) -> dict[tuple[str, str], dict[str, Any]]:
    return {(e["manager"], e["operation"]): e for e in obj["metadata"].get("managedFields", [])}


def owned(obj: dict[str, Any], manager: str, operation: str = "Apply") -> set[str]:
    entry = entries(obj).get((manager, operation))
    return {path_string(p) for p in decode_fields(entry["fieldsV1"])} if entry else set()


# --- field sets in fieldsV1 ----------------------------------------------------------------

FIELDS_CASES: list[tuple[str, dict[str, Any], Any, dict[str, Any]]] = [
    ("configmap data", configmap({"a": "1"}), CONFIGMAP, {"f:data": {"f:a": {}}}),
    (
        "configmap labels",
        configmap({}, labels={"x": "y"}),
        CONFIGMAP,
        {"f:data": {}, "f:metadata": {"f:labels": {"f:x": {}}}},
    ),
    (
        "deployment",
        deployment(),
        DEPLOYMENT,
        {
            "f:spec": {
                "f:replicas": {},
                "f:selector": {},
                "f:template": {
                    "f:metadata": {"f:labels": {"f:app": {}}},
                    "f:spec": {"f:containers": {'k:{"name":"nginx"}': {".": {}, "f:image": {}, "f:name": {}}}},
                },
            }
        },
    ),
    (
        "ports keyed with defaulted protocol",
        {"spec": {"ports": [{"port": 80}, {"port": 53, "protocol": "UDP"}]}},
        SERVICE,
        {
            "f:spec": {
                "f:ports": {
                    'k:{"port":53,"protocol":"UDP"}': {".": {}, "f:port": {}, "f:protocol": {}},
                    'k:{"port":80,"protocol":"TCP"}': {".": {}, "f:port": {}},
                }
            }
        },
    ),
    (
        "finalizers are a set, args atomic",
        {"metadata": {"finalizers": ["a"]}, "spec": {"containers": [{"name": "c", "args": ["x"]}]}},
        POD,
        {
            "f:metadata": {"f:finalizers": {'v:"a"': {}}},
            "f:spec": {"f:containers": {'k:{"name":"c"}': {".": {}, "f:args": {}, "f:name": {}}}},
        },
    ),
    (
        "no schema: maps granular, lists atomic",
        {"apiVersion": "x/v1", "kind": "Foo", "spec": {"items": [{"a": 1}], "n": 1}},
        None,
        {"f:spec": {".": {}, "f:items": {}, "f:n": {}}},
    ),
]


@pytest.mark.parametrize(("obj", "schema", "expected"), [c[1:] for c in FIELDS_CASES], ids=[c[0] for c in FIELDS_CASES])
def test_apply_records_fields_v1(obj: dict[str, Any], schema: Any, expected: dict[str, Any]) -> None:
    result = apply(None, obj, manager="kubectl", force=False, schema=schema, now=T0)
    (entry,) = result["metadata"]["managedFields"]
    assert entry == {
        "manager": "kubectl",
        "operation": "Apply",
        "apiVersion": obj.get("apiVersion", ""),
        "time": T0,
        "fieldsType": "FieldsV1",
        "fieldsV1": expected,
    }
    assert encode_fields(decode_fields(expected)) == expected


# --- conflicts and force --------------------------------------------------------------------


def created_by_client_side_apply() -> dict[str, Any]:
    return update_managed_fields(None, deployment(), manager="kubectl-client-side-apply", schema=DEPLOYMENT, now=T0)


def test_conflict_with_updater_message() -> None:
    live = created_by_client_side_apply()
    with pytest.raises(Conflict) as info:
        apply(live, deployment(replicas=3), manager="kubectl", force=False, schema=DEPLOYMENT, now=T1)
    err = info.value
    assert isinstance(err, ApplyConflict) and err.code == 409 and err.reason == "Conflict"
    assert err.message == (
        'Apply failed with 1 conflict: conflict with "kubectl-client-side-apply" using apps/v1: .spec.replicas'
    )
    assert err.to_status()["details"]["causes"] == [
        {
            "reason": "FieldManagerConflict",
            "message": 'conflict with "kubectl-client-side-apply" using apps/v1',
            "field": ".spec.replicas",
        }
    ]


def test_several_conflicts_are_listed_by_manager() -> None:
    live = created_by_client_side_apply()
    with pytest.raises(ApplyConflict) as info:
        apply(live, deployment(replicas=3, image="nginx:2"), manager="kubectl", force=False, schema=DEPLOYMENT, now=T1)
    assert info.value.message == (
        'Apply failed with 2 conflicts: conflicts with "kubectl-client-side-apply" using apps/v1:\n'
        "- .spec.replicas\n"
        '- .spec.template.spec.containers[name="nginx"].image'
    )


def test_conflict_with_other_applier_names_it_plainly() -> None:
    live = apply(None, deployment(), manager="alice", force=False, schema=DEPLOYMENT, now=T0)
    with pytest.raises(ApplyConflict, match=r'conflict with "alice": \.spec\.replicas$'):
        apply(live, {"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "web"}, "spec": {"replicas": 5}},
              manager="bob", force=False, schema=DEPLOYMENT, now=T1)


def test_force_takes_ownership() -> None:
    live = created_by_client_side_apply()
    result = apply(live, deployment(replicas=3), manager="kubectl", force=True, schema=DEPLOYMENT, now=T1)
    assert result["spec"]["replicas"] == 3
    assert ".spec.replicas" in owned(result, "kubectl")
    assert ".spec.replicas" not in owned(result, "kubectl-client-side-apply", "Update")
    assert ".spec.selector" in owned(result, "kubectl-client-side-apply", "Update")


def test_same_value_is_shared_without_conflict() -> None:
    live = created_by_client_side_apply()
    result = apply(live, deployment(), manager="kubectl", force=False, schema=DEPLOYMENT, now=T1)
    assert ".spec.replicas" in owned(result, "kubectl")
    assert ".spec.replicas" in owned(result, "kubectl-client-side-apply", "Update")
    assert [e["operation"] for e in result["metadata"]["managedFields"]] == ["Apply", "Update"]


def test_reapplying_unchanged_config_keeps_time_and_object() -> None:
    first = apply(None, deployment(), manager="kubectl", force=False, schema=DEPLOYMENT, now=T0)
    again = apply(first, deployment(), manager="kubectl", force=False, schema=DEPLOYMENT, now=T1)
    assert again == first


# --- merge and prune ------------------------------------------------------------------------


def test_prune_removes_fields_no_longer_applied() -> None:
    live = apply(None, configmap({"a": "1", "b": "2"}), manager="kubectl", force=False, schema=CONFIGMAP, now=T0)
    result = apply(live, configmap({"a": "1"}), manager="kubectl", force=False, schema=CONFIGMAP, now=T1)
    assert result["data"] == {"a": "1"}
    assert owned(result, "kubectl") == {".data.a"}
    assert result["metadata"]["managedFields"][0]["time"] == T1


def test_prune_keeps_fields_another_manager_owns() -> None:
    live = apply(None, configmap({"a": "1", "b": "2"}), manager="kubectl", force=False, schema=CONFIGMAP, now=T0)
    live = apply(live, configmap({"b": "2"}), manager="other", force=False, schema=CONFIGMAP, now=T1)
    result = apply(live, configmap({"a": "1"}), manager="kubectl", force=False, schema=CONFIGMAP, now=T2)
    assert result["data"] == {"a": "1", "b": "2"}


def test_prune_drops_a_whole_struct_nobody_owns_any_more() -> None:
    with_strategy = deployment(strategy={"type": "RollingUpdate", "rollingUpdate": {"maxSurge": 1}})
    live = apply(None, with_strategy, manager="kubectl", force=False, schema=DEPLOYMENT, now=T0)
    result = apply(live, deployment(), manager="kubectl", force=False, schema=DEPLOYMENT, now=T1)
    assert "strategy" not in result["spec"]
    assert result["metadata"]["name"] == "web"


def test_unowned_fields_survive_prune() -> None:
    live = apply(None, deployment(), manager="kubectl", force=False, schema=DEPLOYMENT, now=T0)
    live["spec"]["revisionHistoryLimit"] = 10  # e.g. a default nobody claimed
    result = apply(live, deployment(replicas=None), manager="kubectl", force=False, schema=DEPLOYMENT, now=T1)
    assert "replicas" not in result["spec"]
    assert result["spec"]["revisionHistoryLimit"] == 10


def test_two_appliers_share_an_associative_list() -> None:
    live = apply(None, deployment(), manager="kubectl", force=False, schema=DEPLOYMENT, now=T0)
    sidecar = {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": "web"},
        "spec": {"template": {"spec": {"containers": [{"name": "sidecar", "image": "busybox"}]}}},
    }
    result = apply(live, sidecar, manager="injector", force=False, schema=DEPLOYMENT, now=T1)
    assert [c["name"] for c in result["spec"]["template"]["spec"]["containers"]] == ["nginx", "sidecar"]
    # kubectl re-applies without the sidecar: it never owned it, so it stays.
    again = apply(result, deployment(image="nginx:1.27"), manager="kubectl", force=False, schema=DEPLOYMENT, now=T2)
    assert again["spec"]["template"]["spec"]["containers"] == [
        {"name": "nginx", "image": "nginx:1.27"},
        {"name": "sidecar", "image": "busybox"},
    ]


def test_atomic_list_replaced_and_set_merged() -> None:
    pod = {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "p", "finalizers": ["a"]},
           "spec": {"containers": [{"name": "c", "args": ["1", "2"]}]}}
    live = update_managed_fields(None, pod, manager="creator", schema=POD, now=T0)
    config = {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "p", "finalizers": ["b"]},
              "spec": {"containers": [{"name": "c", "args": ["3"]}]}}
    result = apply(live, config, manager="kubectl", force=True, schema=POD, now=T1)
    assert result["metadata"]["finalizers"] == ["a", "b"]
    assert result["spec"]["containers"][0]["args"] == ["3"]


def test_custom_resource_lists_are_atomic() -> None:
    cr = {"apiVersion": "x.io/v1", "kind": "Foo", "metadata": {"name": "f"}, "spec": {"items": [1, 2], "a": 1}}
    live = apply(None, cr, manager="kubectl", force=False, schema=None, now=T0)
    config = copy.deepcopy(cr)
    config["spec"] = {"items": [3]}
    result = apply(live, config, manager="kubectl", force=False, schema=None, now=T1)
    assert result["spec"] == {"items": [3]}


@pytest.mark.parametrize(
    "applied",
    [
        {"metadata": {"name": "x", "managedFields": []}},
        {"metadata": "x"},
        [],
    ],
)
def test_bad_apply_requests(applied: Any) -> None:
    with pytest.raises(BadRequest):
        apply(None, applied, manager="kubectl", force=False, schema=CONFIGMAP, now=T0)


# --- Update operations ----------------------------------------------------------------------


def test_update_moves_changed_fields_to_its_manager() -> None:
    live = apply(None, deployment(), manager="kubectl", force=False, schema=DEPLOYMENT, now=T0)
    scaled = copy.deepcopy(live)
    scaled["spec"]["replicas"] = 5
    result = update_managed_fields(live, scaled, manager="kubectl-scale", schema=DEPLOYMENT, now=T1)
    assert owned(result, "kubectl-scale", "Update") == {".spec.replicas"}
    assert ".spec.replicas" not in owned(result, "kubectl")
    assert entries(result)[("kubectl-scale", "Update")]["time"] == T1
    # ...so the next apply of replicas conflicts with the scaler.
    with pytest.raises(ApplyConflict, match=r'"kubectl-scale" using apps/v1: \.spec\.replicas'):
        apply(result, deployment(replicas=1), manager="kubectl", force=False, schema=DEPLOYMENT, now=T2)


def test_update_removing_a_field_clears_every_owner() -> None:
    live = apply(None, configmap({"a": "1", "b": "2"}), manager="kubectl", force=False, schema=CONFIGMAP, now=T0)
    edited = copy.deepcopy(live)
    del edited["data"]["b"]
    result = update_managed_fields(live, edited, manager="kubectl-edit", schema=CONFIGMAP, now=T1)
    assert owned(result, "kubectl") == {".data.a"}
    assert ("kubectl-edit", "Update") not in entries(result)


def test_update_without_changes_keeps_entries_and_times() -> None:
    live = update_managed_fields(None, configmap({"a": "1"}), manager="m", schema=CONFIGMAP, now=T0)
    result = update_managed_fields(live, copy.deepcopy(live), manager="m", schema=CONFIGMAP, now=T1)
    assert result["metadata"]["managedFields"] == live["metadata"]["managedFields"]


def test_update_keeps_live_managed_fields_when_client_drops_them() -> None:
    live = update_managed_fields(None, configmap({"a": "1"}), manager="m", schema=CONFIGMAP, now=T0)
    sent = configmap({"a": "1", "b": "2"})
    result = update_managed_fields(live, sent, manager="n", schema=CONFIGMAP, now=T1)
    assert owned(result, "m", "Update") == {".data.a"}
    assert owned(result, "n", "Update") == {".data.b"}
    assert [e["manager"] for e in result["metadata"]["managedFields"]] == ["m", "n"]


def test_create_records_client_side_apply_annotation() -> None:
    obj = configmap({"a": "1"}, annotations={"kubectl.kubernetes.io/last-applied-configuration": "{}"})
    result = update_managed_fields(None, obj, manager="kubectl-client-side-apply", schema=CONFIGMAP, now=T0)
    (entry,) = result["metadata"]["managedFields"]
    assert entry["fieldsV1"] == {
        "f:data": {"f:a": {}},
        "f:metadata": {"f:annotations": {"f:kubectl.kubernetes.io/last-applied-configuration": {}}},
    }
    assert "managedFields" not in obj["metadata"]


# --- kube-apiserver's fieldmanager extras ---------------------------------------------------

LAST_APPLIED = "kubectl.kubernetes.io/last-applied-configuration"


def client_side_applied(replicas_live: int) -> dict[str, Any]:
    """A deployment created by `kubectl apply` (client-side) with replicas 1, then set to `replicas_live`."""
    last = deployment()
    obj = deployment(replicas=replicas_live)
    obj["metadata"]["annotations"] = {LAST_APPLIED: json.dumps(last)}
    return update_managed_fields(None, obj, manager="kubectl-client-side-apply", schema=DEPLOYMENT, now=T0)


def test_server_side_migration_forces_fields_matching_last_applied() -> None:
    live = client_side_applied(replicas_live=1)
    result = apply(live, deployment(replicas=3), manager="kubectl", force=False, schema=DEPLOYMENT, now=T1)
    assert result["spec"]["replicas"] == 3
    assert ".spec.replicas" in owned(result, "kubectl")
    # The annotation follows what kubectl applied, so a later client-side apply diffs correctly.
    assert json.loads(result["metadata"]["annotations"][LAST_APPLIED])["spec"]["replicas"] == 3


@pytest.mark.parametrize("manager", ["kubectl", "ci-bot"])
def test_migration_does_not_hide_real_conflicts(manager: str) -> None:
    live = client_side_applied(replicas_live=2)  # drifted from last-applied: a real conflict
    with pytest.raises(ApplyConflict, match=r'"kubectl-client-side-apply" using apps/v1: \.spec\.replicas$'):
        apply(live, deployment(replicas=3), manager=manager, force=False, schema=DEPLOYMENT, now=T1)


def test_object_without_managed_fields_gets_before_first_apply() -> None:
    live = deployment(replicas=2)
    with pytest.raises(ApplyConflict, match=r'conflict with "before-first-apply" using apps/v1: \.spec\.replicas'):
        apply(live, deployment(replicas=3), manager="ci", force=False, schema=DEPLOYMENT, now=T1)
    result = apply(live, deployment(replicas=2), manager="ci", force=False, schema=DEPLOYMENT, now=T1)
    assert ".spec.replicas" in owned(result, "before-first-apply", "Update")
    assert ".spec.replicas" in owned(result, "ci")


def test_dropped_item_edited_by_someone_else_keeps_its_key() -> None:
    two = deployment()
    two["spec"]["template"]["spec"]["containers"].append({"name": "sidecar", "image": "busybox"})
    live = apply(None, two, manager="kubectl", force=False, schema=DEPLOYMENT, now=T0)
    edited = copy.deepcopy(live)
    edited["spec"]["template"]["spec"]["containers"][1]["image"] = "busybox:2"
    live = update_managed_fields(live, edited, manager="kubectl-edit", schema=DEPLOYMENT, now=T1)
    result = apply(live, deployment(), manager="kubectl", force=False, schema=DEPLOYMENT, now=T2)
    assert result["spec"]["template"]["spec"]["containers"] == [
        {"name": "nginx", "image": "nginx:1.25"},
        {"name": "sidecar", "image": "busybox:2"},
    ]


def test_dropped_item_nobody_else_touched_is_removed() -> None:
    two = deployment()
    two["spec"]["template"]["spec"]["containers"].append({"name": "sidecar", "image": "busybox"})
    live = apply(None, two, manager="kubectl", force=False, schema=DEPLOYMENT, now=T0)
    result = apply(live, deployment(), manager="kubectl", force=False, schema=DEPLOYMENT, now=T1)
    assert [c["name"] for c in result["spec"]["template"]["spec"]["containers"]] == ["nginx"]


def test_reset_fields_are_neither_applied_nor_owned() -> None:
    live = update_managed_fields(None, deployment(), manager="creator", schema=DEPLOYMENT, now=T0)
    live["status"] = {"replicas": 1}
    config = deployment(replicas=1)
    config["status"] = {"replicas": 7}
    result = apply(live, config, manager="kubectl", force=False, schema=DEPLOYMENT, now=T1, reset_fields=("status",))
    assert result["status"] == {"replicas": 1}
    assert not any(p.startswith(".status") for p in owned(result, "kubectl"))
    bumped = copy.deepcopy(result)
    bumped["status"]["replicas"] = 2
    after = update_managed_fields(result, bumped, manager="ctrl", schema=DEPLOYMENT, now=T2, reset_fields=("status",))
    assert ("ctrl", "Update") not in entries(after)
