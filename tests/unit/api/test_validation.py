"""validate(): kube's field paths and messages for the common mistakes."""

from __future__ import annotations

import copy
from typing import Any

import pytest

from pocketkube.api.cron import parse_schedule, schedule_error
from pocketkube.api.defaults import apply_defaults
from pocketkube.api.errors import Invalid
from pocketkube.api.validation import validate

LABEL_MSG = (
    "a lowercase RFC 1123 label must consist of lower case alphanumeric characters or '-', and must "
    "start and end with an alphanumeric character (e.g. 'my-name',  or '123-abc', regex used for "
    "validation is '[a-z0-9]([-a-z0-9]*[a-z0-9])?')"
)


def _meta(name: str = "x", namespace: str | None = "default") -> dict[str, Any]:
    meta: dict[str, Any] = {"name": name}
    if namespace:
        meta["namespace"] = namespace
    return meta


def _pod_spec(**extra: Any) -> dict[str, Any]:
    return {"containers": [{"name": "c", "image": "nginx"}], **extra}


def _rendered(group: str, kind: str, obj: dict[str, Any], old: dict[str, Any] | None = None) -> list[str]:
    apply_defaults(group, "v1", kind, obj)
    if old is not None:
        apply_defaults(group, "v1", kind, old)
    return [e.render() for e in validate(group, "v1", kind, obj, old)]


def _deployment(**spec: Any) -> dict[str, Any]:
    base = {"selector": {"matchLabels": {"app": "web"}},
            "template": {"metadata": {"labels": {"app": "web"}}, "spec": _pod_spec()}}
    return {"metadata": _meta("web"), "spec": {**base, **spec}}


CASES: list[tuple[str, str, dict[str, Any], list[str]]] = [
    ("", "Pod", {"metadata": _meta("p"), "spec": {}}, ["spec.containers: Required value"]),
    ("", "Pod", {"metadata": {"namespace": "default"}, "spec": _pod_spec()},
     ["metadata.name: Required value: name or generateName is required"]),
    ("", "Pod", {"metadata": {"generateName": "web-", "namespace": "default"}, "spec": _pod_spec()}, []),
    ("", "Pod", {"metadata": {"name": "p"}, "spec": _pod_spec()}, ["metadata.namespace: Required value"]),
    ("", "Pod", {"metadata": _meta("p"), "spec": {"containers": [
        {"name": "Web", "image": "x"}, {"name": "db"}, {"name": "db", "image": "x"}]}},
     [f'spec.containers[0].name: Invalid value: "Web": {LABEL_MSG}', "spec.containers[1].image: Required value",
      'spec.containers[2].name: Duplicate value: "db"']),
    ("", "Pod", {"metadata": _meta("p"), "spec": {"containers": [
        {"name": "c", "image": "x", "ports": [{"containerPort": 70000, "protocol": "ICMP"}]}]}},
     ["spec.containers[0].ports[0].containerPort: Invalid value: 70000: must be between 1 and 65535, inclusive",
      'spec.containers[0].ports[0].protocol: Unsupported value: "ICMP": supported values: "SCTP", "TCP", "UDP"']),
    ("", "Pod", {"metadata": _meta("p"), "spec": _pod_spec(restartPolicy="Sometimes")},
     ['spec.restartPolicy: Unsupported value: "Sometimes": supported values: "Always", "OnFailure", "Never"']),
    ("", "Pod", {"metadata": _meta("p"), "spec": {"containers": [
        {"name": "c", "image": "x", "resources": {"limits": {"cpu": "500m"}, "requests": {"cpu": "1"}}}]}},
     ['spec.containers[0].resources.requests: Invalid value: "1": must be less than or equal to cpu limit of 500m']),
    ("", "Pod", {"metadata": _meta("p"), "spec": {"containers": [
        {"name": "c", "image": "x", "resources": {"limits": {"memory": "lots"}}}]}},
     # requests default to limits on pods, so the bad value is reported twice
     [f'spec.containers[0].resources.{kind}[memory]: Invalid value: "lots": quantities must match the regular '
      "expression '^([+-]?[0-9.]+)([eEinumkKMGTP]*[-+]?[0-9]*)$'" for kind in ("limits", "requests")]),
    ("", "Pod", {"metadata": _meta("p"), "spec": {
        "volumes": [{"name": "a", "emptyDir": {}}, {"name": "a", "emptyDir": {}}],
        "containers": [{"name": "c", "image": "x", "volumeMounts": [{"name": "b", "mountPath": "/b"}],
                        "readinessProbe": {"exec": {"command": ["true"]}, "tcpSocket": {"port": 80}}}]}},
     ['spec.volumes[1].name: Duplicate value: "a"', 'spec.containers[0].volumeMounts[0].name: Not found: "b"',
      "spec.containers[0].readinessProbe.tcpSocket: Forbidden: may not specify more than 1 handler type"]),
    ("apps", "Deployment", _deployment(replicas=-1, template={
        "metadata": {"labels": {"app": "api"}}, "spec": _pod_spec()}),
     ["spec.replicas: Invalid value: -1: must be greater than or equal to 0",
      'spec.template.metadata.labels: Invalid value: map[string]string{"app":"api"}: '
      "`selector` does not match template `labels`"]),
    ("apps", "Deployment", {"metadata": _meta("web"), "spec": {"template": {"spec": _pod_spec()}}},
     ["spec.selector: Required value"]),
    ("apps", "Deployment", _deployment(strategy={"type": "RollingUpdate",
                                                 "rollingUpdate": {"maxUnavailable": 0, "maxSurge": 0}}),
     ["spec.strategy.rollingUpdate.maxUnavailable: Invalid value: 0: may not be 0 when `maxSurge` is 0"]),
    ("batch", "Job", {"metadata": _meta("j"), "spec": {"template": {"spec": _pod_spec()}}},
     ['spec.template.spec.restartPolicy: Required value: valid values: "OnFailure", "Never"']),
    ("batch", "Job", {"metadata": _meta("j"), "spec": {"activeDeadlineSeconds": -1, "podFailurePolicy": {"rules": []},
                                                       "template": {"spec": _pod_spec(restartPolicy="OnFailure")}}},
     ["spec.activeDeadlineSeconds: Invalid value: -1: must be greater than or equal to 0",
      'spec.template.spec.restartPolicy: Invalid value: "OnFailure": only "Never" is supported when '
      "podFailurePolicy is specified"]),
    ("batch", "CronJob", {"metadata": _meta("c"), "spec": {"schedule": "61 * * * *", "jobTemplate": {
        "spec": {"template": {"spec": _pod_spec(restartPolicy="Never")}}}}},
     ['spec.schedule: Invalid value: "61 * * * *": end of range (61) above maximum (59): 61']),
    ("", "Service", {"metadata": _meta("web"), "spec": {"selector": {"app": "web"}}},
     ["spec.ports: Required value"]),
    ("", "Service", {"metadata": _meta("web"), "spec": {"clusterIP": "None"}}, []),
    ("", "Service", {"metadata": _meta("web"), "spec": {"type": "Magic", "ports": [
        {"name": "a", "port": 80}, {"name": "a", "port": 81}]}},
     ['spec.type: Unsupported value: "Magic": supported values: "ClusterIP", "ExternalName", "LoadBalancer", '
      '"NodePort"', 'spec.ports[1].name: Duplicate value: "a"']),
    ("", "Service", {"metadata": _meta("web"), "spec": {"type": "NodePort", "ports": [{"port": 80, "nodePort": 80}]}},
     ["spec.ports[0].nodePort: Invalid value: 80: provided port is not in the valid range. "
      "The range of valid ports is 30000-32767"]),
    ("", "Service", {"metadata": _meta("web"), "spec": {"type": "ExternalName"}}, ["spec.externalName: Required value"]),
    ("", "ConfigMap", {"metadata": _meta("c"), "data": {"a/b": "x"}},
     ['data[a/b]: Invalid value: "a/b": a valid config key must consist of alphanumeric characters, \'-\', \'_\' '
      "or '.' (e.g. 'key.name',  or 'KEY_NAME',  or 'key-name', regex used for validation is '[-._a-zA-Z0-9]+')"]),
    ("", "Secret", {"metadata": _meta("s"), "type": "kubernetes.io/tls", "data": {}},
     ["data[tls.crt]: Required value", "data[tls.key]: Required value"]),
    ("", "Namespace", {"metadata": _meta("Dev", None)}, [f'metadata.name: Invalid value: "Dev": {LABEL_MSG}']),
    ("", "Namespace", {"metadata": _meta("dev")}, ["metadata.namespace: Forbidden: not allowed on this type"]),
    ("coordination.k8s.io", "Lease", {"metadata": _meta("l"), "spec": {"leaseDurationSeconds": 0}},
     ["spec.leaseDurationSeconds: Invalid value: 0: must be greater than 0"]),
    ("", "ResourceQuota", {"metadata": _meta("q"), "spec": {"hard": {"cpu": "-1"}}},
     ['spec.hard[cpu]: Invalid value: "-1": must be greater than or equal to 0']),
    ("", "LimitRange", {"metadata": _meta("l"), "spec": {"limits": [
        {"type": "Container", "min": {"cpu": "2"}, "max": {"cpu": "1"}}]}},
     ["spec.limits[0].min[cpu]: Invalid value: 2: min value 2 is greater than max value 1",
      "spec.limits[0].defaultRequest[cpu]: Invalid value: 1: min value 2 is greater than default request value 1",
      "spec.limits[0].default[cpu]: Invalid value: 1: min value 2 is greater than default value 1"]),
    ("networking.k8s.io", "Ingress", {"metadata": _meta("i"), "spec": {"rules": [
        {"host": "1.2.3.4", "http": {"paths": [{"path": "/", "pathType": "Prefix",
                                                 "backend": {"service": {"name": "s"}}}]}}]}},
     ['spec.rules[0].host: Invalid value: "1.2.3.4": must be a DNS name, not an IP address',
      "spec.rules[0].http.paths[0].backend.service.port: Required value: port name or number is required"]),
    ("rbac.authorization.k8s.io", "Role", {"metadata": _meta("r"), "rules": [{"resources": ["pods"]}]},
     ["rules[0].verbs: Required value: verbs must contain at least one value",
      "rules[0].apiGroups: Required value: resource rules must supply at least one api group"]),
    ("rbac.authorization.k8s.io", "ClusterRole", {"metadata": _meta("a/b", None), "rules": []},
     ["metadata.name: Invalid value: \"a/b\": may not contain '/'"]),
    ("apiextensions.k8s.io", "CustomResourceDefinition", {"metadata": _meta("widgets.example.com", None), "spec": {
        "group": "example.com", "scope": "Global", "names": {"plural": "widgets", "kind": "Widget"},
        "versions": [{"name": "v1", "served": True, "storage": False,
                      "schema": {"openAPIV3Schema": {"type": "object"}}}]}},
     ['spec.scope: Unsupported value: "Global": supported values: "Cluster", "Namespaced"',
      "spec.versions: Invalid value: []apiextensions.CustomResourceDefinitionVersion{...}: "
      "must have exactly one version marked as storage version"]),
    ("example.com", "Widget", {"metadata": _meta("w"), "spec": {"anything": True}}, []),
]


@pytest.mark.parametrize(("group", "kind", "obj", "expected"), CASES, ids=[f"{c[1]}-{i}" for i, c in enumerate(CASES)])
def test_create(group: str, kind: str, obj: dict[str, Any], expected: list[str]) -> None:
    assert _rendered(group, kind, copy.deepcopy(obj)) == expected


def test_invalid_message() -> None:
    obj = _deployment(replicas=-1)
    apply_defaults("apps", "v1", "Deployment", obj)
    errs = validate("apps", "v1", "Deployment", obj)
    assert Invalid("apps", "Deployment", "web", errs).message == (
        'Deployment.apps "web" is invalid: spec.replicas: Invalid value: -1: must be greater than or equal to 0')


def test_labels_and_annotations() -> None:
    obj = {"metadata": {**_meta("c"), "labels": {"a/b/c": "x"}, "annotations": {"k": "x" * 262145}}}
    rendered = _rendered("", "ConfigMap", obj)
    assert rendered[0].startswith('metadata.labels: Invalid value: "a/b/c": a qualified name must consist of')
    assert rendered[1] == "metadata.annotations: Too long: must have at most 262144 bytes"


def test_updates() -> None:
    old = _deployment()
    new = _deployment(selector={"matchLabels": {"app": "web", "v": "2"}})
    new["spec"]["template"]["metadata"]["labels"]["v"] = "2"
    assert _rendered("apps", "Deployment", new, old) == [
        "spec.selector: Invalid value: &LabelSelector{MatchLabels:map[string]string{app: web,v: 2,},"
        "MatchExpressions:[]LabelSelectorRequirement{},}: field is immutable"]

    pod: dict[str, Any] = {"metadata": _meta("p"), "spec": _pod_spec()}
    apply_defaults("", "v1", "Pod", pod)  # clients send back what they read
    image_change = copy.deepcopy(pod)
    image_change["spec"]["containers"][0]["image"] = "nginx:2"
    assert _rendered("", "Pod", image_change, copy.deepcopy(pod)) == []
    env_change = copy.deepcopy(pod)
    env_change["spec"]["containers"][0]["env"] = [{"name": "A", "value": "1"}]
    [message] = _rendered("", "Pod", env_change, copy.deepcopy(pod))
    assert message.startswith("spec: Forbidden: pod updates may not change fields other than "
                              "`spec.containers[*].image`,`spec.initContainers[*].image`,`spec.activeDeadlineSeconds`")

    svc = {"metadata": _meta("s"), "spec": {"clusterIP": "10.0.0.1", "ports": [{"port": 80}]}}
    moved = copy.deepcopy(svc)
    moved["spec"]["clusterIP"] = "10.0.0.2"
    assert _rendered("", "Service", moved, svc) == [
        'spec.clusterIPs[0]: Invalid value: []string{"10.0.0.2"}: may not change once set']

    renamed = {"metadata": _meta("other"), "data": {}}
    assert _rendered("", "ConfigMap", renamed, {"metadata": _meta("c")}) == [
        'metadata.name: Invalid value: "other": field is immutable']


def test_cron() -> None:
    assert schedule_error("*/5 * * * *") is None
    assert schedule_error("@hourly") is None
    assert schedule_error("x * * * *") == 'failed to parse int from x: strconv.Atoi: parsing "x": invalid syntax'
    assert schedule_error("* * *") == "expected exactly 5 fields, found 3: [* * *]"
    import datetime as dt

    assert parse_schedule("30 2 * * *").next_after(dt.datetime(2026, 1, 1, 3, 0)) == dt.datetime(2026, 1, 2, 2, 30)
