"""Real kubectl, unchanged, against a real `pocketkube server`: changing objects.

Both kubectl binaries, a namespace per test: `edit` (a strategic-merge patch computed by kubectl),
`scale` (the /scale subresource), `delete` waiting for the 404 with each `--cascade` policy (and
of a whole namespace), `patch --type=json|merge|strategic`, `set image|env`, `rollout restart`,
`replace` (and its optimistic-concurrency conflict), `--dry-run=server`, `diff`, client-side
`apply` twice (three-way merge), server-side apply with conflicts between field managers, and the
server's validation messages as kubectl prints them.
"""

from __future__ import annotations

import json

import pytest

from tests.conftest import ServerProcess
from tests.integration.kubectl_support import BINARIES, BINARY_IDS, Kubectl, poll, rows

pytestmark = pytest.mark.skipif(not BINARIES, reason="no kubectl binary")


@pytest.fixture(params=BINARY_IDS)
def k(request: pytest.FixtureRequest, server: ServerProcess, namespace: str) -> Kubectl:
    return Kubectl(server, namespace, BINARIES[request.param], request.param)


DEPLOYMENT = """\
apiVersion: apps/v1
kind: Deployment
metadata:
  name: web
  labels: {app: web, tier: front}
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
        ports:
        - containerPort: 80
      - name: side
        image: busybox:1.36
        env:
        - {name: MODE, value: fast}
"""


def configmap(name: str, **data: str) -> str:
    return json.dumps({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": name}, "data": data})


def images(deploy: dict[str, object]) -> list[tuple[str, str]]:
    containers = deploy["spec"]["template"]["spec"]["containers"]  # type: ignore[index]
    return [(c["name"], c["image"]) for c in containers]


def test_edit_sends_a_strategic_merge_patch(k: Kubectl) -> None:
    k("create", "-f", "-", input=DEPLOYMENT)
    editor = "sed -i s/busybox:1.36/busybox:1.37/"
    result = k("edit", "deployment", "web", env={"EDITOR": editor, "KUBE_EDITOR": editor})
    assert result.stdout == "deployment.apps/web edited\n"
    deploy = k.obj("deployment", "web")
    # Only the second container changed: a merge patch would have replaced the whole list.
    assert images(deploy) == [("nginx", "nginx:1.25"), ("side", "busybox:1.37")]
    assert deploy["spec"]["template"]["spec"]["containers"][1]["env"] == [{"name": "MODE", "value": "fast"}]
    assert deploy["metadata"]["generation"] == 2
    result = k("edit", "deployment", "web", env={"EDITOR": "true", "KUBE_EDITOR": "true"})
    assert result.stderr == "Edit cancelled, no changes made.\n"
    assert k.obj("deployment", "web")["metadata"]["generation"] == 2


def test_scale(k: Kubectl) -> None:
    k("create", "-f", "-", input=DEPLOYMENT)
    assert k.out("scale", "deployment", "web", "--replicas=5") == "deployment.apps/web scaled\n"
    deploy = k.obj("deployment", "web")
    assert deploy["spec"]["replicas"] == 5
    assert deploy["metadata"]["generation"] == 2
    err = k.fails("scale", "deployment", "web", "--replicas=1", "--current-replicas=4")
    assert "Expected replicas to be 4, was 5" in err
    assert k.out("scale", "deployment", "web", "--replicas=0", "--current-replicas=5") == (
        "deployment.apps/web scaled\n")
    scale = k.obj("deployment", "web", "--subresource=scale")
    assert (scale["apiVersion"], scale["kind"], scale["spec"]) == ("autoscaling/v1", "Scale", {"replicas": 0})
    assert scale["status"]["selector"] == "app=web"


def test_delete_waits_for_the_object_to_go(k: Kubectl) -> None:
    for name in ("a", "b", "c"):
        k("create", "-f", "-", input=configmap(name, x=name))
    k("label", "configmap", "b", "c", "doomed=yes")
    assert k.out("delete", "configmap", "a") == k.deleted('configmap "a"') + "\n"
    assert 'Error from server (NotFound): configmaps "a" not found' in k.fails("get", "configmap", "a")
    assert k.out("delete", "configmap", "-l", "doomed=yes") == (
        k.deleted('configmap "b"') + "\n" + k.deleted('configmap "c"') + "\n")
    assert k("get", "configmaps", "-l", "doomed").stderr == f"No resources found in {k.namespace} namespace.\n"
    assert 'configmaps "a" not found' in k.fails("delete", "configmap", "a")
    assert k.out("delete", "configmap", "a", "--ignore-not-found") == ""


@pytest.mark.parametrize(("cascade", "finalizer"), [("orphan", "orphan"), ("foreground", "foregroundDeletion")])
def test_delete_cascade_policies(k: Kubectl, cascade: str, finalizer: str) -> None:
    """The policy becomes a finalizer; the garbage collector carries it out, and kubectl keeps
    waiting until the object is really gone: orphaned ReplicaSets stay without their owner,
    foreground deletion removes them before the Deployment."""
    k("create", "-f", "-", input=DEPLOYMENT)
    rs = poll(lambda: (items := k.obj("replicasets", "-l", "app=web")["items"]) and items[0])
    out = k.out("delete", "deployment", "web", f"--cascade={cascade}", "--timeout=30s")
    assert out == k.deleted('deployment.apps "web"') + "\n"
    assert 'deployments.apps "web" not found' in k.fails("get", "deployment", "web")
    remaining = k.obj("replicasets", "-l", "app=web")["items"]
    if cascade == "orphan":
        assert [r["metadata"]["name"] for r in remaining] == [rs["metadata"]["name"]]
        assert not remaining[0]["metadata"].get("ownerReferences")
        k("delete", "replicaset", rs["metadata"]["name"], "--cascade=background")
    else:
        assert remaining == []
    # Background is the default and needs no finalizer.
    k("create", "-f", "-", input=DEPLOYMENT)
    assert k.out("delete", "deployment", "web", "--cascade=background") == k.deleted('deployment.apps "web"') + "\n"


def test_patch_json_merge_and_strategic(k: Kubectl) -> None:
    k("create", "-f", "-", input=configmap("cm", k="v", j="0"))
    assert k.out("patch", "configmap", "cm", "--type=json", "-p",
                 '[{"op":"add","path":"/data/new","value":"1"},{"op":"remove","path":"/data/k"},'
                 '{"op":"replace","path":"/data/j","value":"2"}]') == "configmap/cm patched\n"
    assert k.obj("configmap", "cm")["data"] == {"new": "1", "j": "2"}
    assert k.out("patch", "configmap", "cm", "--type=merge", "-p", '{"data":{"m":"3","j":null}}') == (
        "configmap/cm patched\n")
    assert k.obj("configmap", "cm")["data"] == {"new": "1", "m": "3"}
    rv = k.obj("configmap", "cm")["metadata"]["resourceVersion"]
    assert k.out("patch", "configmap", "cm", "--type=merge", "-p", '{"data":{"m":"3"}}') == (
        "configmap/cm patched (no change)\n")
    assert k.obj("configmap", "cm")["metadata"]["resourceVersion"] == rv
    k.fails("patch", "configmap", "cm", "--type=json", "-p",
              '[{"op":"test","path":"/data/m","value":"nope"},{"op":"remove","path":"/data/m"}]')
    assert k.obj("configmap", "cm")["data"] == {"new": "1", "m": "3"}

    k("create", "-f", "-", input=DEPLOYMENT)
    # Strategic (kubectl's default type): containers merge by name, env by name.
    k("patch", "deployment", "web", "-p",
      '{"spec":{"template":{"spec":{"containers":[{"name":"side","image":"busybox:2",'
      '"env":[{"name":"EXTRA","value":"1"}]}]}}}}')
    deploy = k.obj("deployment", "web")
    assert images(deploy) == [("nginx", "nginx:1.25"), ("side", "busybox:2")]
    assert deploy["spec"]["template"]["spec"]["containers"][1]["env"] == [
        {"name": "EXTRA", "value": "1"}, {"name": "MODE", "value": "fast"}]
    k("patch", "deployment", "web", "--type=strategic", "-p",
      '{"spec":{"template":{"spec":{"containers":[{"name":"nginx","$patch":"delete"}]}}}}')
    assert images(k.obj("deployment", "web")) == [("side", "busybox:2")]
    # A merge patch replaces the list.
    k("patch", "deployment", "web", "--type=merge", "-p",
      '{"spec":{"template":{"spec":{"containers":[{"name":"solo","image":"alpine:3"}]}}}}')
    assert images(k.obj("deployment", "web")) == [("solo", "alpine:3")]


def test_set_image_set_env_and_rollout_restart(k: Kubectl) -> None:
    """kubectl's strategic-merge patches on a pod template (containers keyed by name)."""
    k("create", "-f", "-", input=DEPLOYMENT)
    assert k.out("set", "image", "deployment/web", "side=busybox:1.37") == "deployment.apps/web image updated\n"
    assert k.out("set", "env", "deployment/web", "-c", "side", "EXTRA=1") == "deployment.apps/web env updated\n"
    assert k.out("rollout", "restart", "deployment/web") == "deployment.apps/web restarted\n"
    deploy = k.obj("deployment", "web")
    assert images(deploy) == [("nginx", "nginx:1.25"), ("side", "busybox:1.37")]
    assert deploy["spec"]["template"]["spec"]["containers"][1]["env"] == [
        {"name": "MODE", "value": "fast"}, {"name": "EXTRA", "value": "1"}]
    assert list(deploy["spec"]["template"]["metadata"]["annotations"]) == ["kubectl.kubernetes.io/restartedAt"]
    assert deploy["metadata"]["generation"] == 4


MULTI = """\
apiVersion: v1
kind: ConfigMap
metadata: {name: m1}
data: {a: "1"}
---
apiVersion: v1
kind: ConfigMap
metadata: {name: m2}
data: {a: "2"}
"""


def test_multi_document_apply_and_diff(k: Kubectl) -> None:
    assert k.out("apply", "-f", "-", input=MULTI) == "configmap/m1 created\nconfigmap/m2 created\n"
    assert k("diff", "-f", "-", input=MULTI).stdout == ""  # exit 0: no differences
    result = k("diff", "-f", "-", input=MULTI.replace('a: "2"', 'a: "3"'), check=False)
    assert result.returncode == 1, result.stderr  # 1: differences found (server-side dry run + diff)
    changed = [line for line in result.stdout.splitlines() if line[:1] in "+-" and line[:3] not in ("+++", "---")]
    assert changed == ['-  a: "2"', '+  a: "3"']
    assert k.obj("configmap", "m2")["data"] == {"a": "2"}


def test_server_validation_and_preconditions(k: Kubectl) -> None:
    err = k.fails("create", "-f", "-", input=configmap("BadName"))
    assert ('The ConfigMap "BadName" is invalid: metadata.name: Invalid value: "BadName": a lowercase RFC 1123 '
            "subdomain must consist of lower case alphanumeric characters, '-' or '.'") in err
    k("apply", "-f", "-", input=DEPLOYMENT)
    moved = DEPLOYMENT.replace("matchLabels: {app: web}", "matchLabels: {app: web, v: two}").replace(
        "      labels: {app: web}", "      labels: {app: web, v: two}")
    err = k.fails("apply", "-f", "-", input=moved)
    assert 'The Deployment "web" is invalid: spec.selector: Invalid value: ' in err
    assert err.rstrip().endswith("field is immutable")
    out = k.out("create", "-f", "-", input=json.dumps({"apiVersion": "v1", "kind": "ConfigMap",
                                                       "metadata": {"generateName": "gen-"}}))
    assert out.startswith("configmap/gen-") and out.endswith(" created\n") and len(out) == len("configmap/gen-xxxxx created\n")
    k("create", "-f", "-", input=configmap("rv"))
    err = k.fails("label", "configmap", "rv", "a=b", "--resource-version=1")
    assert 'Operation cannot be fulfilled on configmaps "rv": the object has been modified' in err
    rv = k.obj("configmap", "rv")["metadata"]["resourceVersion"]
    assert k.out("label", "configmap", "rv", "a=b", f"--resource-version={rv}") == "configmap/rv labeled\n"


def test_secrets_are_base64(k: Kubectl) -> None:
    assert k.out("create", "secret", "generic", "s1", "--from-literal=pw=hunter2") == "secret/s1 created\n"
    assert k.out("get", "secret", "s1", "-o", "jsonpath={.type} {.data.pw}") == "Opaque aHVudGVyMg=="
    table = rows(k.out("get", "secret", "s1"))
    assert table[0] == ["NAME", "TYPE", "DATA", "AGE"]
    assert table[1][:3] == ["s1", "Opaque", "1"]
    stored = json.dumps({"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "s2"}, "stringData": {"u": "me"}})
    k("create", "-f", "-", input=stored)
    secret = k.obj("secret", "s2")
    assert secret["data"] == {"u": "bWU="}
    assert "stringData" not in secret


def test_replace(k: Kubectl) -> None:
    k("create", "-f", "-", input=configmap("cm", k="v"))
    live = k.obj("configmap", "cm")
    live["data"] = {"k": "replaced"}
    assert k.out("replace", "-f", "-", input=json.dumps(live)) == "configmap/cm replaced\n"
    assert k.obj("configmap", "cm")["data"] == {"k": "replaced"}
    err = k.fails("replace", "-f", "-", input=json.dumps(live))  # stale resourceVersion
    assert ('Operation cannot be fulfilled on configmaps "cm": the object has been modified; '
            'please apply your changes to the latest version and try again') in err
    uid = k.obj("configmap", "cm")["metadata"]["uid"]
    out = k.out("replace", "--force", "-f", "-", input=json.dumps(live))
    assert out == k.deleted('configmap "cm"') + "\nconfigmap/cm replaced\n"
    again = k.obj("configmap", "cm")
    assert again["metadata"]["uid"] != uid
    assert again["data"] == {"k": "replaced"}


def test_dry_run_server_stores_nothing(k: Kubectl) -> None:
    created = json.loads(k.out("create", "--dry-run=server", "-f", "-", "-o", "json",
                               input=configmap("dry", a="b")))
    assert created["metadata"]["name"] == "dry"
    assert created["metadata"]["uid"]
    assert created["metadata"].get("resourceVersion", "") == ""
    assert 'configmaps "dry" not found' in k.fails("get", "configmap", "dry")
    assert k.out("apply", "--dry-run=server", "-f", "-", input=configmap("dry", a="b")) == (
        "configmap/dry created (server dry run)\n")
    assert 'configmaps "dry" not found' in k.fails("get", "configmap", "dry")

    k("create", "-f", "-", input=configmap("real", a="b"))
    before = k.obj("configmap", "real")
    assert k.out("label", "configmap", "real", "x=y", "--dry-run=server") == (
        "configmap/real labeled (server dry run)\n")
    assert k.out("patch", "configmap", "real", "--dry-run=server", "--type=merge", "-p",
                 '{"data":{"a":"c"}}') == "configmap/real patched\n"  # kubectl patch adds no suffix
    assert k.out("delete", "configmap", "real", "--dry-run=server") == (
        k.deleted('configmap "real"') + " (server dry run)\n")
    assert k.obj("configmap", "real") == before


def test_apply_twice_is_a_three_way_merge(k: Kubectl) -> None:
    assert k.out("apply", "-f", "-", input=DEPLOYMENT) == "deployment.apps/web created\n"
    assert k.out("apply", "-f", "-", input=DEPLOYMENT) == "deployment.apps/web unchanged\n"
    # Someone else's change (not in the applied YAML) survives the next apply.
    k("annotate", "deployment", "web", "owner=ops")
    second = (DEPLOYMENT.replace("labels: {app: web, tier: front}", "labels: {app: web}")
              .replace("image: nginx:1.25", "image: nginx:1.27")
              .replace("        env:\n        - {name: MODE, value: fast}\n", ""))
    assert k.out("apply", "-f", "-", input=second) == "deployment.apps/web configured\n"
    deploy = k.obj("deployment", "web")
    assert deploy["metadata"]["labels"] == {"app": "web"}  # removed from the YAML: removed here
    assert deploy["metadata"]["annotations"]["owner"] == "ops"
    assert images(deploy) == [("nginx", "nginx:1.27"), ("side", "busybox:1.36")]
    assert "env" not in deploy["spec"]["template"]["spec"]["containers"][1]
    assert deploy["spec"]["template"]["spec"]["containers"][0]["ports"] == [
        {"containerPort": 80, "protocol": "TCP"}]
    last = json.loads(deploy["metadata"]["annotations"]["kubectl.kubernetes.io/last-applied-configuration"])
    assert last["spec"]["template"]["spec"]["containers"][0]["image"] == "nginx:1.27"
    # Reordering the containers and changing one image by name.
    third = second.replace("image: busybox:1.36", "image: busybox:1.37")
    third = third.replace("      - name: nginx\n        image: nginx:1.27\n        ports:\n        - containerPort: 80\n",
                          "")
    third += "      - name: nginx\n        image: nginx:1.27\n        ports:\n        - containerPort: 80\n"
    assert k.out("apply", "-f", "-", input=third) == "deployment.apps/web configured\n"
    assert images(k.obj("deployment", "web")) == [("side", "busybox:1.37"), ("nginx", "nginx:1.27")]


SSA_CONFIGMAP = """\
apiVersion: v1
kind: ConfigMap
metadata:
  name: ssa
data:
  a: "1"
  b: "2"
"""


def managers(obj: dict[str, object]) -> list[tuple[str, str]]:
    entries = obj["metadata"].get("managedFields", [])  # type: ignore[attr-defined]
    # Controllers (the deployment controller's status writes) manage fields too; keep kubectl's.
    return [(e["manager"], e["operation"]) for e in entries if not e["manager"].endswith("-controller")]


def test_server_side_apply_and_conflicts(k: Kubectl) -> None:
    assert k.out("apply", "--server-side", "-f", "-", input=SSA_CONFIGMAP) == "configmap/ssa serverside-applied\n"
    cm = k.obj("configmap", "ssa", "--show-managed-fields")
    assert managers(cm) == [("kubectl", "Apply")]
    assert cm["metadata"]["managedFields"][0]["fieldsV1"] == {"f:data": {"f:a": {}, "f:b": {}}}
    # A second manager takes .data.a with an update.
    k("patch", "configmap", "ssa", "--type=merge", "--field-manager=intruder", "-p", '{"data":{"a":"other"}}')
    assert managers(k.obj("configmap", "ssa", "--show-managed-fields")) == [
        ("kubectl", "Apply"), ("intruder", "Update")]
    err = k.fails("apply", "--server-side", "-f", "-", input=SSA_CONFIGMAP)
    assert 'Apply failed with 1 conflict: conflict with "intruder" using v1: .data.a' in err
    assert "--force-conflicts" in err
    assert k.obj("configmap", "ssa")["data"] == {"a": "other", "b": "2"}
    out = k.out("apply", "--server-side", "--force-conflicts", "-f", "-", input=SSA_CONFIGMAP)
    assert out == "configmap/ssa serverside-applied\n"
    cm = k.obj("configmap", "ssa", "--show-managed-fields")
    assert cm["data"] == {"a": "1", "b": "2"}
    assert managers(cm) == [("kubectl", "Apply")]
    # Dropping a field from the applied configuration removes it (the applier owned it alone).
    out = k.out("apply", "--server-side", "-f", "-", input=SSA_CONFIGMAP.replace('  b: "2"\n', ""))
    assert out == "configmap/ssa serverside-applied\n"
    assert k.obj("configmap", "ssa")["data"] == {"a": "1"}


def test_updates_record_their_field_manager(k: Kubectl) -> None:
    k("create", "-f", "-", input=DEPLOYMENT)
    k("label", "deployment", "web", "x=y")
    editor = "sed -i s/busybox:1.36/busybox:1.37/"
    k("edit", "deployment", "web", env={"EDITOR": editor, "KUBE_EDITOR": editor})
    # kube sorts entries by operation, then time (seconds), then manager: compare as a set.
    # Controllers (the deployment controller's status writes) manage fields too; keep kubectl's.
    mine = [m for m in managers(k.obj("deployment", "web", "--show-managed-fields")) if m[0].startswith("kubectl")]
    assert sorted(mine) == [
        ("kubectl-create", "Update"), ("kubectl-edit", "Update"), ("kubectl-label", "Update")]


def test_scale_records_a_subresource_manager(k: Kubectl) -> None:
    k("create", "-f", "-", input=DEPLOYMENT)
    k("scale", "deployment", "web", "--replicas=3")
    entries = k.obj("deployment", "web", "--show-managed-fields")["metadata"]["managedFields"]
    # kube names a manager without ?fieldManager after the User-Agent ("kubectl/v1.32…").
    assert sorted((e["manager"], e["operation"], e.get("subresource", "")) for e in entries
                  if e["manager"].startswith("kubectl")) == [
        ("kubectl", "Update", "scale"), ("kubectl-create", "Update", "")]


def test_server_side_apply_keys_containers_by_name(k: Kubectl) -> None:
    assert k.out("apply", "--server-side", "-f", "-", input=DEPLOYMENT) == "deployment.apps/web serverside-applied\n"
    k("set", "image", "deployment/web", "nginx=nginx:9")  # manager kubectl-set takes one container's image
    err = k.fails("apply", "--server-side", "-f", "-", input=DEPLOYMENT)
    assert ('Apply failed with 1 conflict: conflict with "kubectl-set" using apps/v1: '
            '.spec.template.spec.containers[name="nginx"].image') in err
    k("apply", "--server-side", "--force-conflicts", "-f", "-", input=DEPLOYMENT)
    assert images(k.obj("deployment", "web")) == [("nginx", "nginx:1.25"), ("side", "busybox:1.36")]
    # The applier alone owns the `side` container: leaving it out of the configuration removes it.
    without_side = DEPLOYMENT[:DEPLOYMENT.index("      - name: side")]
    k("apply", "--server-side", "-f", "-", input=without_side)
    assert images(k.obj("deployment", "web")) == [("nginx", "nginx:1.25")]


def test_delete_namespace_waits_for_its_contents(k: Kubectl) -> None:
    k("create", "-f", "-", input=configmap("inside", a="1"))
    k("create", "-f", "-", input=DEPLOYMENT)
    assert k.out("delete", "namespace", k.namespace, "--timeout=60s", namespaced=False) == (
        f'namespace "{k.namespace}" deleted\n')
    assert f'namespaces "{k.namespace}" not found' in k.fails("get", "namespace", k.namespace)
    assert k("get", "configmaps,deployments").stderr == f"No resources found in {k.namespace} namespace.\n"
