"""ResourceQuota arithmetic: what an object costs, which quotas it is charged to, and when to refuse.

Shared by the API server's quota admission (which charges each create against `status.used`) and
the resourcequota controller (which recomputes true usage), so both count the same way. Follows
k8s.io/apiserver/pkg/quota/v1 (resource lists) and kubernetes pkg/quota/v1/evaluator/core (pods,
services, persistent volume claims, object counts), with kube's exact refusal messages.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from datetime import datetime, timedelta
from fractions import Fraction
from math import ceil
from typing import Any

from pocketkube.api import meta
from pocketkube.api.quantity import Quantity, QuantityError

Obj = dict[str, Any]
ResourceList = dict[str, Quantity]

ZERO = Quantity.parse("0")
ONE = Quantity.parse("1")
STORAGE_CLASS_SUFFIX = ".storageclass.storage.k8s.io/"

_POD_RESOURCES = frozenset({
    "count/pods", "cpu", "memory", "ephemeral-storage", "requests.cpu", "requests.memory",
    "requests.ephemeral-storage", "limits.cpu", "limits.memory", "limits.ephemeral-storage", "pods"})
_SERVICE_RESOURCES = frozenset({"count/services", "services", "services.loadbalancers", "services.nodeports"})
_PVC_RESOURCES = ("persistentvolumeclaims", "requests.storage")
# The legacy names of object counts (quota predates count/<resource>.<group>).
_LEGACY_COUNT = {"configmaps": "configmaps", "secrets": "secrets",
                 "replicationcontrollers": "replicationcontrollers", "resourcequotas": "resourcequotas"}
# Mistakenly coupled to validation in kube, kept for compatibility: a quota on these makes every
# container state them.
_VALIDATION_SET = frozenset({"cpu", "memory", "requests.cpu", "requests.memory", "limits.cpu", "limits.memory"})
IGNORED = frozenset({("", "events"), ("events.k8s.io", "events")})


# ---- resource lists ------------------------------------------------------------------------
def parse_list(raw: Mapping[str, Any] | None) -> ResourceList:
    out: ResourceList = {}
    for name, value in (raw or {}).items():
        try:
            out[str(name)] = Quantity.parse(value)
        except (QuantityError, TypeError, IndexError):
            continue
    return out


def format_list(rl: Mapping[str, Quantity]) -> dict[str, str]:
    return {name: str(q) for name, q in sorted(rl.items())}


def _plus(a: Quantity, b: Quantity) -> Quantity:
    # resource.Quantity.Add: a zero takes the other's format ("0" + "128Mi" prints "128Mi").
    return Quantity(a.value + b.value, b.format if a.value == 0 else a.format)


def add(a: Mapping[str, Quantity], b: Mapping[str, Quantity]) -> ResourceList:
    out = dict(a)
    for name, q in b.items():
        out[name] = _plus(out[name], q) if name in out else q
    return out


def subtract_non_negative(a: Mapping[str, Quantity], b: Mapping[str, Quantity]) -> ResourceList:
    out: ResourceList = {}
    for name, q in a.items():
        value = q.value - b[name].value if name in b else q.value
        out[name] = Quantity(value if value > 0 else Fraction(0), q.format)
    return out


def max_list(a: Mapping[str, Quantity], b: Mapping[str, Quantity]) -> ResourceList:
    out = dict(a)
    for name, q in b.items():
        if name not in out or q > out[name]:
            out[name] = q
    return out


def mask(rl: Mapping[str, Quantity], names: Iterable[str]) -> ResourceList:
    keep = set(names)
    return {name: q for name, q in rl.items() if name in keep}


def remove_zeros(rl: Mapping[str, Quantity]) -> ResourceList:
    return {name: q for name, q in rl.items() if q.value != 0}


def exceeded(a: Mapping[str, Quantity], b: Mapping[str, Quantity]) -> list[str]:
    """Names in both lists where a > b (quota.LessThanOrEqual's second result)."""
    return sorted(name for name, q in a.items() if name in b and q > b[name])


def pretty(rl: Mapping[str, Quantity]) -> str:
    return ",".join(f"{name}={rl[name]}" for name in sorted(rl))


# ---- pods ----------------------------------------------------------------------------------
def _container_list(container: Mapping[str, Any], bucket: str) -> ResourceList:
    resources = container.get("resources") or {}
    return parse_list(resources.get(bucket) if isinstance(resources, dict) else None)


def pod_resources(pod: Mapping[str, Any], bucket: str) -> ResourceList:
    """resourcehelper.PodRequests / PodLimits: containers summed, init containers as peaks, sidecars added."""
    spec = pod.get("spec") or {}
    total: ResourceList = {}
    for c in spec.get("containers") or []:
        total = add(total, _container_list(c, bucket))
    sidecars: ResourceList = {}
    init_peak: ResourceList = {}
    for c in spec.get("initContainers") or []:
        own = _container_list(c, bucket)
        if c.get("restartPolicy") == "Always":
            total = add(total, own)
            sidecars = add(sidecars, own)
            step = sidecars
        else:
            step = add(own, sidecars)
        init_peak = max_list(init_peak, step)
    total = max_list(total, init_peak)
    overhead = parse_list(spec.get("overhead"))
    return add(total, overhead) if overhead else total


def _native(name: str) -> bool:
    return "/" not in name or "kubernetes.io/" in name


def _extended(name: str) -> bool:
    return not _native(name) and not name.startswith("requests.")


def compute_usage(requests: Mapping[str, Quantity], limits: Mapping[str, Quantity]) -> ResourceList:
    """podComputeUsageHelper."""
    out: ResourceList = {"pods": ONE}
    for name in ("cpu", "memory", "ephemeral-storage"):
        if name in requests:
            out[name] = requests[name]
            out[f"requests.{name}"] = requests[name]
        if name in limits:
            out[f"limits.{name}"] = limits[name]
    for name, q in requests.items():
        if name.startswith("hugepages-"):
            out[name] = q
            out[f"requests.{name}"] = q
        if _extended(name):
            out[f"requests.{name}"] = q
    return out


def pod_counts_compute(pod: Mapping[str, Any], now: datetime) -> bool:
    """QuotaV1Pod: terminal pods, and pods past their deletion grace, are no longer charged."""
    if (pod.get("status") or {}).get("phase") in ("Succeeded", "Failed"):
        return False
    md = pod.get("metadata") or {}
    deleted = meta.parse_time(str(md.get("deletionTimestamp") or ""))
    grace = md.get("deletionGracePeriodSeconds")
    return not (deleted is not None and grace is not None and now > deleted + timedelta(seconds=int(grace)))


def pod_usage(pod: Mapping[str, Any], now: datetime) -> ResourceList:
    out: ResourceList = {"count/pods": ONE}
    if not pod_counts_compute(pod, now):
        return out
    return add(out, compute_usage(pod_resources(pod, "requests"), pod_resources(pod, "limits")))


def _best_effort(pod: Mapping[str, Any]) -> bool:
    spec = pod.get("spec") or {}
    for c in [*(spec.get("containers") or []), *(spec.get("initContainers") or [])]:
        for bucket in ("requests", "limits"):
            rl = _container_list(c, bucket)
            if any(rl[n].value != 0 for n in ("cpu", "memory") if n in rl):
                return False
    return True


def _cross_namespace_affinity(pod: Mapping[str, Any]) -> bool:
    affinity = (pod.get("spec") or {}).get("affinity") or {}
    for kind in ("podAffinity", "podAntiAffinity"):
        section = affinity.get(kind) or {}
        terms = list(section.get("requiredDuringSchedulingIgnoredDuringExecution") or [])
        terms += [w.get("podAffinityTerm") or {} for w in section.get("preferredDuringSchedulingIgnoredDuringExecution") or []]
        if any(t.get("namespaces") or t.get("namespaceSelector") is not None for t in terms):
            return True
    return False


def _pod_matches_scope(selector: Mapping[str, Any], pod: Mapping[str, Any]) -> bool:
    scope = selector.get("scopeName")
    spec = pod.get("spec") or {}
    if scope in ("Terminating", "NotTerminating"):
        deadline = spec.get("activeDeadlineSeconds")
        terminating = deadline is not None and int(deadline) >= 0
        return terminating if scope == "Terminating" else not terminating
    if scope in ("BestEffort", "NotBestEffort"):
        return bool(_best_effort(pod) == (scope == "BestEffort"))
    if scope == "PriorityClass":
        name = spec.get("priorityClassName") or ""
        op, values = selector.get("operator"), selector.get("values") or []
        if op == "Exists":
            return bool(name)
        if op == "DoesNotExist":
            return not name
        if op == "In":
            return bool(name) and str(name) in values
        if op == "NotIn":
            return not name or str(name) not in values
        return False
    if scope == "CrossNamespacePodAffinity":
        return _cross_namespace_affinity(pod)
    return False


def pod_constraints(required: Iterable[str], pod: Mapping[str, Any]) -> str | None:
    """podEvaluator.Constraints: `must specify limits.cpu for: c1; requests.memory for: c1,c2`."""
    needed = set(required) & _VALIDATION_SET
    missing: dict[str, set[str]] = {}
    spec = pod.get("spec") or {}
    for c in [*(spec.get("containers") or []), *(spec.get("initContainers") or [])]:
        have = compute_usage(_container_list(c, "requests"), _container_list(c, "limits"))
        for name in needed - set(have):
            missing.setdefault(name, set()).add(str(c.get("name", "")))
    if not missing:
        return None
    return "must specify " + "; ".join(f"{name} for: {','.join(sorted(missing[name]))}" for name in sorted(missing))


# ---- other kinds ---------------------------------------------------------------------------
def object_count_name(group: str, plural: str) -> str:
    return f"count/{plural}.{group}" if group else f"count/{plural}"


def service_usage(svc: Mapping[str, Any]) -> ResourceList:
    spec = svc.get("spec") or {}
    ports = spec.get("ports") or []
    out: ResourceList = {"count/services": ONE, "services": ONE, "services.loadbalancers": ZERO,
                         "services.nodeports": ZERO}
    stype = spec.get("type")
    if stype == "NodePort":
        out["services.nodeports"] = Quantity.parse(len(ports))
    elif stype == "LoadBalancer":
        if spec.get("allocateLoadBalancerNodePorts") is False:
            out["services.nodeports"] = Quantity.parse(sum(1 for p in ports if p.get("nodePort")))
        else:
            out["services.nodeports"] = Quantity.parse(len(ports))
        out["services.loadbalancers"] = ONE
    return out


def _storage_class(pvc: Mapping[str, Any]) -> str:
    annotations = (pvc.get("metadata") or {}).get("annotations") or {}
    legacy = annotations.get("volume.beta.kubernetes.io/storage-class")
    return str(legacy if legacy is not None else (pvc.get("spec") or {}).get("storageClassName") or "")


def pvc_usage(pvc: Mapping[str, Any]) -> ResourceList:
    out: ResourceList = {"persistentvolumeclaims": ONE, "count/persistentvolumeclaims": ONE}
    sc = _storage_class(pvc)
    if sc:
        out[f"{sc}{STORAGE_CLASS_SUFFIX}persistentvolumeclaims"] = ONE
    requested = parse_list(((pvc.get("spec") or {}).get("resources") or {}).get("requests")).get("storage")
    allocated = parse_list((pvc.get("status") or {}).get("allocatedResources")).get("storage")
    if requested is not None and allocated is not None and allocated > requested:
        requested = allocated
    if requested is not None:
        requested = Quantity(Fraction(ceil(requested.value)), requested.format)  # whole bytes (issue 94313)
        out["requests.storage"] = requested
        if sc:
            out[f"{sc}{STORAGE_CLASS_SUFFIX}requests.storage"] = requested
    return out


def matching_resources(group: str, plural: str, names: Iterable[str]) -> list[str]:
    """The quota resource names (of `names`) that objects of this kind are charged for."""
    out = []
    for name in names:
        if group == "" and plural == "pods":
            ok = (name in _POD_RESOURCES or name.startswith(("hugepages-", "requests.hugepages-"))
                  or (not _native(name) and name.startswith("requests.")))
        elif group == "" and plural == "services":
            ok = name in _SERVICE_RESOURCES
        elif group == "" and plural == "persistentvolumeclaims":
            ok = (name == "count/persistentvolumeclaims" or name in _PVC_RESOURCES
                  or any(name.endswith(STORAGE_CLASS_SUFFIX + r) for r in _PVC_RESOURCES))
        else:
            ok = name == object_count_name(group, plural) or (group == "" and _LEGACY_COUNT.get(plural) == name)
        if ok:
            out.append(name)
    return out


def usage(group: str, plural: str, obj: Mapping[str, Any], now: datetime) -> ResourceList:
    if group == "":
        if plural == "pods":
            return pod_usage(obj, now)
        if plural == "services":
            return service_usage(obj)
        if plural == "persistentvolumeclaims":
            return pvc_usage(obj)
    out: ResourceList = {object_count_name(group, plural): ONE}
    legacy = _LEGACY_COUNT.get(plural) if group == "" else None
    if legacy:
        out[legacy] = ONE
    return out


def handles(group: str, plural: str, operation: str) -> bool:
    """Which writes can change usage: creates, and updates of services and claims."""
    if (group, plural) in IGNORED:
        return False
    if operation == "create":
        return True
    return operation == "update" and group == "" and plural in ("services", "persistentvolumeclaims")


def scope_selectors(quota: Mapping[str, Any]) -> list[Obj]:
    spec = quota.get("spec") or {}
    out: list[Obj] = [{"scopeName": s, "operator": "Exists"} for s in spec.get("scopes") or []]
    out += list((spec.get("scopeSelector") or {}).get("matchExpressions") or [])
    return out


def matches(quota: Mapping[str, Any], hard_names: Iterable[str], group: str, plural: str,
            obj: Mapping[str, Any]) -> bool:
    """generic.Matches: the quota tracks something this kind uses, and every scope matches."""
    if not matching_resources(group, plural, hard_names):
        return False
    pods = group == "" and plural == "pods"
    return all(pods and _pod_matches_scope(s, obj) for s in scope_selectors(quota))


# ---- admission ------------------------------------------------------------------------------
class QuotaRefused(Exception):
    """The write would break a quota; str() is kube's message (answered 403 Forbidden)."""


def check_request(quotas: list[Obj], group: str, plural: str, operation: str, obj: Mapping[str, Any],
                  old: Mapping[str, Any] | None, now: datetime) -> dict[int, ResourceList]:
    """CheckRequest of kube's quota admission: the new `status.used` of each quota (by index) this
    write charges, or QuotaRefused. Quotas whose usage is not known yet refuse, as in kube."""
    interesting: list[tuple[int, ResourceList, ResourceList]] = []
    for i, q in enumerate(quotas):
        status = q.get("status") or {}
        hard = parse_list(status.get("hard"))
        if not matches(q, hard, group, plural, obj):
            continue
        name = meta.name_of(q)
        restricted = matching_resources(group, plural, hard)
        if group == "" and plural == "pods":
            problem = pod_constraints(restricted, obj)
            if problem:
                raise QuotaRefused(f"failed quota: {name}: {problem}")
        used_raw = status.get("used") or {}
        if any(r not in used_raw for r in restricted):
            raise QuotaRefused(f"status unknown for quota: {name}, resources: {','.join(sorted(restricted))}")
        interesting.append((i, hard, parse_list(used_raw)))
    if not interesting:
        return {}
    input_usage = usage(group, plural, obj, now)
    negative = sorted(n for n, q in input_usage.items() if q.value < 0)
    if negative:
        raise QuotaRefused(f"quota usage is negative for resource(s): {','.join(negative)}")
    previous = usage(group, plural, old, now) if operation == "update" and old is not None else None
    out: dict[int, ResourceList] = {}
    for i, hard, used in interesting:
        delta = input_usage
        if previous is not None and old is not None and matches(quotas[i], hard, group, plural, old):
            delta = subtract_non_negative(input_usage, previous)
        requested = mask(remove_zeros(delta), hard)
        if not requested:
            continue
        new_used = add(used, requested)
        bad = exceeded(mask(new_used, requested), hard)
        if bad:
            raise QuotaRefused(f"exceeded quota: {meta.name_of(quotas[i])}, requested: {pretty(mask(requested, bad))}, "
                               f"used: {pretty(mask(used, bad))}, limited: {pretty(mask(hard, bad))}")
        out[i] = new_used
    return out


def namespace_usage(quota: Mapping[str, Any], hard: Mapping[str, Quantity],
                    objects: Mapping[tuple[str, str], Iterable[Mapping[str, Any]]], now: datetime) -> ResourceList:
    """What the controller writes to status.used: every hard name, summed over matching objects."""
    used: ResourceList = {name: ZERO for name in hard}
    for (group, plural), items in objects.items():
        names = matching_resources(group, plural, hard)
        if not names:
            continue
        for obj in items:
            if matches(quota, hard, group, plural, obj):
                used = add(used, mask(usage(group, plural, obj, now), names))
    return used
