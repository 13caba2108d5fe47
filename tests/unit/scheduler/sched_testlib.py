"""Builders for Node and Pod JSON used by the scheduler unit tests (the shapes the API serves)."""

from __future__ import annotations

import random
from typing import Any

from pocketkube.scheduler.cache import SchedulerCache
from pocketkube.scheduler.framework.registry import Profile, new_framework
from pocketkube.scheduler.framework.runtime import Framework

Obj = dict[str, Any]


def node(name: str, *, cpu: str = "4", memory: str = "8Gi", pods: str = "110", labels: dict[str, str] | None = None,
         taints: list[Obj] | None = None, unschedulable: bool = False) -> Obj:
    return {"apiVersion": "v1", "kind": "Node",
            "metadata": {"name": name, "labels": {"kubernetes.io/hostname": name, **(labels or {})}},
            "spec": {"taints": taints or [], **({"unschedulable": True} if unschedulable else {})},
            "status": {"allocatable": {"cpu": cpu, "memory": memory, "pods": pods}}}


def pod(name: str = "p", *, ns: str = "default", cpu: str | None = None, memory: str | None = None,
        labels: dict[str, str] | None = None, node_name: str = "", owner: str = "", priority: int = 0,
        host_ports: list[int | tuple[int, str]] | None = None, **spec: Any) -> Obj:
    requests = {k: v for k, v in (("cpu", cpu), ("memory", memory)) if v is not None}
    container: Obj = {"name": "c", "image": "pause", "resources": {"requests": requests} if requests else {}}
    if host_ports:
        container["ports"] = [{"containerPort": p, "hostPort": p} if isinstance(p, int)
                              else {"containerPort": p[0], "hostPort": p[0], "hostIP": p[1]} for p in host_ports]
    md: Obj = {"name": name, "namespace": ns, "uid": f"uid-{ns}-{name}", "labels": labels or {}}
    if owner:
        md["ownerReferences"] = [{"apiVersion": "apps/v1", "kind": "ReplicaSet", "name": owner, "uid": f"rs-{owner}",
                                  "controller": True}]
    body: Obj = {"containers": [container], "schedulerName": "default-scheduler", "priority": priority, **spec}
    if node_name:
        body["nodeName"] = node_name
    return {"apiVersion": "v1", "kind": "Pod", "metadata": md, "spec": body}


def taint(key: str, value: str = "", effect: str = "NoSchedule") -> Obj:
    return {"key": key, "value": value, "effect": effect}


def cluster(nodes: list[Obj], existing: list[Obj] = (), namespaces: dict[str, dict[str, str]] | None = None,  # type: ignore[assignment]
            seed: int = 1) -> tuple[SchedulerCache, Framework]:
    """A cache holding `nodes` and the bound `existing` pods, and a default profile scoring all nodes."""
    from pocketkube.scheduler.types import PodInfo

    cache = SchedulerCache()
    for n in nodes:
        cache.add_node(n)
    for p in existing:
        cache.add_pod(PodInfo(p))
    for name, labels in (namespaces or {}).items():
        cache.set_namespace(name, labels)
    fw = new_framework(Profile(percentage_of_nodes_to_score=100), cache, rng=random.Random(seed))
    return cache, fw
