"""NodeUnschedulable: cordoned nodes (spec.unschedulable) take only pods tolerating
node.kubernetes.io/unschedulable:NoSchedule (DaemonSet pods do)."""

from __future__ import annotations

from pocketkube.scheduler.cache import SchedulerCache
from pocketkube.scheduler.framework.interface import NODE_ADD, NODE_UPDATE, ClusterEvent, CycleState, Handle
from pocketkube.scheduler.framework.status import SKIP, Status
from pocketkube.scheduler.node_info import NodeInfo
from pocketkube.scheduler.types import TAINT_UNSCHEDULABLE, PodInfo, Taint, tolerated

NAME = "NodeUnschedulable"
ERR_REASON = "node(s) were unschedulable"
_REJECT = Status.unresolvable(ERR_REASON, plugin=NAME)
_TAINT = Taint(TAINT_UNSCHEDULABLE, "", "NoSchedule")


def events_to_register() -> list[ClusterEvent]:
    return [NODE_ADD, NODE_UPDATE]


def fits(pod: PodInfo, node: NodeInfo) -> bool:
    return not node.unschedulable or tolerated(pod.tolerations, _TAINT)


class NodeUnschedulable:
    name = NAME

    def __init__(self, cache: SchedulerCache | None = None) -> None:
        self.cache = cache

    def pre_filter(self, state: CycleState, pod: PodInfo) -> Status | None:
        return SKIP if self.cache is not None and not self.cache.cordoned_nodes else None

    def filter(self, state: CycleState, pod: PodInfo, node: NodeInfo) -> Status | None:
        if not node.unschedulable or tolerated(pod.tolerations, _TAINT):
            return None
        return _REJECT


    def filter_nodes(self, state: CycleState, pod: PodInfo, nodes: list[NodeInfo],
                     statuses: dict[str, Status]) -> list[NodeInfo]:
        if tolerated(pod.tolerations, _TAINT):
            return nodes
        ok = [n for n in nodes if not n.unschedulable]
        if len(ok) < len(nodes):
            for n in nodes:
                if n.unschedulable:
                    statuses[n.name] = _REJECT
        return ok


def new(handle: Handle) -> NodeUnschedulable:
    return NodeUnschedulable(handle.cache)
