"""NodePorts: a hostPort (protocol, IP, port) can be used by one pod per node; 0.0.0.0 takes all IPs."""

from __future__ import annotations

from pocketkube.scheduler.framework.interface import (
    ASSIGNED_POD_DELETE,
    NODE_ADD,
    ClusterEvent,
    CycleState,
    Handle,
)
from pocketkube.scheduler.framework.status import SKIP, Status
from pocketkube.scheduler.node_info import NodeInfo
from pocketkube.scheduler.types import PodInfo

NAME = "NodePorts"
ERR_REASON = "node(s) didn't have free ports for the requested pod ports"
_REJECT = Status.unschedulable(ERR_REASON, plugin=NAME)


def events_to_register() -> list[ClusterEvent]:
    return [ASSIGNED_POD_DELETE, NODE_ADD]


def fits(pod: PodInfo, node: NodeInfo) -> bool:
    return not any(node.port_conflict(proto, port, ip) for proto, port, ip in pod.host_ports)


class NodePorts:
    name = NAME

    def pre_filter(self, state: CycleState, pod: PodInfo) -> Status | None:
        return None if pod.host_ports else SKIP

    def filter(self, state: CycleState, pod: PodInfo, node: NodeInfo) -> Status | None:
        return None if fits(pod, node) else _REJECT


def new(handle: Handle) -> NodePorts:
    return NodePorts()
