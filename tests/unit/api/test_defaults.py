"""apply_defaults: what kube-apiserver fills in, as seen in `kubectl get -o yaml`."""

from __future__ import annotations

from typing import Any

import pytest

from pocketkube.api.defaults import apply_defaults
from pocketkube.api.defaults_pod import image_tag


def _pod(**spec: Any) -> dict[str, Any]:
    return {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "p"}, "spec": spec}


def test_pod_defaults() -> None:
    pod = _pod(containers=[{"name": "c", "image": "nginx", "ports": [{"containerPort": 80}],
                            "livenessProbe": {"httpGet": {"port": 80}}}],
               volumes=[{"name": "cm", "configMap": {"name": "x"}}, {"name": "scratch"},
                        {"name": "h", "hostPath": {"path": "/tmp"}}])
    apply_defaults("", "v1", "Pod", pod)
    spec = pod["spec"]
    assert {k: spec[k] for k in ("restartPolicy", "dnsPolicy", "terminationGracePeriodSeconds", "schedulerName",
                                 "securityContext", "enableServiceLinks", "preemptionPolicy", "priority")} == {
        "restartPolicy": "Always", "dnsPolicy": "ClusterFirst", "terminationGracePeriodSeconds": 30,
        "schedulerName": "default-scheduler", "securityContext": {}, "enableServiceLinks": True,
        "preemptionPolicy": "PreemptLowerPriority", "priority": 0}
    c = spec["containers"][0]
    assert c["imagePullPolicy"] == "Always"
    assert c["terminationMessagePath"] == "/dev/termination-log"
    assert c["terminationMessagePolicy"] == "File"
    assert c["resources"] == {}
    assert c["ports"] == [{"containerPort": 80, "protocol": "TCP"}]
    assert c["livenessProbe"] == {"httpGet": {"port": 80, "path": "/", "scheme": "HTTP"}, "timeoutSeconds": 1,
                                  "periodSeconds": 10, "successThreshold": 1, "failureThreshold": 3}
    assert spec["volumes"] == [{"name": "cm", "configMap": {"name": "x", "defaultMode": 420}},
                               {"name": "scratch", "emptyDir": {}},
                               {"name": "h", "hostPath": {"path": "/tmp", "type": ""}}]


@pytest.mark.parametrize(
    ("image", "policy"),
    [("nginx", "Always"), ("nginx:latest", "Always"), ("nginx:1.27", "IfNotPresent"),
     ("reg:5000/nginx", "Always"), ("reg:5000/nginx:1", "IfNotPresent"),
     ("nginx@sha256:abc", "IfNotPresent"), ("nginx:latest@sha256:abc", "Always")],
)
def test_image_pull_policy(image: str, policy: str) -> None:
    pod = _pod(containers=[{"name": "c", "image": image}])
    apply_defaults("", "v1", "Pod", pod)
    assert pod["spec"]["containers"][0]["imagePullPolicy"] == policy
    assert image_tag("nginx") == ("latest", "")


def test_requests_default_to_limits_only_on_pods() -> None:
    pod = _pod(containers=[{"name": "c", "image": "x", "resources": {"limits": {"cpu": "1"}}}])
    apply_defaults("", "v1", "Pod", pod)
    assert pod["spec"]["containers"][0]["resources"]["requests"] == {"cpu": "1"}


def test_deployment_defaults() -> None:
    d: dict[str, Any] = {"spec": {"template": {"spec": {"containers": [{"name": "c", "image": "x:1"}]}}}}
    apply_defaults("apps", "v1", "Deployment", d)
    spec = d["spec"]
    assert spec["replicas"] == 1
    assert spec["strategy"] == {"type": "RollingUpdate", "rollingUpdate": {"maxUnavailable": "25%", "maxSurge": "25%"}}
    assert spec["revisionHistoryLimit"] == 10 and spec["progressDeadlineSeconds"] == 600
    tspec = spec["template"]["spec"]
    assert tspec["restartPolicy"] == "Always" and tspec["containers"][0]["imagePullPolicy"] == "IfNotPresent"
    assert "enableServiceLinks" not in tspec and "priority" not in tspec


def test_workload_defaults() -> None:
    ds: dict[str, Any] = {"spec": {}}
    apply_defaults("apps", "v1", "DaemonSet", ds)
    assert ds["spec"]["updateStrategy"] == {"type": "RollingUpdate", "rollingUpdate": {"maxUnavailable": 1, "maxSurge": 0}}
    sts: dict[str, Any] = {"spec": {}}
    apply_defaults("apps", "v1", "StatefulSet", sts)
    assert sts["spec"]["updateStrategy"] == {"type": "RollingUpdate", "rollingUpdate": {"partition": 0}}
    assert sts["spec"]["podManagementPolicy"] == "OrderedReady"
    assert sts["spec"]["persistentVolumeClaimRetentionPolicy"] == {"whenDeleted": "Retain", "whenScaled": "Retain"}
    job: dict[str, Any] = {"spec": {"template": {"metadata": {"labels": {"a": "b"}}, "spec": {}}}}
    apply_defaults("batch", "v1", "Job", job)
    assert {k: job["spec"][k] for k in ("parallelism", "completions", "backoffLimit", "completionMode", "suspend")} == {
        "parallelism": 1, "completions": 1, "backoffLimit": 6, "completionMode": "NonIndexed", "suspend": False}
    assert job["metadata"]["labels"] == {"a": "b"}
    work_queue: dict[str, Any] = {"spec": {"parallelism": 3}}
    apply_defaults("batch", "v1", "Job", work_queue)
    assert "completions" not in work_queue["spec"]
    cj: dict[str, Any] = {"spec": {"jobTemplate": {"spec": {"template": {"spec": {}}}}}}
    apply_defaults("batch", "v1", "CronJob", cj)
    assert cj["spec"]["concurrencyPolicy"] == "Allow" and cj["spec"]["successfulJobsHistoryLimit"] == 3
    assert cj["spec"]["failedJobsHistoryLimit"] == 1 and cj["spec"]["suspend"] is False
    assert cj["spec"]["jobTemplate"]["spec"]["template"]["spec"]["restartPolicy"] == "Always"


def test_service_defaults() -> None:
    svc: dict[str, Any] = {"spec": {"type": "NodePort", "ports": [{"port": 80}]}}
    apply_defaults("", "v1", "Service", svc)
    assert svc["spec"] == {
        "type": "NodePort", "ports": [{"port": 80, "protocol": "TCP", "targetPort": 80}],
        "sessionAffinity": "None", "externalTrafficPolicy": "Cluster", "internalTrafficPolicy": "Cluster",
        "ipFamilyPolicy": "SingleStack", "ipFamilies": ["IPv4"]}
    ext: dict[str, Any] = {"spec": {"type": "ExternalName", "externalName": "a.example.com"}}
    apply_defaults("", "v1", "Service", ext)
    assert "ipFamilies" not in ext["spec"] and "internalTrafficPolicy" not in ext["spec"]


def test_core_defaults() -> None:
    ns: dict[str, Any] = {"metadata": {"name": "dev"}}
    apply_defaults("", "v1", "Namespace", ns)
    assert ns["spec"] == {"finalizers": ["kubernetes"]} and ns["status"] == {"phase": "Active"}
    assert ns["metadata"]["labels"] == {"kubernetes.io/metadata.name": "dev"}
    secret: dict[str, Any] = {}
    apply_defaults("", "v1", "Secret", secret)
    assert secret["type"] == "Opaque"
    pvc: dict[str, Any] = {"spec": {}}
    apply_defaults("", "v1", "PersistentVolumeClaim", pvc)
    assert pvc["spec"]["volumeMode"] == "Filesystem"
    pv: dict[str, Any] = {"spec": {}}
    apply_defaults("", "v1", "PersistentVolume", pv)
    assert pv["spec"]["persistentVolumeReclaimPolicy"] == "Retain"
    rb: dict[str, Any] = {"roleRef": {"kind": "Role", "name": "r"},
                          "subjects": [{"kind": "User", "name": "u"}, {"kind": "ServiceAccount", "name": "s"}]}
    apply_defaults("rbac.authorization.k8s.io", "v1", "RoleBinding", rb)
    assert rb["roleRef"]["apiGroup"] == "rbac.authorization.k8s.io"
    assert [s["apiGroup"] for s in rb["subjects"]] == ["rbac.authorization.k8s.io", ""]
    unknown: dict[str, Any] = {"spec": {}}
    apply_defaults("example.com", "v1", "Widget", unknown)
    assert unknown == {"spec": {}}
