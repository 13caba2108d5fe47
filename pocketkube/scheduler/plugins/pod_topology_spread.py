"""PodTopologySpread: topologySpreadConstraints (DoNotSchedule filters, ScheduleAnyway scores).

Skew for a domain = matching pods there (+1 for the incoming pod if it matches its own selector)
minus the minimum over all eligible domains (0 when fewer than minDomains exist). Pods without
constraints that belong to a controller get kube's system defaults (hostname maxSkew 3, zone maxSkew
5, ScheduleAnyway), which is what spreads a ReplicaSet's pods, like the old SelectorSpread; here
"matching" means "same controller", counted by the cache per node so it costs O(1) a node.
"""

from __future__ import annotations

import math

from pocketkube.api.selectors import LabelSelector
from pocketkube.scheduler.cache import SchedulerCache
from pocketkube.scheduler.framework.interface import (
    ASSIGNED_POD_ADD,
    ASSIGNED_POD_DELETE,
    ASSIGNED_POD_UPDATE,
    MAX_NODE_SCORE,
    NODE_ADD,
    NODE_DELETE,
    NODE_UPDATE,
    ClusterEvent,
    CycleState,
    Handle,
)
from pocketkube.scheduler.framework.status import SKIP, Status
from pocketkube.scheduler.node_info import NodeInfo
from pocketkube.scheduler.plugins import node_affinity
from pocketkube.scheduler.types import LABEL_HOSTNAME, LABEL_ZONE, PodInfo, SpreadConstraint

NAME = "PodTopologySpread"
ERR_CONSTRAINTS = "node(s) didn't match pod topology spread constraints"
ERR_MISSING_LABEL = "node(s) didn't match pod topology spread constraints (missing required label)"
_REJECT = Status.unschedulable(ERR_CONSTRAINTS, plugin=NAME)
_REJECT_LABEL = Status.unresolvable(ERR_MISSING_LABEL, plugin=NAME)
_OWNER = LabelSelector(match_nothing=True)  # placeholder: default constraints count by controller uid
SYSTEM_DEFAULTS = (
    SpreadConstraint(max_skew=3, topology_key=LABEL_HOSTNAME, when_unsatisfiable="ScheduleAnyway", selector=_OWNER),
    SpreadConstraint(max_skew=5, topology_key=LABEL_ZONE, when_unsatisfiable="ScheduleAnyway", selector=_OWNER),
)


def events_to_register() -> list[ClusterEvent]:
    return [ASSIGNED_POD_ADD, ASSIGNED_POD_UPDATE, ASSIGNED_POD_DELETE, NODE_ADD, NODE_UPDATE, NODE_DELETE]


def count_on_node(c: SpreadConstraint, pod: PodInfo, node: NodeInfo) -> int:
    ns, sel = pod.namespace, c.selector
    return sum(1 for p in node.pods.values() if p.namespace == ns and not p.deleting and sel.matches(p.labels))


class _FilterState:
    __slots__ = ("constraints", "counts", "min_match")

    def __init__(self, constraints: list[SpreadConstraint]) -> None:
        self.constraints = constraints
        self.counts: list[dict[str, int]] = [{} for _ in constraints]  # per constraint: value -> pods
        self.min_match: list[int] = []


def pre_filter_counts(pod: PodInfo, constraints: list[SpreadConstraint], nodes: list[NodeInfo]) -> _FilterState:
    st = _FilterState(constraints)
    keys = [c.topology_key for c in constraints]
    for node in nodes:
        if not node_affinity.fits(pod, node) or any(k not in node.labels for k in keys):
            continue
        for i, c in enumerate(constraints):
            value = node.labels[c.topology_key]
            st.counts[i][value] = st.counts[i].get(value, 0) + count_on_node(c, pod, node)
    for i, c in enumerate(constraints):
        domains = st.counts[i]
        st.min_match.append(0 if len(domains) < c.min_domains else min(domains.values(), default=0))
    return st


def fits(st: _FilterState, pod: PodInfo, node: NodeInfo) -> Status | None:
    for i, c in enumerate(st.constraints):
        value = node.labels.get(c.topology_key)
        if value is None:
            return _REJECT_LABEL
        self_match = 1 if c.selector.matches(pod.labels) else 0
        if st.counts[i].get(value, 0) + self_match - st.min_match[i] > c.max_skew:
            return _REJECT
    return None


class _ScoreState:
    __slots__ = ("by_owner", "constraints", "counts", "ignored", "weights")

    def __init__(self) -> None:
        self.constraints: list[SpreadConstraint] = []
        self.by_owner = False
        self.counts: list[dict[str, int]] = []
        self.weights: list[float] = []
        self.ignored: set[str] = set()


class PodTopologySpread:
    name = NAME

    def __init__(self, cache: SchedulerCache) -> None:
        self.cache = cache

    def pre_filter(self, state: CycleState, pod: PodInfo) -> Status | None:
        hard = [c for c in pod.spread if c.when_unsatisfiable == "DoNotSchedule"]
        if not hard:
            return SKIP
        state[NAME] = pre_filter_counts(pod, hard, self.cache.node_list())
        return None

    def filter(self, state: CycleState, pod: PodInfo, node: NodeInfo) -> Status | None:
        st: _FilterState = state[NAME]
        return fits(st, pod, node)

    def pre_score(self, state: CycleState, pod: PodInfo, nodes: list[NodeInfo]) -> Status | None:
        st = _ScoreState()
        if pod.spread:
            st.constraints = [c for c in pod.spread if c.when_unsatisfiable == "ScheduleAnyway"]
            keys = [c.topology_key for c in st.constraints]
            st.ignored = {n.name for n in nodes if any(k not in n.labels for k in keys)}
        elif pod.owner_uid:
            st.by_owner = True
            st.constraints = [c for c in SYSTEM_DEFAULTS
                              if c.topology_key == LABEL_HOSTNAME or self.cache.zoned_nodes]
        if not st.constraints:
            return SKIP
        owner_nodes = self.cache.owner_counts.get(pod.owner_uid, {}) if st.by_owner else {}
        for c in st.constraints:
            counts: dict[str, int] = {}
            if c.topology_key == LABEL_HOSTNAME:
                size = len(nodes) - len(st.ignored)
            else:
                values = {n.labels[c.topology_key] for n in nodes if c.topology_key in n.labels}
                size = len(values)
                if st.by_owner:
                    for node_name, n in owner_nodes.items():
                        info = self.cache.nodes.get(node_name)
                        value = info.labels.get(c.topology_key) if info is not None else None
                        if value in values:
                            counts[value] = counts.get(value, 0) + n
                else:
                    for node in self.cache.node_list():
                        value = node.labels.get(c.topology_key)
                        if value in values and node_affinity.fits(pod, node):
                            counts[value] = counts.get(value, 0) + count_on_node(c, pod, node)
            st.counts.append(counts)
            st.weights.append(math.log(size + 2))
        state[NAME + "/score"] = st
        return None

    def score(self, state: CycleState, pod: PodInfo, node: NodeInfo) -> int:
        st: _ScoreState = state[NAME + "/score"]
        if node.name in st.ignored:
            return 0
        total = 0.0
        for i, c in enumerate(st.constraints):
            value = node.labels.get(c.topology_key)
            if value is None:
                continue
            if c.topology_key != LABEL_HOSTNAME:
                cnt = st.counts[i].get(value, 0)
            elif st.by_owner:
                cnt = node.owner_pods.get(pod.owner_uid, 0)
            else:
                cnt = count_on_node(c, pod, node)
            total += cnt * st.weights[i] + (c.max_skew - 1)
        return round(total)

    def score_nodes(self, state: CycleState, pod: PodInfo, nodes: list[NodeInfo]) -> list[int]:
        st: _ScoreState = state[NAME + "/score"]
        if st.by_owner and len(st.constraints) == 1:  # the common case: a controller's pods, no zones
            uid = pod.owner_uid
            w, base = st.weights[0], st.constraints[0].max_skew - 1
            # slot memo per node (uid is interned, so `is` holds for every pod of the controller)
            counts = [n.spread_count if n.spread_uid is uid else n.owner_count(uid) for n in nodes]
            table = {c: round(c * w + base) for c in set(counts)}
            return list(map(table.__getitem__, counts))
        return [self.score(state, pod, n) for n in nodes]

    def normalize_score(self, state: CycleState, pod: PodInfo, nodes: list[NodeInfo], scores: list[int]) -> None:
        st: _ScoreState = state[NAME + "/score"]
        if not st.ignored:
            lo, hi = min(scores, default=0), max(scores, default=0)
            if hi == 0:
                scores[:] = [MAX_NODE_SCORE] * len(scores)
            else:
                top, both = MAX_NODE_SCORE, hi + lo  # few distinct raw scores: a table, mapped in C
                table = {s: top * (both - s) // hi for s in set(scores)}
                scores[:] = map(table.__getitem__, scores)
            return
        valid = [s for n, s in zip(nodes, scores, strict=True) if n.name not in st.ignored]
        lo, hi = min(valid, default=0), max(valid, default=0)
        for i, s in enumerate(scores):
            if nodes[i].name in st.ignored:
                scores[i] = 0
            else:
                scores[i] = MAX_NODE_SCORE if hi == 0 else MAX_NODE_SCORE * (hi + lo - s) // hi


def new(handle: Handle) -> PodTopologySpread:
    return PodTopologySpread(handle.cache)
