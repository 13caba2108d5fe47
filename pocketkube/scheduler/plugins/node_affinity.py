"""NodeAffinity: spec.nodeSelector and required nodeAffinity (Filter), preferred terms (Score).

Terms are ORed, expressions in a term ANDed; In/NotIn/Exists/DoesNotExist/Gt/Lt on labels and
matchFields on metadata.name, as v1.NodeSelector does.
"""

from __future__ import annotations

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
from pocketkube.scheduler.types import PodInfo

NAME = "NodeAffinity"
ERR_REASON = "node(s) didn't match Pod's node affinity/selector"
_REJECT = Status.unresolvable(ERR_REASON, plugin=NAME)


def events_to_register() -> list[ClusterEvent]:
    return [NODE_ADD, NODE_UPDATE]


def fits(pod: PodInfo, node: NodeInfo) -> bool:
    labels = node.labels
    for k, v in pod.node_selector.items():
        if labels.get(k) != v:
            return False
    if pod.node_affinity is not None:
        return any(term.matches(labels, node.name) for term in pod.node_affinity)
    return True


class NodeAffinity:
    name = NAME

    def pre_filter(self, state: CycleState, pod: PodInfo) -> Status | None:
        return None if pod.node_selector or pod.node_affinity is not None else SKIP

    def filter(self, state: CycleState, pod: PodInfo, node: NodeInfo) -> Status | None:
        return None if fits(pod, node) else _REJECT

    def pre_score(self, state: CycleState, pod: PodInfo, nodes: list[NodeInfo]) -> Status | None:
        return None if pod.node_preferred else SKIP

    def score(self, state: CycleState, pod: PodInfo, node: NodeInfo) -> int:
        return sum(w for w, term in pod.node_preferred if term.matches(node.labels, node.name))

    def normalize_score(self, state: CycleState, pod: PodInfo, nodes: list[NodeInfo], scores: list[int]) -> None:
        default_normalize(scores, reverse=False)


def new(handle: Handle) -> NodeAffinity:
    return NodeAffinity()
