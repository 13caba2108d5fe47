"""Real kubectl, unchanged, against a real `pocketkube server`: watching, waiting, custom resources.

Both kubectl binaries, a namespace per test: `get -w` (list, then a watch from the list's
resourceVersion) printing ADDED/MODIFIED/DELETED lines, `wait --for=condition|jsonpath|delete`
(list + watch with a field selector on the name), and a CustomResourceDefinition end to end:
Established, served in discovery, printer columns, strict validation from its schema, explain.
"""

from __future__ import annotations

import json

import pytest

from tests.conftest import ServerProcess
from tests.integration.kubectl_support import BINARIES, BINARY_IDS, Background, Kubectl, rows

pytestmark = pytest.mark.skipif(not BINARIES, reason="no kubectl binary")


@pytest.fixture(params=BINARY_IDS)
def k(request: pytest.FixtureRequest, server: ServerProcess, namespace: str) -> Kubectl:
    return Kubectl(server, namespace, BINARIES[request.param], request.param)


def configmap(name: str, labels: dict[str, str] | None = None, **data: str) -> str:
    return json.dumps({"apiVersion": "v1", "kind": "ConfigMap",
                       "metadata": {"name": name, "labels": labels or {}}, "data": data})


POD = """\
apiVersion: v1
kind: Pod
metadata:
  name: p1
spec:
  schedulerName: kubectl-tests  # no such scheduler: the pod stays Pending, untouched, whatever nodes exist
  containers:
  - name: main
    image: busybox:1.36
"""


def watch_events(w: Background, count: int) -> list[list[str]]:
    """The next `count` watch lines as [EVENT, NAME, DATA] (AGE dropped: it depends on the clock)."""
    return [w.next_line().split()[:3] for _ in range(count)]


def test_get_watch_prints_each_change(k: Kubectl) -> None:
    mine = {"watch": "me"}  # the selector keeps out configmaps the control plane may add
    k("create", "-f", "-", input=configmap("before", mine, a="1"))
    w = k.background("get", "configmaps", "-w", "-l", "watch=me", "--output-watch-events", "--request-timeout=20s")
    try:
        assert w.next_line().split() == ["EVENT", "NAME", "DATA", "AGE"]
        assert watch_events(w, 1) == [["ADDED", "before", "1"]]
        k("create", "-f", "-", input=configmap("w1", mine, a="1"))
        k("patch", "configmap", "w1", "--type=merge", "-p", '{"data":{"b":"2"}}')
        k("delete", "configmap", "w1")
        assert watch_events(w, 3) == [["ADDED", "w1", "1"], ["MODIFIED", "w1", "2"], ["DELETED", "w1", "2"]]
        assert w.running()
    finally:
        w.stop()


def test_get_watch_with_a_label_selector(k: Kubectl) -> None:
    w = k.background("get", "configmaps", "-w", "-l", "app=mine", "--request-timeout=20s")
    try:
        k("create", "-f", "-", input=configmap("other", {"app": "theirs"}, a="1"))  # never shown
        k("create", "-f", "-", input=configmap("mine", {"app": "mine"}, a="1", b="2"))
        k("label", "configmap", "other", "app=mine", "--overwrite")  # now it matches: shown
        k("label", "configmap", "mine", "app=gone", "--overwrite")  # no longer matches: a last line
        # Without --output-watch-events kubectl prints the header with the first object.
        assert [w.next_line().split()[:2] for _ in range(4)] == [
            ["NAME", "DATA"], ["mine", "2"], ["other", "1"], ["mine", "2"]]
    finally:
        w.stop()


def test_wait_for_condition(k: Kubectl) -> None:
    k("create", "-f", "-", input=POD)
    err = k.fails("wait", "--for=condition=Ready", "pod/p1", "--timeout=200ms")
    assert "timed out waiting for the condition on pods/p1" in err
    w = k.background("wait", "--for=condition=Ready", "pod/p1", "--timeout=20s")
    try:
        k("patch", "pod", "p1", "--subresource=status", "--type=merge", "-p",
          '{"status":{"conditions":[{"type":"Ready","status":"True"}]}}')
        assert w.finish() == (0, "pod/p1 condition met", "")
    finally:
        w.stop()
    assert k.out("wait", "--for=condition=Ready=true", "pod/p1", "--timeout=5s") == "pod/p1 condition met\n"
    assert "timed out" in k.fails("wait", "--for=condition=Ready=false", "pod/p1", "--timeout=200ms")


def test_wait_for_jsonpath(k: Kubectl) -> None:
    k("create", "-f", "-", input=configmap("cm", phase="starting"))
    w = k.background("wait", "--for=jsonpath={.data.phase}=ready", "configmap/cm", "--timeout=20s")
    try:
        k("patch", "configmap", "cm", "--type=merge", "-p", '{"data":{"phase":"ready"}}')
        assert w.finish() == (0, "configmap/cm condition met", "")
    finally:
        w.stop()


def test_wait_for_delete(k: Kubectl) -> None:
    # A finalizer keeps the object (with a deletionTimestamp) until it is removed, so the waiting
    # kubectl surely sees it before it goes.
    held = json.loads(configmap("held", a="1"))
    held["metadata"]["finalizers"] = ["example.com/hold"]
    k("create", "-f", "-", input=json.dumps(held))
    k("delete", "configmap", "held", "--wait=false")
    w = k.background("wait", "--for=delete", "configmap/held", "--timeout=20s")
    try:
        assert "timed out waiting for the condition on configmaps/held" in k.fails(
            "wait", "--for=delete", "configmap/held", "--timeout=500ms")
        live = k.obj("configmap", "held")
        assert live["metadata"]["deletionTimestamp"]
        assert live["metadata"]["finalizers"] == ["example.com/hold"]
        assert w.running()
        k("patch", "configmap", "held", "--type=json", "-p", '[{"op":"remove","path":"/metadata/finalizers"}]')
        assert w.finish() == (0, "configmap/held condition met", "")
    finally:
        w.stop()
    assert 'configmaps "held" not found' in k.fails("get", "configmap", "held")


def crd_manifest(group: str) -> str:
    return f"""\
apiVersion: apiextensions.k8s.io/v1
kind: CustomResourceDefinition
metadata:
  name: widgets.{group}
spec:
  group: {group}
  names: {{kind: Widget, plural: widgets, singular: widget, shortNames: [wd]}}
  scope: Namespaced
  versions:
  - name: v1
    served: true
    storage: true
    schema:
      openAPIV3Schema:
        type: object
        properties:
          spec:
            type: object
            properties:
              size: {{type: integer, description: How big the widget is.}}
              color: {{type: string}}
    additionalPrinterColumns:
    - {{name: Size, type: integer, jsonPath: .spec.size}}
    - {{name: Color, type: string, jsonPath: .spec.color}}
"""


def test_custom_resource_definition_end_to_end(k: Kubectl) -> None:
    group = f"{k.namespace}.example.com"  # CRDs are cluster-scoped: one group per test
    crd = f"widgets.{group}"
    out = k.out("create", "-f", "-", input=crd_manifest(group), namespaced=False)
    assert out == f"customresourcedefinition.apiextensions.k8s.io/{crd} created\n"
    try:
        assert k.out("wait", "--for=condition=Established", f"crd/{crd}", "--timeout=10s", namespaced=False) == (
            f"customresourcedefinition.apiextensions.k8s.io/{crd} condition met\n")
        status = k.obj("crd", crd, namespaced=False)["status"]
        conditions = {c["type"]: c["status"] for c in status["conditions"]}
        assert conditions["Established"] == "True"
        assert conditions["NamesAccepted"] == "True"
        assert status["acceptedNames"]["kind"] == "Widget"

        table = rows(k.out("api-resources", f"--api-group={group}", namespaced=False))
        assert table[1:] == [["widgets", "wd", f"{group}/v1", "true", "Widget"]]

        widget = f"apiVersion: {group}/v1\nkind: Widget\nmetadata:\n  name: w1\nspec:\n  size: 3\n  color: red\n"
        assert k.out("create", "-f", "-", input=widget) == f"widget.{group}/w1 created\n"
        k("apply", "-f", "-",
          input=widget.replace("name: w1", "name: w2").replace("size: 3", "size: 5").replace("red", "blue"))
        assert rows(k.out("get", "widgets")) == [["NAME", "SIZE", "COLOR"], ["w1", "3", "red"], ["w2", "5", "blue"]]
        assert k.out("get", "wd", "w1", "-o", "jsonpath={.spec.size}") == "3"
        assert k.obj(f"widgets.{group}", "w2")["metadata"]["annotations"].keys() == {
            "kubectl.kubernetes.io/last-applied-configuration"}
        # CRs get merge patches from kubectl (no strategic-merge metadata for them).
        k("patch", "widget", "w1", "--type=merge", "-p", '{"spec":{"size":4}}')
        assert k.out("get", "widget", "w1", "-o", "jsonpath={.spec.size}") == "4"

        bad = widget.replace("name: w1", "name: bad")
        err = k.fails("create", "-f", "-", input=bad.replace("color:", "colour:"))
        assert ('Widget in version "v1" cannot be handled as a Widget: strict decoding error: '
                'unknown field "spec.colour"') in err
        err = k.fails("create", "-f", "-", input=bad.replace("size: 3", "size: big"))
        assert ('The Widget "bad" is invalid: spec.size: Invalid value: "string": '
                'spec.size in body must be of type integer: "string"') in err

        out = k.out("explain", f"widgets.{group}.spec.size", namespaced=False)
        assert out.startswith(f"GROUP:      {group}\nKIND:       Widget\nVERSION:    v1\n\nFIELD: size <integer>\n")
        assert "How big the widget is." in out
    finally:
        k("delete", "crd", crd, "--wait=false", namespaced=False)

