"""The in-tree registry (plugin name → module with `new()`), and the `default-scheduler` profile.

The profile lists filters in kube's order (cheap, common rejections first) and the score weights of
kube's default configuration (TaintToleration 3, NodeAffinity 2, PodTopologySpread 2,
InterPodAffinity 2, NodeResourcesFit 1, NodeResourcesBalancedAllocation 1).
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field
from types import ModuleType
from typing import Any

from pocketkube.scheduler.cache import SchedulerCache
from pocketkube.scheduler.framework.interface import ClusterEvent, Handle
from pocketkube.scheduler.framework.runtime import Framework
from pocketkube.scheduler.plugins import (
    balanced_allocation,
    inter_pod_affinity,
    node_affinity,
    node_name,
    node_ports,
    node_resources_fit,
    node_unschedulable,
    pod_topology_spread,
    taint_toleration,
)

DEFAULT_SCHEDULER_NAME = "default-scheduler"

IN_TREE: dict[str, ModuleType] = {m.NAME: m for m in (
    node_unschedulable, node_name, taint_toleration, node_affinity, node_ports, node_resources_fit,
    pod_topology_spread, inter_pod_affinity, balanced_allocation)}

DEFAULT_FILTERS = [node_unschedulable.NAME, node_name.NAME, taint_toleration.NAME, node_affinity.NAME,
                   node_ports.NAME, node_resources_fit.NAME, pod_topology_spread.NAME, inter_pod_affinity.NAME]
DEFAULT_SCORES = {taint_toleration.NAME: 3, node_affinity.NAME: 2, pod_topology_spread.NAME: 2,
                  inter_pod_affinity.NAME: 2, node_resources_fit.NAME: 1, balanced_allocation.NAME: 1}


@dataclass
class Profile:
    scheduler_name: str = DEFAULT_SCHEDULER_NAME
    filters: list[str] = field(default_factory=lambda: list(DEFAULT_FILTERS))
    scores: dict[str, int] = field(default_factory=lambda: dict(DEFAULT_SCORES))
    plugin_args: dict[str, dict[str, Any]] = field(default_factory=dict)
    percentage_of_nodes_to_score: int = 0


def new_framework(profile: Profile, cache: SchedulerCache, *, registry: dict[str, ModuleType] | None = None,
                  rng: random.Random | None = None) -> Framework:
    registry = registry or IN_TREE
    names = list(dict.fromkeys([*profile.filters, *profile.scores]))
    plugins: dict[str, Any] = {}
    events: dict[str, list[ClusterEvent]] = {}
    for name in names:
        module = registry[name]
        plugins[name] = module.new(Handle(cache, profile.plugin_args.get(name, {})))
        events[name] = list(module.events_to_register())
    return Framework(profile.scheduler_name, plugins, filters=profile.filters, scores=profile.scores,
                     events=events, percentage_of_nodes_to_score=profile.percentage_of_nodes_to_score, rng=rng)
