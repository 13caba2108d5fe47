"""Table printers for the core/v1 kinds: pods, nodes, services, events, volumes and friends.

Each printer is a column list plus a pure `cells(obj, now)` function, mirroring one print
function of kubernetes `pkg/printers/internalversion/printers.go` (v1.32) with `Wide: true`,
because the API server always emits the priority-1 cells and kubectl hides them unless `-o wide`.
Registered in table_printers.py; assembled into a Table by tables.py.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from pocketkube.api.duration import human_duration, parse_timestamp, since
from pocketkube.api.table_format import (
    AGE_COLUMN,
    NAME_COLUMN,
    NONE,
    UNSET,
    Column,
    access_modes,
    d,
    dint,
    dlist,
    dmap,
    dstr,
    format_labels,
    join_host_port,
    lb_ingress,
    name_of,
    quantity,
    wide,
)

Cells = list[Any]
CellsFn = Callable[[dict[str, Any], datetime], Cells]
ConditionsFn = Callable[[dict[str, Any]], list[dict[str, Any]]]


@dataclass(frozen=True, slots=True)
class TablePrinter:
    columns: tuple[Column, ...]
    cells: CellsFn
    conditions: ConditionsFn | None = None


def age(obj: Mapping[str, Any], now: datetime) -> str:
    return since(d(obj, "metadata", "creationTimestamp"), now)


def deleting(obj: Mapping[str, Any]) -> bool:
    return bool(d(obj, "metadata", "deletionTimestamp"))


# ---------------------------------------------------------------------------------------- pods

POD_COLUMNS = (
    NAME_COLUMN,
    Column("Ready", description="The aggregate readiness state of this pod for accepting traffic."),
    Column("Status", description="The aggregate status of the containers in this pod."),
    Column(
        "Restarts",
        description="The number of times the containers in this pod have been restarted and when "
        "the last container in this pod has restarted.",
    ),
    AGE_COLUMN,
    wide("IP", "podIP address allocated to the pod. Routable at least within the cluster."),
    wide("Node", "NodeName indicates in which node this pod is scheduled."),
    wide("Nominated Node", "nominatedNodeName is set when this pod preempts other pods on the node."),
    wide("Readiness Gates", "If specified, all readiness gates will be evaluated for pod readiness."),
)

NODE_UNREACHABLE_REASON = "NodeLost"


def _condition_true(conditions: list[Any], kind: str) -> bool:
    return any(dstr(c, "type") == kind and dstr(c, "status") == "True" for c in conditions)


def _later(a: datetime | None, b: Any) -> datetime | None:
    ts = parse_timestamp(b)
    if ts is None:
        return a
    return ts if a is None or ts > a else a


def pod_status(pod: Mapping[str, Any]) -> tuple[int, int, str, int, datetime | None]:
    """printers.go `printPod`: (ready, total, STATUS, restarts, last restart time)."""
    spec, status = dmap(pod, "spec"), dmap(pod, "status")
    conditions = dlist(status, "conditions")
    phase = dstr(status, "phase")
    reason = dstr(status, "reason") or phase
    for cond in conditions:
        if dstr(cond, "type") == "PodScheduled" and dstr(cond, "reason") == "SchedulingGated":
            reason = "SchedulingGated"

    total = len(dlist(spec, "containers"))
    ready = 0
    restarts = 0
    sidecar_restarts = 0
    last_restart: datetime | None = None
    last_sidecar_restart: datetime | None = None

    init_specs = {dstr(c, "name"): c for c in dlist(spec, "initContainers")}
    sidecars = {n for n, c in init_specs.items() if dstr(c, "restartPolicy") == "Always"}
    total += len(sidecars)

    init_statuses = dlist(status, "initContainerStatuses")
    initializing = False
    for i, cs in enumerate(init_statuses):
        restarts += dint(cs, "restartCount")
        last_finish = d(cs, "lastState", "terminated", "finishedAt")
        last_restart = _later(last_restart, last_finish)
        is_sidecar = dstr(cs, "name") in sidecars
        if is_sidecar:
            sidecar_restarts += dint(cs, "restartCount")
            last_sidecar_restart = _later(last_sidecar_restart, last_finish)
        terminated = d(cs, "state", "terminated")
        waiting = d(cs, "state", "waiting")
        if isinstance(terminated, Mapping) and dint(terminated, "exitCode") == 0:
            continue
        if is_sidecar and d(cs, "started") is True:
            if d(cs, "ready") is True:
                ready += 1
            continue
        if isinstance(terminated, Mapping):
            if dstr(terminated, "reason"):
                reason = "Init:" + dstr(terminated, "reason")
            elif dint(terminated, "signal"):
                reason = f"Init:Signal:{dint(terminated, 'signal')}"
            else:
                reason = f"Init:ExitCode:{dint(terminated, 'exitCode')}"
        elif isinstance(waiting, Mapping) and dstr(waiting, "reason") not in ("", "PodInitializing"):
            reason = "Init:" + dstr(waiting, "reason")
        else:
            reason = f"Init:{i}/{len(init_specs)}"
        initializing = True
        break

    if not initializing or _condition_true(conditions, "Initialized"):
        restarts = sidecar_restarts
        last_restart = last_sidecar_restart
        has_running = False
        for cs in reversed(dlist(status, "containerStatuses")):
            restarts += dint(cs, "restartCount")
            last_restart = _later(last_restart, d(cs, "lastState", "terminated", "finishedAt"))
            waiting = d(cs, "state", "waiting")
            terminated = d(cs, "state", "terminated")
            if isinstance(waiting, Mapping) and dstr(waiting, "reason"):
                reason = dstr(waiting, "reason")
            elif isinstance(terminated, Mapping) and dstr(terminated, "reason"):
                reason = dstr(terminated, "reason")
            elif isinstance(terminated, Mapping):
                signal = dint(terminated, "signal")
                reason = f"Signal:{signal}" if signal else f"ExitCode:{dint(terminated, 'exitCode')}"
            elif d(cs, "ready") is True and isinstance(d(cs, "state", "running"), Mapping):
                has_running = True
                ready += 1
        # A pod whose last-listed container completed but another still runs is not "Completed".
        if reason == "Completed" and has_running:
            reason = "Running" if _condition_true(conditions, "Ready") else "NotReady"

    if deleting(pod) and dstr(status, "reason") == NODE_UNREACHABLE_REASON:
        reason = "Unknown"
    elif deleting(pod) and phase not in ("Succeeded", "Failed"):
        reason = "Terminating"
    return ready, total, reason, restarts, last_restart


def _pod_cells(pod: dict[str, Any], now: datetime) -> Cells:
    ready, total, reason, restarts, last_restart = pod_status(pod)
    restarts_cell = str(restarts)
    if restarts and last_restart is not None:
        restarts_cell = f"{restarts} ({human_duration(now - last_restart)} ago)"
    spec, status = dmap(pod, "spec"), dmap(pod, "status")
    ips = dlist(status, "podIPs")
    pod_ip = dstr(ips[0], "ip") if ips else dstr(status, "podIP")
    gates = dlist(spec, "readinessGates")
    gates_cell = NONE
    if gates:
        conditions = {dstr(c, "type"): dstr(c, "status") for c in reversed(dlist(status, "conditions"))}
        true_count = sum(1 for g in gates if conditions.get(dstr(g, "conditionType")) == "True")
        gates_cell = f"{true_count}/{len(gates)}"
    return [
        name_of(pod),
        f"{ready}/{total}",
        reason,
        restarts_cell,
        age(pod, now),
        pod_ip or NONE,
        dstr(spec, "nodeName") or NONE,
        dstr(status, "nominatedNodeName") or NONE,
        gates_cell,
    ]


def _pod_conditions(pod: dict[str, Any]) -> list[dict[str, Any]]:
    phase = dstr(pod, "status", "phase")
    if phase == "Succeeded":
        message = "The pod has completed successfully."
    elif phase == "Failed":
        message = "The pod failed."
    else:
        return []
    return [{"type": "Completed", "status": "True", "reason": phase, "message": message}]


POD = TablePrinter(POD_COLUMNS, _pod_cells, _pod_conditions)

# --------------------------------------------------------------------------------------- nodes

NODE_COLUMNS = (
    NAME_COLUMN,
    Column("Status", description="The status of the node"),
    Column("Roles", description="The roles of the node"),
    AGE_COLUMN,
    Column("Version", description="Kubelet Version reported by the node."),
    wide("Internal-IP", "List of addresses reachable to the node."),
    wide("External-IP", "List of addresses reachable to the node."),
    wide("OS-Image", "OS Image reported by the node from /etc/os-release (e.g. Debian GNU/Linux 7 (wheezy))."),
    wide("Kernel-Version", "Kernel Version reported by the node from 'uname -r' (e.g. 3.16.0-0.bpo.4-amd64)."),
    wide("Container-Runtime", "ContainerRuntime Version reported by the node through runtime remote API."),
)

NODE_ROLE_PREFIX = "node-role.kubernetes.io/"
NODE_ROLE_LABEL = "kubernetes.io/role"


def node_roles(node: Mapping[str, Any]) -> list[str]:
    roles: set[str] = set()
    for key, value in dmap(node, "metadata", "labels").items():
        if key.startswith(NODE_ROLE_PREFIX) and key[len(NODE_ROLE_PREFIX):]:
            roles.add(key[len(NODE_ROLE_PREFIX):])
        elif key == NODE_ROLE_LABEL and value:
            roles.add(str(value))
    return sorted(roles)


def _node_address(node: Mapping[str, Any], kind: str) -> str:
    for addr in dlist(node, "status", "addresses"):
        if dstr(addr, "type") == kind:
            return dstr(addr, "address")
    return NONE


def _node_cells(node: dict[str, Any], now: datetime) -> Cells:
    status: list[str] = []
    for cond in dlist(node, "status", "conditions"):
        if dstr(cond, "type") == "Ready":
            status = ["Ready" if dstr(cond, "status") == "True" else "NotReady"]
    if not status:
        status = ["Unknown"]
    if d(node, "spec", "unschedulable") is True:
        status.append("SchedulingDisabled")
    info = dmap(node, "status", "nodeInfo")
    return [
        name_of(node),
        ",".join(status),
        ",".join(node_roles(node)) or NONE,
        age(node, now),
        dstr(info, "kubeletVersion"),
        _node_address(node, "InternalIP"),
        _node_address(node, "ExternalIP"),
        dstr(info, "osImage") or "<unknown>",
        dstr(info, "kernelVersion") or "<unknown>",
        dstr(info, "containerRuntimeVersion") or "<unknown>",
    ]


NODE = TablePrinter(NODE_COLUMNS, _node_cells)

# ------------------------------------------------------------------------ namespaces & config

NAMESPACE = TablePrinter(
    (NAME_COLUMN, Column("Status", description="The status of the namespace"), AGE_COLUMN),
    lambda o, now: [name_of(o), dstr(o, "status", "phase"), age(o, now)],
)

CONFIGMAP = TablePrinter(
    (NAME_COLUMN, Column("Data", description="Data contains the configuration data."), AGE_COLUMN),
    lambda o, now: [name_of(o), len(dmap(o, "data")) + len(dmap(o, "binaryData")), age(o, now)],
)

SECRET = TablePrinter(
    (
        NAME_COLUMN,
        Column("Type", description="Used to facilitate programmatic handling of secret data."),
        Column("Data", description="Data contains the secret data."),
        AGE_COLUMN,
    ),
    lambda o, now: [name_of(o), dstr(o, "type"), len(dmap(o, "data")), age(o, now)],
)

SERVICE_ACCOUNT = TablePrinter(
    (NAME_COLUMN, Column("Secrets", description="Secrets is a list of the secrets in the same namespace."), AGE_COLUMN),
    lambda o, now: [name_of(o), len(dlist(o, "secrets")), age(o, now)],
)

# ------------------------------------------------------------------------- services & endpoints

SERVICE_COLUMNS = (
    NAME_COLUMN,
    Column("Type", description="type determines how the Service is exposed."),
    Column("Cluster-IP", description="clusterIP is the IP address of the service."),
    Column("External-IP", description="externalIPs is a list of IP addresses for which nodes in the cluster will also accept traffic for this service."),
    Column("Port(s)", description="The list of ports that are exposed by this service."),
    AGE_COLUMN,
    wide("Selector", "Route service traffic to pods with label keys and values matching this selector."),
)


def service_external_ip(svc: Mapping[str, Any]) -> str:
    spec = dmap(svc, "spec")
    svc_type = dstr(spec, "type") or "ClusterIP"
    external = [str(ip) for ip in dlist(spec, "externalIPs")]
    if svc_type in ("ClusterIP", "NodePort"):
        return ",".join(external) or NONE
    if svc_type == "LoadBalancer":
        lb = lb_ingress(d(svc, "status", "loadBalancer"))
        if external:
            return ",".join(([*lb.split(",")] if lb else []) + external)
        return lb or "<pending>"
    if svc_type == "ExternalName":
        return dstr(spec, "externalName")
    return "<unknown>"


def service_ports(ports: list[Any]) -> str:
    pieces = []
    for port in ports:
        proto = dstr(port, "protocol") or "TCP"
        node_port = dint(port, "nodePort")
        if node_port > 0:
            pieces.append(f"{dint(port, 'port')}:{node_port}/{proto}")
        else:
            pieces.append(f"{dint(port, 'port')}/{proto}")
    return ",".join(pieces)


def _service_cells(svc: dict[str, Any], now: datetime) -> Cells:
    spec = dmap(svc, "spec")
    cluster_ips = dlist(spec, "clusterIPs")
    cluster_ip = str(cluster_ips[0]) if cluster_ips else dstr(spec, "clusterIP")
    return [
        name_of(svc),
        dstr(spec, "type") or "ClusterIP",  # the defaulted value, for objects stored undefaulted
        cluster_ip or NONE,
        service_external_ip(svc),
        service_ports(dlist(spec, "ports")) or NONE,
        age(svc, now),
        format_labels(dmap(spec, "selector")),
    ]


SERVICE = TablePrinter(SERVICE_COLUMNS, _service_cells)


def format_endpoints(endpoints: Mapping[str, Any]) -> str:
    """printers.go `formatEndpoints` for all ports: up to three host:port, then `+ N more...`."""
    subsets = dlist(endpoints, "subsets")
    if not subsets:
        return NONE
    out: list[str] = []
    maximum, more, count = 3, False, 0
    for ss in subsets:
        addresses = dlist(ss, "addresses")
        ports = dlist(ss, "ports")
        if not ports:
            count += len(addresses)
            for addr in addresses:
                if len(out) == maximum:
                    more = True
                    break
                out.append(dstr(addr, "ip"))
            continue
        for port in ports:
            count += len(addresses)
            for addr in addresses:
                if len(out) == maximum:
                    more = True
                    break
                out.append(join_host_port(dstr(addr, "ip"), dint(port, "port")))
    ret = ",".join(out)
    return f"{ret} + {count - maximum} more..." if more else ret


ENDPOINTS = TablePrinter(
    (NAME_COLUMN, Column("Endpoints", description="The set of all endpoints is the union of all subsets."), AGE_COLUMN),
    lambda o, now: [name_of(o), format_endpoints(o), age(o, now)],
)

# ---------------------------------------------------------------------------------------- events

EVENT_COLUMNS = (
    Column("Last Seen", description="The time at which the most recent occurrence of this event was recorded."),
    Column("Type", description="Type of this event (Normal, Warning), new types could be added in the future"),
    Column("Reason", description="This should be a short, machine understandable string that gives the reason for the transition into the object's current status."),
    Column("Object", description="The object that this event is about."),
    wide("Subobject", "If referring to a piece of an object instead of an entire object, this string should contain a valid JSON/Go field access statement."),
    wide("Source", "The component reporting this event. Should be a short machine understandable string."),
    Column("Message", description="A human-readable description of the status of this operation."),
    wide("First Seen", "The time at which the event was first recorded. (Time of server receipt is in TypeMeta.)"),
    wide("Count", "The number of times this event has occurred."),
    Column("Name", "string", NAME_COLUMN.description, priority=1, format="name"),
)


def core_event(ev: Mapping[str, Any]) -> dict[str, Any]:
    """An events.k8s.io/v1 Event in core/v1 field names (the printer reads only the core shape)."""
    if "regarding" not in ev and "note" not in ev and not dstr(ev, "apiVersion").startswith("events.k8s.io"):
        return dict(ev)
    return {
        "metadata": dmap(ev, "metadata"),
        "involvedObject": dmap(ev, "regarding"),
        "reason": dstr(ev, "reason"),
        "message": dstr(ev, "note"),
        "type": dstr(ev, "type"),
        "source": dmap(ev, "deprecatedSource"),
        "firstTimestamp": d(ev, "deprecatedFirstTimestamp"),
        "lastTimestamp": d(ev, "deprecatedLastTimestamp"),
        "count": dint(ev, "deprecatedCount"),
        "eventTime": d(ev, "eventTime"),
        "series": d(ev, "series"),
        "reportingComponent": dstr(ev, "reportingController"),
        "reportingInstance": dstr(ev, "reportingInstance"),
    }


def _event_cells(raw: dict[str, Any], now: datetime) -> Cells:
    ev = core_event(raw)
    first = since(ev.get("firstTimestamp"), now)
    if parse_timestamp(ev.get("firstTimestamp")) is None:
        first = since(ev.get("eventTime"), now)
    last = since(ev.get("lastTimestamp"), now)
    if parse_timestamp(ev.get("lastTimestamp")) is None:
        last = first
    count = dint(ev, "count")
    series = ev.get("series")
    if isinstance(series, Mapping):
        last = since(series.get("lastObservedTime"), now)
        count = dint(series, "count")
    elif count == 0:
        count = 1  # singleton events carry no count in the new API
    involved = dmap(ev, "involvedObject")
    kind = dstr(involved, "kind").lower()
    target = f"{kind}/{dstr(involved, 'name')}" if dstr(involved, "name") else kind
    component = dstr(ev, "source", "component") or dstr(ev, "reportingComponent")
    instance = dstr(ev, "source", "host") or dstr(ev, "reportingInstance")
    source = f"{component}, {instance}" if instance else component
    return [
        last,
        dstr(ev, "type"),
        dstr(ev, "reason"),
        target,
        dstr(involved, "fieldPath"),
        source,
        dstr(ev, "message").strip(),
        first,
        count,
        name_of(ev),
    ]


EVENT = TablePrinter(EVENT_COLUMNS, _event_cells)

# ------------------------------------------------------------------------------ quota & volumes


def _quota_cells(rq: dict[str, Any], now: datetime) -> Cells:
    hard, used = dmap(rq, "status", "hard"), dmap(rq, "status", "used")
    requests: list[str] = []
    limits: list[str] = []
    for resource in sorted(hard):
        target = limits if resource.split(".")[0] == "limits" and "." in resource else requests
        target.append(f"{resource}: {quantity(used.get(resource))}/{quantity(hard[resource])}")
    return [name_of(rq), age(rq, now), ", ".join(requests), ", ".join(limits)]


RESOURCE_QUOTA = TablePrinter(
    (
        NAME_COLUMN,
        AGE_COLUMN,  # v1.32 order; 1.33 moved AGE after LIMIT
        Column("Request", description="Request represents a minimum amount of cpu/memory that a container may consume."),
        Column("Limit", description="Limits control the maximum amount of cpu/memory that a container may use independent of contention on the node."),
    ),
    _quota_cells,
)

STORAGE_CLASS_ANNOTATION = "volume.beta.kubernetes.io/storage-class"


def _pv_cells(pv: dict[str, Any], now: datetime) -> Cells:
    spec = dmap(pv, "spec")
    claim = dmap(spec, "claimRef")
    claim_cell = f"{dstr(claim, 'namespace')}/{dstr(claim, 'name')}" if isinstance(spec.get("claimRef"), dict) else ""
    phase = "Terminating" if deleting(pv) else dstr(pv, "status", "phase")
    storage_class = dstr(pv, "metadata", "annotations", STORAGE_CLASS_ANNOTATION) or dstr(spec, "storageClassName")
    return [
        name_of(pv),
        quantity(d(spec, "capacity", "storage")),
        access_modes(dlist(spec, "accessModes")),
        dstr(spec, "persistentVolumeReclaimPolicy"),
        phase,
        claim_cell,
        storage_class,
        dstr(spec, "volumeAttributesClassName") or UNSET,
        dstr(pv, "status", "reason"),
        age(pv, now),
        dstr(spec, "volumeMode") or UNSET,
    ]


PERSISTENT_VOLUME = TablePrinter(
    (
        NAME_COLUMN,
        Column("Capacity", description="capacity is the description of the persistent volume's resources and capacity."),
        Column("Access Modes", description="accessModes contains all ways the volume can be mounted."),
        Column("Reclaim Policy", description="persistentVolumeReclaimPolicy defines what happens to a persistent volume when released from its claim."),
        Column("Status", description="phase indicates if a volume is available, bound to a claim, or released by a claim."),
        Column("Claim", description="claimRef is part of a bi-directional binding between PersistentVolume and PersistentVolumeClaim."),
        Column("StorageClass", description="StorageClass of the pv"),
        Column("VolumeAttributesClass", description="VolumeAttributesClass of the pv"),
        Column("Reason", description="reason is a brief CamelCase string that describes any failure and is meant for machine parsing and tidy display in the CLI."),
        AGE_COLUMN,
        wide("VolumeMode", "volumeMode defines if a volume is intended to be used with a formatted filesystem or to remain in raw block state."),
    ),
    _pv_cells,
)


def _pvc_cells(pvc: dict[str, Any], now: datetime) -> Cells:
    spec = dmap(pvc, "spec")
    phase = "Terminating" if deleting(pvc) else dstr(pvc, "status", "phase")
    capacity = modes = ""
    if dstr(spec, "volumeName"):
        modes = access_modes(dlist(pvc, "status", "accessModes"))
        capacity = quantity(d(pvc, "status", "capacity", "storage"))
    storage_class = dstr(pvc, "metadata", "annotations", STORAGE_CLASS_ANNOTATION) or dstr(spec, "storageClassName")
    return [
        name_of(pvc),
        phase,
        dstr(spec, "volumeName"),
        capacity,
        modes,
        storage_class,
        dstr(spec, "volumeAttributesClassName") or UNSET,
        age(pvc, now),
        dstr(spec, "volumeMode") or UNSET,
    ]


PERSISTENT_VOLUME_CLAIM = TablePrinter(
    (
        NAME_COLUMN,
        Column("Status", description="phase represents the current phase of PersistentVolumeClaim."),
        Column("Volume", description="volumeName is the binding reference to the PersistentVolume backing this claim."),
        Column("Capacity", description="capacity represents the actual resources of the underlying volume."),
        Column("Access Modes", description="accessModes contains the actual access modes the volume backing the PVC has."),
        Column("StorageClass", description="StorageClass of the pvc"),
        Column("VolumeAttributesClass", description="VolumeAttributesClass of the pvc"),
        AGE_COLUMN,
        wide("VolumeMode", "volumeMode defines what type of volume is required by the claim."),
    ),
    _pvc_cells,
)
