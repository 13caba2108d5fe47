"""Which fields each resource can be selected by (fieldSelector), and their values on an object.

Mirrors the GetAttrs / field label conversion functions of kube-apiserver's registries: every
resource supports metadata.name and metadata.namespace; some add their own (pods: spec.nodeName,
status.phase ...; events: involvedObject.*; secrets: type). An unsupported field is a 400
("field label not supported: x"), as kube answers.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from pocketkube.api.errors import BadRequest
from pocketkube.api.selectors import FieldSelector

Obj = dict[str, Any]


def _get(obj: Obj, *path: str) -> str:
    cur: Any = obj
    for p in path:
        if not isinstance(cur, dict):
            return ""
        cur = cur.get(p)
    if cur is None:
        return ""
    if isinstance(cur, bool):
        return "true" if cur else "false"
    return str(cur)


def _pod(obj: Obj) -> dict[str, str]:
    ips = (obj.get("status") or {}).get("podIPs") or []
    return {
        "spec.nodeName": _get(obj, "spec", "nodeName"),
        "spec.restartPolicy": _get(obj, "spec", "restartPolicy"),
        "spec.schedulerName": _get(obj, "spec", "schedulerName"),
        "spec.serviceAccountName": _get(obj, "spec", "serviceAccountName"),
        "spec.hostNetwork": _get(obj, "spec", "hostNetwork") or "false",
        "status.phase": _get(obj, "status", "phase"),
        "status.podIP": _get(obj, "status", "podIP"),
        "status.podIPs": ",".join(str(i.get("ip", "")) for i in ips if isinstance(i, dict)),
        "status.nominatedNodeName": _get(obj, "status", "nominatedNodeName"),
    }


def _event(obj: Obj) -> dict[str, str]:
    out = {
        f"involvedObject.{f}": _get(obj, "involvedObject", f)
        for f in ("kind", "namespace", "name", "uid", "apiVersion", "resourceVersion", "fieldPath")
    }
    out["reason"] = _get(obj, "reason")
    out["reportingComponent"] = _get(obj, "reportingComponent")
    out["source"] = _get(obj, "source", "component") or _get(obj, "reportingComponent")
    out["type"] = _get(obj, "type")
    return out


def _events_v1(obj: Obj) -> dict[str, str]:
    out = {
        f"regarding.{f}": _get(obj, "regarding", f)
        for f in ("kind", "namespace", "name", "uid", "apiVersion", "resourceVersion", "fieldPath")
    }
    out["reason"] = _get(obj, "reason")
    out["reportingController"] = _get(obj, "reportingController")
    out["type"] = _get(obj, "type")
    return out


_EXTRA: dict[tuple[str, str], Callable[[Obj], dict[str, str]]] = {
    ("", "pods"): _pod,
    ("", "events"): _event,
    ("events.k8s.io", "events"): _events_v1,
    ("", "secrets"): lambda o: {"type": _get(o, "type")},
    ("", "namespaces"): lambda o: {"status.phase": _get(o, "status", "phase")},
    ("", "nodes"): lambda o: {"spec.unschedulable": _get(o, "spec", "unschedulable") or "false"},
    ("", "services"): lambda o: {"spec.clusterIP": _get(o, "spec", "clusterIP"), "spec.type": _get(o, "spec", "type")},
    ("", "persistentvolumeclaims"): lambda o: {"spec.volumeName": _get(o, "spec", "volumeName")},
    ("apps", "replicasets"): lambda o: {"status.replicas": _get(o, "status", "replicas") or "0"},
    ("batch", "jobs"): lambda o: {"status.successful": _get(o, "status", "succeeded") or "0"},
    ("certificates.k8s.io", "certificatesigningrequests"): lambda o: {"spec.signerName": _get(o, "spec", "signerName")},
}

_EXTRA_FIELDS: dict[tuple[str, str], frozenset[str]] = {
    key: frozenset(fn({}).keys()) for key, fn in _EXTRA.items()
}


def supported_fields(group: str, plural: str) -> frozenset[str]:
    return frozenset({"metadata.name", "metadata.namespace"}) | _EXTRA_FIELDS.get((group, plural), frozenset())


def check_field_selector(group: str, plural: str, selector: FieldSelector) -> None:
    allowed = supported_fields(group, plural)
    for field in selector.fields():
        if field not in allowed:
            raise BadRequest(f'field label not supported: {field}')


def field_values(group: str, plural: str, obj: Obj) -> dict[str, str]:
    md = obj.get("metadata") or {}
    out = {"metadata.name": str(md.get("name", "")), "metadata.namespace": str(md.get("namespace", "") or "")}
    fn = _EXTRA.get((group, plural))
    if fn is not None:
        out.update(fn(obj))
    return out
