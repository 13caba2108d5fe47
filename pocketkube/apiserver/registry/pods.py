"""Pod strategy: initial status and QoS class, status kept from spec writes, graceful deletion.

A pod bound to a node is deleted gracefully: the API server only sets deletionTimestamp and
deletionGracePeriodSeconds, and the node's kubelet stops the containers and then deletes the pod
for good with grace 0 (kubernetes pkg/registry/core/pod/strategy.go CheckGracefulDelete).
"""

from __future__ import annotations

from typing import Any

from pocketkube.apiserver.registry.strategy import Strategy

Obj = dict[str, Any]


def qos_class(pod: Obj) -> str:
    spec = pod.get("spec") or {}
    containers = list(spec.get("containers") or []) + list(spec.get("initContainers") or [])
    requests_seen = limits_seen = False
    guaranteed = True
    for c in containers:
        res = c.get("resources") or {}
        req = {k: v for k, v in (res.get("requests") or {}).items() if k in ("cpu", "memory")}
        lim = {k: v for k, v in (res.get("limits") or {}).items() if k in ("cpu", "memory")}
        requests_seen = requests_seen or bool(req)
        limits_seen = limits_seen or bool(lim)
        if set(lim) != {"cpu", "memory"}:
            guaranteed = False
        for k, v in req.items():
            if str(lim.get(k)) != str(v):
                guaranteed = False
    if not requests_seen and not limits_seen:
        return "BestEffort"
    return "Guaranteed" if guaranteed and limits_seen else "Burstable"


class PodStrategy(Strategy):
    return_deleted_object = True

    def prepare_for_create(self, obj: Obj) -> None:
        super().prepare_for_create(obj)
        obj["status"] = {"phase": "Pending", "qosClass": qos_class(obj)}

    def graceful_delete_seconds(self, obj: Obj, requested: int | None) -> int:
        spec = obj.get("spec") or {}
        phase = (obj.get("status") or {}).get("phase")
        if not spec.get("nodeName") or phase in ("Succeeded", "Failed"):
            return 0
        if requested is not None:
            return max(requested, 0)
        grace = spec.get("terminationGracePeriodSeconds")
        return int(grace) if isinstance(grace, int) else 30
