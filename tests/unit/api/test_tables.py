"""Tables as kubectl gets them: column sets per builtin resource and cells computed as kube does."""

from __future__ import annotations

import copy
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from pocketkube.api.duration import human_duration, short_human_duration, since
from pocketkube.api.errors import BadRequest
from pocketkube.api.printer_columns import find, go_text, parse
from pocketkube.api.resources import BUILTIN_RESOURCES, ResourceInfo, ResourceTable
from pocketkube.api.tables import column_definitions, to_table

NOW = datetime(2026, 1, 10, 12, 0, 0, tzinfo=UTC)
RESOURCES = ResourceTable.builtin()


def ago(**kw: float) -> str:
    return (NOW - timedelta(**kw)).strftime("%Y-%m-%dT%H:%M:%SZ")


def info(group: str, plural: str) -> ResourceInfo:
    found = RESOURCES.get(group, "v1", plural)
    assert found is not None
    return found


def meta(name: str, **extra: Any) -> dict[str, Any]:
    return {"name": name, "namespace": "default", "uid": f"uid-{name}", "resourceVersion": "7",
            "creationTimestamp": ago(minutes=5), **extra}


def one_row(group: str, plural: str, obj: dict[str, Any], **kw: Any) -> dict[str, Any]:
    table = to_table(info(group, plural), [obj], now=NOW, **kw)
    assert len(table["rows"]) == 1
    row: dict[str, Any] = table["rows"][0]
    return row


def cells_by_name(group: str, plural: str, obj: dict[str, Any]) -> dict[str, Any]:
    table = to_table(info(group, plural), [obj], now=NOW)
    names = [c["name"] for c in table["columnDefinitions"]]
    cells = table["rows"][0]["cells"]
    assert len(names) == len(cells)
    return dict(zip(names, cells, strict=True))


# ------------------------------------------------------------------------------------ durations


@pytest.mark.parametrize(
    ("seconds", "human", "short"),
    [
        (-5, "<invalid>", "<invalid>"),
        (-0.5, "0s", "0s"),
        (5, "5s", "5s"),
        (119, "119s", "1m"),
        (200, "3m20s", "3m"),
        (300, "5m", "5m"),
        (15 * 60, "15m", "15m"),
        (179 * 60, "179m", "2h"),
        (3 * 3600 + 5 * 60, "3h5m", "3h"),
        (5 * 3600, "5h", "5h"),
        (10 * 3600, "10h", "10h"),
        (47 * 3600, "47h", "1d"),
        (2 * 86400 + 3 * 3600, "2d3h", "2d"),
        (7 * 86400, "7d", "7d"),
        (30 * 86400, "30d", "30d"),
        (800 * 86400, "2y70d", "2y"),
        (3 * 365 * 86400, "3y", "3y"),
        (9 * 365 * 86400, "9y", "9y"),
    ],
)
def test_human_durations(seconds: float, human: str, short: str) -> None:
    assert human_duration(timedelta(seconds=seconds)) == human
    assert short_human_duration(seconds) == short


def test_since_handles_missing_and_micro_timestamps() -> None:
    assert since(None, NOW) == "<unknown>"
    assert since("", NOW) == "<unknown>"
    assert since("not a time", NOW) == "<unknown>"
    assert since("2026-01-10T11:59:50.123456Z", NOW) == "9s"
    assert since("2026-01-10T13:59:50+02:00", NOW) == "10s"


# ------------------------------------------------------------------------------ table envelope


def test_table_envelope_and_partial_object_metadata() -> None:
    cm = {"apiVersion": "v1", "kind": "ConfigMap", "metadata": meta("cfg"), "data": {"a": "1", "b": "2"}}
    table = to_table(info("", "configmaps"), [cm], now=NOW,
                     list_metadata={"resourceVersion": "42", "continue": "tok", "remainingItemCount": 3})
    assert table["kind"] == "Table"
    assert table["apiVersion"] == "meta.k8s.io/v1"
    assert table["metadata"] == {"resourceVersion": "42", "continue": "tok", "remainingItemCount": 3}
    assert table["columnDefinitions"][0] == {
        "name": "Name", "type": "string", "format": "name",
        "description": table["columnDefinitions"][0]["description"], "priority": 0,
    }
    row = table["rows"][0]
    assert row["cells"] == ["cfg", 2, "5m"]
    assert row["object"] == {"kind": "PartialObjectMetadata", "apiVersion": "meta.k8s.io/v1",
                             "metadata": cm["metadata"]}
    assert "conditions" not in row


def test_include_object_modes() -> None:
    cm = {"metadata": meta("cfg"), "data": {}}
    full = one_row("", "configmaps", cm, include_object="Object")["object"]
    assert full["kind"] == "ConfigMap" and full["apiVersion"] == "v1" and full["metadata"]["name"] == "cfg"
    assert "kind" not in cm  # the input is not mutated
    assert "object" not in one_row("", "configmaps", cm, include_object="None")
    assert one_row("", "configmaps", cm, include_object="")["object"]["kind"] == "PartialObjectMetadata"
    with pytest.raises(BadRequest):
        to_table(info("", "configmaps"), [cm], include_object="Everything", now=NOW)


def test_empty_list_and_no_headers() -> None:
    table = to_table(info("", "pods"), [], now=NOW, no_headers=True)
    assert table["rows"] == [] and "columnDefinitions" not in table and table["metadata"] == {}


# ------------------------------------------------------------------------------------------ pods


def pod(name: str = "web", *, containers: int = 1, status: dict[str, Any] | None = None,
        init: int = 0, **meta_extra: Any) -> dict[str, Any]:
    spec: dict[str, Any] = {
        "containers": [{"name": f"c{i}", "image": "nginx"} for i in range(containers)],
        "nodeName": "node-1",
    }
    if init:
        spec["initContainers"] = [{"name": f"init{i}", "image": "busybox"} for i in range(init)]
    return {"apiVersion": "v1", "kind": "Pod", "metadata": meta(name, **meta_extra), "spec": spec,
            "status": status or {}}


def running(name: str, *, ready: bool = True, restarts: int = 0, last_finish: str | None = None) -> dict[str, Any]:
    cs: dict[str, Any] = {"name": name, "ready": ready, "restartCount": restarts,
                          "state": {"running": {"startedAt": ago(minutes=4)}}}
    if last_finish:
        cs["lastState"] = {"terminated": {"exitCode": 1, "reason": "Error", "finishedAt": last_finish}}
    return cs


def waiting(name: str, reason: str, *, restarts: int = 0, last_finish: str | None = None) -> dict[str, Any]:
    cs: dict[str, Any] = {"name": name, "ready": False, "restartCount": restarts,
                          "state": {"waiting": {"reason": reason}}}
    if last_finish:
        cs["lastState"] = {"terminated": {"exitCode": 1, "reason": "Error", "finishedAt": last_finish}}
    return cs


POD_CASES: list[tuple[str, dict[str, Any], str, str, str]] = [
    ("pending-unscheduled", pod(status={"phase": "Pending"}), "0/1", "Pending", "0"),
    ("container-creating",
     pod(status={"phase": "Pending", "containerStatuses": [waiting("c0", "ContainerCreating")]}),
     "0/1", "ContainerCreating", "0"),
    ("running-1-of-2",
     pod(containers=2, status={"phase": "Running", "podIP": "10.0.0.5",
                               "containerStatuses": [running("c0"), running("c1", ready=False)]}),
     "1/2", "Running", "0"),
    ("crashloop",
     pod(status={"phase": "Running", "containerStatuses": [
         waiting("c0", "CrashLoopBackOff", restarts=3, last_finish=ago(seconds=10))]}),
     "0/1", "CrashLoopBackOff", "3 (10s ago)"),
    ("err-image-pull",
     pod(status={"phase": "Pending", "containerStatuses": [waiting("c0", "ErrImagePull")]}),
     "0/1", "ErrImagePull", "0"),
    ("image-pull-backoff",
     pod(status={"phase": "Pending", "containerStatuses": [waiting("c0", "ImagePullBackOff")]}),
     "0/1", "ImagePullBackOff", "0"),
    ("init-0-of-1",
     pod(init=1, status={"phase": "Pending",
                         "initContainerStatuses": [{"name": "init0", "restartCount": 0, "ready": False,
                                                    "state": {"running": {}}}],
                         "containerStatuses": [waiting("c0", "PodInitializing")]}),
     "0/1", "Init:0/1", "0"),
    ("init-1-of-2",
     pod(init=2, status={"phase": "Pending", "initContainerStatuses": [
         {"name": "init0", "state": {"terminated": {"exitCode": 0, "reason": "Completed"}}},
         {"name": "init1", "state": {"waiting": {"reason": "PodInitializing"}}}]}),
     "0/1", "Init:1/2", "0"),
    ("init-crashloop",
     pod(init=1, status={"phase": "Pending", "initContainerStatuses": [
         {"name": "init0", "restartCount": 2, "state": {"waiting": {"reason": "CrashLoopBackOff"}},
          "lastState": {"terminated": {"exitCode": 1, "finishedAt": ago(minutes=1)}}}]}),
     "0/1", "Init:CrashLoopBackOff", "2 (60s ago)"),
    ("init-error",
     pod(init=1, status={"phase": "Failed", "initContainerStatuses": [
         {"name": "init0", "state": {"terminated": {"exitCode": 2}}}]}),
     "0/1", "Init:ExitCode:2", "0"),
    ("completed",
     pod(status={"phase": "Succeeded", "containerStatuses": [
         {"name": "c0", "ready": False, "restartCount": 0,
          "state": {"terminated": {"exitCode": 0, "reason": "Completed"}}}]}),
     "0/1", "Completed", "0"),
    ("oomkilled",
     pod(status={"phase": "Running", "containerStatuses": [
         {"name": "c0", "restartCount": 1, "state": {"terminated": {"exitCode": 137, "reason": "OOMKilled"}},
          "lastState": {"terminated": {"exitCode": 137, "finishedAt": ago(hours=2, minutes=5)}}}]}),
     "0/1", "OOMKilled", "1 (125m ago)"),
    ("signal",
     pod(status={"phase": "Running", "containerStatuses": [
         {"name": "c0", "state": {"terminated": {"exitCode": 0, "signal": 9}}}]}),
     "0/1", "Signal:9", "0"),
    ("terminating",
     pod(status={"phase": "Running", "containerStatuses": [running("c0")]}, deletionTimestamp=ago(seconds=3)),
     "1/1", "Terminating", "0"),
    ("terminated-succeeded-not-terminating",
     pod(status={"phase": "Succeeded", "containerStatuses": [
         {"name": "c0", "state": {"terminated": {"exitCode": 0, "reason": "Completed"}}}]},
         deletionTimestamp=ago(seconds=3)),
     "0/1", "Completed", "0"),
    ("node-lost",
     pod(status={"phase": "Running", "reason": "NodeLost"}, deletionTimestamp=ago(seconds=3)),
     "0/1", "Unknown", "0"),
    ("evicted", pod(status={"phase": "Failed", "reason": "Evicted"}), "0/1", "Evicted", "0"),
    ("scheduling-gated",
     pod(status={"phase": "Pending", "conditions": [
         {"type": "PodScheduled", "status": "False", "reason": "SchedulingGated"}]}),
     "0/1", "SchedulingGated", "0"),
    ("completed-but-sibling-running",
     pod(containers=2, status={"phase": "Running", "conditions": [{"type": "Ready", "status": "False"}],
                               "containerStatuses": [
                                   running("c0"),
                                   {"name": "c1", "state": {"terminated": {"exitCode": 0, "reason": "Completed"}}}]}),
     "1/2", "NotReady", "0"),
]


@pytest.mark.parametrize(("case", "obj", "ready", "status", "restarts"), POD_CASES, ids=[c[0] for c in POD_CASES])
def test_pod_status_columns(case: str, obj: dict[str, Any], ready: str, status: str, restarts: str) -> None:
    cells = cells_by_name("", "pods", obj)
    assert (cells["Ready"], cells["Status"], cells["Restarts"]) == (ready, status, restarts)
    assert cells["Name"] == "web" and cells["Age"] == "5m"


def test_pod_sidecar_counts_in_ready_and_restarts() -> None:
    obj = pod(init=1, status={"phase": "Running", "conditions": [{"type": "Initialized", "status": "True"}],
                              "initContainerStatuses": [
                                  {"name": "init0", "started": True, "ready": True, "restartCount": 1,
                                   "state": {"running": {}},
                                   "lastState": {"terminated": {"exitCode": 1, "finishedAt": ago(seconds=30)}}}],
                              "containerStatuses": [running("c0")]})
    obj["spec"]["initContainers"][0]["restartPolicy"] = "Always"
    cells = cells_by_name("", "pods", obj)
    assert (cells["Ready"], cells["Status"], cells["Restarts"]) == ("2/2", "Running", "1 (30s ago)")


def test_pod_wide_cells_and_conditions() -> None:
    obj = pod(status={"phase": "Running", "podIPs": [{"ip": "10.1.0.7"}, {"ip": "fd00::7"}],
                      "nominatedNodeName": "node-2",
                      "conditions": [{"type": "example.com/gate", "status": "True"}],
                      "containerStatuses": [running("c0")]})
    obj["spec"]["readinessGates"] = [{"conditionType": "example.com/gate"}, {"conditionType": "other"}]
    cells = cells_by_name("", "pods", obj)
    assert cells["IP"] == "10.1.0.7" and cells["Node"] == "node-1"
    assert cells["Nominated Node"] == "node-2" and cells["Readiness Gates"] == "1/2"
    bare = cells_by_name("", "pods", pod(status={"phase": "Pending"}) | {"spec": {"containers": []}})
    assert (bare["IP"], bare["Node"], bare["Nominated Node"], bare["Readiness Gates"]) == ("<none>",) * 4
    done = one_row("", "pods", pod(status={"phase": "Succeeded"}))
    assert done["conditions"] == [{"type": "Completed", "status": "True", "reason": "Succeeded",
                                   "message": "The pod has completed successfully."}]


def test_pod_column_definitions_and_priorities() -> None:
    cols = column_definitions(info("", "pods"))
    assert [(c["name"], c["priority"]) for c in cols] == [
        ("Name", 0), ("Ready", 0), ("Status", 0), ("Restarts", 0), ("Age", 0),
        ("IP", 1), ("Node", 1), ("Nominated Node", 1), ("Readiness Gates", 1),
    ]
    assert cols[3]["type"] == "string"


# ------------------------------------------------------------------------------ nodes & others


def test_node_ready_scheduling_disabled_control_plane() -> None:
    node: dict[str, Any] = {
        "metadata": {"name": "cp-1", "creationTimestamp": ago(days=2, hours=3),
                     "labels": {"node-role.kubernetes.io/control-plane": "",
                                "node-role.kubernetes.io/etcd": "", "kubernetes.io/hostname": "cp-1"}},
        "spec": {"unschedulable": True},
        "status": {
            "conditions": [{"type": "MemoryPressure", "status": "False"}, {"type": "Ready", "status": "True"}],
            "addresses": [{"type": "Hostname", "address": "cp-1"}, {"type": "InternalIP", "address": "192.168.1.10"}],
            "nodeInfo": {"kubeletVersion": "v1.32.4", "osImage": "Debian GNU/Linux 12 (bookworm)",
                         "kernelVersion": "6.1.0-18-amd64", "containerRuntimeVersion": "containerd://1.7.13"},
        },
    }
    assert cells_by_name("", "nodes", node) == {
        "Name": "cp-1", "Status": "Ready,SchedulingDisabled", "Roles": "control-plane,etcd", "Age": "2d3h",
        "Version": "v1.32.4", "Internal-IP": "192.168.1.10", "External-IP": "<none>",
        "OS-Image": "Debian GNU/Linux 12 (bookworm)", "Kernel-Version": "6.1.0-18-amd64",
        "Container-Runtime": "containerd://1.7.13",
    }
    bare = cells_by_name("", "nodes", {"metadata": {"name": "n", "labels": {"kubernetes.io/role": "worker"}}})
    assert (bare["Status"], bare["Roles"], bare["Age"], bare["OS-Image"]) == ("Unknown", "worker", "<unknown>", "<unknown>")
    not_ready = copy.deepcopy(node)
    not_ready["status"]["conditions"][1]["status"] = "Unknown"
    not_ready["spec"] = {}
    not_ready["metadata"]["labels"] = {}
    cells = cells_by_name("", "nodes", not_ready)
    assert (cells["Status"], cells["Roles"]) == ("NotReady", "<none>")


@pytest.mark.parametrize(
    ("spec", "status", "expected"),
    [
        ({"type": "NodePort", "clusterIP": "10.96.0.20", "clusterIPs": ["10.96.0.20"], "selector": {"app": "web"},
          "ports": [{"port": 80, "nodePort": 30080, "protocol": "TCP"}, {"port": 53, "protocol": "UDP"}]},
         {}, ["NodePort", "10.96.0.20", "<none>", "80:30080/TCP,53/UDP", "app=web"]),
        ({"type": "ClusterIP", "clusterIP": "None", "ports": []}, {}, ["ClusterIP", "None", "<none>", "<none>", "<none>"]),
        ({"type": "LoadBalancer", "clusterIP": "10.96.0.9", "ports": [{"port": 443, "nodePort": 31443, "protocol": "TCP"}]},
         {}, ["LoadBalancer", "10.96.0.9", "<pending>", "443:31443/TCP", "<none>"]),
        ({"type": "LoadBalancer", "clusterIP": "10.96.0.9", "externalIPs": ["1.2.3.4"], "ports": []},
         {"loadBalancer": {"ingress": [{"ip": "5.6.7.8"}, {"hostname": "lb.example.com"}]}},
         ["LoadBalancer", "10.96.0.9", "5.6.7.8,lb.example.com,1.2.3.4", "<none>", "<none>"]),
        ({"type": "ExternalName", "externalName": "db.example.com"}, {},
         ["ExternalName", "<none>", "db.example.com", "<none>", "<none>"]),
    ],
)
def test_service_cells(spec: dict[str, Any], status: dict[str, Any], expected: list[str]) -> None:
    cells = cells_by_name("", "services", {"metadata": meta("svc"), "spec": spec, "status": status})
    assert [cells[k] for k in ("Type", "Cluster-IP", "External-IP", "Port(s)", "Selector")] == expected


def deployment(ready: int, desired: int) -> dict[str, Any]:
    return {
        "metadata": meta("web"),
        "spec": {"replicas": desired, "selector": {"matchLabels": {"app": "web"},
                                                   "matchExpressions": [{"key": "tier", "operator": "In",
                                                                         "values": ["fe", "be"]}]},
                 "template": {"spec": {"containers": [{"name": "nginx", "image": "nginx:1.27"},
                                                      {"name": "log", "image": "busybox"}]}}},
        "status": {"replicas": 3, "readyReplicas": ready, "updatedReplicas": 3, "availableReplicas": ready},
    }


def test_deployment_replicaset_statefulset_daemonset() -> None:
    cells = cells_by_name("apps", "deployments", deployment(2, 3))
    assert cells == {"Name": "web", "Ready": "2/3", "Up-to-date": 3, "Available": 2, "Age": "5m",
                     "Containers": "nginx,log", "Images": "nginx:1.27,busybox",
                     "Selector": "app=web,tier in (be,fe)"}
    rs = cells_by_name("apps", "replicasets", deployment(2, 3))
    assert [rs[k] for k in ("Desired", "Current", "Ready", "Selector")] == [3, 3, 2, "app=web,tier in (be,fe)"]
    sts = cells_by_name("apps", "statefulsets", {"metadata": meta("db"), "spec": {"replicas": 3},
                                                 "status": {"readyReplicas": 1}})
    assert sts == {"Name": "db", "Ready": "1/3", "Age": "5m", "Containers": "", "Images": ""}
    ds = cells_by_name("apps", "daemonsets", {
        "metadata": meta("agent"),
        "spec": {"selector": {"matchLabels": {"app": "agent"}},
                 "template": {"spec": {"nodeSelector": {"kubernetes.io/os": "linux"}, "containers": []}}},
        "status": {"desiredNumberScheduled": 2, "currentNumberScheduled": 2, "numberReady": 1,
                   "updatedNumberScheduled": 2, "numberAvailable": 1}})
    assert [ds[k] for k in ("Desired", "Current", "Ready", "Up-to-date", "Available", "Node Selector", "Selector")] \
        == [2, 2, 1, 2, 1, "kubernetes.io/os=linux", "app=agent"]


@pytest.mark.parametrize(
    ("spec", "status", "extra_meta", "expected"),
    [
        ({"completions": 3, "parallelism": 1}, {"succeeded": 3, "startTime": ago(minutes=4),
                                                "completionTime": ago(minutes=1, seconds=40),
                                                "conditions": [{"type": "Complete", "status": "True"}]},
         {}, ("Complete", "3/3", "2m20s")),
        ({"parallelism": 2}, {"startTime": ago(seconds=30), "active": 2}, {}, ("Running", "0/1 of 2", "30s")),
        ({"completions": 1}, {"conditions": [{"type": "Failed", "status": "True"}]}, {}, ("Failed", "0/1", "")),
        ({}, {"conditions": [{"type": "Suspended", "status": "True"}]}, {}, ("Suspended", "0/1", "")),
        ({}, {}, {"deletionTimestamp": ago(seconds=1)}, ("Terminating", "0/1", "")),
    ],
)
def test_job_cells(spec: dict[str, Any], status: dict[str, Any], extra_meta: dict[str, Any],
                   expected: tuple[str, str, str]) -> None:
    cells = cells_by_name("batch", "jobs", {"metadata": meta("j", **extra_meta), "spec": spec, "status": status})
    assert (cells["Status"], cells["Completions"], cells["Duration"]) == expected


def test_cronjob_configmap_secret_namespace_sa() -> None:
    cj = cells_by_name("batch", "cronjobs", {"metadata": meta("nightly"),
                                             "spec": {"schedule": "0 3 * * *", "suspend": False},
                                             "status": {"active": [{"name": "x"}], "lastScheduleTime": ago(hours=9)}})
    assert [cj[k] for k in ("Schedule", "Timezone", "Suspend", "Active", "Last Schedule")] == \
        ["0 3 * * *", "<none>", "False", 1, "9h"]
    assert cells_by_name("", "configmaps", {"metadata": meta("c"), "data": {"a": "1"}, "binaryData": {"b": "AA=="}})["Data"] == 2
    secret = cells_by_name("", "secrets", {"metadata": meta("s"), "type": "kubernetes.io/tls", "data": {"tls.crt": "", "tls.key": ""}})
    assert (secret["Type"], secret["Data"]) == ("kubernetes.io/tls", 2)
    assert cells_by_name("", "namespaces", {"metadata": meta("prod"), "status": {"phase": "Active"}})["Status"] == "Active"
    assert cells_by_name("", "serviceaccounts", {"metadata": meta("default")})["Secrets"] == 0


def test_events_core_and_events_k8s_io() -> None:
    ev = {"metadata": meta("web.17a"), "type": "Warning", "reason": "BackOff",
          "involvedObject": {"kind": "Pod", "name": "web", "fieldPath": "spec.containers{c0}"},
          "message": "Back-off restarting failed container\n", "source": {"component": "kubelet", "host": "node-1"},
          "firstTimestamp": ago(minutes=10), "lastTimestamp": ago(seconds=20), "count": 7}
    assert cells_by_name("", "events", ev) == {
        "Last Seen": "20s", "Type": "Warning", "Reason": "BackOff", "Object": "pod/web",
        "Subobject": "spec.containers{c0}", "Source": "kubelet, node-1",
        "Message": "Back-off restarting failed container", "First Seen": "10m", "Count": 7, "Name": "web.17a",
    }
    new = {"apiVersion": "events.k8s.io/v1", "kind": "Event", "metadata": meta("dep.1"), "type": "Normal",
           "reason": "ScalingReplicaSet", "regarding": {"kind": "Deployment", "name": "web"},
           "note": "Scaled up", "reportingController": "deployment-controller", "eventTime": ago(seconds=50),
           "series": {"count": 3, "lastObservedTime": ago(seconds=5)}}
    cells = cells_by_name("events.k8s.io", "events", new)
    assert [cells[k] for k in ("Last Seen", "Object", "Source", "Message", "First Seen", "Count")] == \
        ["5s", "deployment/web", "deployment-controller", "Scaled up", "50s", 3]


def test_endpoints_and_endpointslices() -> None:
    ep = {"metadata": meta("web"), "subsets": [{
        "addresses": [{"ip": "10.0.0.1"}, {"ip": "10.0.0.2"}, {"ip": "fd00::3"}, {"ip": "10.0.0.4"}],
        "ports": [{"port": 8080}]}]}
    assert cells_by_name("", "endpoints", ep)["Endpoints"] == "10.0.0.1:8080,10.0.0.2:8080,[fd00::3]:8080 + 1 more..."
    assert cells_by_name("", "endpoints", {"metadata": meta("none")})["Endpoints"] == "<none>"
    sl = {"metadata": meta("web-abc"), "addressType": "IPv4", "ports": [{"port": 8080, "name": "http"}],
          "endpoints": [{"addresses": ["10.0.0.1"]}, {"addresses": ["10.0.0.2"]}]}
    cells = cells_by_name("discovery.k8s.io", "endpointslices", sl)
    assert [cells[k] for k in ("AddressType", "Ports", "Endpoints")] == ["IPv4", "8080", "10.0.0.1,10.0.0.2"]
    empty = cells_by_name("discovery.k8s.io", "endpointslices", {"metadata": meta("e"), "addressType": "IPv4"})
    assert (empty["Ports"], empty["Endpoints"]) == ("<unset>", "<unset>")


def test_storage_and_policy_cells() -> None:
    pv = cells_by_name("", "persistentvolumes", {
        "metadata": meta("pv1"), "spec": {"capacity": {"storage": "10Gi"}, "accessModes": ["ReadWriteMany", "ReadWriteOnce"],
                                          "persistentVolumeReclaimPolicy": "Retain", "storageClassName": "local",
                                          "claimRef": {"namespace": "default", "name": "data"}},
        "status": {"phase": "Bound"}})
    assert [pv[k] for k in ("Capacity", "Access Modes", "Reclaim Policy", "Status", "Claim", "StorageClass",
                            "VolumeAttributesClass", "VolumeMode")] == \
        ["10Gi", "RWO,RWX", "Retain", "Bound", "default/data", "local", "<unset>", "<unset>"]
    pvc = cells_by_name("", "persistentvolumeclaims", {
        "metadata": meta("data"), "spec": {"volumeName": "pv1", "storageClassName": "local", "volumeMode": "Filesystem"},
        "status": {"phase": "Bound", "capacity": {"storage": "10Gi"}, "accessModes": ["ReadWriteOnce"]}})
    assert [pvc[k] for k in ("Status", "Volume", "Capacity", "Access Modes", "StorageClass", "VolumeMode")] == \
        ["Bound", "pv1", "10Gi", "RWO", "local", "Filesystem"]
    sc = cells_by_name("storage.k8s.io", "storageclasses", {
        "metadata": meta("local", annotations={"storageclass.kubernetes.io/is-default-class": "true"}),
        "provisioner": "rancher.io/local-path", "volumeBindingMode": "WaitForFirstConsumer"})
    assert [sc[k] for k in ("Name", "Provisioner", "ReclaimPolicy", "VolumeBindingMode", "AllowVolumeExpansion")] == \
        ["local (default)", "rancher.io/local-path", "Delete", "WaitForFirstConsumer", False]
    pdb = cells_by_name("policy", "poddisruptionbudgets", {"metadata": meta("p"), "spec": {"minAvailable": "50%"},
                                                            "status": {"disruptionsAllowed": 1}})
    assert [pdb[k] for k in ("Min Available", "Max Unavailable", "Allowed Disruptions")] == ["50%", "N/A", 1]
    rq = cells_by_name("", "resourcequotas", {"metadata": meta("q"), "status": {
        "hard": {"requests.cpu": "2", "limits.memory": "4Gi", "pods": "10", "limits.cpu": "4"},
        "used": {"requests.cpu": "500m", "pods": "3"}}})
    assert (rq["Request"], rq["Limit"]) == ("pods: 3/10, requests.cpu: 500m/2", "limits.cpu: 0/4, limits.memory: 0/4Gi")
    pc = cells_by_name("scheduling.k8s.io", "priorityclasses", {"metadata": meta("high"), "value": 1000,
                                                                "globalDefault": True,
                                                                "preemptionPolicy": "PreemptLowerPriority"})
    assert [pc[k] for k in ("Value", "Global-Default", "PreemptionPolicy")] == [1000, True, "PreemptLowerPriority"]


def test_networking_rbac_coordination_apps_misc() -> None:
    ing = cells_by_name("networking.k8s.io", "ingresses", {
        "metadata": meta("web"), "spec": {"ingressClassName": "nginx", "tls": [{"hosts": ["a.example.com"]}],
                                          "rules": [{"host": "a.example.com"}, {"host": "b.example.com"}]},
        "status": {"loadBalancer": {"ingress": [{"ip": "192.168.1.50"}]}}})
    assert [ing[k] for k in ("Class", "Hosts", "Address", "Ports")] == \
        ["nginx", "a.example.com,b.example.com", "192.168.1.50", "80, 443"]
    ic = cells_by_name("networking.k8s.io", "ingressclasses", {
        "metadata": meta("nginx"), "spec": {"controller": "k8s.io/ingress-nginx",
                                            "parameters": {"apiGroup": "k8s.example.com", "kind": "Params", "name": "p"}}})
    assert (ic["Controller"], ic["Parameters"]) == ("k8s.io/ingress-nginx", "Params.k8s.example.com/p")
    np = cells_by_name("networking.k8s.io", "networkpolicies", {"metadata": meta("deny"), "spec": {"podSelector": {}}})
    assert np["Pod-Selector"] == "<none>"
    rb = cells_by_name("rbac.authorization.k8s.io", "rolebindings", {
        "metadata": meta("rb"), "roleRef": {"kind": "ClusterRole", "name": "view"},
        "subjects": [{"kind": "User", "name": "alice"}, {"kind": "Group", "name": "devs"},
                     {"kind": "ServiceAccount", "namespace": "ci", "name": "runner"}, {"kind": "User", "name": "bob"}]})
    assert [rb[k] for k in ("Role", "Users", "Groups", "ServiceAccounts")] == \
        ["ClusterRole/view", "alice, bob", "devs", "ci/runner"]
    lease = cells_by_name("coordination.k8s.io", "leases", {"metadata": meta("kube-scheduler"),
                                                            "spec": {"holderIdentity": "cp-1_abc"}})
    assert lease["Holder"] == "cp-1_abc"
    cr = cells_by_name("apps", "controllerrevisions", {
        "metadata": meta("agent-5d8f", ownerReferences=[{"apiVersion": "apps/v1", "kind": "DaemonSet",
                                                         "name": "agent", "controller": True}]),
        "revision": 2})
    assert (cr["Controller"], cr["Revision"]) == ("daemonset.apps/agent", 2)


# ----------------------------------------------------------------------- column names per kind

EXPECTED_COLUMNS: dict[tuple[str, str], list[str]] = {
    ("", "Namespace"): ["Name", "Status", "Age"],
    ("", "Pod"): ["Name", "Ready", "Status", "Restarts", "Age", "IP", "Node", "Nominated Node", "Readiness Gates"],
    ("", "Binding"): ["Name", "Created At"],
    ("authorization.k8s.io", "SelfSubjectAccessReview"): ["Name", "Created At"],
    ("authorization.k8s.io", "SubjectAccessReview"): ["Name", "Created At"],
    ("authentication.k8s.io", "SelfSubjectReview"): ["Name", "Created At"],
    ("", "Node"): ["Name", "Status", "Roles", "Age", "Version", "Internal-IP", "External-IP", "OS-Image",
                   "Kernel-Version", "Container-Runtime"],
    ("", "Service"): ["Name", "Type", "Cluster-IP", "External-IP", "Port(s)", "Age", "Selector"],
    ("", "Endpoints"): ["Name", "Endpoints", "Age"],
    ("", "ConfigMap"): ["Name", "Data", "Age"],
    ("", "Secret"): ["Name", "Type", "Data", "Age"],
    ("", "Event"): ["Last Seen", "Type", "Reason", "Object", "Subobject", "Source", "Message", "First Seen",
                    "Count", "Name"],
    ("", "ServiceAccount"): ["Name", "Secrets", "Age"],
    ("", "ResourceQuota"): ["Name", "Age", "Request", "Limit"],
    ("", "LimitRange"): ["Name", "Created At"],
    ("", "PersistentVolume"): ["Name", "Capacity", "Access Modes", "Reclaim Policy", "Status", "Claim",
                               "StorageClass", "VolumeAttributesClass", "Reason", "Age", "VolumeMode"],
    ("", "PersistentVolumeClaim"): ["Name", "Status", "Volume", "Capacity", "Access Modes", "StorageClass",
                                    "VolumeAttributesClass", "Age", "VolumeMode"],
    ("apps", "Deployment"): ["Name", "Ready", "Up-to-date", "Available", "Age", "Containers", "Images", "Selector"],
    ("apps", "ReplicaSet"): ["Name", "Desired", "Current", "Ready", "Age", "Containers", "Images", "Selector"],
    ("apps", "DaemonSet"): ["Name", "Desired", "Current", "Ready", "Up-to-date", "Available", "Node Selector",
                            "Age", "Containers", "Images", "Selector"],
    ("apps", "StatefulSet"): ["Name", "Ready", "Age", "Containers", "Images"],
    ("apps", "ControllerRevision"): ["Name", "Controller", "Revision", "Age"],
    ("batch", "Job"): ["Name", "Status", "Completions", "Duration", "Age", "Containers", "Images", "Selector"],
    ("batch", "CronJob"): ["Name", "Schedule", "Timezone", "Suspend", "Active", "Last Schedule", "Age",
                           "Containers", "Images", "Selector"],
    ("coordination.k8s.io", "Lease"): ["Name", "Holder", "Age"],
    ("discovery.k8s.io", "EndpointSlice"): ["Name", "AddressType", "Ports", "Endpoints", "Age"],
    ("networking.k8s.io", "Ingress"): ["Name", "Class", "Hosts", "Address", "Ports", "Age"],
    ("networking.k8s.io", "IngressClass"): ["Name", "Controller", "Parameters", "Age"],
    ("networking.k8s.io", "NetworkPolicy"): ["Name", "Pod-Selector", "Age"],
    ("events.k8s.io", "Event"): ["Last Seen", "Type", "Reason", "Object", "Subobject", "Source", "Message",
                                 "First Seen", "Count", "Name"],
    ("policy", "PodDisruptionBudget"): ["Name", "Min Available", "Max Unavailable", "Allowed Disruptions", "Age"],
    ("rbac.authorization.k8s.io", "Role"): ["Name", "Created At"],
    ("rbac.authorization.k8s.io", "RoleBinding"): ["Name", "Role", "Age", "Users", "Groups", "ServiceAccounts"],
    ("rbac.authorization.k8s.io", "ClusterRole"): ["Name", "Created At"],
    ("rbac.authorization.k8s.io", "ClusterRoleBinding"): ["Name", "Role", "Age", "Users", "Groups",
                                                          "ServiceAccounts"],
    ("storage.k8s.io", "StorageClass"): ["Name", "Provisioner", "ReclaimPolicy", "VolumeBindingMode",
                                         "AllowVolumeExpansion", "Age"],
    ("scheduling.k8s.io", "PriorityClass"): ["Name", "Value", "Global-Default", "Age", "PreemptionPolicy"],
    ("apiextensions.k8s.io", "CustomResourceDefinition"): ["Name", "Created At"],
}

WIDE_ONLY = {
    ("", "Pod"): {"IP", "Node", "Nominated Node", "Readiness Gates"},
    ("", "Node"): {"Internal-IP", "External-IP", "OS-Image", "Kernel-Version", "Container-Runtime"},
    ("", "Service"): {"Selector"},
    ("apps", "Deployment"): {"Containers", "Images", "Selector"},
    ("", "Event"): {"Subobject", "Source", "First Seen", "Count", "Name"},
}


def test_every_builtin_resource_has_expected_columns() -> None:
    assert {(r.group, r.kind) for r in BUILTIN_RESOURCES} == set(EXPECTED_COLUMNS)
    for res in BUILTIN_RESOURCES:
        cols = column_definitions(res)
        assert [c["name"] for c in cols] == EXPECTED_COLUMNS[(res.group, res.kind)], res.kind
        assert all(set(c) == {"name", "type", "format", "description", "priority"} for c in cols)
        wide = {c["name"] for c in cols if c["priority"] == 1}
        if (res.group, res.kind) in WIDE_ONLY:
            assert wide == WIDE_ONLY[(res.group, res.kind)], res.kind
        # every row has exactly one cell per column, even for a near-empty object
        table = to_table(res, [{"metadata": {"name": "x"}}], now=NOW)
        assert len(table["rows"][0]["cells"]) == len(cols), res.kind


def test_default_table_for_printerless_builtin_shows_created_at() -> None:
    role = {"metadata": meta("reader", creationTimestamp="2025-12-01T08:30:00Z")}
    row = one_row("rbac.authorization.k8s.io", "roles", role)
    assert row["cells"] == ["reader", "2025-12-01T08:30:00Z"]
    assert column_definitions(info("rbac.authorization.k8s.io", "roles"))[1]["type"] == "date"


# -------------------------------------------------------------------------- custom resources

WIDGET = ResourceInfo(group="example.com", version="v1", kind="Widget", plural="widgets", singular="widget",
                      namespaced=True, custom=True)


def widget(name: str, **status: Any) -> dict[str, Any]:
    return {"apiVersion": "example.com/v1", "kind": "Widget", "metadata": meta(name),
            "spec": {"replicas": 3, "size": "large", "tags": ["a", "b"], "ratio": 0.5},
            "status": {"conditions": [{"type": "Synced", "status": "True"},
                                      {"type": "Ready", "status": "False", "lastTransitionTime": ago(minutes=2)}],
                       **status}}


def test_custom_resource_default_columns() -> None:
    table = to_table(WIDGET, [widget("w1")], now=NOW)
    assert [(c["name"], c["type"]) for c in table["columnDefinitions"]] == [("Name", "string"), ("Age", "date")]
    assert table["rows"][0]["cells"] == ["w1", "5m"]
    assert to_table(WIDGET, [widget("w1")], now=NOW, printer_columns=[])["rows"][0]["cells"] == ["w1", "5m"]


def test_additional_printer_columns() -> None:
    columns: list[dict[str, Any]] = [
        {"name": "Ready", "type": "string", "jsonPath": '.status.conditions[?(@.type=="Ready")].status'},
        {"name": "Replicas", "type": "integer", "jsonPath": ".spec.replicas", "description": "desired"},
        {"name": "Size", "type": "string", "jsonPath": ".spec.size", "priority": 1},
        {"name": "Tags", "type": "string", "jsonPath": ".spec.tags"},
        {"name": "Ratio", "type": "number", "jsonPath": ".spec.ratio"},
        {"name": "Since", "type": "date", "jsonPath": '.status.conditions[?(@.type=="Ready")].lastTransitionTime'},
        {"name": "Phase", "type": "string", "jsonPath": ".status.phase"},
        {"name": "Age", "type": "date", "jsonPath": ".metadata.creationTimestamp"},
    ]
    table = to_table(WIDGET, [widget("w1"), widget("w2", phase="Active")], now=NOW, printer_columns=columns)
    defs = table["columnDefinitions"]
    assert [c["name"] for c in defs] == ["Name", "Ready", "Replicas", "Size", "Tags", "Ratio", "Since", "Phase", "Age"]
    assert defs[2]["description"] == "desired" and defs[3]["priority"] == 1
    assert defs[1]["description"].startswith("Custom resource definition column (in JSONPath format): .status")
    assert table["rows"][0]["cells"] == ["w1", "False", 3, "large", "[a b]", 0.5, "2m", None, "5m"]
    assert table["rows"][1]["cells"][7] == "Active"
    with pytest.raises(BadRequest):
        to_table(WIDGET, [], now=NOW, printer_columns=[{"name": "X", "type": "string", "jsonPath": ".a[?(bad"}])


@pytest.mark.parametrize(
    ("path", "expected"),
    [
        (".spec.replicas", [3]),
        ("{.spec.replicas}", [3]),
        (".spec.tags[1]", ["b"]),
        (".spec.tags[*]", ["a", "b"]),
        (".metadata.labels['app.kubernetes.io/name']", ["demo"]),
        (".metadata.labels.app\\.kubernetes\\.io/name", ["demo"]),
        ('.status.conditions[?(@.type=="Ready")].status', ["False"]),
        ('.status.conditions[?(@.status!="False")].type', ["Synced"]),
        (".status.conditions[?(@.lastTransitionTime)].type", ["Ready"]),
        (".spec.missing.deeper", []),
        (".spec.items[?(@.n>=2)].n", [2, 3]),
    ],
)
def test_jsonpath_subset(path: str, expected: list[Any]) -> None:
    obj = widget("w")
    obj["metadata"]["labels"] = {"app.kubernetes.io/name": "demo"}
    obj["spec"]["items"] = [{"n": 1}, {"n": 2}, {"n": 3}]
    assert find(obj, parse(path)) == expected


@pytest.mark.parametrize(
    ("value", "text"),
    [
        ("s", "s"), (3, "3"), (True, "true"), (None, "<nil>"), (0.5, "0.5"), (1e6, "1e+06"),
        (100000.0, "100000"), (0.00001, "1e-05"), (["a", 1], "[a 1]"), ({"b": 1, "a": "x"}, "map[a:x b:1]"),
    ],
)
def test_string_columns_print_like_go(value: Any, text: str) -> None:
    assert go_text(value) == text
