"""LimitRanger admission: default container resources from LimitRanges, then enforce their bounds.

kube-apiserver's LimitRanger plugin (plugin/pkg/admission/limitranger): on pod creation every
container (and init container) missing a request or limit gets the `defaultRequest`/`default`
of the namespace's `type: Container` limits, noted in the `kubernetes.io/limit-ranger`
annotation; then min, max and maxLimitRequestRatio are enforced per Container and per Pod, and
min/max storage per PersistentVolumeClaim, refusing with kube's messages (403 Forbidden). It
runs before quota admission, so quota sees the defaulted pod.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from pocketkube.api import errors, meta
from pocketkube.api.quantity import Quantity
from pocketkube.api.quota import ResourceList, parse_list, pod_resources
from pocketkube.api.resources import ResourceInfo

if TYPE_CHECKING:
    from pocketkube.apiserver.server import APIServer

Obj = dict[str, Any]
ANNOTATION = "kubernetes.io/limit-ranger"


async def admit(server: APIServer, operation: str, info: ResourceInfo, obj: Obj, old: Obj | None) -> None:
    if info.group != "":
        return
    pods = info.plural == "pods" and operation == "create"
    claims = info.plural == "persistentvolumeclaims" and operation in ("create", "update")
    if not (pods or claims):
        return
    if old is not None and (old.get("metadata") or {}).get("deletionTimestamp"):
        return
    lr_info = server.table.get("", "v1", "limitranges")
    assert lr_info is not None
    ranges = [co.obj for co in server.cache.list_prefix(lr_info.key_prefix(meta.namespace_of(obj)))]
    if not ranges:
        return
    if pods:
        if any([default_pod(lr, obj) for lr in ranges]):
            # Defaults may make the pod invalid (a default request above the limit): kube validates after.
            errs = server.store_for(info).strategy.validate(obj)
            if errs:
                raise errors.Invalid(info.group, info.kind, meta.name_of(obj), errs)
    for lr in ranges:
        problems = validate_pod(lr, obj) if pods else validate_claim(lr, obj)
        if problems:
            raise errors.Forbidden.for_resource(info.group, info.plural, meta.name_of(obj), aggregate(problems))


def aggregate(messages: list[str]) -> str:
    """utilerrors.NewAggregate(...).Error(): one message, or `[a, b]` without duplicates."""
    unique = list(dict.fromkeys(messages))
    return unique[0] if len(unique) == 1 else "[" + ", ".join(unique) + "]"


# ---- defaults ------------------------------------------------------------------------------
def _container_defaults(lr: Mapping[str, Any]) -> tuple[dict[str, str], dict[str, str]]:
    requests: dict[str, str] = {}
    limits: dict[str, str] = {}
    for item in (lr.get("spec") or {}).get("limits") or []:
        if item.get("type") != "Container":
            continue
        for target, source in ((requests, item.get("defaultRequest")), (limits, item.get("default"))):
            for name, q in parse_list(source).items():
                target[name] = str(q)
    return requests, limits


def default_pod(lr: Mapping[str, Any], pod: Obj) -> bool:
    """Fill missing requests/limits from the LimitRange; True when anything was set."""
    requests, limits = _container_defaults(lr)
    if not requests and not limits:
        return False
    notes: list[str] = []
    spec = pod.get("spec") or {}
    for kind, field in (("container", "containers"), ("init container", "initContainers")):
        for c in spec.get(field) or []:
            resources = c.get("resources") or {}
            for bucket, defaults, what in (("requests", requests, "request"), ("limits", limits, "limit")):
                have = resources.get(bucket) or {}
                missing = sorted(name for name in defaults if name not in have)
                if missing:
                    resources[bucket] = {**have, **{name: defaults[name] for name in missing}}
                    notes.append(f"{', '.join(missing)} {what} for {kind} {c.get('name', '')}")
            if resources:
                c["resources"] = resources
    if not notes:
        return False
    pod.setdefault("metadata", {}).setdefault("annotations", {})[ANNOTATION] = (
        "LimitRanger plugin set: " + "; ".join(notes))
    return True


# ---- bounds --------------------------------------------------------------------------------
def _milli(q: Quantity) -> int:
    return q.milli_value()


def min_constraint(kind: str, name: str, enforced: Quantity, requests: ResourceList, limits: ResourceList) -> str | None:
    req, lim = requests.get(name), limits.get(name)
    if req is None:
        return f"minimum {name} usage per {kind} is {enforced}.  No request is specified"
    if _milli(req) < _milli(enforced):
        return f"minimum {name} usage per {kind} is {enforced}, but request is {req}"
    if lim is not None and _milli(lim) < _milli(enforced):
        return f"minimum {name} usage per {kind} is {enforced}, but limit is {lim}"
    return None


def max_constraint(kind: str, name: str, enforced: Quantity, requests: ResourceList, limits: ResourceList) -> str | None:
    req, lim = requests.get(name), limits.get(name)
    if lim is None:
        return f"maximum {name} usage per {kind} is {enforced}.  No limit is specified"
    if _milli(lim) > _milli(enforced):
        return f"maximum {name} usage per {kind} is {enforced}, but limit is {lim}"
    if req is not None and _milli(req) > _milli(enforced):
        return f"maximum {name} usage per {kind} is {enforced}, but request is {req}"
    return None


def max_request_constraint(kind: str, name: str, enforced: Quantity, requests: ResourceList) -> str | None:
    req = requests.get(name)
    if req is None:
        return f"maximum {name} usage per {kind} is {enforced}.  No request is specified"
    if _milli(req) > _milli(enforced):
        return f"maximum {name} usage per {kind} is {enforced}, but request is {req}"
    return None


def ratio_constraint(kind: str, name: str, enforced: Quantity, requests: ResourceList,
                     limits: ResourceList) -> str | None:
    req, lim = requests.get(name), limits.get(name)
    if req is None or _milli(req) == 0:
        return f"{name} max limit to request ratio per {kind} is {enforced}, but no request is specified or request is 0"
    if lim is None or _milli(lim) == 0:
        return f"{name} max limit to request ratio per {kind} is {enforced}, but no limit is specified or limit is 0"
    ratio = _milli(lim) / _milli(req)
    if ratio * 1000 > _milli(enforced):
        return f"{name} max limit to request ratio per {kind} is {enforced}, but provided ratio is {ratio:f}"
    return None


def _check(kind: str, item: Mapping[str, Any], requests: ResourceList, limits: ResourceList) -> list[str]:
    out: list[str] = []
    for field, check in (("min", min_constraint), ("max", max_constraint), ("maxLimitRequestRatio", ratio_constraint)):
        bounds = parse_list(item.get(field))
        for name in sorted(bounds):
            problem = check(kind, name, bounds[name], requests, limits)
            if problem:
                out.append(problem)
    return out


def _resources(container: Mapping[str, Any], bucket: str) -> ResourceList:
    return parse_list((container.get("resources") or {}).get(bucket))


def validate_pod(lr: Mapping[str, Any], pod: Mapping[str, Any]) -> list[str]:
    out: list[str] = []
    spec = pod.get("spec") or {}
    for item in (lr.get("spec") or {}).get("limits") or []:
        kind = item.get("type")
        if kind == "Container":
            for c in [*(spec.get("containers") or []), *(spec.get("initContainers") or [])]:
                out += _check(kind, item, _resources(c, "requests"), _resources(c, "limits"))
        elif kind == "Pod":
            out += _check(kind, item, pod_resources(pod, "requests"), pod_resources(pod, "limits"))
    return out


def validate_claim(lr: Mapping[str, Any], pvc: Mapping[str, Any]) -> list[str]:
    out: list[str] = []
    requests = parse_list(((pvc.get("spec") or {}).get("resources") or {}).get("requests"))
    for item in (lr.get("spec") or {}).get("limits") or []:
        kind = item.get("type")
        if kind != "PersistentVolumeClaim":
            continue
        bounds = parse_list(item.get("min"))
        out += [p for n in sorted(bounds) if (p := min_constraint(kind, n, bounds[n], requests, {}))]
        bounds = parse_list(item.get("max"))
        out += [p for n in sorted(bounds) if (p := max_request_constraint(kind, n, bounds[n], requests))]
    return out


