"""Framework: one scheduling profile running its plugins over the nodes for one pod.

The hot loop is `find_nodes_that_fit`: filters are bound methods in kube's order, a node stops at
the first rejecting plugin, and the scan stops once `num_feasible_nodes_to_find` nodes fit (kube's
adaptive percentageOfNodesToScore: 50% - nodes/125, at least 5% and at least 100 nodes), starting
where the previous cycle stopped so every node gets its turn. Scoring then costs O(sample) in C
where it can: plugins whose score depends only on the pod's requests and the node's totals are
memoised on the NodeInfo (`score_key`), and per-plugin sums run through map/operator.
"""

from __future__ import annotations

import contextlib
import itertools
import operator
import random
from collections.abc import Callable
from typing import Any

from pocketkube.scheduler.framework.interface import ClusterEvent, CycleState
from pocketkube.scheduler.framework.status import Code, Status
from pocketkube.scheduler.node_info import NodeInfo
from pocketkube.scheduler.types import PodInfo

MIN_FEASIBLE_NODES_TO_FIND = 100
MIN_FEASIBLE_NODES_PERCENTAGE = 5
NO_NODES_MSG = "no nodes available to schedule pods"
NOT_HELPFUL = "Preemption is not helpful for scheduling"
NO_VICTIMS = "No preemption victims found for incoming pod"

MIN_CHUNK = 64
FilterFn = Callable[[CycleState, PodInfo, NodeInfo], "Status | None"]
BatchFilterFn = Callable[[CycleState, PodInfo, list[NodeInfo], dict[str, "Status"]], list[NodeInfo]]


def _each(f: FilterFn) -> BatchFilterFn:
    """Adapt a per-node Filter to the chunked loop."""
    def run(state: CycleState, pod: PodInfo, nodes: list[NodeInfo], statuses: dict[str, Status]) -> list[NodeInfo]:
        out: list[NodeInfo] = []
        for node in nodes:
            st = f(state, pod, node)
            if st is None:
                out.append(node)
            else:
                statuses[node.name] = st
        return out
    return run


def num_feasible_nodes_to_find(num_all_nodes: int, percentage: int = 0) -> int:
    if num_all_nodes < MIN_FEASIBLE_NODES_TO_FIND:
        return num_all_nodes
    pct = percentage or max(50 - num_all_nodes // 125, MIN_FEASIBLE_NODES_PERCENTAGE)
    if pct >= 100:
        return num_all_nodes
    return max(num_all_nodes * pct // 100, MIN_FEASIBLE_NODES_TO_FIND)


def _histogram(reasons: dict[str, int]) -> str:
    return ", ".join(sorted(f"{n} {r}" for r, n in reasons.items()))


class FitError(Exception):
    """No node fits; str() is kube's FitError.Error() including the preemption summary."""

    def __init__(self, pod: PodInfo, num_all_nodes: int, statuses: dict[str, Status]) -> None:
        self.pod = pod
        self.num_all_nodes = num_all_nodes
        self.statuses = statuses
        self.unschedulable_plugins = {s.plugin for s in statuses.values() if s.plugin}
        reasons: dict[str, int] = {}
        for st in statuses.values():
            for r in st.reasons:
                reasons[r] = reasons.get(r, 0) + 1
        msg = f"0/{num_all_nodes} nodes are available:"
        if reasons:
            msg += f" {_histogram(reasons)}."
        msg += " " + self._preemption_message()
        super().__init__(msg)

    def _preemption_message(self) -> str:
        """What DefaultPreemption's PostFilter says. pocketkube does not evict victims: nodes where
        removing lower-priority pods might help are reported as having no victims."""
        if self.pod.preemption_never:
            return "preemption: not eligible due to preemptionPolicy=Never."
        counts: dict[str, int] = {}
        for st in self.statuses.values():
            why = NOT_HELPFUL if st.code == Code.UNSCHEDULABLE_AND_UNRESOLVABLE else NO_VICTIMS
            counts[why] = counts.get(why, 0) + 1
        return f"preemption: 0/{self.num_all_nodes} nodes are available: {_histogram(counts)}."


class Framework:
    def __init__(self, profile_name: str, plugins: dict[str, Any], *, filters: list[str],
                 scores: dict[str, int], events: dict[str, list[ClusterEvent]],
                 percentage_of_nodes_to_score: int = 0, rng: random.Random | None = None) -> None:
        self.profile_name = profile_name
        self.plugins = plugins
        self.filter_names = [n for n in filters if n in plugins]
        self.score_weights = {n: w for n, w in scores.items() if n in plugins}
        self.events = events
        self.percentage = percentage_of_nodes_to_score
        self.rng = rng or random.Random()
        self.next_start = 0
        self._shape_ids: dict[tuple[Any, ...], int] = {}

    # PreFilter + Filter ----------------------------------------------------------------------------

    def run_pre_filter(self, state: CycleState, pod: PodInfo) -> tuple[list[BatchFilterFn], Status | None]:
        """-> (the Filter steps to run for this pod, a rejecting status if a PreFilter said no)."""
        active: list[BatchFilterFn] = []
        for name in self.filter_names:
            plugin = self.plugins[name]
            pre = getattr(plugin, "pre_filter", None)
            if pre is not None:
                st: Status | None = pre(state, pod)
                if st is not None:
                    if st.code == Code.SKIP:
                        continue
                    st.plugin = st.plugin or name
                    return [], st
            active.append(getattr(plugin, "filter_nodes", None) or _each(plugin.filter))
        return active, None

    def find_nodes_that_fit(self, state: CycleState, pod: PodInfo,
                            nodes: list[NodeInfo]) -> tuple[list[NodeInfo], dict[str, Status]]:
        """Feasible nodes (at most num_feasible_nodes_to_find) and the statuses of rejected ones.

        Nodes go through the filters in chunks of the number still wanted, each plugin narrowing the
        chunk in one call (`filter_nodes` when the plugin has it, else its per-node `filter`).
        """
        filters, rejected = self.run_pre_filter(state, pod)
        statuses: dict[str, Status] = {}
        if rejected is not None:
            return [], {n.name: rejected for n in nodes}
        n = len(nodes)
        want = num_feasible_nodes_to_find(n, self.percentage)
        start = self.next_start % n if n else 0
        feasible: list[NodeInfo] = []
        pos = 0
        while pos < n and len(feasible) < want:
            size = min(max(want - len(feasible), MIN_CHUNK), n - pos)
            # slice the ring [start, start + n) directly: a rotated copy of the whole node list would
            # touch every NodeInfo (refcounts) each cycle, not just the sample
            lo = (start + pos) % n
            chunk = nodes[lo:lo + size]
            if len(chunk) < size:
                chunk += nodes[:size - len(chunk)]
            pos += size
            for f in filters:
                chunk = f(state, pod, chunk, statuses)
                if not chunk:
                    break
            feasible.extend(chunk)
        if n:
            # like kube's nextStartNodeIndex (+ feasible found + rejected): feasible nodes of the last
            # chunk beyond `want` were not used, so the next cycle starts with them
            self.next_start = (start + pos - max(len(feasible) - want, 0)) % n
        return feasible[:want], statuses

    # PreScore + Score + NormalizeScore -------------------------------------------------------------

    def prioritize(self, state: CycleState, pod: PodInfo, nodes: list[NodeInfo]) -> list[int]:
        totals: list[int] | None = None
        memoised: list[tuple[int, Any]] = []
        for name, weight in self.score_weights.items():
            plugin = self.plugins[name]
            pre = getattr(plugin, "pre_score", None)
            if pre is not None:
                st = pre(state, pod, nodes)
                if st is not None and st.code == Code.SKIP:
                    continue
            if hasattr(plugin, "score_key") and not hasattr(plugin, "normalize_score"):
                memoised.append((weight, plugin))
                continue
            batch = getattr(plugin, "score_nodes", None)
            if batch is not None:
                scores: list[int] = batch(state, pod, nodes)
            else:
                score = plugin.score
                scores = [score(state, pod, node) for node in nodes]
            normalize = getattr(plugin, "normalize_score", None)
            if normalize is not None:
                normalize(state, pod, nodes, scores)
            # map + operator: the per-node sums run in C (these lists are as long as the sample)
            if weight != 1:
                scores = list(map(operator.mul, scores, itertools.repeat(weight)))
            totals = scores if totals is None else list(map(operator.add, totals, scores))
        if memoised:
            scores = self._memoised_scores(state, pod, nodes, memoised)
            totals = scores if totals is None else list(map(operator.add, totals, scores))
        return totals if totals is not None else [0] * len(nodes)

    def _memoised_scores(self, state: CycleState, pod: PodInfo, nodes: list[NodeInfo],
                         plugins: list[tuple[int, Any]]) -> list[int]:
        """The weighted sum of the plugins whose score is a function of `score_key(pod)` and the
        node's counted resources only (LeastAllocated, BalancedAllocation), kept on each NodeInfo
        for the last pod shape until the node changes (NodeInfo._refresh drops it). A stream of
        alike pods (a Deployment's replicas) then re-scores only the nodes that changed since the
        last visit, not every node in the sample; mixed shapes cost what they did without it."""
        shape = tuple((w, p.name, p.score_key(pod)) for w, p in plugins)
        key = self._shape_ids.get(shape)
        if key is None:  # a small int: NodeInfo memos hash it once per node, a nested tuple costs more
            key = self._shape_ids[shape] = len(self._shape_ids)
        out: list[int | None] = [n.memo_score if n.memo_id == key else None for n in nodes]
        try:
            i = out.index(None)
        except ValueError:
            return out  # type: ignore[return-value]
        idx = [i]  # the few nodes changed since the last visit, found by C-level scans
        with contextlib.suppress(ValueError):
            while True:
                i = out.index(None, i + 1)
                idx.append(i)
        missing = [nodes[i] for i in idx]
        sums = [0] * len(missing)
        for w, p in plugins:
            part: list[int] = p.score_nodes(state, pod, missing)
            sums = [a + b * w for a, b in zip(sums, part, strict=True)]
        for i, n, v in zip(idx, missing, sums, strict=True):
            n.memo_id, n.memo_score = key, v
            out[i] = v
        return out  # type: ignore[return-value]

    def select_host(self, nodes: list[NodeInfo], totals: list[int]) -> NodeInfo:
        """Highest total wins; ties are broken uniformly at random (reservoir sampling, like kube)."""
        best = max(totals)
        if totals.count(best) == 1:
            return nodes[totals.index(best)]
        ties = list(itertools.compress(range(len(totals)), map(best.__eq__, totals)))
        return nodes[self.rng.choice(ties)]

    def schedule(self, pod: PodInfo, nodes: list[NodeInfo]) -> NodeInfo:
        """One scheduling cycle: the chosen node, or FitError."""
        if not nodes:
            raise NoNodesAvailable(NO_NODES_MSG)
        state = CycleState()
        feasible, statuses = self.find_nodes_that_fit(state, pod, nodes)
        if not feasible:
            raise FitError(pod, len(nodes), statuses)
        if len(feasible) == 1:
            return feasible[0]
        return self.select_host(feasible, self.prioritize(state, pod, feasible))


class NoNodesAvailable(Exception):
    """The cluster has no nodes at all."""
