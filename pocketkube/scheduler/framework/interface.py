"""Plugin protocols (one per extension point), the per-cycle state, and cluster events.

Every plugin module exposes `NAME`, `events_to_register()` (which cluster events may make a pod it
rejected schedulable: the queue uses these to move pods back), a pure helper and `new(handle)`.
Filter/Score take the pod and a NodeInfo; returning None from Filter means "fits".
"""

from __future__ import annotations

import enum
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol

from pocketkube.scheduler.framework.status import Status
from pocketkube.scheduler.node_info import NodeInfo
from pocketkube.scheduler.types import PodInfo

if TYPE_CHECKING:
    from pocketkube.scheduler.cache import SchedulerCache

MAX_NODE_SCORE = 100


class ActionType(enum.IntFlag):
    ADD = 1
    DELETE = 2
    UPDATE = 4
    ALL = ADD | DELETE | UPDATE


@dataclass(frozen=True, slots=True)
class ClusterEvent:
    resource: str  # "Node", "AssignedPod", "Namespace", "*"
    action: ActionType

    def matches(self, incoming: ClusterEvent) -> bool:
        return (self.resource in ("*", incoming.resource)) and bool(self.action & incoming.action)


NODE_ADD = ClusterEvent("Node", ActionType.ADD)
NODE_UPDATE = ClusterEvent("Node", ActionType.UPDATE)
NODE_DELETE = ClusterEvent("Node", ActionType.DELETE)
ASSIGNED_POD_ADD = ClusterEvent("AssignedPod", ActionType.ADD)
ASSIGNED_POD_UPDATE = ClusterEvent("AssignedPod", ActionType.UPDATE)
ASSIGNED_POD_DELETE = ClusterEvent("AssignedPod", ActionType.DELETE)
NAMESPACE_CHANGE = ClusterEvent("Namespace", ActionType.ADD | ActionType.UPDATE)
WILDCARD = ClusterEvent("*", ActionType.ALL)


class CycleState(dict[str, Any]):
    """Per-pod scratch space shared by a plugin's PreFilter/Filter/PreScore/Score in one cycle."""


class Plugin(Protocol):
    name: str


class PreFilterPlugin(Plugin, Protocol):
    def pre_filter(self, state: CycleState, pod: PodInfo) -> Status | None: ...


class FilterPlugin(Plugin, Protocol):
    def filter(self, state: CycleState, pod: PodInfo, node: NodeInfo) -> Status | None: ...


class PreScorePlugin(Plugin, Protocol):
    def pre_score(self, state: CycleState, pod: PodInfo, nodes: list[NodeInfo]) -> Status | None: ...


class ScorePlugin(Plugin, Protocol):
    def score(self, state: CycleState, pod: PodInfo, node: NodeInfo) -> int: ...


class NormalizeScorePlugin(Plugin, Protocol):
    def normalize_score(self, state: CycleState, pod: PodInfo, nodes: list[NodeInfo], scores: list[int]) -> None: ...


@dataclass
class Handle:
    """What a plugin factory gets: read access to the cache (pods, nodes, namespace labels)."""

    cache: SchedulerCache
    args: dict[str, Any]


def default_normalize(scores: list[int], *, reverse: bool) -> None:
    """helper.DefaultNormalizeScore: scale to [0, 100] by the max; reverse for "fewer is better"."""
    top = max(scores, default=0)
    if top == 0:
        if reverse:
            scores[:] = [MAX_NODE_SCORE] * len(scores)
        return
    for i, s in enumerate(scores):
        s = MAX_NODE_SCORE * s // top
        scores[i] = MAX_NODE_SCORE - s if reverse else s
