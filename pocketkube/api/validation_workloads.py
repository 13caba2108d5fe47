"""Validation of apps/v1 and batch/v1 workloads (kube's pkg/apis/apps/validation, batch/validation).

Selector and template rules shared by every controller-owned kind, rolling-update knobs, Job
completion modes and CronJob schedules; create and update (`old` given) rules both here.
"""

from __future__ import annotations

from typing import Any

from pocketkube.api import cron, names
from pocketkube.api.validation_common import (
    IMMUTABLE,
    Errors,
    GoLiteral,
    Obj,
    as_dict,
    enum,
    forbidden,
    go_label_selector,
    go_string_map,
    invalid,
    non_negative,
    not_supported,
    required,
    selector_is_empty,
    selector_matches,
    validate_annotations,
    validate_label_selector,
    validate_labels,
    wrap,
)
from pocketkube.api.validation_pod import validate_pod_template

SELECTOR_MISMATCH = "`selector` does not match template `labels`"


def go_int_or_string(value: Any) -> GoLiteral:
    """An intstr.IntOrString as field errors print it: its String(), unquoted ("25%", "0")."""
    if isinstance(value, str):
        return GoLiteral(value)
    return GoLiteral(str(value if isinstance(value, int) else 0))


def _validate_int_or_percent(value: Any, path: str) -> Errors:
    if isinstance(value, str):
        return wrap(path, names.is_valid_percent(value), go_int_or_string(value))
    return non_negative(path, value)


def _percent_or_int(value: Any) -> int:
    if isinstance(value, str) and value.endswith("%") and value[:-1].isdigit():
        return int(value[:-1])
    return value if isinstance(value, int) else 0


def _not_more_than_100_percent(value: Any, path: str) -> Errors:
    if isinstance(value, str) and _percent_or_int(value) > 100:
        return [invalid(path, go_int_or_string(value), "must not be greater than 100%")]
    return []


def _selector_and_template(spec: Obj, what: str, *, restart: tuple[str, ...] | None = ("Always",),
                           kind_name: str = "", require_selector: bool = True, prefix: str = "spec") -> Errors:
    """Selector present, not empty, matching the template labels; then the template itself."""
    errs: Errors = []
    selector = spec.get("selector")
    if selector is None:
        if require_selector:
            errs.append(required(f"{prefix}.selector"))
    else:
        errs += validate_label_selector(selector, f"{prefix}.selector")
        if selector_is_empty(selector) and what:
            errs.append(invalid(f"{prefix}.selector", go_label_selector(selector), f"empty selector is invalid for {what}"))
    template = spec.get("template")
    if isinstance(template, dict):
        labels = as_dict(template.get("metadata")).get("labels")
        if selector is not None and not selector_is_empty(selector) and not selector_matches(selector, labels):
            errs.append(invalid(f"{prefix}.template.metadata.labels", go_string_map(labels), SELECTOR_MISMATCH))
    errs += validate_pod_template(template, f"{prefix}.template")
    if isinstance(template, dict) and restart is not None:
        tspec = as_dict(template.get("spec"))
        policy = tspec.get("restartPolicy")
        if policy and policy not in restart:
            errs.append(not_supported(f"{prefix}.template.spec.restartPolicy", policy, restart))
        if kind_name and tspec.get("activeDeadlineSeconds") is not None:
            errs.append(forbidden(f"{prefix}.template.spec.activeDeadlineSeconds",
                                  f"activeDeadlineSeconds in {kind_name} is not Supported"))
    return errs


def _immutable_selector(new: Obj, old: Obj) -> Errors:
    new_sel = as_dict(new.get("spec")).get("selector")
    if new_sel != as_dict(old.get("spec")).get("selector"):
        return [invalid("spec.selector", go_label_selector(new_sel), IMMUTABLE)]
    return []


def validate_deployment(obj: Obj, old: Obj | None) -> Errors:
    spec = as_dict(obj.get("spec"))
    errs = non_negative("spec.replicas", spec.get("replicas"))
    errs += _selector_and_template(spec, "deployment", kind_name="ReplicaSet")
    strategy = as_dict(spec.get("strategy"))
    stype = strategy.get("type")
    errs += enum("spec.strategy.type", stype, ("Recreate", "RollingUpdate"))
    rolling = strategy.get("rollingUpdate")
    if stype == "Recreate" and rolling is not None:
        errs.append(forbidden("spec.strategy.rollingUpdate", "may not be specified when strategy `type` is 'Recreate'"))
    elif stype == "RollingUpdate":
        if not isinstance(rolling, dict):
            errs.append(required("spec.strategy.rollingUpdate", "this should be defaulted and never be nil"))
        else:
            path = "spec.strategy.rollingUpdate"
            unavailable, surge = rolling.get("maxUnavailable"), rolling.get("maxSurge")
            errs += _validate_int_or_percent(unavailable, f"{path}.maxUnavailable")
            errs += _validate_int_or_percent(surge, f"{path}.maxSurge")
            if _percent_or_int(unavailable) == 0 and _percent_or_int(surge) == 0:
                errs.append(invalid(f"{path}.maxUnavailable", go_int_or_string(unavailable),
                                    "may not be 0 when `maxSurge` is 0"))
            errs += _not_more_than_100_percent(unavailable, f"{path}.maxUnavailable")
    for key in ("minReadySeconds", "revisionHistoryLimit", "progressDeadlineSeconds"):
        errs += non_negative(f"spec.{key}", spec.get(key))
    deadline, min_ready = spec.get("progressDeadlineSeconds"), spec.get("minReadySeconds") or 0
    if isinstance(deadline, int) and isinstance(min_ready, int) and deadline <= min_ready:
        errs.append(invalid("spec.progressDeadlineSeconds", deadline, "must be greater than minReadySeconds"))
    if old is not None:
        errs += _immutable_selector(obj, old)
    return errs


def validate_replica_set(obj: Obj, old: Obj | None) -> Errors:
    spec = as_dict(obj.get("spec"))
    errs = non_negative("spec.replicas", spec.get("replicas"))
    errs += non_negative("spec.minReadySeconds", spec.get("minReadySeconds"))
    errs += _selector_and_template(spec, "deployment", kind_name="ReplicaSet")
    if old is not None:
        errs += _immutable_selector(obj, old)
    return errs


def validate_daemon_set(obj: Obj, old: Obj | None) -> Errors:
    spec = as_dict(obj.get("spec"))
    errs = _selector_and_template(spec, "daemonset", kind_name="DaemonSet")
    for key in ("minReadySeconds", "revisionHistoryLimit"):
        errs += non_negative(f"spec.{key}", spec.get(key))
    strategy = as_dict(spec.get("updateStrategy"))
    stype = strategy.get("type")
    errs += enum("spec.updateStrategy.type", stype, ("OnDelete", "RollingUpdate"))
    if stype == "RollingUpdate":
        rolling = strategy.get("rollingUpdate")
        path = "spec.updateStrategy.rollingUpdate"
        if not isinstance(rolling, dict):
            errs.append(required(path))
        else:
            unavailable, surge = rolling.get("maxUnavailable"), rolling.get("maxSurge")
            errs += _validate_int_or_percent(unavailable, f"{path}.maxUnavailable")
            errs += _validate_int_or_percent(surge, f"{path}.maxSurge")
            errs += _not_more_than_100_percent(unavailable, f"{path}.maxUnavailable")
            errs += _not_more_than_100_percent(surge, f"{path}.maxSurge")
            has_unavailable, has_surge = _percent_or_int(unavailable) != 0, _percent_or_int(surge) != 0
            if has_unavailable and has_surge:
                errs.append(invalid(f"{path}.maxSurge", go_int_or_string(surge),
                                    "may not be set when maxUnavailable is non-zero"))
            elif not has_unavailable and not has_surge:
                errs.append(required(f"{path}.maxUnavailable", "cannot be 0 when maxSurge is 0"))
    if old is not None:
        errs += _immutable_selector(obj, old)
    return errs


_STS_MUTABLE = ("replicas", "ordinals", "template", "updateStrategy", "persistentVolumeClaimRetentionPolicy",
                "minReadySeconds")


def validate_stateful_set(obj: Obj, old: Obj | None) -> Errors:
    spec = as_dict(obj.get("spec"))
    errs: Errors = []
    policy = spec.get("podManagementPolicy")
    if not policy:
        errs.append(required("spec.podManagementPolicy"))
    elif policy not in ("OrderedReady", "Parallel"):
        errs.append(invalid("spec.podManagementPolicy", policy, "must be 'OrderedReady' or 'Parallel'"))
    strategy = as_dict(spec.get("updateStrategy"))
    stype = strategy.get("type")
    if not stype:
        errs.append(required("spec.updateStrategy"))
    elif stype == "OnDelete":
        if strategy.get("rollingUpdate") is not None:
            errs.append(invalid("spec.updateStrategy.rollingUpdate", "OnDelete",
                                "only allowed for updateStrategy 'RollingUpdate'"))
    elif stype == "RollingUpdate":
        errs += non_negative("spec.updateStrategy.rollingUpdate.partition",
                             as_dict(strategy.get("rollingUpdate")).get("partition"))
    else:
        errs.append(invalid("spec.updateStrategy", stype, "must be 'RollingUpdate' or 'OnDelete'"))
    retention = as_dict(spec.get("persistentVolumeClaimRetentionPolicy"))
    for key in ("whenDeleted", "whenScaled"):
        errs += enum(f"spec.persistentVolumeClaimRetentionPolicy.{key}", retention.get(key), ("Retain", "Delete"),
                     optional=True)
    for key in ("replicas", "minReadySeconds"):
        errs += non_negative(f"spec.{key}", spec.get(key))
    errs += _selector_and_template(spec, "statefulset", kind_name="StatefulSet")
    if old is not None:
        old_spec = as_dict(old.get("spec"))
        if any(spec.get(k) != old_spec.get(k) for k in set(spec) | set(old_spec) if k not in _STS_MUTABLE):
            errs.append(forbidden("spec", "updates to statefulset spec for fields other than 'replicas', 'ordinals', "
                                  "'template', 'updateStrategy', 'persistentVolumeClaimRetentionPolicy' and "
                                  "'minReadySeconds' are forbidden"))
    return errs


def _validate_job_spec(spec: Obj, prefix: str, *, require_selector: bool) -> Errors:
    errs: Errors = []
    for key in ("parallelism", "completions", "activeDeadlineSeconds", "backoffLimit", "ttlSecondsAfterFinished",
                "backoffLimitPerIndex", "maxFailedIndexes"):
        errs += non_negative(f"{prefix}.{key}", spec.get(key))
    mode = spec.get("completionMode")
    errs += enum(f"{prefix}.completionMode", mode, ("NonIndexed", "Indexed"), optional=True)
    if mode == "Indexed" and spec.get("completions") is None:
        errs.append(required(f"{prefix}.completions", "when completion mode is Indexed"))
    replacement = spec.get("podReplacementPolicy")
    if replacement:
        allowed = ("Failed",) if spec.get("podFailurePolicy") is not None else ("Failed", "TerminatingOrFailed")
        if replacement not in allowed:
            errs.append(not_supported(f"{prefix}.podReplacementPolicy", replacement, allowed))
    errs += _selector_and_template(spec, "", restart=None, require_selector=require_selector, prefix=prefix)
    # Pod defaulting turns an unset restartPolicy into Always, so Always reads as "not given".
    policy = as_dict(as_dict(spec.get("template")).get("spec")).get("restartPolicy")
    policy_path = f"{prefix}.template.spec.restartPolicy"
    if policy in (None, "", "Always"):
        errs.append(required(policy_path, 'valid values: "OnFailure", "Never"'))
    elif policy not in ("OnFailure", "Never"):
        errs.append(not_supported(policy_path, policy, ("OnFailure", "Never")))
    elif spec.get("podFailurePolicy") is not None and policy != "Never":
        errs.append(invalid(policy_path, policy, 'only "Never" is supported when podFailurePolicy is specified'))
    return errs


def validate_job(obj: Obj, old: Obj | None) -> Errors:
    spec = as_dict(obj.get("spec"))
    # Without manualSelector the registry generates the selector (controller-uid); only a hand-made
    # selector is required here.
    errs = _validate_job_spec(spec, "spec", require_selector=spec.get("manualSelector") is True)
    name = as_dict(obj.get("metadata")).get("name") or ""
    completions = spec.get("completions")
    if spec.get("completionMode") == "Indexed" and isinstance(completions, int) and completions > 0 and name:
        # pods of an indexed job get the hostname <job>-<index>, which must be a DNS label
        hostname = f"{name}-{completions - 1}"
        if names.is_dns1123_label(hostname):
            errs.append(invalid("metadata.name", name, f"will not able to create pod with invalid DNS label: {hostname}"))
    if old is not None:
        old_spec = as_dict(old.get("spec"))
        errs += _immutable_selector(obj, old)
        if spec.get("completions") != old_spec.get("completions") and spec.get("completionMode") != "Indexed":
            errs.append(invalid("spec.completions", spec.get("completions"), IMMUTABLE))
        if spec.get("template") != old_spec.get("template") and not old_spec.get("suspend"):
            errs.append(invalid("spec.template", GoLiteral("core.PodTemplateSpec{...}"), IMMUTABLE))
    return errs


def validate_cron_job(obj: Obj, old: Obj | None) -> Errors:
    del old
    spec = as_dict(obj.get("spec"))
    errs: Errors = []
    name = as_dict(obj.get("metadata")).get("name") or ""
    if len(name) > 52:
        errs.append(invalid("metadata.name", name, "must be no more than 52 characters"))
    schedule = spec.get("schedule")
    if not schedule:
        errs.append(required("spec.schedule"))
    else:
        message = cron.schedule_error(str(schedule))
        if message:
            errs.append(invalid("spec.schedule", schedule, message))
        if "TZ" in str(schedule):
            errs.append(invalid("spec.schedule", schedule,
                                "cannot use TZ or CRON_TZ in schedule, use timeZone field instead"))
    errs += enum("spec.concurrencyPolicy", spec.get("concurrencyPolicy"), ("Allow", "Forbid", "Replace"))
    for key in ("startingDeadlineSeconds", "successfulJobsHistoryLimit", "failedJobsHistoryLimit"):
        errs += non_negative(f"spec.{key}", spec.get(key))
    job_template = as_dict(spec.get("jobTemplate"))
    job_meta = as_dict(job_template.get("metadata"))
    errs += validate_labels(job_meta.get("labels"), "spec.jobTemplate.metadata.labels")
    errs += validate_annotations(job_meta.get("annotations"), "spec.jobTemplate.metadata.annotations")
    errs += _validate_job_spec(as_dict(job_template.get("spec")), "spec.jobTemplate.spec",
                               require_selector=False)
    return errs


UNHEALTHY_POD_EVICTION_POLICIES = ("AlwaysAllow", "IfHealthyBudget")


def validate_pod_disruption_budget(obj: Obj, old: Obj | None) -> Errors:
    """policy/v1 (kube's ValidatePodDisruptionBudgetSpec); the spec may change after creation."""
    del old
    spec = as_dict(obj.get("spec"))
    errs: Errors = []
    if spec.get("minAvailable") is not None and spec.get("maxUnavailable") is not None:
        errs.append(invalid("spec", GoLiteral(f"minAvailable={go_int_or_string(spec['minAvailable'])}, maxUnavailable="
                                              f"{go_int_or_string(spec['maxUnavailable'])}"),
                            "minAvailable and maxUnavailable cannot be both set"))
    for field in ("minAvailable", "maxUnavailable"):
        if spec.get(field) is not None:
            errs += _validate_int_or_percent(spec[field], f"spec.{field}")
            errs += _not_more_than_100_percent(spec[field], f"spec.{field}")
    if spec.get("selector") is not None:
        errs += validate_label_selector(spec["selector"], "spec.selector")
    policy = spec.get("unhealthyPodEvictionPolicy")
    if policy is not None and policy not in UNHEALTHY_POD_EVICTION_POLICIES:
        errs.append(not_supported("spec.unhealthyPodEvictionPolicy", policy, UNHEALTHY_POD_EVICTION_POLICIES))
    return errs
