"""Malformed and hostile requests, sent raw over HTTPS, each answered with the right Status.

A table: every row is one request a broken or malicious client might send, with the exact HTTP
status, the Status `reason` and words a person can act on. Nothing here may produce a 500 or a
traceback in the server log; the last test checks the server is still healthy afterwards.
"""

from __future__ import annotations

import http.client
import json
import os
import socket
import ssl
import threading
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import pytest

from tests.conftest import ServerProcess

CM = "/api/v1/namespaces/{ns}/configmaps"
DEPLOY = "/apis/apps/v1/namespaces/{ns}/deployments"
PODS = "/api/v1/namespaces/{ns}/pods"
JSON = "application/json"


def _cm(name: Any, **extra: Any) -> bytes:
    return json.dumps({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": name}, **extra}).encode()


def _deployment(name: str = "", **spec_extra: Any) -> bytes:
    labels = {"app": "x"}
    return json.dumps({"apiVersion": "apps/v1", "kind": "Deployment",
                       "metadata": {"name": name or f"d-{uuid.uuid4().hex[:6]}"},
                       "spec": {"selector": {"matchLabels": labels}, **spec_extra,
                                "template": {"metadata": {"labels": labels},
                                             "spec": {"containers": [{"name": "c", "image": "nginx"}]}}}}).encode()


def _scheduled_pod(name: str) -> bytes:
    """A pod bound to a node: deleting it is graceful, so gracePeriodSeconds matters."""
    return json.dumps({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": name},
                       "spec": {"nodeName": "node-a", "containers": [{"name": "c", "image": "nginx"}]}}).encode()


@dataclass(frozen=True)
class Case:
    id: str
    method: str
    path: str  # "{ns}" is the test namespace
    status: int
    reason: str
    message: tuple[str, ...]  # substrings the Status message must contain
    body: bytes | None = None
    content_type: str = JSON
    query: str = ""
    headers: dict[str, str] = field(default_factory=dict)
    auth: str = "cert"  # "cert", "none" (CA only), "token:<value>"
    causes: tuple[str, ...] = ()  # fields details.causes must name (422)


CASES = [
    Case("bad-json", "POST", CM, 400, "BadRequest", ("error decoding JSON",), b'{"apiVersion": "v1", "kind":'),
    Case("bad-utf8", "POST", CM, 400, "BadRequest", ("UTF-8",), b'{"metadata":{"name":"\xff\xfe"}}'),
    Case("yaml-garbage", "POST", CM, 400, "BadRequest", ("YAML",), b": : - ][\n\t{", "application/yaml"),
    Case("body-is-list", "POST", CM, 400, "BadRequest", ("not a JSON object",), b"[1, 2, 3]"),
    Case("body-is-number", "POST", CM, 400, "BadRequest", ("not a JSON object",), b"42"),
    Case("empty-body", "POST", CM, 400, "BadRequest", ("empty",), b""),
    Case("wrong-kind", "POST", CM, 400, "BadRequest", ("kind in the data (Secret)", "expected kind (ConfigMap)"),
         json.dumps({"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "s"}}).encode()),
    Case("apiversion-mismatch", "POST", CM, 400, "BadRequest", ("API version in the data (apps/v1)",),
         json.dumps({"apiVersion": "apps/v1", "kind": "ConfigMap", "metadata": {"name": "s"}}).encode()),
    Case("namespace-mismatch", "POST", CM, 400, "BadRequest", ("namespace of the provided object does not match",),
         json.dumps({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "s", "namespace": "other"}}).encode()),
    Case("name-mismatch-on-put", "PUT", CM + "/existing", 400, "BadRequest",
         ("name of the object (other)", "name on the URL (existing)"), _cm("other")),
    Case("invalid-name-underscore", "POST", CM, 422, "Invalid", ('"Bad_Name" is invalid', "metadata.name"),
         _cm("Bad_Name"), causes=("metadata.name",)),
    Case("invalid-name-too-long", "POST", CM, 422, "Invalid", ("metadata.name", "253"), _cm("a" * 300),
         causes=("metadata.name",)),
    Case("invalid-name-empty", "POST", CM, 422, "Invalid", ("metadata.name", "Required value"), _cm(""),
         causes=("metadata.name",)),
    Case("name-missing", "POST", CM, 422, "Invalid", ("metadata.name", "name or generateName is required"),
         b'{"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"labels": {"a": "b"}}}', causes=("metadata.name",)),
    Case("name-null", "POST", CM, 422, "Invalid", ("metadata.name",), _cm(None), causes=("metadata.name",)),
    Case("scale-spec-not-an-object", "PUT", DEPLOY + "/web/scale", 400, "BadRequest", ("spec: must be an object",),
         b'{"apiVersion": "autoscaling/v1", "kind": "Scale", "metadata": {"name": "web"}, "spec": 3}'),
    Case("scale-metadata-not-an-object", "PUT", DEPLOY + "/web/scale", 400, "BadRequest",
         ("metadata: must be an object",), b'{"apiVersion": "autoscaling/v1", "kind": "Scale", "metadata": []}'),
    Case("scale-patch-to-a-list", "PATCH", DEPLOY + "/web/scale", 400, "BadRequest", ("object",),
         b'[{"op": "replace", "path": "", "value": [1]}]', "application/json-patch+json"),
    Case("scale-negative-replicas", "PATCH", DEPLOY + "/web/scale", 422, "Invalid",
         ("spec.replicas", "greater than or equal to 0"), b'{"spec": {"replicas": -3}}',
         "application/merge-patch+json", causes=("spec.replicas",)),
    Case("invalid-name-nul-byte", "POST", CM, 422, "Invalid", ("metadata.name",), _cm("a\x00b"),
         causes=("metadata.name",)),
    Case("several-invalid-fields", "POST", CM, 422, "Invalid", ("metadata.name", "metadata.labels", "data"),
         _cm("Bad_Name", data={"bad key!": "v"}) .replace(b'"name": "Bad_Name"', b'"name": "Bad_Name", "labels": {"a b": "c"}'),
         causes=("metadata.name", "metadata.labels", "data[bad key!]")),
    Case("negative-replicas", "POST", DEPLOY, 422, "Invalid", ("spec.replicas", "greater than or equal to 0"),
         _deployment(replicas=-1), causes=("spec.replicas",)),
    Case("huge-body", "POST", CM, 413, "RequestEntityTooLarge", ("too large",),
         _cm("big", data={"a": "x" * (4 * 1024 * 1024)})),
    Case("strict-unknown-field", "POST", DEPLOY, 400, "BadRequest", ('strict decoding error: unknown field "spec.foo"',),
         _deployment(foo=1), query="fieldValidation=Strict"),
    Case("bad-field-validation-mode", "POST", CM, 400, "BadRequest", ("fieldValidation", "Sloppy"), _cm("fv"),
         query="fieldValidation=Sloppy"),
    Case("missing-namespace", "POST", "/api/v1/namespaces/nope/configmaps", 404, "NotFound",
         ('namespaces "nope" not found',), _cm("x")),
    Case("unknown-resource", "GET", "/api/v1/namespaces/{ns}/widgets", 404, "NotFound",
         ("could not find the requested resource",)),
    Case("unknown-group", "GET", "/apis/nope.example.com/v1/widgets", 404, "NotFound",
         ("could not find the requested resource",)),
    Case("unknown-version", "GET", "/apis/apps/v7/deployments", 404, "NotFound",
         ("could not find the requested resource",)),
    Case("patch-unsupported-content-type", "PATCH", CM + "/existing", 415, "UnsupportedMediaType",
         ("application/merge-patch+json",), b"{}", "text/plain"),
    Case("truncated-protobuf-body", "POST", CM, 400, "BadRequest", ("protobuf",), b"k8s\x00",
         "application/vnd.kubernetes.protobuf"),
    Case("garbage-protobuf-body", "POST", CM, 400, "BadRequest", ("protobuf",), b"k8s\x00\xff\xff\xff\xff",
         "application/vnd.kubernetes.protobuf"),
    Case("json-patch-not-a-list", "PATCH", CM + "/existing", 400, "BadRequest", ("jsonpatch.Patch",),
         b'{"op": "add"}', "application/json-patch+json"),
    Case("json-patch-test-fails", "PATCH", CM + "/existing", 422, "Invalid", ("tested value",),
         b'[{"op": "test", "path": "/data/k", "value": "not-v"}]', "application/json-patch+json"),
    Case("put-on-collection", "PUT", CM, 405, "MethodNotAllowed", ("does not allow this method",), _cm("x")),
    Case("post-to-named-object", "POST", CM + "/existing", 405, "MethodNotAllowed", ("POST",), _cm("existing")),
    Case("bad-label-selector", "GET", CM, 400, "BadRequest", ("unable to parse requirement",),
         query="labelSelector=a%20in%20("),
    Case("label-selector-key-of-70k", "GET", CM, 400, "BadRequest", ("invalid label key",),
         query="labelSelector=" + "a" * 70_000 + "%3Db"),
    Case("unsupported-field-selector", "GET", CM, 400, "BadRequest", ("field label not supported: data.a",),
         query="fieldSelector=data.a%3Db"),
    Case("bad-limit", "GET", CM, 400, "BadRequest", ('limit', '"abc"'), query="limit=abc"),
    Case("limit-beyond-int64", "GET", CM, 400, "BadRequest", ("limit", "out of range"),
         query="limit=100000000000000000000"),
    Case("grace-period-beyond-int64", "DELETE", PODS + "/scheduled", 400, "BadRequest",
         ("gracePeriodSeconds", "out of range"), query="gracePeriodSeconds=99999999999999999999"),
    Case("grace-period-beyond-int64-in-body", "DELETE", PODS + "/scheduled", 400, "BadRequest",
         ("gracePeriodSeconds", "out of range"), b'{"gracePeriodSeconds": 99999999999999999999}'),
    Case("bad-timeout-seconds", "GET", CM, 400, "BadRequest", ("timeoutSeconds", '"xyz"'),
         query="watch=true&timeoutSeconds=xyz"),
    Case("bad-watch-resource-version", "GET", CM, 400, "BadRequest", ('invalid resource version "abc"',),
         query="watch=true&resourceVersion=abc"),
    Case("bad-continue-token", "GET", CM, 400, "BadRequest", ("continue",), query="limit=1&continue=%%%"),
    Case("dry-run-bogus", "POST", CM, 400, "BadRequest", ('Invalid dryRun value: "Bogus"',), _cm("dr"),
         query="dryRun=Bogus"),
    Case("bad-propagation-policy", "DELETE", CM + "/existing", 400, "BadRequest", ("propagationPolicy", "Sideways"),
         b'{"propagationPolicy": "Sideways"}'),
    Case("no-credentials", "GET", CM, 401, "Unauthorized", ("Unauthorized",), auth="none"),
    Case("wrong-bearer-token", "GET", CM, 401, "Unauthorized", ("Unauthorized",), auth="token:not-a-real-token"),
    Case("deeply-nested-json", "POST", CM, 400, "BadRequest", ("depth",),
         b'{"apiVersion":"v1","kind":"ConfigMap","metadata":{"name":"deep"},"data":' + b"[" * 10_000
         + b"]" * 10_000 + b"}"),
    Case("deeply-nested-yaml", "POST", CM, 400, "BadRequest", ("nesting depth",), b"[" * 10_000 + b"]" * 10_000,
         "application/yaml"),
    Case("deeply-nested-merge-patch", "PATCH", CM + "/existing", 400, "BadRequest", ("depth",),
         b'{"data":' + b'{"a":' * 10_000 + b"1" + b"}" * 10_001, "application/merge-patch+json"),
    Case("stale-resource-version-on-put", "PUT", CM + "/existing", 409, "Conflict",
         ('Operation cannot be fulfilled on configmaps "existing"', "modified"),
         json.dumps({"apiVersion": "v1", "kind": "ConfigMap",
                     "metadata": {"name": "existing", "resourceVersion": "1"}}).encode()),
    Case("put-with-another-uid", "PUT", CM + "/existing", 422, "Invalid", ("metadata.uid", "field is immutable"),
         json.dumps({"apiVersion": "v1", "kind": "ConfigMap",
                     "metadata": {"name": "existing", "uid": "4f1c2a52-0000-4000-8000-000000000000"}}).encode(),
         causes=("metadata.uid",)),
    Case("patch-renames-object", "PATCH", CM + "/existing", 400, "BadRequest",
         ("name of the object (other) does not match the name on the URL (existing)",),
         b'{"metadata": {"name": "other"}}', "application/merge-patch+json"),
    Case("patch-moves-namespace", "PATCH", CM + "/existing", 400, "BadRequest",
         ("namespace of the provided object does not match",), b'{"metadata": {"namespace": "other"}}',
         "application/merge-patch+json"),
    Case("patch-changes-uid", "PATCH", CM + "/existing", 422, "Invalid", ("metadata.uid", "field is immutable"),
         b'[{"op": "replace", "path": "/metadata/uid", "value": "x"}]', "application/json-patch+json",
         causes=("metadata.uid",)),
    Case("delete-uid-precondition", "DELETE", CM + "/existing", 409, "Conflict",
         ("Precondition failed: UID in precondition: wrong",), b'{"preconditions": {"uid": "wrong"}}'),
    Case("delete-resource-version-precondition", "DELETE", CM + "/existing", 409, "Conflict",
         ("Precondition failed: ResourceVersion in precondition: 1",), b'{"preconditions": {"resourceVersion": "1"}}'),
    Case("delete-options-not-an-object", "DELETE", CM + "/existing", 400, "BadRequest", ("DeleteOptions",), b"[1]"),
    Case("delete-bad-grace-period", "DELETE", CM + "/existing", 400, "BadRequest", ("gracePeriodSeconds",),
         b'{"gracePeriodSeconds": "soon"}'),
    Case("delete-missing-object", "DELETE", CM + "/missing", 404, "NotFound", ('configmaps "missing" not found',)),
    Case("get-missing-object", "GET", CM + "/missing", 404, "NotFound", ('configmaps "missing" not found',)),
]


@dataclass
class Answer:
    status: int
    headers: http.client.HTTPMessage
    body: bytes

    def json(self) -> dict[str, Any]:
        out: dict[str, Any] = json.loads(self.body)
        return out


def send(server: ServerProcess, method: str, path: str, *, body: bytes | None = None, content_type: str = JSON,
         headers: dict[str, str] | None = None, auth: str = "cert") -> Answer:
    if auth == "cert":
        ctx = server.ssl_context()
    else:
        ctx = ssl.create_default_context(cafile=os.path.join(server.data_dir, "tls", "ca.crt"))
    hdrs = {"Accept": JSON, **(headers or {})}
    if auth.startswith("token:"):
        hdrs["Authorization"] = f"Bearer {auth.removeprefix('token:')}"
    if body is not None:
        hdrs["Content-Type"] = content_type
    conn = http.client.HTTPSConnection("127.0.0.1", server.port, context=ctx, timeout=30)
    try:
        try:
            conn.request(method, path, body=body, headers=hdrs)
        except (BrokenPipeError, ConnectionResetError):
            pass  # the server may answer (413) and close before reading all of a huge body
        resp = conn.getresponse()
        return Answer(resp.status, resp.headers, resp.read())
    finally:
        conn.close()


@pytest.fixture(scope="module")
def ns(server: ServerProcess) -> Iterator[str]:
    """A namespace holding one ConfigMap, `existing`, that rows update, patch and delete."""
    name = f"hostile-{uuid.uuid4().hex[:6]}"
    ans = send(server, "POST", "/api/v1/namespaces",
               body=json.dumps({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": name}}).encode())
    assert ans.status == 201, ans.body
    for _ in range(2):  # two writes: resourceVersion "1" is certainly stale
        ans = send(server, "POST", CM.format(ns=name), body=_cm(f"pad-{uuid.uuid4().hex[:4]}"))
        assert ans.status == 201, ans.body
    ans = send(server, "POST", CM.format(ns=name), body=_cm("existing", data={"k": "v"}))
    assert ans.status == 201, ans.body
    ans = send(server, "POST", PODS.format(ns=name), body=_scheduled_pod("scheduled"))
    assert ans.status == 201, ans.body
    ans = send(server, "POST", DEPLOY.format(ns=name), body=_deployment(name="web"))
    assert ans.status == 201, ans.body
    yield name


@pytest.mark.parametrize("case", [pytest.param(c, id=c.id) for c in CASES])
def test_hostile_request(server: ServerProcess, ns: str, case: Case) -> None:
    path = case.path.format(ns=ns) + (f"?{case.query}" if case.query else "")
    ans = send(server, case.method, path, body=case.body, content_type=case.content_type, headers=case.headers,
               auth=case.auth)
    assert ans.status != 500, ans.body
    assert ans.headers.get_content_type() == JSON, ans.body[:300]
    status = ans.json()
    assert (ans.status, status.get("kind"), status.get("reason"), status.get("code")) == (
        case.status, "Status", case.reason, case.status), status
    assert status["status"] == "Failure"
    for words in case.message:
        assert words in status["message"], status["message"]
    if case.causes:
        fields = {c.get("field") for c in status.get("details", {}).get("causes", [])}
        assert set(case.causes) <= fields, status


def test_a_long_valid_selector_is_served(server: ServerProcess, ns: str) -> None:
    """A 50 KB request line (5,000 selector terms) is fine for kube's 1 MiB header limit, and for ours."""
    terms = ",".join(f"!k{i}" for i in range(5000))
    ans = send(server, "GET", CM.format(ns=ns) + "?labelSelector=" + terms)
    assert ans.status == 200, ans.body[:300]
    assert {i["metadata"]["name"] for i in ans.json()["items"]} >= {"existing"}


def test_the_largest_grace_period_is_not_an_error(server: ServerProcess, ns: str) -> None:
    send(server, "POST", PODS.format(ns=ns), body=_scheduled_pod("slow-to-go"))
    ans = send(server, "DELETE", PODS.format(ns=ns) + f"/slow-to-go?gracePeriodSeconds={(1 << 63) - 1}")
    assert ans.status == 200, ans.body
    md = ans.json()["metadata"]
    assert md["deletionGracePeriodSeconds"] == (1 << 63) - 1 and md["deletionTimestamp"]


def test_warn_mode_creates_with_a_warning_header(server: ServerProcess, ns: str) -> None:
    ans = send(server, "POST", DEPLOY.format(ns=ns) + "?fieldValidation=Warn", body=_deployment(foo=1))
    assert ans.status == 201, ans.body
    warning = ans.headers.get("Warning", "")
    assert warning.startswith("299 - ") and 'unknown field \\"spec.foo\\"' in warning, warning
    assert "foo" not in ans.json()["spec"]  # dropped, as kube drops unknown fields


def test_ignore_mode_creates_silently(server: ServerProcess, ns: str) -> None:
    ans = send(server, "POST", DEPLOY.format(ns=ns) + "?fieldValidation=Ignore", body=_deployment(foo=1))
    assert ans.status == 201 and "Warning" not in ans.headers, ans.body


# ---- races and rude connections ------------------------------------------------------------

def _race(server: ServerProcess, n: int, request: Any) -> list[Answer]:
    """Run `request(i)` from n threads released at the same moment."""
    barrier = threading.Barrier(n)
    answers: list[Answer | None] = [None] * n

    def run(i: int) -> None:
        barrier.wait()
        answers[i] = request(i)

    threads = [threading.Thread(target=run, args=(i,)) for i in range(n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    assert all(a is not None for a in answers)
    return [a for a in answers if a is not None]


def test_racing_updates_with_one_resource_version_have_one_winner(server: ServerProcess, ns: str) -> None:
    created = send(server, "POST", CM.format(ns=ns), body=_cm("race-put", data={"v": "start"})).json()
    rv = created["metadata"]["resourceVersion"]
    answers = _race(server, 12, lambda i: send(server, "PUT", CM.format(ns=ns) + "/race-put", body=json.dumps({
        "apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "race-put", "resourceVersion": rv},
        "data": {"v": str(i)}}).encode()))
    codes = sorted(a.status for a in answers)
    assert codes == [200] + [409] * 11, codes
    winner = next(a.json() for a in answers if a.status == 200)
    assert all(a.json()["reason"] == "Conflict" for a in answers if a.status == 409)
    stored = send(server, "GET", CM.format(ns=ns) + "/race-put").json()
    assert stored["data"] == winner["data"]
    assert stored["metadata"]["resourceVersion"] == winner["metadata"]["resourceVersion"]


def test_racing_creates_of_one_name_have_one_winner(server: ServerProcess, ns: str) -> None:
    answers = _race(server, 12, lambda i: send(server, "POST", CM.format(ns=ns),
                                                body=_cm("race-post", data={"v": str(i)})))
    codes = sorted(a.status for a in answers)
    assert codes == [201] + [409] * 11, codes
    assert all(a.json()["reason"] == "AlreadyExists" for a in answers if a.status == 409)


def test_racing_merge_patches_all_land(server: ServerProcess, ns: str) -> None:
    """Patches without a resourceVersion are retried on conflict by the server: none is lost."""
    send(server, "POST", CM.format(ns=ns), body=_cm("race-patch"))
    answers = _race(server, 12, lambda i: send(server, "PATCH", CM.format(ns=ns) + "/race-patch",
                                                body=json.dumps({"data": {f"k{i}": str(i)}}).encode(),
                                                content_type="application/merge-patch+json"))
    assert [a.status for a in answers] == [200] * 12
    stored = send(server, "GET", CM.format(ns=ns) + "/race-patch").json()
    assert stored["data"] == {f"k{i}": str(i) for i in range(12)}


def test_clients_that_hang_up_early_leave_no_trace(server: ServerProcess, ns: str) -> None:
    # A body shorter than its Content-Length, then a hang-up.
    for _ in range(3):
        with socket.create_connection(("127.0.0.1", server.port), timeout=5) as raw:
            with server.ssl_context().wrap_socket(raw, server_hostname="127.0.0.1") as tls:
                tls.sendall(f"POST {CM.format(ns=ns)} HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                            f"Content-Length: 100000\r\n\r\n{{\"apiVersion\": \"v1\"".encode())
    # Watches dropped by the client right after they start.
    for _ in range(5):
        conn = http.client.HTTPSConnection("127.0.0.1", server.port, context=server.ssl_context(), timeout=5)
        conn.request("GET", CM.format(ns=ns) + "?watch=true", headers={"Accept": JSON})
        resp = conn.getresponse()
        assert resp.status == 200
        resp.fp.read1(1)  # type: ignore[union-attr]
        conn.close()
    # A plain-HTTP client on the TLS port.
    with socket.create_connection(("127.0.0.1", server.port), timeout=5) as raw:
        raw.sendall(b"GET /readyz HTTP/1.1\r\nHost: x\r\n\r\n")
        raw.recv(100)
    ans = send(server, "GET", "/readyz")
    assert ans.status == 200


def test_server_survives_the_table(server: ServerProcess, ns: str) -> None:
    ans = send(server, "GET", "/readyz")
    assert (ans.status, ans.body) == (200, b"ok")
    ans = send(server, "GET", CM.format(ns=ns) + "/existing")
    assert ans.status == 200 and ans.json()["data"] == {"k": "v"}  # no row changed it
    log = server.log()
    assert "Traceback" not in log, log[-4000:]
