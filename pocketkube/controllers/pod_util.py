"""Pod helpers shared by the workload controllers: readiness, activity, owner references, ranking."""

from __future__ import annotations

import copy
from datetime import UTC, datetime
from typing import Any

from pocketkube.api import meta

Obj = dict[str, Any]


def is_active(pod: Obj) -> bool:
    phase = (pod.get("status") or {}).get("phase")
    return phase not in ("Succeeded", "Failed") and not pod.get("metadata", {}).get("deletionTimestamp")


def condition(obj: Obj, ctype: str) -> Obj | None:
    for c in (obj.get("status") or {}).get("conditions") or []:
        if c.get("type") == ctype:
            return dict(c)
    return None


def is_ready(pod: Obj) -> bool:
    c = condition(pod, "Ready")
    return bool(c and c.get("status") == "True")


def is_available(pod: Obj, min_ready_seconds: int, now: datetime | None = None) -> bool:
    if not is_ready(pod):
        return False
    if min_ready_seconds <= 0:
        return True
    c = condition(pod, "Ready") or {}
    since = meta.parse_time(str(c.get("lastTransitionTime") or ""))
    if since is None:
        return False
    return ((now or datetime.now(UTC)) - since).total_seconds() >= min_ready_seconds


def controller_ref(obj: Obj) -> Obj | None:
    for ref in obj.get("metadata", {}).get("ownerReferences") or []:
        if ref.get("controller"):
            return dict(ref)
    return None


def owner_reference(owner: Obj, *, block: bool = True) -> Obj:
    return {"apiVersion": owner["apiVersion"], "kind": owner["kind"], "name": owner["metadata"]["name"],
            "uid": owner["metadata"]["uid"], "controller": True, "blockOwnerDeletion": block}


def pod_from_template(template: Obj, owner: Obj, *, generate_name: str | None = None,
                      name: str | None = None) -> Obj:
    tmeta = copy.deepcopy(template.get("metadata") or {})
    md: Obj = {"labels": tmeta.get("labels") or {}, "ownerReferences": [owner_reference(owner)]}
    if tmeta.get("annotations"):
        md["annotations"] = tmeta["annotations"]
    if tmeta.get("finalizers"):
        md["finalizers"] = tmeta["finalizers"]
    if name:
        md["name"] = name
    else:
        md["generateName"] = generate_name or f"{owner['metadata']['name']}-"
    md["namespace"] = owner["metadata"].get("namespace")
    return {"apiVersion": "v1", "kind": "Pod", "metadata": md, "spec": copy.deepcopy(template.get("spec") or {})}


def deletion_rank(pod: Obj) -> tuple[int, int, int, int, float]:
    """Sort key: pods to delete first come first (kube's ActivePods ordering, simplified):
    unassigned before assigned, pending before running, not ready before ready, more restarts
    first, newer first."""
    spec = pod.get("spec") or {}
    status = pod.get("status") or {}
    phase_rank = {"Pending": 0, "Unknown": 1, "Running": 2}.get(status.get("phase", "Pending"), 0)
    restarts = sum(int(cs.get("restartCount") or 0) for cs in status.get("containerStatuses") or [])
    created = meta.parse_time(str(pod.get("metadata", {}).get("creationTimestamp") or ""))
    return (0 if not spec.get("nodeName") else 1, phase_rank, 1 if is_ready(pod) else 0, -restarts,
            -(created.timestamp() if created else 0.0))
