"""`apply_defaults`: fill in what kube-apiserver fills in before validating and storing.

What users see in `kubectl get -o yaml` right after a create: kube's SetDefaults_* functions
(pkg/apis/*/v1/defaults.go) plus the few values set by registry strategies and default admission
plugins that every cluster has (namespace finalizers, pod priority, service IP families). Runs on
create and update, before validation (api/validation.py). Pure: no I/O, no clock, no allocation
(cluster IPs and node ports are the Service registry's job).
"""

from __future__ import annotations

from collections.abc import Callable

from pocketkube.api.defaults_pod import Obj, default_pod, default_pod_template, dict_items, dig, ensure_dict
from pocketkube.api.defaults_workloads import (
    default_cron_job,
    default_daemon_set,
    default_deployment,
    default_job,
    default_replica_set,
    default_stateful_set,
)

RBAC_GROUP = "rbac.authorization.k8s.io"


def _service(obj: Obj) -> None:
    spec = ensure_dict(obj, "spec")
    if not spec.get("sessionAffinity"):
        spec["sessionAffinity"] = "None"
    if spec["sessionAffinity"] == "None":
        spec.pop("sessionAffinityConfig", None)
    elif spec["sessionAffinity"] == "ClientIP":
        client_ip = ensure_dict(ensure_dict(spec, "sessionAffinityConfig"), "clientIP")
        if client_ip.get("timeoutSeconds") is None:
            client_ip["timeoutSeconds"] = 10800
    if not spec.get("type"):
        spec["type"] = "ClusterIP"
    service_type = spec["type"]
    for port in dict_items(spec.get("ports")):
        if not port.get("protocol"):
            port["protocol"] = "TCP"
        if port.get("targetPort") in (None, 0, "") and port.get("port") is not None:
            port["targetPort"] = port.get("port")
    if service_type in ("NodePort", "LoadBalancer") and not spec.get("externalTrafficPolicy"):
        spec["externalTrafficPolicy"] = "Cluster"
    if service_type == "LoadBalancer" and spec.get("allocateLoadBalancerNodePorts") is None:
        spec["allocateLoadBalancerNodePorts"] = True
    if service_type != "ExternalName":
        if not spec.get("internalTrafficPolicy"):
            spec["internalTrafficPolicy"] = "Cluster"
        # Set by the registry on create in a single-stack IPv4 cluster, which pocketkube is.
        if not spec.get("ipFamilyPolicy"):
            spec["ipFamilyPolicy"] = "SingleStack"
        if not spec.get("ipFamilies"):
            spec["ipFamilies"] = ["IPv4"]


def _secret(obj: Obj) -> None:
    if not obj.get("type"):
        obj["type"] = "Opaque"


def _namespace(obj: Obj) -> None:
    metadata = ensure_dict(obj, "metadata")
    name = metadata.get("name")
    if name:
        ensure_dict(metadata, "labels")["kubernetes.io/metadata.name"] = name
    spec = ensure_dict(obj, "spec")
    if not spec.get("finalizers"):
        spec["finalizers"] = ["kubernetes"]
    status = ensure_dict(obj, "status")
    if not status.get("phase"):
        status["phase"] = "Active"


def _node(obj: Obj) -> None:
    status = obj.get("status")
    if isinstance(status, dict) and status.get("allocatable") is None and isinstance(status.get("capacity"), dict):
        status["allocatable"] = dict(status["capacity"])


def _pvc(obj: Obj) -> None:
    spec = ensure_dict(obj, "spec")
    if not spec.get("volumeMode"):
        spec["volumeMode"] = "Filesystem"
    status = ensure_dict(obj, "status")
    if not status.get("phase"):
        status["phase"] = "Pending"


def _pv(obj: Obj) -> None:
    spec = ensure_dict(obj, "spec")
    if not spec.get("persistentVolumeReclaimPolicy"):
        spec["persistentVolumeReclaimPolicy"] = "Retain"
    if not spec.get("volumeMode"):
        spec["volumeMode"] = "Filesystem"
    status = ensure_dict(obj, "status")
    if not status.get("phase"):
        status["phase"] = "Pending"


def _endpoints(obj: Obj) -> None:
    for subset in dict_items(obj.get("subsets")):
        for port in dict_items(subset.get("ports")):
            if not port.get("protocol"):
                port["protocol"] = "TCP"


def _endpoint_slice(obj: Obj) -> None:
    for port in dict_items(obj.get("ports")):
        if port.get("name") is None:
            port["name"] = ""
        if not port.get("protocol"):
            port["protocol"] = "TCP"


def _network_policy(obj: Obj) -> None:
    spec = ensure_dict(obj, "spec")
    for direction in ("ingress", "egress"):
        for rule in dict_items(spec.get(direction)):
            for port in dict_items(rule.get("ports")):
                if not port.get("protocol"):
                    port["protocol"] = "TCP"
    if not spec.get("policyTypes"):
        types = ["Ingress"]
        if spec.get("egress"):
            types.append("Egress")
        spec["policyTypes"] = types


def _rbac_binding(obj: Obj) -> None:
    role_ref = obj.get("roleRef")
    if isinstance(role_ref, dict) and not role_ref.get("apiGroup"):
        role_ref["apiGroup"] = RBAC_GROUP
    for subject in dict_items(obj.get("subjects")):
        if not subject.get("apiGroup"):
            kind = subject.get("kind")
            if kind == "ServiceAccount":
                subject["apiGroup"] = ""
            elif kind in ("User", "Group"):
                subject["apiGroup"] = RBAC_GROUP


def _limit_range(obj: Obj) -> None:
    for item in dict_items(ensure_dict(obj, "spec").get("limits")):
        if item.get("type") != "Container":
            continue
        default = ensure_dict(item, "default")
        default_request = ensure_dict(item, "defaultRequest")
        for source, target in ((item.get("max"), default), (default, default_request),
                               (item.get("min"), default_request)):
            if isinstance(source, dict):
                for name, value in list(source.items()):
                    target.setdefault(name, value)


def _priority_class(obj: Obj) -> None:
    if not obj.get("preemptionPolicy"):
        obj["preemptionPolicy"] = "PreemptLowerPriority"


def _storage_class(obj: Obj) -> None:
    if not obj.get("reclaimPolicy"):
        obj["reclaimPolicy"] = "Delete"
    if not obj.get("volumeBindingMode"):
        obj["volumeBindingMode"] = "Immediate"


def _crd(obj: Obj) -> None:
    spec = ensure_dict(obj, "spec")
    names = ensure_dict(spec, "names")
    kind = names.get("kind")
    if not names.get("singular") and isinstance(kind, str):
        names["singular"] = kind.lower()
    if not names.get("listKind") and kind:
        names["listKind"] = f"{kind}List"
    conversion = ensure_dict(spec, "conversion")
    if not conversion.get("strategy"):
        conversion["strategy"] = "None"
    webhook = conversion.get("webhook")
    service = dig(webhook, "clientConfig", "service")
    if isinstance(service, dict) and service.get("port") is None:
        service["port"] = 443


def _pod_template(obj: Obj) -> None:
    default_pod_template(obj.get("template"))


def _replication_controller(obj: Obj) -> None:
    spec = ensure_dict(obj, "spec")
    if spec.get("replicas") is None:
        spec["replicas"] = 1
    template = spec.get("template")
    labels = dig(template, "metadata", "labels")
    if isinstance(labels, dict) and labels:
        if not spec.get("selector"):
            spec["selector"] = dict(labels)
        metadata = ensure_dict(obj, "metadata")
        if not metadata.get("labels"):
            metadata["labels"] = dict(labels)
    default_pod_template(template)


_DEFAULTERS: dict[tuple[str, str], Callable[[Obj], None]] = {
    ("", "Pod"): default_pod,
    ("", "PodTemplate"): _pod_template,
    ("", "ReplicationController"): _replication_controller,
    ("", "Service"): _service,
    ("", "Secret"): _secret,
    ("", "Namespace"): _namespace,
    ("", "Node"): _node,
    ("", "PersistentVolumeClaim"): _pvc,
    ("", "PersistentVolume"): _pv,
    ("", "Endpoints"): _endpoints,
    ("", "LimitRange"): _limit_range,
    ("apps", "Deployment"): default_deployment,
    ("apps", "ReplicaSet"): default_replica_set,
    ("apps", "DaemonSet"): default_daemon_set,
    ("apps", "StatefulSet"): default_stateful_set,
    ("batch", "Job"): default_job,
    ("batch", "CronJob"): default_cron_job,
    ("discovery.k8s.io", "EndpointSlice"): _endpoint_slice,
    ("networking.k8s.io", "NetworkPolicy"): _network_policy,
    (RBAC_GROUP, "RoleBinding"): _rbac_binding,
    (RBAC_GROUP, "ClusterRoleBinding"): _rbac_binding,
    ("scheduling.k8s.io", "PriorityClass"): _priority_class,
    ("storage.k8s.io", "StorageClass"): _storage_class,
    ("apiextensions.k8s.io", "CustomResourceDefinition"): _crd,
}


def apply_defaults(group: str, version: str, kind: str, obj: Obj) -> None:
    """Default `obj` (a JSON dict as the client sent it) in place. Unknown kinds are left alone."""
    del version  # every served built-in is v1; kept so callers need not change when that stops
    defaulter = _DEFAULTERS.get((group, kind))
    if defaulter is not None:
        defaulter(obj)
