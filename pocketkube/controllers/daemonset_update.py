"""DaemonSet RollingUpdate decisions (kubernetes pkg/controller/daemon/update.go), as pure functions.

Given the nodes that should run a daemon pod and the pods on each, decide which old-revision pods
to delete and on which nodes to start a new-revision pod:

- maxSurge 0: delete old pods — unavailable ones freely, available ones only while fewer than
  maxUnavailable desired nodes are without an available pod; the controller recreates them.
- maxSurge > 0: start the new pod next to the old one on at most maxSurge nodes at a time (at
  once where the old pod is unavailable anyway), and delete the old pod when the new one is
  available.

Percentages scale with the number of desired nodes; maxUnavailable rounds up, as kube's does.
"""

from __future__ import annotations

from typing import Any

from pocketkube.controllers.deployment_util import scaled_value
from pocketkube.controllers.pod_util import is_available
from pocketkube.controllers.revisions import HASH_LABEL

Obj = dict[str, Any]


def budgets(ds: Obj, desired: int) -> tuple[int, int]:
    """(maxSurge, maxUnavailable) in pods; both zero means one may be unavailable."""
    rolling = (((ds.get("spec") or {}).get("updateStrategy") or {}).get("rollingUpdate")) or {}
    surge = scaled_value(rolling.get("maxSurge", 0), desired, round_up=True)
    unavailable = scaled_value(rolling.get("maxUnavailable", 1), desired, round_up=True)
    if surge == 0 and unavailable == 0:
        unavailable = 1
    return surge, unavailable


def surging(ds: Obj) -> bool:
    strategy = (ds.get("spec") or {}).get("updateStrategy") or {}
    return strategy.get("type", "RollingUpdate") == "RollingUpdate" and budgets(ds, 100)[0] > 0


def is_updated(pod: Obj, current_hash: str) -> bool:
    return bool((pod["metadata"].get("labels") or {}).get(HASH_LABEL) == current_hash)


def rolling_plan(ds: Obj, desired: dict[str, list[Obj]], current_hash: str) -> tuple[list[str], list[Obj]]:
    """(nodes to start a new pod on, old pods to delete); `desired` maps each node that should run
    a daemon pod to its live (not terminating) pods, oldest first."""
    spec = ds.get("spec") or {}
    if (spec.get("updateStrategy") or {}).get("type", "RollingUpdate") != "RollingUpdate":
        return [], []
    min_ready = int(spec.get("minReadySeconds") or 0)
    max_surge, max_unavailable = budgets(ds, len(desired))
    if max_surge > 0:
        return _surge(desired, current_hash, min_ready, max_surge)
    unavailable = 0
    old_available: list[Obj] = []
    old_unavailable: list[Obj] = []
    for pods in desired.values():
        if not pods:
            unavailable += 1
            continue
        pod = pods[0]
        if not is_available(pod, min_ready):
            unavailable += 1
            if not is_updated(pod, current_hash):
                old_unavailable.append(pod)
        elif not is_updated(pod, current_hash):
            old_available.append(pod)
    budget = max(max_unavailable - unavailable, 0)
    return [], old_unavailable + old_available[:budget]


def _surge(desired: dict[str, list[Obj]], current_hash: str, min_ready: int,
           max_surge: int) -> tuple[list[str], list[Obj]]:
    create: list[str] = []
    delete: list[Obj] = []
    candidates: list[str] = []
    surged = 0
    for node, pods in desired.items():
        new = [p for p in pods if is_updated(p, current_hash)]
        old = [p for p in pods if not is_updated(p, current_hash)]
        if not old or len(new) > 1:
            continue
        if new:
            if is_available(new[0], min_ready):
                delete += old
            else:
                surged += 1
        elif not is_available(old[0], min_ready):
            create.append(node)  # nothing available to protect: replace at once
        else:
            candidates.append(node)
    create += candidates[:max(max_surge - surged, 0)]
    return create, delete
