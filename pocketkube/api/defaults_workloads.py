"""Defaults of the workload kinds: apps/v1 and batch/v1 (kube's SetDefaults_Deployment, _Job...).

Each function takes the whole object and defaults it in place, including its pod template through
defaults_pod. Called from defaults.apply_defaults.
"""

from __future__ import annotations

from typing import Any

from pocketkube.api.defaults_pod import Obj, default_pod_template, dig, ensure_dict
from pocketkube.api.defaults_pod import dict_items as dicts

MAX_INT32 = 2**31 - 1


def default_deployment(obj: Obj) -> None:
    spec = ensure_dict(obj, "spec")
    if spec.get("replicas") is None:
        spec["replicas"] = 1
    strategy = ensure_dict(spec, "strategy")
    if not strategy.get("type"):
        strategy["type"] = "RollingUpdate"
    if strategy["type"] == "RollingUpdate":
        rolling = ensure_dict(strategy, "rollingUpdate")
        if rolling.get("maxUnavailable") is None:
            rolling["maxUnavailable"] = "25%"
        if rolling.get("maxSurge") is None:
            rolling["maxSurge"] = "25%"
    if spec.get("revisionHistoryLimit") is None:
        spec["revisionHistoryLimit"] = 10
    if spec.get("progressDeadlineSeconds") is None:
        spec["progressDeadlineSeconds"] = 600
    default_pod_template(spec.get("template"))


def default_replica_set(obj: Obj) -> None:
    spec = ensure_dict(obj, "spec")
    if spec.get("replicas") is None:
        spec["replicas"] = 1
    default_pod_template(spec.get("template"))


def default_daemon_set(obj: Obj) -> None:
    spec = ensure_dict(obj, "spec")
    strategy = ensure_dict(spec, "updateStrategy")
    if not strategy.get("type"):
        strategy["type"] = "RollingUpdate"
    if strategy["type"] == "RollingUpdate":
        rolling = ensure_dict(strategy, "rollingUpdate")
        if rolling.get("maxUnavailable") is None:
            rolling["maxUnavailable"] = 1
        if rolling.get("maxSurge") is None:
            rolling["maxSurge"] = 0
    if spec.get("revisionHistoryLimit") is None:
        spec["revisionHistoryLimit"] = 10
    default_pod_template(spec.get("template"))


def default_stateful_set(obj: Obj) -> None:
    spec = ensure_dict(obj, "spec")
    if not spec.get("podManagementPolicy"):
        spec["podManagementPolicy"] = "OrderedReady"
    strategy = ensure_dict(spec, "updateStrategy")
    if not strategy.get("type"):
        strategy["type"] = "RollingUpdate"
        ensure_dict(strategy, "rollingUpdate")
    rolling = strategy.get("rollingUpdate")
    if strategy["type"] == "RollingUpdate" and isinstance(rolling, dict) and rolling.get("partition") is None:
        rolling["partition"] = 0
    retention = ensure_dict(spec, "persistentVolumeClaimRetentionPolicy")
    for key in ("whenDeleted", "whenScaled"):
        if not retention.get(key):
            retention[key] = "Retain"
    if spec.get("replicas") is None:
        spec["replicas"] = 1
    if spec.get("revisionHistoryLimit") is None:
        spec["revisionHistoryLimit"] = 10
    for claim in dicts(spec.get("volumeClaimTemplates")):
        claim_spec = ensure_dict(claim, "spec")
        if not claim_spec.get("volumeMode"):
            claim_spec["volumeMode"] = "Filesystem"
        status = ensure_dict(claim, "status")
        if not status.get("phase"):
            status["phase"] = "Pending"
    default_pod_template(spec.get("template"))


def default_job(obj: Obj) -> None:
    spec = ensure_dict(obj, "spec")
    # A non-parallel job may leave both unset; then both are 1. Completions stays unset otherwise
    # (a work queue).
    if spec.get("completions") is None and spec.get("parallelism") is None:
        spec["completions"] = 1
        spec["parallelism"] = 1
    if spec.get("parallelism") is None:
        spec["parallelism"] = 1
    if spec.get("backoffLimit") is None:
        spec["backoffLimit"] = MAX_INT32 if spec.get("backoffLimitPerIndex") is not None else 6
    template = spec.get("template")
    labels = dig(template, "metadata", "labels")
    metadata = ensure_dict(obj, "metadata")
    if isinstance(labels, dict) and labels and not metadata.get("labels"):
        metadata["labels"] = dict(labels)
    if not spec.get("completionMode"):
        spec["completionMode"] = "NonIndexed"
    if spec.get("suspend") is None:
        spec["suspend"] = False
    if not spec.get("podReplacementPolicy"):
        spec["podReplacementPolicy"] = "Failed" if spec.get("podFailurePolicy") else "TerminatingOrFailed"
    failure_policy = spec.get("podFailurePolicy")
    if isinstance(failure_policy, dict):
        for rule in dicts(failure_policy.get("rules")):
            for pattern in dicts(rule.get("onPodConditions")):
                if not pattern.get("status"):
                    pattern["status"] = "True"
    default_pod_template(template)


def default_cron_job(obj: Obj) -> None:
    spec = ensure_dict(obj, "spec")
    if not spec.get("concurrencyPolicy"):
        spec["concurrencyPolicy"] = "Allow"
    if spec.get("suspend") is None:
        spec["suspend"] = False
    if spec.get("successfulJobsHistoryLimit") is None:
        spec["successfulJobsHistoryLimit"] = 3
    if spec.get("failedJobsHistoryLimit") is None:
        spec["failedJobsHistoryLimit"] = 1
    job_template: Any = spec.get("jobTemplate")
    if isinstance(job_template, dict):
        job_spec = job_template.get("spec")
        if isinstance(job_spec, dict):
            default_pod_template(job_spec.get("template"))
