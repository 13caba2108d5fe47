"""Parsed, immutable views of pods and nodes that the plugins read on the hot path.

A pod or node is parsed once, when the informer delivers it: quantities become ints (milli-cpu,
bytes), tolerations, taints, affinity terms and selectors become small objects. Filters and scores
then only compare ints and dict lookups, so one scheduling cycle stays O(nodes) with small constants.
"""

from __future__ import annotations

import functools
import sys
from collections.abc import Mapping
from typing import Any

from pocketkube.api.quantity import Quantity, QuantityError
from pocketkube.api.selectors import EVERYTHING, LabelSelector, selector_from_spec

Obj = dict[str, Any]

DEFAULT_MILLI_CPU_REQUEST = 100  # schedutil.DefaultMilliCPURequest: "non-zero" request for scoring
DEFAULT_MEMORY_REQUEST = 200 * 1024 * 1024
LABEL_HOSTNAME = "kubernetes.io/hostname"
LABEL_ZONE = "topology.kubernetes.io/zone"
TAINT_UNSCHEDULABLE = "node.kubernetes.io/unschedulable"


@functools.lru_cache(maxsize=4096)
def _parse(value: str | int | float) -> tuple[int, int]:
    try:
        q = Quantity.parse(value)
    except (QuantityError, TypeError):
        return 0, 0
    return q.milli_value(), q.int_value()


def milli_cpu(value: object) -> int:
    """Milli-units of a quantity ("250m" -> 250); the same few strings recur, so parses are memoised."""
    return _parse(value)[0] if isinstance(value, str | int | float) else 0


def whole_value(value: object) -> int:
    return _parse(value)[1] if isinstance(value, str | int | float) else 0


class Taint:
    __slots__ = ("effect", "key", "value")

    def __init__(self, key: str, value: str, effect: str) -> None:
        self.key, self.value, self.effect = key, value, effect


class Toleration:
    __slots__ = ("effect", "key", "operator", "value")

    def __init__(self, spec: Mapping[str, Any]) -> None:
        self.key = str(spec.get("key") or "")
        self.operator = str(spec.get("operator") or "Equal")
        self.value = str(spec.get("value") or "")
        self.effect = str(spec.get("effect") or "")

    def tolerates(self, taint: Taint) -> bool:
        """v1.Toleration.ToleratesTaint: empty effect matches all; empty key + Exists matches all keys."""
        if self.effect and self.effect != taint.effect:
            return False
        if self.key and self.key != taint.key:
            return False
        if self.operator == "Exists":
            return True
        return self.operator == "Equal" and self.value == taint.value


def tolerated(tolerations: tuple[Toleration, ...], taint: Taint) -> bool:
    return any(t.tolerates(taint) for t in tolerations)


class NodeSelectorTerm:
    """One nodeSelectorTerm: every matchExpression (labels) and matchField (metadata.name) must hold."""

    __slots__ = ("exprs", "fields")

    def __init__(self, spec: Mapping[str, Any]) -> None:
        def parse(items: Any) -> tuple[tuple[str, str, tuple[str, ...]], ...]:
            return tuple((str(e.get("key") or ""), str(e.get("operator") or ""),
                          tuple(str(v) for v in e.get("values") or ())) for e in items or ())
        self.exprs = parse(spec.get("matchExpressions"))
        self.fields = parse(spec.get("matchFields"))

    @staticmethod
    def _req(labels: Mapping[str, str], key: str, op: str, values: tuple[str, ...]) -> bool:
        present = key in labels
        if op == "In":
            return present and labels[key] in values
        if op == "NotIn":
            return not present or labels[key] not in values
        if op == "Exists":
            return present
        if op == "DoesNotExist":
            return not present
        if op in ("Gt", "Lt") and present and len(values) == 1:
            try:
                have, want = int(labels[key]), int(values[0])
            except ValueError:
                return False
            return have > want if op == "Gt" else have < want
        return False

    def matches(self, labels: Mapping[str, str], node_name: str) -> bool:
        if not self.exprs and not self.fields:
            return False  # an empty term selects no node, as in kube
        for key, op, values in self.exprs:
            if not self._req(labels, key, op, values):
                return False
        for key, op, values in self.fields:
            if key != "metadata.name" or not self._req({key: node_name}, key, op, values):
                return False
        return True


class AffinityTerm:
    """A PodAffinityTerm resolved against the pod that carries it (its namespace is the default)."""

    __slots__ = ("namespaces", "ns_selector", "selector", "topology_key")

    def __init__(self, spec: Mapping[str, Any], pod_namespace: str) -> None:
        self.selector: LabelSelector = selector_from_spec(spec.get("labelSelector"))
        self.topology_key = str(spec.get("topologyKey") or "")
        names = frozenset(str(n) for n in spec.get("namespaces") or ())
        ns_sel = spec.get("namespaceSelector")
        self.ns_selector: LabelSelector | None = selector_from_spec(ns_sel) if ns_sel is not None else None
        self.namespaces = names if names or ns_sel is not None else frozenset((pod_namespace,))

    def matches(self, pod: PodInfo, ns_labels: Mapping[str, Mapping[str, str]]) -> bool:
        if pod.namespace not in self.namespaces and not (
                self.ns_selector is not None and self.ns_selector.matches(ns_labels.get(pod.namespace, {}))):
            return False
        return self.selector.matches(pod.labels)


class SpreadConstraint:
    __slots__ = ("max_skew", "min_domains", "selector", "topology_key", "when_unsatisfiable")

    def __init__(self, *, max_skew: int, topology_key: str, when_unsatisfiable: str, selector: LabelSelector,
                 min_domains: int = 1) -> None:
        self.max_skew, self.topology_key = max_skew, topology_key
        self.when_unsatisfiable, self.selector, self.min_domains = when_unsatisfiable, selector, min_domains


def _terms(items: Any, ns: str) -> tuple[AffinityTerm, ...]:
    return tuple(AffinityTerm(t, ns) for t in items or ())


def _weighted(items: Any, ns: str) -> tuple[tuple[int, AffinityTerm], ...]:
    return tuple((int(t.get("weight") or 0), AffinityTerm(t.get("podAffinityTerm") or {}, ns)) for t in items or ())


def _container_requests(c: Mapping[str, Any]) -> tuple[int, int, int, int]:
    req = (c.get("resources") or {}).get("requests") or {}
    cpu = milli_cpu(req["cpu"]) if "cpu" in req else 0
    mem = whole_value(req["memory"]) if "memory" in req else 0
    return (cpu, mem, cpu if "cpu" in req else DEFAULT_MILLI_CPU_REQUEST,
            mem if "memory" in req else DEFAULT_MEMORY_REQUEST)


def _requests(spec: Mapping[str, Any]) -> tuple[int, int, int, int]:
    """(cpu, memory, non-zero cpu, non-zero memory) as resourcehelper.PodRequests adds them up:
    app containers summed; sidecars (restartable init containers) added and carried along; each
    init container's need (plus the sidecars started before it) taken as a maximum; plus overhead.
    Plain ints, no intermediate lists: this runs once per pod the informer delivers.
    """
    cpu = mem = nz_cpu = nz_mem = 0
    for c in spec.get("containers") or ():
        a, b, c_, d = _container_requests(c)
        cpu += a
        mem += b
        nz_cpu += c_
        nz_mem += d
    inits = spec.get("initContainers")
    if inits:
        side = [0, 0, 0, 0]
        peak = [0, 0, 0, 0]
        total = [cpu, mem, nz_cpu, nz_mem]
        for c in inits:
            own = _container_requests(c)
            if c.get("restartPolicy") == "Always":
                total = [a + b for a, b in zip(total, own, strict=True)]
                side = [a + b for a, b in zip(side, own, strict=True)]
                need = side
            else:
                need = [a + b for a, b in zip(own, side, strict=True)]
            peak = [max(a, b) for a, b in zip(peak, need, strict=True)]
        cpu, mem, nz_cpu, nz_mem = (max(a, b) for a, b in zip(total, peak, strict=True))
    overhead = spec.get("overhead")
    if overhead:
        o_cpu, o_mem = milli_cpu(overhead.get("cpu", 0)), whole_value(overhead.get("memory", 0))
        cpu, mem, nz_cpu, nz_mem = cpu + o_cpu, mem + o_mem, nz_cpu + o_cpu, nz_mem + o_mem
    return cpu, mem, nz_cpu, nz_mem


class PodInfo:
    """Everything the plugins need from one pod, computed once."""

    __slots__ = (
        "affinity",
        "anti_affinity",
        "deleting",
        "gated",
        "host_ports",
        "key",
        "labels",
        "name",
        "namespace",
        "node_affinity",
        "node_name",
        "node_preferred",
        "node_selector",
        "nz_cpu",
        "nz_mem",
        "obj",
        "owner_uid",
        "preemption_never",
        "preferred_affinity",
        "preferred_anti_affinity",
        "priority",
        "req_cpu",
        "req_mem",
        "scheduler_name",
        "spread",
        "terminal",
        "tolerations",
        "uid",
    )

    def __init__(self, obj: Obj) -> None:
        md = obj.get("metadata") or {}
        spec = obj.get("spec") or {}
        self.obj = obj
        self.name = str(md.get("name") or "")
        self.namespace = str(md.get("namespace") or "")
        self.key = f"{self.namespace}/{self.name}"
        self.uid = str(md.get("uid") or "")
        self.labels: dict[str, str] = md.get("labels") or {}
        self.deleting = bool(md.get("deletionTimestamp"))
        self.terminal = (obj.get("status") or {}).get("phase") in ("Succeeded", "Failed")
        # interned: every pod of a controller shares one str, so per-node memos compare by identity
        self.owner_uid = sys.intern(next((str(o.get("uid") or "") for o in md.get("ownerReferences") or ()
                                          if o.get("controller")), ""))
        self.node_name = str(spec.get("nodeName") or "")
        self.scheduler_name = str(spec.get("schedulerName") or "default-scheduler")
        self.priority = int(spec.get("priority") or 0)
        self.gated = bool(spec.get("schedulingGates"))  # SchedulingGates: not queued until they are removed
        self.preemption_never = spec.get("preemptionPolicy") == "Never"
        self.req_cpu, self.req_mem, self.nz_cpu, self.nz_mem = _requests(spec)
        self.host_ports = tuple(
            (str(p.get("protocol") or "TCP"), int(p["hostPort"]), str(p.get("hostIP") or "0.0.0.0"))
            for c in spec.get("containers") or () for p in c.get("ports") or () if p.get("hostPort"))
        self.tolerations = tuple(Toleration(t) for t in spec.get("tolerations") or ())
        self.node_selector: dict[str, str] = spec.get("nodeSelector") or {}
        aff = spec.get("affinity") or {}
        na = aff.get("nodeAffinity") or {}
        req = na.get("requiredDuringSchedulingIgnoredDuringExecution")
        self.node_affinity = (tuple(NodeSelectorTerm(t) for t in req.get("nodeSelectorTerms") or ())
                              if req is not None else None)
        self.node_preferred = tuple((int(p.get("weight") or 0), NodeSelectorTerm(p.get("preference") or {}))
                                    for p in na.get("preferredDuringSchedulingIgnoredDuringExecution") or ())
        pa, paa = aff.get("podAffinity") or {}, aff.get("podAntiAffinity") or {}
        ns = self.namespace
        self.affinity = _terms(pa.get("requiredDuringSchedulingIgnoredDuringExecution"), ns)
        self.anti_affinity = _terms(paa.get("requiredDuringSchedulingIgnoredDuringExecution"), ns)
        self.preferred_affinity = _weighted(pa.get("preferredDuringSchedulingIgnoredDuringExecution"), ns)
        self.preferred_anti_affinity = _weighted(paa.get("preferredDuringSchedulingIgnoredDuringExecution"), ns)
        self.spread = tuple(_spread(c, self.labels) for c in spec.get("topologySpreadConstraints") or ())

    def bound_copy(self, obj: Obj) -> PodInfo:
        """This pod as the informer shows it now, bound to obj's node, when obj changes nothing the
        scheduler parsed (see same_scheduling_inputs): a shallow copy, no re-parse."""
        clone = object.__new__(PodInfo)
        for name in PodInfo.__slots__:
            setattr(clone, name, getattr(self, name))
        clone.obj = obj
        clone.node_name = str((obj.get("spec") or {}).get("nodeName") or "")
        return clone

    @property
    def has_pod_affinity(self) -> bool:
        return bool(self.affinity or self.anti_affinity or self.preferred_affinity or self.preferred_anti_affinity)


def same_scheduling_inputs(old: Obj, new: Obj) -> bool:
    """True when new differs from old only in what PodInfo does not read (status, resourceVersion,
    managedFields, annotations) or in spec.nodeName: a binding or a kubelet status report."""
    o_md, n_md = old.get("metadata") or {}, new.get("metadata") or {}
    if (o_md.get("uid") != n_md.get("uid") or o_md.get("labels") != n_md.get("labels")
            or o_md.get("deletionTimestamp") != n_md.get("deletionTimestamp")
            or o_md.get("ownerReferences") != n_md.get("ownerReferences")):
        return False
    if (new.get("status") or {}).get("phase") in ("Succeeded", "Failed"):
        return False
    o_spec, n_spec = old.get("spec") or {}, new.get("spec") or {}
    if o_spec.get("nodeName") != n_spec.get("nodeName"):
        o_spec, n_spec = dict(o_spec), dict(n_spec)
        o_spec.pop("nodeName", None)
        n_spec.pop("nodeName", None)
    return bool(o_spec == n_spec)


def _spread(c: Mapping[str, Any], labels: Mapping[str, str]) -> SpreadConstraint:
    sel_spec = c.get("labelSelector")
    selector = selector_from_spec(sel_spec) if sel_spec is not None else LabelSelector(match_nothing=True)
    keys = c.get("matchLabelKeys") or ()
    if keys and sel_spec is not None:  # matchLabelKeys: AND the pod's own values for those keys
        extra = {"matchLabels": {k: labels[k] for k in keys if k in labels}}
        selector = LabelSelector(selector.requirements + selector_from_spec(extra).requirements)
    return SpreadConstraint(max_skew=int(c.get("maxSkew") or 1), topology_key=str(c.get("topologyKey") or ""),
                            when_unsatisfiable=str(c.get("whenUnsatisfiable") or "DoNotSchedule"),
                            selector=selector, min_domains=int(c.get("minDomains") or 1))


__all__ = ["EVERYTHING", "AffinityTerm", "NodeSelectorTerm", "PodInfo", "SpreadConstraint", "Taint",
           "Toleration", "milli_cpu", "same_scheduling_inputs", "tolerated", "whole_value"]
