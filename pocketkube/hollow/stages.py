"""Pod stages of hollow nodes, as data (kwok's Stage idea): which pods a stage applies to, after
what delay, and what it does. The driver (pods.py) evaluates them in order for each pod event."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

Obj = dict[str, Any]

COMPLETE_AFTER = "pocketkube.io/hollow-complete-after"
FAIL_AFTER = "pocketkube.io/hollow-fail-after"


def _annotation_seconds(pod: Obj, key: str) -> float | None:
    value = (pod.get("metadata", {}).get("annotations") or {}).get(key)
    if value is None:
        return None
    try:
        return float(str(value).rstrip("s"))
    except ValueError:
        return None


@dataclass(frozen=True)
class Stage:
    name: str
    selects: Callable[[Obj], bool]
    delay: Callable[[Obj], float]
    next_phase: str  # "Running", "Succeeded", "Failed" or "Deleted"


def _phase(pod: Obj) -> str:
    return str((pod.get("status") or {}).get("phase") or "Pending")


DEFAULT_STAGES: tuple[Stage, ...] = (
    Stage("delete", lambda p: bool(p.get("metadata", {}).get("deletionTimestamp")), lambda p: 0.0, "Deleted"),
    Stage("ready", lambda p: _phase(p) == "Pending", lambda p: 0.0, "Running"),
    Stage("complete", lambda p: _phase(p) == "Running" and _annotation_seconds(p, COMPLETE_AFTER) is not None,
          lambda p: _annotation_seconds(p, COMPLETE_AFTER) or 0.0, "Succeeded"),
    Stage("fail", lambda p: _phase(p) == "Running" and _annotation_seconds(p, FAIL_AFTER) is not None,
          lambda p: _annotation_seconds(p, FAIL_AFTER) or 0.0, "Failed"),
)


def next_stage(pod: Obj, stages: tuple[Stage, ...] = DEFAULT_STAGES) -> Stage | None:
    for stage in stages:
        if stage.selects(pod):
            return stage
    return None
