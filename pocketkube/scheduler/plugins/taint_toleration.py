"""TaintToleration: NoSchedule/NoExecute taints must be tolerated (Filter); untolerated
PreferNoSchedule taints lower the score (fewer is better)."""

from __future__ import annotations

from pocketkube.scheduler.cache import SchedulerCache
from pocketkube.scheduler.framework.interface import (
    NODE_ADD,
    NODE_UPDATE,
    ClusterEvent,
    CycleState,
    Handle,
    default_normalize,
)
from pocketkube.scheduler.framework.status import SKIP, Status
from pocketkube.scheduler.node_info import NodeInfo
from pocketkube.scheduler.types import PodInfo, Taint, Toleration

NAME = "TaintToleration"


def events_to_register() -> list[ClusterEvent]:
    return [NODE_ADD, NODE_UPDATE]


def untolerated_taint(tolerations: tuple[Toleration, ...], taints: tuple[Taint, ...]) -> Taint | None:
    for taint in taints:
        if not any(t.tolerates(taint) for t in tolerations):
            return taint
    return None


def fits(pod: PodInfo, node: NodeInfo) -> Status | None:
    taint = untolerated_taint(pod.tolerations, node.taints)
    if taint is None:
        return None
    return Status.unresolvable(f"node(s) had untolerated taint {{{taint.key}: {taint.value}}}", plugin=NAME)


class TaintToleration:
    name = NAME

    def __init__(self, cache: SchedulerCache | None = None) -> None:
        self.cache = cache

    def pre_filter(self, state: CycleState, pod: PodInfo) -> Status | None:
        return SKIP if self.cache is not None and not self.cache.tainted_nodes else None

    def filter(self, state: CycleState, pod: PodInfo, node: NodeInfo) -> Status | None:
        if not node.taints:
            return None
        return fits(pod, node)

    def filter_nodes(self, state: CycleState, pod: PodInfo, nodes: list[NodeInfo],
                     statuses: dict[str, Status]) -> list[NodeInfo]:
        ok = [n for n in nodes if not n.taints]
        if len(ok) == len(nodes):
            return ok
        out: list[NodeInfo] = []
        for n in nodes:
            st = fits(pod, n) if n.taints else None
            if st is None:
                out.append(n)
            else:
                statuses[n.name] = st
        return out

    def pre_score(self, state: CycleState, pod: PodInfo, nodes: list[NodeInfo]) -> Status | None:
        if (not self.cache.prefer_tainted_nodes if self.cache is not None
                else not any(n.prefer_taints for n in nodes)):
            return SKIP
        state[NAME] = tuple(t for t in pod.tolerations if t.effect in ("", "PreferNoSchedule"))
        return None

    def score(self, state: CycleState, pod: PodInfo, node: NodeInfo) -> int:
        tols: tuple[Toleration, ...] = state[NAME]
        return sum(1 for taint in node.prefer_taints if not any(t.tolerates(taint) for t in tols))

    def normalize_score(self, state: CycleState, pod: PodInfo, nodes: list[NodeInfo], scores: list[int]) -> None:
        default_normalize(scores, reverse=True)


def new(handle: Handle) -> TaintToleration:
    return TaintToleration(handle.cache)
