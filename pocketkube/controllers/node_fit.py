"""Which nodes a DaemonSet pod belongs on (kubernetes pkg/controller/daemon/util + the scheduler's
NodeAffinity and TaintToleration filters, reduced to what the DaemonSet controller checks).

The DaemonSet controller decides per node: does the template's nodeSelector and required node
affinity match, and are the node's NoSchedule/NoExecute taints tolerated (with the tolerations
every DaemonSet pod gets)? Its pods then carry a required node affinity pinning them to that node
(matchFields metadata.name), and the scheduler binds them.
"""

from __future__ import annotations

import copy
from typing import Any

Obj = dict[str, Any]

NOT_READY = "node.kubernetes.io/not-ready"
UNREACHABLE = "node.kubernetes.io/unreachable"

# AddOrUpdateDaemonPodTolerations: survive taint-based eviction and TaintNodesByCondition taints.
DAEMON_TOLERATIONS: tuple[Obj, ...] = (
    {"key": NOT_READY, "operator": "Exists", "effect": "NoExecute"},
    {"key": UNREACHABLE, "operator": "Exists", "effect": "NoExecute"},
    {"key": "node.kubernetes.io/disk-pressure", "operator": "Exists", "effect": "NoSchedule"},
    {"key": "node.kubernetes.io/memory-pressure", "operator": "Exists", "effect": "NoSchedule"},
    {"key": "node.kubernetes.io/pid-pressure", "operator": "Exists", "effect": "NoSchedule"},
    {"key": "node.kubernetes.io/unschedulable", "operator": "Exists", "effect": "NoSchedule"},
)
HOST_NETWORK_TOLERATION: Obj = {"key": "node.kubernetes.io/network-unavailable", "operator": "Exists",
                                "effect": "NoSchedule"}


def toleration_matches(tol: Obj, taint: Obj) -> bool:
    effect = tol.get("effect")
    if effect and effect != taint.get("effect"):
        return False
    op = tol.get("operator") or "Equal"
    key = tol.get("key")
    if key and key != taint.get("key"):
        return False
    if not key:
        return bool(op == "Exists")
    if op == "Exists":
        return True
    return bool((tol.get("value") or "") == (taint.get("value") or ""))


def untolerated(tolerations: list[Obj], taints: list[Obj], effects: tuple[str, ...]) -> Obj | None:
    for taint in taints:
        if taint.get("effect") not in effects:
            continue
        if not any(toleration_matches(t, taint) for t in tolerations):
            return taint
    return None


def _requirement_matches(req: Obj, values_of: dict[str, str]) -> bool:
    key = str(req.get("key") or "")
    op = req.get("operator")
    values = [str(v) for v in req.get("values") or []]
    present = key in values_of
    value = values_of.get(key, "")
    if op == "In":
        return present and value in values
    if op == "NotIn":
        return not present or value not in values
    if op == "Exists":
        return present
    if op == "DoesNotExist":
        return not present
    if op in ("Gt", "Lt") and present and len(values) == 1:
        try:
            have, want = int(value), int(values[0])
        except ValueError:
            return False
        return have > want if op == "Gt" else have < want
    return False


def term_matches(term: Obj, node: Obj) -> bool:
    """A NodeSelectorTerm: all its requirements hold; an empty term matches nothing."""
    exprs = term.get("matchExpressions") or []
    fields = term.get("matchFields") or []
    if not exprs and not fields:
        return False
    labels = (node.get("metadata") or {}).get("labels") or {}
    node_fields = {"metadata.name": str((node.get("metadata") or {}).get("name") or "")}
    return (all(_requirement_matches(r, labels) for r in exprs)
            and all(_requirement_matches(r, node_fields) for r in fields))


def matches_node_affinity(pod_spec: Obj, node: Obj) -> bool:
    labels = (node.get("metadata") or {}).get("labels") or {}
    for k, v in (pod_spec.get("nodeSelector") or {}).items():
        if labels.get(k) != v:
            return False
    required = (((pod_spec.get("affinity") or {}).get("nodeAffinity") or {})
                .get("requiredDuringSchedulingIgnoredDuringExecution"))
    if required is None:
        return True
    return any(term_matches(t, node) for t in required.get("nodeSelectorTerms") or [])


def daemon_tolerations(pod_spec: Obj) -> list[Obj]:
    """The template's tolerations plus the ones every DaemonSet pod gets (replacing same key+effect)."""
    out = [t for t in pod_spec.get("tolerations") or []]
    extra = list(DAEMON_TOLERATIONS) + ([HOST_NETWORK_TOLERATION] if pod_spec.get("hostNetwork") else [])
    for tol in extra:
        out = [t for t in out if not (t.get("key") == tol["key"] and t.get("effect") == tol["effect"])]
        out.append(dict(tol))
    return out


def should_run(pod_spec: Obj, node: Obj) -> tuple[bool, bool]:
    """(should run a daemon pod here, may an existing one keep running) — NodeShouldRunDaemonPod."""
    if pod_spec.get("nodeName") and pod_spec["nodeName"] != (node.get("metadata") or {}).get("name"):
        return False, False
    if not matches_node_affinity(pod_spec, node):
        return False, False
    taints = (node.get("spec") or {}).get("taints") or []
    tolerations = daemon_tolerations(pod_spec)
    if untolerated(tolerations, taints, ("NoSchedule", "NoExecute")) is not None:
        return False, untolerated(tolerations, taints, ("NoExecute",)) is None
    return True, True


def pin_to_node(pod_spec: Obj, node_name: str) -> Obj:
    """ReplaceDaemonSetPodNodeNameNodeAffinity: required affinity = exactly this node (by name)."""
    spec = copy.deepcopy(pod_spec)
    affinity = spec.setdefault("affinity", {})
    node_affinity = affinity.setdefault("nodeAffinity", {})
    node_affinity["requiredDuringSchedulingIgnoredDuringExecution"] = {"nodeSelectorTerms": [
        {"matchFields": [{"key": "metadata.name", "operator": "In", "values": [node_name]}]}]}
    spec["tolerations"] = daemon_tolerations(spec)
    return spec


def target_node(pod: Obj) -> str | None:
    """The node a daemon pod is on, or is pinned to while still unscheduled."""
    spec = pod.get("spec") or {}
    if spec.get("nodeName"):
        return str(spec["nodeName"])
    required = (((spec.get("affinity") or {}).get("nodeAffinity") or {})
                .get("requiredDuringSchedulingIgnoredDuringExecution")) or {}
    for term in required.get("nodeSelectorTerms") or []:
        for req in term.get("matchFields") or []:
            values = req.get("values") or []
            if req.get("key") == "metadata.name" and req.get("operator") == "In" and len(values) == 1:
                return str(values[0])
    return None
