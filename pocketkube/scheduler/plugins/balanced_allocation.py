"""NodeResourcesBalancedAllocation: prefer nodes whose cpu and memory fractions stay close.

score = (1 - std(cpu fraction, memory fraction)) * 100 after placing the pod; with two resources the
standard deviation is |a - b| / 2. Uses the actual requests (not the non-zero defaults), like kube.
"""

from __future__ import annotations

from pocketkube.scheduler.framework.interface import (
    ASSIGNED_POD_DELETE,
    MAX_NODE_SCORE,
    NODE_ADD,
    NODE_UPDATE,
    ClusterEvent,
    CycleState,
    Handle,
)
from pocketkube.scheduler.node_info import NodeInfo
from pocketkube.scheduler.types import PodInfo

NAME = "NodeResourcesBalancedAllocation"


def events_to_register() -> list[ClusterEvent]:
    return [ASSIGNED_POD_DELETE, NODE_ADD, NODE_UPDATE]


def balanced_score(pod: PodInfo, node: NodeInfo) -> int:
    if not node.alloc_cpu or not node.alloc_mem:
        return 0
    cpu = min((node.req_cpu + pod.req_cpu) / node.alloc_cpu, 1.0)
    mem = min((node.req_mem + pod.req_mem) / node.alloc_mem, 1.0)
    return int((1.0 - abs(cpu - mem) / 2) * MAX_NODE_SCORE)


class BalancedAllocation:
    name = NAME

    def score(self, state: CycleState, pod: PodInfo, node: NodeInfo) -> int:
        return balanced_score(pod, node)

    def score_key(self, pod: PodInfo) -> tuple[int, int]:
        """The score reads only these of the pod (and the node's totals): the framework memoises it."""
        return pod.req_cpu, pod.req_mem

    def score_nodes(self, state: CycleState, pod: PodInfo, nodes: list[NodeInfo]) -> list[int]:
        cpu, mem = pod.req_cpu, pod.req_mem
        out: list[int] = []
        append = out.append
        for n in nodes:
            ic, im = n.inv_cpu, n.inv_mem
            if not ic or not im:
                append(0)
                continue
            fc = (n.req_cpu + cpu) * ic
            fm = (n.req_mem + mem) * im
            if fc > 1.0:
                fc = 1.0
            if fm > 1.0:
                fm = 1.0
            append(int((1.0 - (fc - fm if fc > fm else fm - fc) * 0.5) * MAX_NODE_SCORE))
        return out


def new(handle: Handle) -> BalancedAllocation:
    return BalancedAllocation()
