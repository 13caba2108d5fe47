"""NodeInfo: one node plus the running totals of the pods bound (or assumed) to it.

Kept incrementally by the cache (add_pod / remove_pod adjust ints), never recomputed per cycle: the
filters read `alloc_*` vs `req_*`, `pod_count`, `used_ports`, taints and labels directly.
"""

from __future__ import annotations

from typing import Any

from pocketkube.scheduler.types import LABEL_HOSTNAME, PodInfo, Taint, milli_cpu, whole_value

Obj = dict[str, Any]


class NodeInfo:
    __slots__ = (
        "affinity_pods",
        "alloc_cpu",
        "alloc_mem",
        "alloc_pods",
        "anti_affinity_pods",
        "free_cpu",
        "free_mem",
        "free_pods",
        "inv_cpu",
        "inv_mem",
        "labels",
        "memo_id",
        "memo_score",
        "name",
        "node",
        "nz_cpu",
        "nz_free_cpu",
        "nz_free_mem",
        "nz_mem",
        "owner_pods",
        "pods",
        "prefer_taints",
        "req_cpu",
        "req_mem",
        "spread_count",
        "spread_uid",
        "taints",
        "unschedulable",
        "used_ports",
    )

    def __init__(self, name: str) -> None:
        self.name = name
        self.node: Obj | None = None  # None: a "ghost" holding pods whose node we have not seen (yet)
        self.labels: dict[str, str] = {}
        self.taints: tuple[Taint, ...] = ()  # NoSchedule + NoExecute: the ones Filter checks
        self.prefer_taints: tuple[Taint, ...] = ()  # PreferNoSchedule: scored only
        self.unschedulable = False
        self.alloc_cpu = self.alloc_mem = self.alloc_pods = 0
        self.req_cpu = self.req_mem = self.nz_cpu = self.nz_mem = 0
        # derived, kept current by _refresh(): what the hot filters and scores read directly
        self.free_cpu = self.free_mem = self.free_pods = self.nz_free_cpu = self.nz_free_mem = 0
        self.inv_cpu = self.inv_mem = 0.0
        # the framework's memo of the resource scores for one pod shape on this node's current totals
        # (runtime._memoised_scores): plain slots, read in the same pass as the filters' fields
        self.memo_id = -1
        self.memo_score = 0
        self.owner_pods: dict[str, int] = {}  # controller uid -> its pods here (default spreading)
        self.spread_uid: str | None = None  # owner_pods[spread_uid] as a slot, until the node changes
        self.spread_count = 0
        self.pods: dict[str, PodInfo] = {}
        self.affinity_pods: dict[str, PodInfo] = {}  # pods with any pod (anti-)affinity
        self.anti_affinity_pods: dict[str, PodInfo] = {}  # pods with required anti-affinity
        self.used_ports: dict[tuple[str, int, str], int] = {}

    @classmethod
    def from_node(cls, node: Obj) -> NodeInfo:
        info = cls(str((node.get("metadata") or {}).get("name") or ""))
        info.set_node(node)
        return info

    def set_node(self, node: Obj) -> None:
        md, spec = node.get("metadata") or {}, node.get("spec") or {}
        alloc = (node.get("status") or {}).get("allocatable") or {}
        self.node = node
        self.labels = md.get("labels") or {}
        if LABEL_HOSTNAME not in self.labels:  # kubelets always set it; synthetic nodes may not
            self.labels = {**self.labels, LABEL_HOSTNAME: self.name}
        taints = [Taint(str(t.get("key") or ""), str(t.get("value") or ""), str(t.get("effect") or ""))
                  for t in spec.get("taints") or ()]
        self.taints = tuple(t for t in taints if t.effect in ("NoSchedule", "NoExecute"))
        self.prefer_taints = tuple(t for t in taints if t.effect == "PreferNoSchedule")
        self.unschedulable = bool(spec.get("unschedulable"))
        self.alloc_cpu = milli_cpu(alloc.get("cpu", 0))
        self.alloc_mem = whole_value(alloc.get("memory", 0))
        self.alloc_pods = whole_value(alloc.get("pods", 0))
        self.inv_cpu = 1.0 / self.alloc_cpu if self.alloc_cpu else 0.0
        self.inv_mem = 1.0 / self.alloc_mem if self.alloc_mem else 0.0
        self._refresh()

    def _refresh(self) -> None:
        self.memo_id = -1
        self.spread_uid = None
        self.free_cpu = self.alloc_cpu - self.req_cpu
        self.free_mem = self.alloc_mem - self.req_mem
        self.free_pods = self.alloc_pods - len(self.pods)
        self.nz_free_cpu = self.alloc_cpu - self.nz_cpu
        self.nz_free_mem = self.alloc_mem - self.nz_mem

    @property
    def pod_count(self) -> int:
        return len(self.pods)

    def add_pod(self, pod: PodInfo) -> None:
        self.pods[pod.key] = pod
        self.req_cpu += pod.req_cpu
        self.req_mem += pod.req_mem
        self.nz_cpu += pod.nz_cpu
        self.nz_mem += pod.nz_mem
        if pod.owner_uid:
            self.owner_pods[pod.owner_uid] = self.owner_pods.get(pod.owner_uid, 0) + 1
        for port in pod.host_ports:
            self.used_ports[port] = self.used_ports.get(port, 0) + 1
        if pod.has_pod_affinity:
            self.affinity_pods[pod.key] = pod
        if pod.anti_affinity:
            self.anti_affinity_pods[pod.key] = pod
        self._refresh()

    def remove_pod(self, key: str) -> PodInfo | None:
        pod = self.pods.pop(key, None)
        if pod is None:
            return None
        self.req_cpu -= pod.req_cpu
        self.req_mem -= pod.req_mem
        self.nz_cpu -= pod.nz_cpu
        self.nz_mem -= pod.nz_mem
        if pod.owner_uid:
            n = self.owner_pods.get(pod.owner_uid, 0) - 1
            if n > 0:
                self.owner_pods[pod.owner_uid] = n
            else:
                self.owner_pods.pop(pod.owner_uid, None)
        for port in pod.host_ports:
            n = self.used_ports.get(port, 0) - 1
            if n > 0:
                self.used_ports[port] = n
            else:
                self.used_ports.pop(port, None)
        self.affinity_pods.pop(key, None)
        self.anti_affinity_pods.pop(key, None)
        self._refresh()
        return pod

    def owner_count(self, uid: str) -> int:
        """owner_pods[uid], remembered in slots: the next visit with the same (interned) uid reads
        two attributes of this object instead of probing a dict elsewhere in memory."""
        n = self.owner_pods.get(uid, 0)
        self.spread_uid, self.spread_count = uid, n
        return n

    def port_conflict(self, protocol: str, port: int, ip: str) -> bool:
        """HostPortInfo.CheckConflict: same protocol+port and same IP, or either side is 0.0.0.0."""
        if not self.used_ports:
            return False
        if ip == "0.0.0.0":
            return any(p == protocol and n == port for p, n, _ in self.used_ports)
        return (protocol, port, ip) in self.used_ports or (protocol, port, "0.0.0.0") in self.used_ports


def new_node_info(name: str, *, cpu: str = "4", memory: str = "8Gi", pods: str = "110",
                  labels: dict[str, str] | None = None, taints: list[Obj] | None = None,
                  unschedulable: bool = False) -> NodeInfo:
    """A NodeInfo for tests and benchmarks, built from the same Node JSON the API would send."""
    node: Obj = {"metadata": {"name": name, "labels": {LABEL_HOSTNAME: name, **(labels or {})}},
                 "spec": {"taints": taints or [], "unschedulable": unschedulable},
                 "status": {"allocatable": {"cpu": cpu, "memory": memory, "pods": pods}}}
    return NodeInfo.from_node(node)
