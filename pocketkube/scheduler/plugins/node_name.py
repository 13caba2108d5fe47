"""NodeName: a pod that names its node (spec.nodeName) fits only there."""

from __future__ import annotations

from pocketkube.scheduler.framework.interface import NODE_ADD, ClusterEvent, CycleState, Handle
from pocketkube.scheduler.framework.status import SKIP, Status
from pocketkube.scheduler.node_info import NodeInfo
from pocketkube.scheduler.types import PodInfo

NAME = "NodeName"
ERR_REASON = "node(s) didn't match the requested node name"
_REJECT = Status.unresolvable(ERR_REASON, plugin=NAME)


def events_to_register() -> list[ClusterEvent]:
    return [NODE_ADD]


def fits(pod: PodInfo, node: NodeInfo) -> bool:
    return not pod.node_name or pod.node_name == node.name


class NodeName:
    name = NAME

    def pre_filter(self, state: CycleState, pod: PodInfo) -> Status | None:
        return None if pod.node_name else SKIP

    def filter(self, state: CycleState, pod: PodInfo, node: NodeInfo) -> Status | None:
        return None if fits(pod, node) else _REJECT


def new(handle: Handle) -> NodeName:
    return NodeName()
