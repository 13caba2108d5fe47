"""The scheduler cache: NodeInfos for every node, fed by the node and pod informers.

Like kube-scheduler's cache it holds *assumed* pods: the moment a node is chosen the pod counts
against it (assume), before the binding is even sent, so the next cycle sees the usage. When the pod
informer later shows the pod bound, the assumption is confirmed; when binding fails it is forgotten.
The whole scheduler runs on one event loop, and a scheduling cycle does not await, so plugins read
the live cache with no snapshot copy.
"""

from __future__ import annotations

from typing import Any

from pocketkube.scheduler.node_info import NodeInfo
from pocketkube.scheduler.types import LABEL_ZONE, PodInfo

Obj = dict[str, Any]


class SchedulerCache:
    def __init__(self) -> None:
        self.nodes: dict[str, NodeInfo] = {}  # includes ghosts (pods seen before their node)
        self.pods: dict[str, PodInfo] = {}  # key -> assigned or assumed pod
        self.pod_node: dict[str, str] = {}
        self.assumed: set[str] = set()
        self.ns_labels: dict[str, dict[str, str]] = {}
        # controller uid -> node name -> pods of that controller there (default spreading, O(1) a node)
        self.owner_counts: dict[str, dict[str, int]] = {}
        self.anti_affinity_pods = 0  # pods with required anti-affinity anywhere: InterPodAffinity fast skip
        self.affinity_pods = 0
        # the nodes holding such pods, so InterPodAffinity walks those rather than every node
        # (kube's HavePodsWithAffinityList / HavePodsWithRequiredAntiAffinityList)
        self.affinity_nodes: set[str] = set()
        self.anti_affinity_nodes: set[str] = set()
        self.zoned_nodes: set[str] = set()  # nodes with a zone label: default zone spreading applies
        self.tainted_nodes: set[str] = set()  # NoSchedule/NoExecute taints: TaintToleration must filter
        self.prefer_tainted_nodes: set[str] = set()  # PreferNoSchedule taints: TaintToleration scores
        self.cordoned_nodes: set[str] = set()
        self._node_list: list[NodeInfo] | None = None

    # nodes -----------------------------------------------------------------------------------------

    def node_list(self) -> list[NodeInfo]:
        """Real (non-ghost) nodes in a stable order; rebuilt only when nodes come or go."""
        if self._node_list is None:
            self._node_list = [n for _, n in sorted(self.nodes.items()) if n.node is not None]
        return self._node_list

    def real_nodes(self, names: set[str]) -> list[NodeInfo]:
        """The NodeInfos of `names` whose Node we have (ghosts left out, like node_list())."""
        out = []
        for name in names:
            info = self.nodes.get(name)
            if info is not None and info.node is not None:
                out.append(info)
        return out

    def add_node(self, node: Obj) -> NodeInfo:
        name = str((node.get("metadata") or {}).get("name") or "")
        info = self.nodes.get(name)
        if info is None:
            info = self.nodes[name] = NodeInfo(name)
        if info.node is None:
            self._node_list = None
        info.set_node(node)
        for present, where in ((LABEL_ZONE in info.labels, self.zoned_nodes), (bool(info.taints), self.tainted_nodes),
                               (bool(info.prefer_taints), self.prefer_tainted_nodes),
                               (info.unschedulable, self.cordoned_nodes)):
            if present:
                where.add(name)
            else:
                where.discard(name)
        return info

    update_node = add_node

    def remove_node(self, name: str) -> None:
        info = self.nodes.get(name)
        if info is None:
            return
        info.node = None
        for where in (self.zoned_nodes, self.tainted_nodes, self.prefer_tainted_nodes, self.cordoned_nodes):
            where.discard(name)
        if not info.pods:
            del self.nodes[name]
        self._node_list = None

    # pods ------------------------------------------------------------------------------------------

    def _attach(self, pod: PodInfo, node_name: str) -> None:
        info = self.nodes.get(node_name)
        if info is None:
            info = self.nodes[node_name] = NodeInfo(node_name)
        info.add_pod(pod)
        if pod.has_pod_affinity:
            self.affinity_nodes.add(node_name)
        if pod.anti_affinity:
            self.anti_affinity_nodes.add(node_name)
        self.pods[pod.key] = pod
        self.pod_node[pod.key] = node_name
        if pod.owner_uid:
            per_node = self.owner_counts.setdefault(pod.owner_uid, {})
            per_node[node_name] = per_node.get(node_name, 0) + 1
        if pod.anti_affinity:
            self.anti_affinity_pods += 1
        if pod.has_pod_affinity:
            self.affinity_pods += 1

    def _detach(self, key: str) -> PodInfo | None:
        node_name = self.pod_node.pop(key, None)
        pod = self.pods.pop(key, None)
        if node_name is None or pod is None:
            return None
        info = self.nodes.get(node_name)
        if info is not None:
            info.remove_pod(key)
            if not info.affinity_pods:
                self.affinity_nodes.discard(node_name)
            if not info.anti_affinity_pods:
                self.anti_affinity_nodes.discard(node_name)
            if info.node is None and not info.pods:
                del self.nodes[node_name]
        if pod.owner_uid:
            per_node = self.owner_counts.get(pod.owner_uid, {})
            n = per_node.get(node_name, 0) - 1
            if n > 0:
                per_node[node_name] = n
            else:
                per_node.pop(node_name, None)
                if not per_node:
                    self.owner_counts.pop(pod.owner_uid, None)
        if pod.anti_affinity:
            self.anti_affinity_pods -= 1
        if pod.has_pod_affinity:
            self.affinity_pods -= 1
        return pod

    def assume(self, pod: PodInfo, node_name: str) -> None:
        """Count the pod against the node before the binding lands."""
        self._detach(pod.key)
        self._attach(pod, node_name)
        self.assumed.add(pod.key)

    def forget(self, key: str) -> None:
        """Binding failed: undo the assumption (only if the informer has not confirmed it meanwhile)."""
        if key in self.assumed:
            self.assumed.discard(key)
            self._detach(key)

    def is_assumed(self, key: str) -> bool:
        return key in self.assumed

    def replace_pod(self, pod: PodInfo) -> bool:
        """An informer update that changes nothing the scheduler counts (the binding of a pod we
        assumed, a kubelet's status report): swap the object in place, no detach/attach, no NodeInfo
        refresh. False when the pod is not cached on pod.node_name (the caller then uses add_pod)."""
        key = pod.key
        if self.pod_node.get(key) != pod.node_name:
            return False
        old = self.pods.get(key)
        info = self.nodes.get(pod.node_name)
        if old is None or info is None or old.uid != pod.uid:
            return False
        self.assumed.discard(key)
        self.pods[key] = pod
        info.pods[key] = pod
        if key in info.affinity_pods:
            info.affinity_pods[key] = pod
        if key in info.anti_affinity_pods:
            info.anti_affinity_pods[key] = pod
        return True

    def add_pod(self, pod: PodInfo) -> None:
        """An assigned pod from the informer (add or update): confirms an assumed pod."""
        self.assumed.discard(pod.key)
        self._detach(pod.key)
        self._attach(pod, pod.node_name)

    update_pod = add_pod

    def remove_pod(self, key: str) -> None:
        self.assumed.discard(key)
        self._detach(key)

    def node_of(self, key: str) -> str | None:
        return self.pod_node.get(key)

    # namespaces ------------------------------------------------------------------------------------

    def set_namespace(self, name: str, labels: dict[str, str] | None) -> None:
        if labels is None:
            self.ns_labels.pop(name, None)
        else:
            self.ns_labels[name] = labels
