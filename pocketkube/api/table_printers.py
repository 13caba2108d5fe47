"""Table printers for workloads and the non-core groups, and the registry of every builtin printer.

Like table_printers_core.py, each printer mirrors one print function of kubernetes
`pkg/printers/internalversion/printers.go` (v1.32, always wide). `PRINTERS` maps
(group, kind) to its printer; kinds upstream has no printer for (Role, ClusterRole,
LimitRange, CustomResourceDefinition, Binding) are absent, so tables.py gives them the API
server's default "Name, Created At" table, as a real cluster does.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from pocketkube.api.duration import human_duration, parse_timestamp, since
from pocketkube.api.table_format import (
    AGE_COLUMN,
    CONTAINERS_DESC,
    IMAGES_DESC,
    NAME_COLUMN,
    NONE,
    Column,
    bool_ptr,
    container_cells,
    d,
    dint,
    dlist,
    dmap,
    dstr,
    format_label_selector,
    format_labels,
    int_or_string,
    lb_ingress,
    list_with_more,
    name_of,
    selector_string,
    wide,
)
from pocketkube.api.table_printers_core import (
    CONFIGMAP,
    ENDPOINTS,
    EVENT,
    NAMESPACE,
    NODE,
    PERSISTENT_VOLUME,
    PERSISTENT_VOLUME_CLAIM,
    POD,
    RESOURCE_QUOTA,
    SECRET,
    SERVICE,
    SERVICE_ACCOUNT,
    Cells,
    TablePrinter,
    age,
    deleting,
)

CONTAINERS = wide("Containers", CONTAINERS_DESC)
IMAGES = wide("Images", IMAGES_DESC)
SELECTOR = wide("Selector", "A label query over pods that should match the replica count.")


def _template_containers(obj: dict[str, Any], *path: str) -> tuple[str, str]:
    return container_cells(dlist(obj, *path, "template", "spec", "containers"))


def _replicas(obj: dict[str, Any]) -> int:
    # Defaulting sets spec.replicas to 1; reading it the same way keeps undefaulted objects honest.
    return dint(obj, "spec", "replicas", default=1)


# ------------------------------------------------------------------------------------------- apps


def _deployment_cells(obj: dict[str, Any], now: datetime) -> Cells:
    status = dmap(obj, "status")
    names, images = _template_containers(obj, "spec")
    return [
        name_of(obj),
        f"{dint(status, 'readyReplicas')}/{_replicas(obj)}",
        dint(status, "updatedReplicas"),
        dint(status, "availableReplicas"),
        age(obj, now),
        names,
        images,
        selector_string(d(obj, "spec", "selector")),
    ]


DEPLOYMENT = TablePrinter(
    (
        NAME_COLUMN,
        Column("Ready", description="Number of the pod with ready state"),
        Column("Up-to-date", description="Total number of non-terminated pods targeted by this deployment that have the desired template spec."),
        Column("Available", description="Total number of available pods (ready for at least minReadySeconds) targeted by this deployment."),
        AGE_COLUMN,
        CONTAINERS,
        IMAGES,
        SELECTOR,
    ),
    _deployment_cells,
)


def _replicaset_cells(obj: dict[str, Any], now: datetime) -> Cells:
    names, images = _template_containers(obj, "spec")
    return [
        name_of(obj),
        _replicas(obj),
        dint(obj, "status", "replicas"),
        dint(obj, "status", "readyReplicas"),
        age(obj, now),
        names,
        images,
        format_label_selector(d(obj, "spec", "selector")),
    ]


REPLICASET = TablePrinter(
    (
        NAME_COLUMN,
        Column("Desired", "integer", "Replicas is the number of desired replicas."),
        Column("Current", "integer", "Replicas is the most recently observed number of replicas."),
        Column("Ready", "integer", "readyReplicas is the number of pods targeted by this ReplicaSet with a Ready Condition."),
        AGE_COLUMN,
        CONTAINERS,
        IMAGES,
        SELECTOR,
    ),
    _replicaset_cells,
)


def _daemonset_cells(obj: dict[str, Any], now: datetime) -> Cells:
    status = dmap(obj, "status")
    names, images = _template_containers(obj, "spec")
    return [
        name_of(obj),
        dint(status, "desiredNumberScheduled"),
        dint(status, "currentNumberScheduled"),
        dint(status, "numberReady"),
        dint(status, "updatedNumberScheduled"),
        dint(status, "numberAvailable"),
        format_labels(dmap(obj, "spec", "template", "spec", "nodeSelector")),
        age(obj, now),
        names,
        images,
        format_label_selector(d(obj, "spec", "selector")),
    ]


DAEMONSET = TablePrinter(
    (
        NAME_COLUMN,
        Column("Desired", "integer", "The total number of nodes that should be running the daemon pod."),
        Column("Current", "integer", "The number of nodes that are running at least 1 daemon pod and are supposed to run the daemon pod."),
        Column("Ready", "integer", "The number of nodes that should be running the daemon pod and have one or more of the daemon pod running with a Ready Condition."),
        Column("Up-to-date", "integer", "The total number of nodes that are running updated daemon pod"),
        Column("Available", "integer", "The number of nodes that should be running the daemon pod and have one or more of the daemon pod running and available."),
        Column("Node Selector", description="NodeSelector is a selector which must be true for the pod to fit on a node."),
        AGE_COLUMN,
        CONTAINERS,
        IMAGES,
        SELECTOR,
    ),
    _daemonset_cells,
)


def _statefulset_cells(obj: dict[str, Any], now: datetime) -> Cells:
    names, images = _template_containers(obj, "spec")
    return [
        name_of(obj),
        f"{dint(obj, 'status', 'readyReplicas')}/{_replicas(obj)}",
        age(obj, now),
        names,
        images,
    ]


STATEFULSET = TablePrinter(
    (NAME_COLUMN, Column("Ready", description="Number of the pod with ready state"), AGE_COLUMN, CONTAINERS, IMAGES),
    _statefulset_cells,
)


def _controller_name(obj: dict[str, Any]) -> str:
    for ref in dlist(obj, "metadata", "ownerReferences"):
        if d(ref, "controller") is True:
            group = dstr(ref, "apiVersion").rpartition("/")[0]
            kind = dstr(ref, "kind")
            group_kind = f"{kind}.{group}" if group else kind
            if not group_kind:
                return dstr(ref, "name")
            return f"{group_kind.lower()}/{dstr(ref, 'name')}"
    return NONE


CONTROLLER_REVISION = TablePrinter(
    (
        NAME_COLUMN,
        Column("Controller", description="Controller of the object"),
        Column("Revision", description="Revision indicates the revision of the state represented by Data."),
        AGE_COLUMN,
    ),
    lambda o, now: [name_of(o), _controller_name(o), dint(o, "revision"), age(o, now)],
)

# ------------------------------------------------------------------------------------------ batch


def _job_condition(obj: dict[str, Any], kind: str) -> bool:
    for cond in dlist(obj, "status", "conditions"):
        if dstr(cond, "type") == kind:
            return dstr(cond, "status") == "True"
    return False


def job_status(obj: dict[str, Any]) -> str:
    if _job_condition(obj, "Complete"):
        return "Complete"
    if _job_condition(obj, "Failed"):
        return "Failed"
    if deleting(obj):
        return "Terminating"
    if _job_condition(obj, "Suspended"):
        return "Suspended"
    if _job_condition(obj, "FailureTarget"):
        return "FailureTarget"
    return "Running"


def _job_cells(obj: dict[str, Any], now: datetime) -> Cells:
    spec, status = dmap(obj, "spec"), dmap(obj, "status")
    succeeded = dint(status, "succeeded")
    if isinstance(spec.get("completions"), int):
        completions = f"{succeeded}/{spec['completions']}"
    elif dint(spec, "parallelism") > 1:
        completions = f"{succeeded}/1 of {dint(spec, 'parallelism')}"
    else:
        completions = f"{succeeded}/1"
    start = parse_timestamp(status.get("startTime"))
    end = parse_timestamp(status.get("completionTime"))
    duration = "" if start is None else human_duration((end or now) - start)
    names, images = _template_containers(obj, "spec")
    return [
        name_of(obj),
        job_status(obj),
        completions,
        duration,
        age(obj, now),
        names,
        images,
        format_label_selector(d(spec, "selector")),
    ]


JOB = TablePrinter(
    (
        NAME_COLUMN,
        Column("Status", description="Status of the job."),
        Column("Completions", description="The number of pods which reached phase Succeeded."),
        Column("Duration", description="Time required to complete the job."),
        AGE_COLUMN,
        CONTAINERS,
        IMAGES,
        SELECTOR,
    ),
    _job_cells,
)


def _cronjob_cells(obj: dict[str, Any], now: datetime) -> Cells:
    spec = dmap(obj, "spec")
    last = d(obj, "status", "lastScheduleTime")
    names, images = _template_containers(obj, "spec", "jobTemplate", "spec")
    return [
        name_of(obj),
        dstr(spec, "schedule"),
        dstr(spec, "timeZone") or NONE,
        bool_ptr(spec.get("suspend")),
        len(dlist(obj, "status", "active")),
        since(last, now) if last else NONE,
        age(obj, now),
        names,
        images,
        format_label_selector(d(spec, "jobTemplate", "spec", "selector")),
    ]


CRONJOB = TablePrinter(
    (
        NAME_COLUMN,
        Column("Schedule", description="The schedule in Cron format."),
        Column("Timezone", description="The time zone name for the given schedule."),
        Column("Suspend", "boolean", "This flag tells the controller to suspend subsequent executions."),
        Column("Active", "integer", "A list of pointers to currently running jobs."),
        Column("Last Schedule", description="Information when was the last time the job was successfully scheduled."),
        AGE_COLUMN,
        CONTAINERS,
        IMAGES,
        SELECTOR,
    ),
    _cronjob_cells,
)

# ------------------------------------------------------------------------------------- networking


def _ingress_hosts(rules: list[Any]) -> str:
    hosts: list[str] = []
    maximum, more = 3, False
    for rule in rules:
        if len(hosts) == maximum:
            more = True
        if not more and dstr(rule, "host"):
            hosts.append(dstr(rule, "host"))
    if not hosts:
        return "*"
    ret = ",".join(hosts)
    return f"{ret} + {len(rules) - maximum} more..." if more else ret


INGRESS = TablePrinter(
    (
        NAME_COLUMN,
        Column("Class", description="The name of the IngressClass resource that should be used for additional configuration"),
        Column("Hosts", description="Hosts that incoming requests are matched against before the ingress rule"),
        Column("Address", description="Address is a list containing ingress points for the load-balancer"),
        Column("Ports", description="Ports of TLS configurations that open"),
        AGE_COLUMN,
    ),
    lambda o, now: [
        name_of(o),
        dstr(o, "spec", "ingressClassName") or NONE,
        _ingress_hosts(dlist(o, "spec", "rules")),
        lb_ingress(d(o, "status", "loadBalancer")),
        "80, 443" if dlist(o, "spec", "tls") else "80",
        age(o, now),
    ],
)


def _ingress_class_parameters(obj: dict[str, Any]) -> str:
    params = d(obj, "spec", "parameters")
    if not isinstance(params, dict):
        return NONE
    kind = dstr(params, "kind")
    if params.get("apiGroup") is not None:
        kind += "." + dstr(params, "apiGroup")
    return f"{kind}/{dstr(params, 'name')}"


INGRESS_CLASS = TablePrinter(
    (
        NAME_COLUMN,
        Column("Controller", description="Controller that is responsible for handling this class"),
        Column("Parameters", description="A reference to a resource with additional parameters"),
        AGE_COLUMN,
    ),
    lambda o, now: [name_of(o), dstr(o, "spec", "controller"), _ingress_class_parameters(o), age(o, now)],
)

NETWORK_POLICY = TablePrinter(
    (NAME_COLUMN, Column("Pod-Selector", description="podSelector selects the pods to which this NetworkPolicy object applies."), AGE_COLUMN),
    lambda o, now: [name_of(o), format_label_selector(dmap(o, "spec", "podSelector")), age(o, now)],
)


def _slice_ports(ports: list[Any]) -> str:
    out: list[str] = []
    maximum, more, count = 3, False, 0
    for port in ports:
        if len(out) < maximum:
            if isinstance(d(port, "port"), int):
                out.append(str(d(port, "port")))
            elif d(port, "name") is not None:
                out.append(dstr(port, "name"))
            else:
                out.append("*")
        elif len(out) == maximum:
            more = True
        count += 1
    return list_with_more(out, more, count, maximum)


def _slice_endpoints(endpoints: list[Any]) -> str:
    out: list[str] = []
    maximum, more, count = 3, False, 0
    for ep in endpoints:
        for address in dlist(ep, "addresses"):
            if len(out) < maximum:
                out.append(str(address))
            elif len(out) == maximum:
                more = True
            count += 1
    return list_with_more(out, more, count, maximum)


ENDPOINT_SLICE = TablePrinter(
    (
        NAME_COLUMN,
        Column("AddressType", description="addressType specifies the type of address carried by this EndpointSlice."),
        Column("Ports", description="ports specifies the list of network ports exposed by each endpoint in this slice."),
        Column("Endpoints", description="endpoints is a list of unique endpoints in this slice."),
        AGE_COLUMN,
    ),
    lambda o, now: [
        name_of(o),
        dstr(o, "addressType"),
        _slice_ports(dlist(o, "ports")),
        _slice_endpoints(dlist(o, "endpoints")),
        age(o, now),
    ],
)

# ------------------------------------------------------------------- coordination, policy, rbac

LEASE = TablePrinter(
    (NAME_COLUMN, Column("Holder", description="holderIdentity contains the identity of the holder of a current lease."), AGE_COLUMN),
    lambda o, now: [name_of(o), dstr(o, "spec", "holderIdentity"), age(o, now)],
)


def _pdb_bound(obj: dict[str, Any], field: str) -> str:
    value = d(obj, "spec", field)
    return "N/A" if value is None else int_or_string(value)


POD_DISRUPTION_BUDGET = TablePrinter(
    (
        NAME_COLUMN,
        Column("Min Available", description="The minimum number of pods that must be available."),
        Column("Max Unavailable", description="The maximum number of pods that may be unavailable."),
        Column("Allowed Disruptions", "integer", "Calculated number of pods that may be disrupted at this time."),
        AGE_COLUMN,
    ),
    lambda o, now: [
        name_of(o),
        _pdb_bound(o, "minAvailable"),
        _pdb_bound(o, "maxUnavailable"),
        dint(o, "status", "disruptionsAllowed"),
        age(o, now),
    ],
)


def _subjects(obj: dict[str, Any]) -> tuple[str, str, str]:
    users: list[str] = []
    groups: list[str] = []
    sas: list[str] = []
    for subject in dlist(obj, "subjects"):
        kind = dstr(subject, "kind")
        if kind == "ServiceAccount":
            sas.append(f"{dstr(subject, 'namespace')}/{dstr(subject, 'name')}")
        elif kind == "User":
            users.append(dstr(subject, "name"))
        elif kind == "Group":
            groups.append(dstr(subject, "name"))
    return ", ".join(users), ", ".join(groups), ", ".join(sas)


def _binding_printer(what: str) -> TablePrinter:
    def cells(obj: dict[str, Any], now: datetime) -> Cells:
        role_ref = f"{dstr(obj, 'roleRef', 'kind')}/{dstr(obj, 'roleRef', 'name')}"
        return [name_of(obj), role_ref, age(obj, now), *_subjects(obj)]

    return TablePrinter(
        (
            NAME_COLUMN,
            Column("Role", description="RoleRef can reference a Role in the current namespace or a ClusterRole in the global namespace."),
            AGE_COLUMN,
            wide("Users", f"Users in the {what}"),
            wide("Groups", f"Groups in the {what}"),
            wide("ServiceAccounts", f"ServiceAccounts in the {what}"),
        ),
        cells,
    )


ROLE_BINDING = _binding_printer("roleBinding")
CLUSTER_ROLE_BINDING = _binding_printer("clusterRoleBinding")

# ------------------------------------------------------------------------- storage & scheduling

_DEFAULT_CLASS_ANNOTATIONS = (
    "storageclass.kubernetes.io/is-default-class",
    "storageclass.beta.kubernetes.io/is-default-class",
)


def _storage_class_cells(obj: dict[str, Any], now: datetime) -> Cells:
    annotations = dmap(obj, "metadata", "annotations")
    name = name_of(obj)
    if any(annotations.get(a) == "true" for a in _DEFAULT_CLASS_ANNOTATIONS):
        name += " (default)"
    return [
        name,
        dstr(obj, "provisioner"),
        dstr(obj, "reclaimPolicy") or "Delete",
        dstr(obj, "volumeBindingMode") or "Immediate",
        d(obj, "allowVolumeExpansion") is True,
        age(obj, now),
    ]


STORAGE_CLASS = TablePrinter(
    (
        NAME_COLUMN,
        Column("Provisioner", description="provisioner indicates the type of the provisioner."),
        Column("ReclaimPolicy", description="reclaimPolicy controls the reclaimPolicy for dynamically provisioned PersistentVolumes of this storage class."),
        Column("VolumeBindingMode", description="volumeBindingMode indicates how PersistentVolumeClaims should be provisioned and bound."),
        Column("AllowVolumeExpansion", description="allowVolumeExpansion shows whether the storage class allow volume expand."),
        AGE_COLUMN,
    ),
    _storage_class_cells,
)

PRIORITY_CLASS = TablePrinter(
    (
        NAME_COLUMN,
        Column("Value", "integer", "value represents the integer value of this priority class."),
        Column("Global-Default", "boolean", "globalDefault specifies whether this PriorityClass should be considered as the default priority for pods that do not have any priority class."),
        AGE_COLUMN,
        Column("PreemptionPolicy", description="preemptionPolicy is the Policy for preempting pods with lower priority."),
    ),
    lambda o, now: [
        name_of(o),
        dint(o, "value"),
        d(o, "globalDefault") is True,
        age(o, now),
        dstr(o, "preemptionPolicy"),
    ],
)

# ------------------------------------------------------------------------------------- registry

PRINTERS: dict[tuple[str, str], TablePrinter] = {
    ("", "Pod"): POD,
    ("", "Node"): NODE,
    ("", "Namespace"): NAMESPACE,
    ("", "Service"): SERVICE,
    ("", "Endpoints"): ENDPOINTS,
    ("", "ConfigMap"): CONFIGMAP,
    ("", "Secret"): SECRET,
    ("", "ServiceAccount"): SERVICE_ACCOUNT,
    ("", "Event"): EVENT,
    ("events.k8s.io", "Event"): EVENT,
    ("", "ResourceQuota"): RESOURCE_QUOTA,
    ("", "PersistentVolume"): PERSISTENT_VOLUME,
    ("", "PersistentVolumeClaim"): PERSISTENT_VOLUME_CLAIM,
    ("apps", "Deployment"): DEPLOYMENT,
    ("apps", "ReplicaSet"): REPLICASET,
    ("apps", "DaemonSet"): DAEMONSET,
    ("apps", "StatefulSet"): STATEFULSET,
    ("apps", "ControllerRevision"): CONTROLLER_REVISION,
    ("batch", "Job"): JOB,
    ("batch", "CronJob"): CRONJOB,
    ("coordination.k8s.io", "Lease"): LEASE,
    ("discovery.k8s.io", "EndpointSlice"): ENDPOINT_SLICE,
    ("networking.k8s.io", "Ingress"): INGRESS,
    ("networking.k8s.io", "IngressClass"): INGRESS_CLASS,
    ("networking.k8s.io", "NetworkPolicy"): NETWORK_POLICY,
    ("policy", "PodDisruptionBudget"): POD_DISRUPTION_BUDGET,
    ("rbac.authorization.k8s.io", "RoleBinding"): ROLE_BINDING,
    ("rbac.authorization.k8s.io", "ClusterRoleBinding"): CLUSTER_ROLE_BINDING,
    ("storage.k8s.io", "StorageClass"): STORAGE_CLASS,
    ("scheduling.k8s.io", "PriorityClass"): PRIORITY_CLASS,
}


def printer_for(group: str, kind: str) -> TablePrinter | None:
    return PRINTERS.get((group, kind))
