"""The table of API resources pocketkube serves: group, version, kind, plural, scope, verbs.

Discovery, routing, OpenAPI, storage keys and kubectl tables all read this one table, so adding a
built-in resource is one entry here plus (when it needs one) a strategy in apiserver/registry/.
CustomResourceDefinitions add entries at run time through `ResourceTable.add`.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field

ALL_VERBS = ("create", "delete", "deletecollection", "get", "list", "patch", "update", "watch")
NO_COLLECTION_VERBS = ("create", "delete", "get", "list", "patch", "update", "watch")


@dataclass(frozen=True, slots=True)
class Subresource:
    name: str  # "status", "scale", "binding", "log", "exec", ...
    kind: str  # the kind it accepts/returns ("Pod", "Scale", "Binding", ...)
    verbs: tuple[str, ...]
    group: str = ""  # group/version of that kind when it differs from the parent's
    version: str = ""


@dataclass(frozen=True, slots=True)
class ResourceInfo:
    group: str  # "" for the core group
    version: str
    kind: str
    plural: str
    singular: str
    namespaced: bool
    short_names: tuple[str, ...] = ()
    categories: tuple[str, ...] = ()
    verbs: tuple[str, ...] = ALL_VERBS
    subresources: tuple[Subresource, ...] = ()
    list_kind: str = ""
    custom: bool = False  # served from a CustomResourceDefinition

    @property
    def api_version(self) -> str:
        return f"{self.group}/{self.version}" if self.group else self.version

    @property
    def group_version(self) -> str:
        return self.api_version

    @property
    def list_kind_name(self) -> str:
        return self.list_kind or f"{self.kind}List"

    @property
    def storage_group(self) -> str:
        return self.group or "core"

    def key_prefix(self, namespace: str | None = None) -> str:
        """Storage key prefix of this resource (all namespaces when namespace is None)."""
        base = f"/registry/{self.storage_group}/{self.plural}/"
        if self.namespaced and namespace:
            return f"{base}{namespace}/"
        return base

    def key(self, namespace: str | None, name: str) -> str:
        if self.namespaced:
            return f"/registry/{self.storage_group}/{self.plural}/{namespace}/{name}"
        return f"/registry/{self.storage_group}/{self.plural}/{name}"

    def subresource(self, name: str) -> Subresource | None:
        for sub in self.subresources:
            if sub.name == name:
                return sub
        return None


_STATUS_VERBS = ("get", "patch", "update")


def _status(kind: str) -> Subresource:
    return Subresource("status", kind, _STATUS_VERBS)


_SCALE = Subresource("scale", "Scale", _STATUS_VERBS, group="autoscaling", version="v1")


def _r(
    group: str,
    version: str,
    kind: str,
    plural: str,
    *,
    namespaced: bool = True,
    short: Iterable[str] = (),
    categories: Iterable[str] = (),
    subresources: Iterable[Subresource] = (),
    verbs: tuple[str, ...] = ALL_VERBS,
) -> ResourceInfo:
    return ResourceInfo(
        group=group,
        version=version,
        kind=kind,
        plural=plural,
        singular=kind.lower(),
        namespaced=namespaced,
        short_names=tuple(short),
        categories=tuple(categories),
        verbs=verbs,
        subresources=tuple(subresources),
    )


BUILTIN_RESOURCES: tuple[ResourceInfo, ...] = (
    # core/v1
    _r("", "v1", "Namespace", "namespaces", namespaced=False, short=["ns"],
       subresources=[_status("Namespace"), Subresource("finalize", "Namespace", ("update",))],
       verbs=NO_COLLECTION_VERBS),
    _r("", "v1", "Pod", "pods", short=["po"], categories=["all"],
       subresources=[
           _status("Pod"),
           Subresource("binding", "Binding", ("create",)),
           Subresource("eviction", "Eviction", ("create",), group="policy", version="v1"),
           Subresource("log", "Pod", ("get",)),
           Subresource("exec", "PodExecOptions", ("create", "get")),
           Subresource("attach", "PodAttachOptions", ("create", "get")),
           Subresource("portforward", "PodPortForwardOptions", ("create", "get")),
       ]),
    _r("", "v1", "Binding", "bindings", verbs=("create",)),
    _r("", "v1", "Node", "nodes", namespaced=False, short=["no"], subresources=[_status("Node")]),
    _r("", "v1", "Service", "services", short=["svc"], categories=["all"],
       subresources=[_status("Service")],
       verbs=NO_COLLECTION_VERBS),
    _r("", "v1", "Endpoints", "endpoints", short=["ep"]),
    _r("", "v1", "ConfigMap", "configmaps", short=["cm"]),
    _r("", "v1", "Secret", "secrets"),
    _r("", "v1", "Event", "events", short=["ev"]),
    _r("", "v1", "ServiceAccount", "serviceaccounts", short=["sa"]),
    _r("", "v1", "ResourceQuota", "resourcequotas", short=["quota"], subresources=[_status("ResourceQuota")]),
    _r("", "v1", "LimitRange", "limitranges", short=["limits"]),
    _r("", "v1", "PersistentVolume", "persistentvolumes", namespaced=False, short=["pv"],
       subresources=[_status("PersistentVolume")]),
    _r("", "v1", "PersistentVolumeClaim", "persistentvolumeclaims", short=["pvc"],
       subresources=[_status("PersistentVolumeClaim")]),
    # apps/v1
    _r("apps", "v1", "Deployment", "deployments", short=["deploy"], categories=["all"],
       subresources=[_status("Deployment"), _SCALE]),
    _r("apps", "v1", "ReplicaSet", "replicasets", short=["rs"], categories=["all"],
       subresources=[_status("ReplicaSet"), _SCALE]),
    _r("apps", "v1", "DaemonSet", "daemonsets", short=["ds"], categories=["all"],
       subresources=[_status("DaemonSet")]),
    _r("apps", "v1", "StatefulSet", "statefulsets", short=["sts"], categories=["all"],
       subresources=[_status("StatefulSet"), _SCALE]),
    _r("apps", "v1", "ControllerRevision", "controllerrevisions"),
    # batch/v1
    _r("batch", "v1", "Job", "jobs", categories=["all"], subresources=[_status("Job")]),
    _r("batch", "v1", "CronJob", "cronjobs", short=["cj"], categories=["all"], subresources=[_status("CronJob")]),
    # coordination.k8s.io/v1
    _r("coordination.k8s.io", "v1", "Lease", "leases"),
    # discovery.k8s.io/v1
    _r("discovery.k8s.io", "v1", "EndpointSlice", "endpointslices"),
    # networking.k8s.io/v1
    _r("networking.k8s.io", "v1", "Ingress", "ingresses", short=["ing"], subresources=[_status("Ingress")]),
    _r("networking.k8s.io", "v1", "IngressClass", "ingressclasses", namespaced=False),
    _r("networking.k8s.io", "v1", "NetworkPolicy", "networkpolicies", short=["netpol"]),
    # events.k8s.io/v1
    _r("events.k8s.io", "v1", "Event", "events", short=["ev"]),
    # policy/v1
    _r("policy", "v1", "PodDisruptionBudget", "poddisruptionbudgets", short=["pdb"],
       subresources=[_status("PodDisruptionBudget")]),
    # rbac.authorization.k8s.io/v1
    _r("rbac.authorization.k8s.io", "v1", "Role", "roles"),
    _r("rbac.authorization.k8s.io", "v1", "RoleBinding", "rolebindings"),
    _r("rbac.authorization.k8s.io", "v1", "ClusterRole", "clusterroles", namespaced=False),
    _r("rbac.authorization.k8s.io", "v1", "ClusterRoleBinding", "clusterrolebindings", namespaced=False),
    # storage.k8s.io/v1
    _r("storage.k8s.io", "v1", "StorageClass", "storageclasses", namespaced=False, short=["sc"]),
    # scheduling.k8s.io/v1
    _r("scheduling.k8s.io", "v1", "PriorityClass", "priorityclasses", namespaced=False, short=["pc"]),
    # authorization.k8s.io/v1, authentication.k8s.io/v1: answered, never stored
    _r("authorization.k8s.io", "v1", "SelfSubjectAccessReview", "selfsubjectaccessreviews", namespaced=False,
       verbs=("create",)),
    _r("authorization.k8s.io", "v1", "SubjectAccessReview", "subjectaccessreviews", namespaced=False,
       verbs=("create",)),
    _r("authentication.k8s.io", "v1", "SelfSubjectReview", "selfsubjectreviews", namespaced=False, verbs=("create",)),
    # apiextensions.k8s.io/v1
    _r("apiextensions.k8s.io", "v1", "CustomResourceDefinition", "customresourcedefinitions",
       namespaced=False, short=["crd", "crds"], categories=["api-extensions"],
       subresources=[_status("CustomResourceDefinition")]),
)

# Kinds that exist only as request/response bodies of subresources, never stored.
SUBRESOURCE_ONLY_PLURALS = frozenset({"bindings"})

# Kinds answered at create time and never stored (access reviews, who-am-i).
REVIEW_PLURALS = frozenset({"selfsubjectaccessreviews", "subjectaccessreviews", "selfsubjectreviews"})


@dataclass
class ResourceTable:
    """Lookup by (group, version, plural), by kind and by short name; CRDs add entries at run time."""

    _by_gvr: dict[tuple[str, str, str], ResourceInfo] = field(default_factory=dict)
    _by_gvk: dict[tuple[str, str, str], ResourceInfo] = field(default_factory=dict)
    generation: int = 0  # bumped on every change, so caches (discovery, openapi) know to rebuild

    @classmethod
    def builtin(cls) -> ResourceTable:
        table = cls()
        for info in BUILTIN_RESOURCES:
            table.add(info)
        return table

    def add(self, info: ResourceInfo) -> None:
        self._by_gvr[(info.group, info.version, info.plural)] = info
        self._by_gvk[(info.group, info.version, info.kind)] = info
        self.generation += 1

    def remove(self, group: str, version: str, plural: str) -> None:
        info = self._by_gvr.pop((group, version, plural), None)
        if info is not None:
            self._by_gvk.pop((group, version, info.kind), None)
            self.generation += 1

    def get(self, group: str, version: str, plural: str) -> ResourceInfo | None:
        return self._by_gvr.get((group, version, plural))

    def by_kind(self, group: str, version: str, kind: str) -> ResourceInfo | None:
        return self._by_gvk.get((group, version, kind))

    def by_api_version_kind(self, api_version: str, kind: str) -> ResourceInfo | None:
        group, _, version = api_version.rpartition("/")
        return self._by_gvk.get((group, version, kind))

    def __iter__(self) -> Iterator[ResourceInfo]:
        return iter(list(self._by_gvr.values()))

    def groups(self) -> dict[str, list[str]]:
        """group -> versions served (core group under "")."""
        out: dict[str, list[str]] = {}
        for info in self._by_gvr.values():
            versions = out.setdefault(info.group, [])
            if info.version not in versions:
                versions.append(info.version)
        return out

    def in_group_version(self, group: str, version: str) -> list[ResourceInfo]:
        return [i for i in self._by_gvr.values() if i.group == group and i.version == version]
