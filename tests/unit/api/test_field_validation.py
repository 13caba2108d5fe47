"""Strict field validation: unknown fields, wrong JSON types, duplicate keys, kube's wording."""

from __future__ import annotations

from typing import Any

import pytest

from pocketkube.api import field_validation as fv
from pocketkube.api import schema as k8s_schema


def _schema(group: str, version: str, kind: str) -> dict[str, Any]:
    found = k8s_schema.definition_for(group, version, kind)
    assert found is not None
    return found


POD = _schema("", "v1", "Pod")
DEPLOYMENT = _schema("apps", "v1", "Deployment")


def _pod(**container: Any) -> dict[str, Any]:
    return {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "p"},
            "spec": {"containers": [{"name": "c", "image": "nginx", **container}]}}


def test_valid_pod_has_no_problems() -> None:
    pod = _pod(resources={"limits": {"cpu": 1, "memory": "1Gi"}}, ports=[{"containerPort": 80}],
               env=[{"name": "A", "value": "b"}])
    pod["metadata"].update(labels={"app": "x"}, annotations={"a/b": "c"},
                           managedFields=[{"manager": "m", "fieldsV1": {"f:metadata": {"f:labels": {}}}}])
    pod["spec"]["nodeSelector"] = {"disk": "ssd"}
    pod["status"] = {"phase": "Running", "podIP": None}
    assert fv.check(pod, POD) == fv.FieldProblems()


def test_unknown_fields_are_reported_with_kube_paths() -> None:
    pod = _pod(imagePullPolicyy="Always")
    pod["spec"]["foo"] = {"nested": 1}  # the whole subtree is one unknown field
    pod["metadata"]["bogus"] = 1
    assert fv.unknown_fields(pod, POD) == ["metadata.bogus", "spec.containers[0].imagePullPolicyy", "spec.foo"]


def test_maps_and_int_or_string_accept_anything_they_should() -> None:
    deployment: dict[str, Any] = {"spec": {"selector": {"matchLabels": {"any-key": "v"}},
                           "strategy": {"rollingUpdate": {"maxSurge": "25%", "maxUnavailable": 1}},
                           "template": {"metadata": {"labels": {"k": "v"}}, "spec": {"containers": []}}}}
    assert fv.check(deployment, DEPLOYMENT) == fv.FieldProblems()
    deployment["spec"]["strategy"]["rollingUpdate"]["maxSurge"] = True
    [(path, _)] = fv.type_errors(deployment, DEPLOYMENT)
    assert path == "spec.strategy.rollingUpdate.maxSurge"


def test_type_errors_read_like_go_json_decoding() -> None:
    pod = _pod(image=5, ports=[{"containerPort": "80"}])
    pod["spec"]["terminationGracePeriodSeconds"] = 1.5
    assert fv.type_errors(pod, POD) == [
        ("spec.containers[0].image",
         "json: cannot unmarshal number into Go struct field Container.spec.containers.image of type string"),
        ("spec.containers[0].ports[0].containerPort",
         "json: cannot unmarshal string into Go struct field ContainerPort.spec.containers.ports.containerPort "
         "of type int32"),
        ("spec.terminationGracePeriodSeconds",
         "json: cannot unmarshal number 1.5 into Go struct field PodSpec.spec.terminationGracePeriodSeconds "
         "of type int64"),
    ]
    assert fv.type_errors({"spec": "x"}, POD) == [
        ("spec", "json: cannot unmarshal string into Go struct field Pod.spec of type v1.PodSpec")]
    assert fv.type_errors({"spec": {"containers": {}}}, POD) == [
        ("spec.containers",
         "json: cannot unmarshal object into Go struct field PodSpec.spec.containers of type []v1.Container")]

    assert fv.type_errors([1], DEPLOYMENT) == [
        ("", "json: cannot unmarshal array into Go value of type v1.Deployment")]


def test_deep_recursive_schemas_do_not_crash() -> None:
    crd = _schema("apiextensions.k8s.io", "v1", "CustomResourceDefinition")
    props: dict[str, Any] = {}
    node = props
    for _ in range(3000):
        node["properties"] = {"x": {}}
        node = node["properties"]["x"]
    obj = {"spec": {"versions": [{"name": "v1", "schema": {"openAPIV3Schema": props}}]}}
    assert fv.type_errors(obj, crd) == [("", "json: exceeded max depth")]


def test_booleans_are_not_integers_but_integers_are_numbers() -> None:
    assert fv.type_errors({"spec": {"replicas": True}}, DEPLOYMENT)
    assert not fv.type_errors({"spec": {"replicas": None}}, DEPLOYMENT)
    quantity = {"spec": {"containers": [{"name": "c", "resources": {"requests": {"cpu": 0.5}}}]}}
    assert not fv.type_errors(quantity, POD)


CRD_SCHEMA: dict[str, Any] = {
    "type": "object",
    "properties": {"spec": {"type": "object", "properties": {
        "replicas": {"type": "integer"},
        "closed": {"type": "object"},
        "open": {"type": "object", "x-kubernetes-preserve-unknown-fields": True,
                 "properties": {"n": {"type": "integer"}}},
        "port": {"x-kubernetes-int-or-string": True},
        "labels": {"type": "object", "additionalProperties": {"type": "string"}},
        "inner": {"type": "object", "x-kubernetes-embedded-resource": True,
                  "x-kubernetes-preserve-unknown-fields": True},
    }}},
}


def test_custom_resources_use_structural_semantics() -> None:
    schema = fv.custom_resource_schema(CRD_SCHEMA, group="example.com", version="v1", kind="Widget")
    obj = {"apiVersion": "example.com/v1", "kind": "Widget",
           "metadata": {"name": "w", "bad": 1, "managedFields": [{"fieldsV1": {"f:spec": {}}}]},
           "spec": {"replicas": "2", "closed": {"a": 1}, "open": {"b": {"c": 1}, "n": "x"}, "port": "http",
                    "labels": {"k": "v"}, "inner": {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "x"}},
                    "zz": 1}}
    found = fv.check(obj, schema, custom=True)
    assert found.unknown == ["metadata.bad", "spec.closed.a", "spec.zz"]
    assert found.type_errors == [
        ("spec.replicas", 'spec.replicas in body must be of type integer: "string"'),
        ("spec.open.n", 'spec.open.n in body must be of type integer: "string"'),
    ]
    anything = fv.custom_resource_schema(None, group="example.com", version="v1", kind="Widget")
    assert fv.check({"spec": {"whatever": [1, {"x": 2}]}}, anything, custom=True) == fv.FieldProblems()


@pytest.mark.parametrize(("raw", "expected"), [
    (b'{"a": 1, "b": 2}', []),
    (b'{"a": 1, "a": 2, "a": 3}', ["a"]),
    (b'{"metadata": {"name": "x", "name": "y"}, "spec": {"containers": [{"image": "a"}, {"n": 1, "n": 2}]}}',
     ["metadata.name", "spec.containers[1].n"]),
    (b"not json", []),
])
def test_duplicate_fields(raw: bytes, expected: list[str]) -> None:
    assert fv.duplicate_fields(raw) == expected


def test_messages_match_kube_apiserver() -> None:
    problems = fv.field_problems(unknown=["spec.foo", "spec.bar"], duplicate=["metadata.name"])
    assert fv.strict_decoding_error(problems) == (
        'strict decoding error: duplicate field "metadata.name", unknown field "spec.foo", '
        'unknown field "spec.bar"')
    assert fv.cannot_be_handled("Pod", "v1", "strict decoding error: x") == \
        'Pod in version "v1" cannot be handled as a Pod: strict decoding error: x'
    assert fv.warning_header('unknown field "spec.foo"') == '299 - "unknown field \\"spec.foo\\""'
