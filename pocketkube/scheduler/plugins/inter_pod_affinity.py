"""InterPodAffinity: required pod affinity / anti-affinity by topology (Filter), preferred as Score.

PreFilter counts, per (topologyKey, value) pair, the existing pods matching each of the incoming
pod's required terms, and the existing pods whose required anti-affinity matches the incoming pod;
Filter then only looks up the node's pairs. Pods with no affinity skip everything while no pod in
the cluster has required anti-affinity (the common case), so the plugin costs nothing then.
"""

from __future__ import annotations

from collections.abc import Iterable

from pocketkube.scheduler.cache import SchedulerCache
from pocketkube.scheduler.framework.interface import (
    ASSIGNED_POD_ADD,
    ASSIGNED_POD_DELETE,
    ASSIGNED_POD_UPDATE,
    MAX_NODE_SCORE,
    NAMESPACE_CHANGE,
    NODE_ADD,
    NODE_UPDATE,
    ClusterEvent,
    CycleState,
    Handle,
)
from pocketkube.scheduler.framework.status import SKIP, Status
from pocketkube.scheduler.node_info import NodeInfo
from pocketkube.scheduler.types import AffinityTerm, PodInfo

NAME = "InterPodAffinity"
ERR_AFFINITY = "node(s) didn't match pod affinity rules"
ERR_ANTI_AFFINITY = "node(s) didn't match pod anti-affinity rules"
ERR_EXISTING_ANTI_AFFINITY = "node(s) didn't satisfy existing pods anti-affinity rules"
_REJECT_AFFINITY = Status.unresolvable(ERR_AFFINITY, plugin=NAME)
_REJECT_ANTI = Status.unschedulable(ERR_ANTI_AFFINITY, plugin=NAME)
_REJECT_EXISTING = Status.unschedulable(ERR_EXISTING_ANTI_AFFINITY, plugin=NAME)
HARD_POD_AFFINITY_WEIGHT = 1

Pair = tuple[str, str]


def events_to_register() -> list[ClusterEvent]:
    return [ASSIGNED_POD_ADD, ASSIGNED_POD_UPDATE, ASSIGNED_POD_DELETE, NODE_ADD, NODE_UPDATE, NAMESPACE_CHANGE]


class _State:
    __slots__ = ("affinity", "anti", "existing_anti", "self_match")

    def __init__(self) -> None:
        self.existing_anti: dict[Pair, int] = {}
        self.affinity: dict[Pair, int] = {}
        self.anti: dict[Pair, int] = {}
        self.self_match = False


def count_pairs(pod: PodInfo, nodes: Iterable[NodeInfo], ns_labels: dict[str, dict[str, str]],
                anti_nodes: Iterable[NodeInfo] | None = None) -> _State:
    """The pure part of PreFilter: topology-pair counts. Existing pods' anti-affinity is looked for
    on `anti_nodes` (the nodes holding such pods; default: `nodes`); the incoming pod's own terms
    are matched against the pods of every node in `nodes`, and only when it has such terms."""
    st = _State()
    nodes = list(nodes)
    for node in nodes if anti_nodes is None else anti_nodes:
        labels = node.labels
        for existing in node.anti_affinity_pods.values():
            for term in existing.anti_affinity:
                value = labels.get(term.topology_key)
                if value is not None and term.matches(pod, ns_labels):
                    pair = (term.topology_key, value)
                    st.existing_anti[pair] = st.existing_anti.get(pair, 0) + 1
    if pod.affinity or pod.anti_affinity:
        for node in nodes:
            labels = node.labels
            for existing in node.pods.values():
                for terms, counts in ((pod.affinity, st.affinity), (pod.anti_affinity, st.anti)):
                    for term in terms:
                        value = labels.get(term.topology_key)
                        if value is not None and term.matches(existing, ns_labels):
                            pair = (term.topology_key, value)
                            counts[pair] = counts.get(pair, 0) + 1
    st.self_match = all(t.matches(pod, ns_labels) for t in pod.affinity)
    return st


def fits(st: _State, pod: PodInfo, node: NodeInfo) -> Status | None:
    labels = node.labels
    if pod.affinity:
        exist = True
        for term in pod.affinity:
            value = labels.get(term.topology_key)
            if value is None:
                return _REJECT_AFFINITY
            if st.affinity.get((term.topology_key, value), 0) <= 0:
                exist = False
        # the first pod of a group whose affinity selects itself may go anywhere with the keys
        if not exist and not (not st.affinity and st.self_match):
            return _REJECT_AFFINITY
    for term in pod.anti_affinity:
        value = labels.get(term.topology_key)
        if value is not None and st.anti.get((term.topology_key, value), 0) > 0:
            return _REJECT_ANTI
    if st.existing_anti:
        for key, value in labels.items():
            if st.existing_anti.get((key, value), 0) > 0:
                return _REJECT_EXISTING
    return None


class InterPodAffinity:
    name = NAME

    def __init__(self, cache: SchedulerCache) -> None:
        self.cache = cache

    def pre_filter(self, state: CycleState, pod: PodInfo) -> Status | None:
        if not pod.affinity and not pod.anti_affinity and not self.cache.anti_affinity_pods:
            return SKIP
        cache = self.cache
        # only nodes with required anti-affinity pods can reject for "existing pods"; the incoming
        # pod's own terms need every node, and only when it has any
        all_nodes = cache.node_list() if pod.affinity or pod.anti_affinity else []
        state[NAME] = count_pairs(pod, all_nodes, cache.ns_labels, cache.real_nodes(cache.anti_affinity_nodes))
        return None

    def filter(self, state: CycleState, pod: PodInfo, node: NodeInfo) -> Status | None:
        st: _State = state[NAME]
        return fits(st, pod, node)

    # scoring ----------------------------------------------------------------------------------------

    def pre_score(self, state: CycleState, pod: PodInfo, nodes: list[NodeInfo]) -> Status | None:
        has_preferred = bool(pod.preferred_affinity or pod.preferred_anti_affinity)
        if not has_preferred and not self.cache.affinity_pods:
            return SKIP
        ns_labels = self.cache.ns_labels
        scores: dict[Pair, int] = {}

        def add(term: AffinityTerm, labels: dict[str, str], weight: int) -> None:
            value = labels.get(term.topology_key)
            if value is not None:
                pair = (term.topology_key, value)
                scores[pair] = scores.get(pair, 0) + weight

        # with no preferred terms of its own, only pods that carry affinity can contribute, so
        # only the nodes holding such pods are walked
        nodes_to_walk = self.cache.node_list() if has_preferred else self.cache.real_nodes(self.cache.affinity_nodes)
        for node in nodes_to_walk:
            existing_pods = node.pods if has_preferred else node.affinity_pods
            for existing in existing_pods.values():
                for w, term in pod.preferred_affinity:
                    if term.matches(existing, ns_labels):
                        add(term, node.labels, w)
                for w, term in pod.preferred_anti_affinity:
                    if term.matches(existing, ns_labels):
                        add(term, node.labels, -w)
                for term in existing.affinity:
                    if term.matches(pod, ns_labels):
                        add(term, node.labels, HARD_POD_AFFINITY_WEIGHT)
                for w, term in existing.preferred_affinity:
                    if term.matches(pod, ns_labels):
                        add(term, node.labels, w)
                for w, term in existing.preferred_anti_affinity:
                    if term.matches(pod, ns_labels):
                        add(term, node.labels, -w)
        if not scores:
            return SKIP
        state[NAME + "/score"] = scores
        return None

    def score(self, state: CycleState, pod: PodInfo, node: NodeInfo) -> int:
        scores: dict[Pair, int] = state[NAME + "/score"]
        return sum(scores.get(item, 0) for item in node.labels.items())

    def normalize_score(self, state: CycleState, pod: PodInfo, nodes: list[NodeInfo], scores: list[int]) -> None:
        lo, hi = min(scores, default=0), max(scores, default=0)
        span = hi - lo
        for i, s in enumerate(scores):
            scores[i] = MAX_NODE_SCORE * (s - lo) // span if span else 0


def new(handle: Handle) -> InterPodAffinity:
    return InterPodAffinity(handle.cache)
