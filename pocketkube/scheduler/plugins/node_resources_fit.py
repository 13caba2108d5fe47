"""NodeResourcesFit: requests vs allocatable (Filter) and the LeastAllocated score.

Filter messages are kube's: "Too many pods", "Insufficient cpu", "Insufficient memory". A request
larger than the whole node is UnschedulableAndUnresolvable (preemption cannot help), otherwise
Unschedulable. The score prefers nodes with the most free cpu/memory after placing the pod, counting
pods without requests at the non-zero defaults (100m, 200Mi) so empty-request pods still spread.
"""

from __future__ import annotations

from pocketkube.scheduler.framework.interface import (
    ASSIGNED_POD_DELETE,
    ASSIGNED_POD_UPDATE,
    MAX_NODE_SCORE,
    NODE_ADD,
    NODE_UPDATE,
    ClusterEvent,
    CycleState,
    Handle,
)
from pocketkube.scheduler.framework.status import Code, Status
from pocketkube.scheduler.node_info import NodeInfo
from pocketkube.scheduler.types import PodInfo

NAME = "NodeResourcesFit"


def events_to_register() -> list[ClusterEvent]:
    return [ASSIGNED_POD_DELETE, ASSIGNED_POD_UPDATE, NODE_ADD, NODE_UPDATE]


def fits(pod: PodInfo, node: NodeInfo) -> Status | None:
    reasons: list[str] = []
    unresolvable = False
    if len(node.pods) + 1 > node.alloc_pods:
        reasons.append("Too many pods")
    cpu, mem = pod.req_cpu, pod.req_mem
    if cpu > 0 and cpu > node.alloc_cpu - node.req_cpu:
        reasons.append("Insufficient cpu")
        unresolvable = cpu > node.alloc_cpu
    if mem > 0 and mem > node.alloc_mem - node.req_mem:
        reasons.append("Insufficient memory")
        unresolvable = unresolvable or mem > node.alloc_mem
    if not reasons:
        return None
    return Status(Code.UNSCHEDULABLE_AND_UNRESOLVABLE if unresolvable else Code.UNSCHEDULABLE, *reasons,
                  plugin=NAME)


def least_allocated_score(pod: PodInfo, node: NodeInfo) -> int:
    """(free after placing / allocatable) * 100 for cpu and memory, weight 1 each, as ints like kube."""
    total = 0
    cap = node.alloc_cpu
    req = node.nz_cpu + pod.nz_cpu
    if cap and req <= cap:
        total += (cap - req) * MAX_NODE_SCORE // cap
    cap = node.alloc_mem
    req = node.nz_mem + pod.nz_mem
    if cap and req <= cap:
        total += (cap - req) * MAX_NODE_SCORE // cap
    return total // 2


class NodeResourcesFit:
    name = NAME

    def pre_filter(self, state: CycleState, pod: PodInfo) -> Status | None:
        return None

    def filter(self, state: CycleState, pod: PodInfo, node: NodeInfo) -> Status | None:
        # inlined fast path of fits(): most nodes pass every check
        if node.free_pods > 0 and node.free_cpu >= pod.req_cpu and node.free_mem >= pod.req_mem:
            return None
        return fits(pod, node)

    def filter_nodes(self, state: CycleState, pod: PodInfo, nodes: list[NodeInfo],
                     statuses: dict[str, Status]) -> list[NodeInfo]:
        cpu, mem = pod.req_cpu, pod.req_mem
        ok = [n for n in nodes if n.free_pods > 0 and n.free_cpu >= cpu and n.free_mem >= mem]
        if len(ok) < len(nodes):
            passed = {id(n) for n in ok}
            for n in nodes:
                if id(n) not in passed:
                    st = fits(pod, n)
                    if st is not None:
                        statuses[n.name] = st
        return ok

    def score(self, state: CycleState, pod: PodInfo, node: NodeInfo) -> int:
        return least_allocated_score(pod, node)

    def score_key(self, pod: PodInfo) -> tuple[int, int]:
        """The score reads only these of the pod (and the node's totals): the framework memoises it."""
        return pod.nz_cpu, pod.nz_mem

    def score_nodes(self, state: CycleState, pod: PodInfo, nodes: list[NodeInfo]) -> list[int]:
        cpu, mem, top = pod.nz_cpu, pod.nz_mem, MAX_NODE_SCORE
        out: list[int] = []
        append = out.append
        for n in nodes:
            fc, fm = n.nz_free_cpu - cpu, n.nz_free_mem - mem
            append(((fc * top // n.alloc_cpu if fc >= 0 and n.alloc_cpu else 0)
                    + (fm * top // n.alloc_mem if fm >= 0 and n.alloc_mem else 0)) >> 1)
        return out


def new(handle: Handle) -> NodeResourcesFit:
    return NodeResourcesFit()
