"""LimitRanger: container defaults with kube's annotation, and min/max/ratio messages."""

from __future__ import annotations

from typing import Any

from pocketkube.apiserver.limitranger import ANNOTATION, aggregate, default_pod, validate_claim, validate_pod


def limit_range(*limits: dict[str, Any]) -> dict[str, Any]:
    return {"metadata": {"name": "lr"}, "spec": {"limits": list(limits)}}


def pod(*containers: dict[str, Any], init: list[dict[str, Any]] | None = None) -> dict[str, Any]:
    return {"metadata": {"name": "p"}, "spec": {"containers": list(containers), "initContainers": init or []}}


def test_defaults_fill_only_what_is_missing_and_annotate() -> None:
    lr = limit_range({"type": "Container", "default": {"cpu": "500m", "memory": "0.25Gi"},
                      "defaultRequest": {"cpu": "100m"}})
    p = pod({"name": "a", "resources": {"limits": {"cpu": "1"}, "requests": {"cpu": "1"}}}, {"name": "b"},
            init=[{"name": "i"}])
    assert default_pod(lr, p)
    a, b = p["spec"]["containers"]
    assert a["resources"] == {"limits": {"cpu": "1", "memory": "256Mi"}, "requests": {"cpu": "1"}}
    assert b["resources"] == {"limits": {"cpu": "500m", "memory": "256Mi"}, "requests": {"cpu": "100m"}}
    assert p["metadata"]["annotations"][ANNOTATION] == (
        "LimitRanger plugin set: memory limit for container a; cpu request for container b; "
        "cpu, memory limit for container b; cpu request for init container i; cpu, memory limit for init container i")
    assert not default_pod(lr, p)


def test_container_bounds_messages() -> None:
    lr = limit_range({"type": "Container", "max": {"cpu": "1"}, "min": {"memory": "64Mi"},
                      "maxLimitRequestRatio": {"cpu": "4"}})
    big = pod({"name": "c", "resources": {"limits": {"cpu": "2", "memory": "1Gi"}, "requests": {"cpu": "100m", "memory": "32Mi"}}})
    assert validate_pod(lr, big) == [
        "minimum memory usage per Container is 64Mi, but request is 32Mi",
        "maximum cpu usage per Container is 1, but limit is 2",
        "cpu max limit to request ratio per Container is 4, but provided ratio is 20.000000",
    ]
    bare = pod({"name": "c"})
    assert validate_pod(lr, bare) == [
        "minimum memory usage per Container is 64Mi.  No request is specified",
        "maximum cpu usage per Container is 1.  No limit is specified",
        "cpu max limit to request ratio per Container is 4, but no request is specified or request is 0",
    ]
    assert aggregate(["a"]) == "a"
    assert aggregate(["a", "b", "a"]) == "[a, b]"


def test_pod_bounds_sum_containers() -> None:
    lr = limit_range({"type": "Pod", "max": {"cpu": "1"}})
    p = pod({"name": "a", "resources": {"limits": {"cpu": "600m"}}}, {"name": "b", "resources": {"limits": {"cpu": "600m"}}})
    assert validate_pod(lr, p) == ["maximum cpu usage per Pod is 1, but limit is 1200m"]


def test_claim_bounds() -> None:
    lr = limit_range({"type": "PersistentVolumeClaim", "min": {"storage": "1Gi"}, "max": {"storage": "2Gi"}})
    claim = {"spec": {"resources": {"requests": {"storage": "5Gi"}}}}
    assert validate_claim(lr, claim) == ["maximum storage usage per PersistentVolumeClaim is 2Gi, but request is 5Gi"]
    claim["spec"]["resources"]["requests"]["storage"] = "500Mi"
    assert validate_claim(lr, claim) == ["minimum storage usage per PersistentVolumeClaim is 1Gi, but request is 500Mi"]
