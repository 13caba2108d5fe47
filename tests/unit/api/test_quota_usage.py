"""Quota arithmetic: what objects cost, which quotas they hit, and kube's refusal messages."""

from __future__ import annotations

import re
from datetime import UTC, datetime
from typing import Any

import pytest

from pocketkube.api import quota as q

NOW = datetime(2026, 11, 25, 18, 0, tzinfo=UTC)


def pod(name: str = "p", *containers: dict[str, Any], init: list[dict[str, Any]] | None = None,
        phase: str = "Pending", **spec: Any) -> dict[str, Any]:
    return {"metadata": {"name": name, "namespace": "ns"},
            "spec": {"containers": list(containers), "initContainers": init or [], **spec},
            "status": {"phase": phase}}


def container(name: str, requests: dict[str, str] | None = None, limits: dict[str, str] | None = None,
              **extra: Any) -> dict[str, Any]:
    return {"name": name, "resources": {"requests": requests or {}, "limits": limits or {}}, **extra}


def quota(hard: dict[str, str], used: dict[str, str] | None = None, name: str = "q1", **spec: Any) -> dict[str, Any]:
    status: dict[str, Any] = {"hard": hard}
    if used is not None:
        status["used"] = used
    return {"metadata": {"name": name, "namespace": "ns"}, "spec": {"hard": hard, **spec}, "status": status}


def fmt(rl: q.ResourceList) -> dict[str, str]:
    return q.format_list(rl)


def test_pod_usage_sums_containers_and_takes_init_peaks() -> None:
    p = pod("p", container("a", {"cpu": "200m", "memory": "64Mi"}, {"cpu": "500m", "memory": "128Mi"}),
            container("b", {"cpu": "300m"}),
            init=[container("i", {"cpu": "2"}), container("side", {"cpu": "100m"}, restartPolicy="Always")])
    used = fmt(q.pod_usage(p, NOW))
    # containers 500m + sidecar 100m = 600m, but the init container alone needs 2 (plus no sidecar before it)
    assert used["requests.cpu"] == "2" and used["cpu"] == "2"
    assert used["requests.memory"] == "64Mi" and used["limits.memory"] == "128Mi"
    assert used["pods"] == "1" and used["count/pods"] == "1"


def test_terminal_pods_count_only_as_objects() -> None:
    p = pod("p", container("a", {"cpu": "1"}), phase="Succeeded")
    assert fmt(q.pod_usage(p, NOW)) == {"count/pods": "1"}


def test_service_and_claim_usage() -> None:
    svc = {"spec": {"type": "NodePort", "ports": [{"port": 80}, {"port": 443}]}}
    assert fmt(q.service_usage(svc)) == {"count/services": "1", "services": "1", "services.loadbalancers": "0",
                                         "services.nodeports": "2"}
    pvc = {"spec": {"storageClassName": "fast", "resources": {"requests": {"storage": "1.5Gi"}}}}
    used = fmt(q.pvc_usage(pvc))
    assert used["requests.storage"] == "1536Mi"
    assert used["fast.storageclass.storage.k8s.io/requests.storage"] == "1536Mi"
    assert used["fast.storageclass.storage.k8s.io/persistentvolumeclaims"] == "1"
    assert fmt(q.usage("", "configmaps", {}, NOW)) == {"configmaps": "1", "count/configmaps": "1"}
    assert fmt(q.usage("apps", "deployments", {}, NOW)) == {"count/deployments.apps": "1"}


def test_exceeded_message_is_kubes() -> None:
    quotas = [quota({"requests.cpu": "1", "pods": "10"}, {"requests.cpu": "800m", "pods": "2"})]
    p = pod("p", container("c1", {"cpu": "500m"}))
    with pytest.raises(q.QuotaRefused) as e:
        q.check_request(quotas, "", "pods", "create", p, None, NOW)
    assert str(e.value) == ("exceeded quota: q1, requested: requests.cpu=500m, used: requests.cpu=800m, "
                            "limited: requests.cpu=1")


def test_charge_returns_new_usage_and_zero_plus_binary_keeps_binary() -> None:
    quotas = [quota({"requests.memory": "1Gi", "pods": "3"}, {"requests.memory": "0", "pods": "0"}),
              quota({"count/configmaps": "1"}, {"count/configmaps": "0"}, name="other")]
    p = pod("p", container("c1", {"memory": "128Mi"}))
    plan = q.check_request(quotas, "", "pods", "create", p, None, NOW)
    assert list(plan) == [0]
    assert fmt(plan[0]) == {"pods": "1", "requests.memory": "128Mi"}


def test_must_specify_limits() -> None:
    quotas = [quota({"limits.cpu": "2", "requests.memory": "1Gi"}, {"limits.cpu": "0", "requests.memory": "0"})]
    p = pod("p", container("c1", {"memory": "1Mi"}), container("c2"))
    with pytest.raises(q.QuotaRefused) as e:
        q.check_request(quotas, "", "pods", "create", p, None, NOW)
    assert str(e.value) == "failed quota: q1: must specify limits.cpu for: c1,c2; requests.memory for: c2"


def test_quota_without_usage_yet_refuses() -> None:
    with pytest.raises(q.QuotaRefused) as e:
        q.check_request([quota({"pods": "1", "count/pods": "1"})], "", "pods", "create", pod("p", container("c")),
                        None, NOW)
    assert str(e.value) == "status unknown for quota: q1, resources: count/pods,pods"


def test_updates_charge_only_growth() -> None:
    quotas = [quota({"requests.storage": "10Gi"}, {"requests.storage": "8Gi"})]
    old = {"metadata": {"name": "c", "resourceVersion": "5"}, "spec": {"resources": {"requests": {"storage": "1Gi"}}}}
    new = {"metadata": {"name": "c"}, "spec": {"resources": {"requests": {"storage": "2Gi"}}}}
    plan = q.check_request(quotas, "", "persistentvolumeclaims", "update", new, old, NOW)
    assert fmt(plan[0]) == {"requests.storage": "9Gi"}
    assert q.check_request(quotas, "", "persistentvolumeclaims", "update", old, new, NOW) == {}
    new["spec"]["resources"]["requests"]["storage"] = "4Gi"
    with pytest.raises(q.QuotaRefused, match=re.escape("requested: requests.storage=3Gi, used: requests.storage=8Gi")):
        q.check_request(quotas, "", "persistentvolumeclaims", "update", new, old, NOW)


def test_scopes_select_pods() -> None:
    best_effort = quota({"pods": "1"}, {"pods": "1"}, scopes=["BestEffort"])
    guaranteed = pod("g", container("c", {"cpu": "1"}, {"cpu": "1"}))
    assert q.check_request([best_effort], "", "pods", "create", guaranteed, None, NOW) == {}
    with pytest.raises(q.QuotaRefused):
        q.check_request([best_effort], "", "pods", "create", pod("b", container("c")), None, NOW)
    by_class = quota({"pods": "5"}, {"pods": "0"},
                     scopeSelector={"matchExpressions": [{"scopeName": "PriorityClass", "operator": "In",
                                                          "values": ["high"]}]})
    assert q.check_request([by_class], "", "pods", "create", pod("x", container("c")), None, NOW) == {}
    high = pod("h", container("c"), priorityClassName="high")
    assert fmt(q.check_request([by_class], "", "pods", "create", high, None, NOW)[0]) == {"pods": "1"}
    # scoped quotas never match other kinds
    assert q.check_request([quota({"services": "0"}, {"services": "0"}, scopes=["BestEffort"])], "", "services",
                           "create", {"spec": {}}, None, NOW) == {}


def test_namespace_usage_fills_every_hard_name() -> None:
    qo = quota({"pods": "10", "requests.cpu": "4", "count/secrets": "5", "services.nodeports": "2"})
    objects = {("", "pods"): [pod("a", container("c", {"cpu": "250m"})),
                              pod("b", container("c", {"cpu": "1"}), phase="Failed")],
               ("", "secrets"): [{}, {}],
               ("", "services"): [{"spec": {"type": "ClusterIP", "ports": [{"port": 1}]}}]}
    used = q.namespace_usage(qo, q.parse_list(qo["spec"]["hard"]), objects, NOW)
    assert fmt(used) == {"count/secrets": "2", "pods": "1", "requests.cpu": "250m", "services.nodeports": "0"}


def test_events_are_never_charged() -> None:
    assert not q.handles("", "events", "create")
    assert q.handles("", "pods", "create") and not q.handles("", "pods", "update")
    assert q.handles("", "services", "update") and not q.handles("", "configmaps", "update")
