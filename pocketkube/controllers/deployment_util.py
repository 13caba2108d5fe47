"""Deployment helpers: template hashing, revisions, surge and unavailability arithmetic.

The rules are kubernetes pkg/controller/deployment/util/deployment_util.go's: a ReplicaSet is
"new" when its pod template (without the pod-template-hash label) equals the Deployment's;
revisions live in the `deployment.kubernetes.io/revision` annotation; maxSurge rounds up and
maxUnavailable rounds down, and both zero means one may be unavailable.
"""

from __future__ import annotations

import copy
import hashlib
import math
from typing import Any

import orjson

Obj = dict[str, Any]

HASH_LABEL = "pod-template-hash"
REVISION = "deployment.kubernetes.io/revision"
DESIRED = "deployment.kubernetes.io/desired-replicas"
MAX_REPLICAS = "deployment.kubernetes.io/max-replicas"
CHANGE_CAUSE = "kubernetes.io/change-cause"
_ALPHABET = "bcdfghjklmnpqrstvwxz2456789"


def template_hash(template: Obj, collision_count: int = 0) -> str:
    raw = orjson.dumps(template, option=orjson.OPT_SORT_KEYS) + str(collision_count).encode()
    n = int.from_bytes(hashlib.sha256(raw).digest()[:8], "big")
    out = []
    for _ in range(10):
        n, r = divmod(n, len(_ALPHABET))
        out.append(_ALPHABET[r])
    return "".join(out)


def strip_hash(template: Obj) -> Obj:
    t = copy.deepcopy(template)
    labels = (t.get("metadata") or {}).get("labels")
    if isinstance(labels, dict):
        labels.pop(HASH_LABEL, None)
    return t


def equal_ignore_hash(a: Obj, b: Obj) -> bool:
    return _normal(strip_hash(a)) == _normal(strip_hash(b))


def _normal(t: Obj) -> Obj:
    md = t.get("metadata") or {}
    md = {k: v for k, v in md.items() if v not in (None, {}, []) and k != "creationTimestamp"}
    return {**t, "metadata": md}


def revision(rs: Obj) -> int:
    try:
        return int((rs.get("metadata", {}).get("annotations") or {}).get(REVISION, "0"))
    except ValueError:
        return 0


def scaled_value(value: Any, total: int, *, round_up: bool) -> int:
    if value is None:
        return 0
    if isinstance(value, int):
        return value
    text = str(value)
    if text.endswith("%"):
        try:
            pct = int(text[:-1])
        except ValueError:
            return 0
        x = pct * total / 100
        return math.ceil(x) if round_up else math.floor(x)
    try:
        return int(text)
    except ValueError:
        return 0


def surge_and_unavailable(deploy: Obj) -> tuple[int, int]:
    spec = deploy.get("spec") or {}
    replicas = int(spec.get("replicas", 1))
    ru = ((spec.get("strategy") or {}).get("rollingUpdate") or {})
    surge = scaled_value(ru.get("maxSurge", "25%"), replicas, round_up=True)
    unavailable = scaled_value(ru.get("maxUnavailable", "25%"), replicas, round_up=False)
    if surge == 0 and unavailable == 0:
        unavailable = 1
    return surge, min(unavailable, replicas)


def replicas_of(rs: Obj) -> int:
    return int((rs.get("spec") or {}).get("replicas", 0) or 0)


def status_of(rs: Obj, field: str) -> int:
    return int((rs.get("status") or {}).get(field, 0) or 0)
