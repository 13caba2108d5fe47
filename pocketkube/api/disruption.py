"""PodDisruptionBudget arithmetic shared by the eviction subresource and the disruption controller.

Pure functions on API JSON (kube's pkg/apis/policy helpers and pkg/controller/disruption): what
counts as a healthy pod, how minAvailable/maxUnavailable (an int or a percentage, rounded up as
intstr.GetScaledValueFromIntOrPercent does) turn into desiredHealthy, and the DisruptionAllowed
condition both writers keep in the PDB's status.
"""

from __future__ import annotations

import math
from typing import Any

from pocketkube.api import meta

Obj = dict[str, Any]


def pod_ready(pod: Obj) -> bool:
    return any(c.get("type") == "Ready" and c.get("status") == "True"
               for c in (pod.get("status") or {}).get("conditions") or [])


def scaled_value(value: Any, total: int) -> int:
    """An IntOrString against `total`: ints as they are, "N%" of total rounded up."""
    if isinstance(value, str):
        text = value.strip()
        if not text.endswith("%") or not text[:-1].isdigit():
            raise ValueError(f"invalid value for IntOrString: invalid type: string is not a percentage: {value!r}")
        return math.ceil(int(text[:-1]) * total / 100)
    return int(value)


def is_percent(value: Any) -> bool:
    return isinstance(value, str)


def replace_condition(conditions: list[Obj] | None, condition: Obj) -> list[Obj]:
    """`conditions` with `condition` in place of any of its type (appended last); lastTransitionTime
    kept while the status stays the same, as kube's UpdatePodCondition / SetStatusCondition do."""
    old = next((c for c in conditions or [] if c.get("type") == condition["type"]), None)
    keep = old is not None and old.get("status") == condition.get("status") and old.get("lastTransitionTime")
    new = {**condition, "lastTransitionTime": old["lastTransitionTime"] if keep and old else meta.now_rfc3339()}
    return [*(c for c in conditions or [] if c.get("type") != condition["type"]), new]


def disruption_target(reason: str, message: str) -> Obj:
    """The DisruptionTarget pod condition each deleter of a pod it did not own sets first."""
    return {"type": "DisruptionTarget", "status": "True", "reason": reason, "message": message}


def set_disruption_allowed_condition(pdb: Obj, *, allowed: bool, reason: str = "", message: str = "") -> None:
    """The DisruptionAllowed condition (reasons SufficientPods, InsufficientPods, SyncFailed)."""
    status = pdb.setdefault("status", {})
    old = next((c for c in status.get("conditions") or [] if c.get("type") == "DisruptionAllowed"), None)
    want: Obj = {"type": "DisruptionAllowed", "status": "True" if allowed else "False",
                 "reason": reason or ("SufficientPods" if allowed else "InsufficientPods"), "message": message,
                 "observedGeneration": int(pdb["metadata"].get("generation") or 0)}
    if old is not None and old.get("status") == want["status"] and all(old.get(k) == v for k, v in want.items()):
        return
    status["conditions"] = replace_condition(status.get("conditions"), want)
