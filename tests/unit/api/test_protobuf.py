"""Kubernetes protobuf request bodies decode to the JSON a JSON client would have sent.

The source of truth is real kubectl: a tiny discovery stub records what `kubectl create ...` POSTs
(as `application/vnd.kubernetes.protobuf`), and each body must decode to the object the YAML
equivalent describes. A few captured bodies are kept as hex so the decoder is tested without
kubectl too; hand-built bodies cover the special types and malformed input.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import struct
from pathlib import Path
from typing import Any

import orjson
import pytest
from aiohttp import web

from pocketkube.api.errors import BadRequest
from pocketkube.api.protobuf import decode_k8s_protobuf, go_duration, message_for, schema

KUBECTL = "/usr/bin/kubectl"

# ---- expected objects, as the YAML equivalent of each command would say ----------------------

EXPECTED: dict[str, tuple[list[str], dict[str, Any]]] = {
    "configmap": (
        ["create", "configmap", "c1", "--from-literal=a=b"],
        {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "c1"}, "data": {"a": "b"}},
    ),
    "secret": (
        ["create", "secret", "generic", "s1", "--from-literal=k=v"],
        {"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "s1"}, "data": {"k": "dg=="}},
    ),
    "deployment": (
        ["create", "deployment", "d1", "--image=busybox", "--replicas=2", "--port=80"],
        {
            "apiVersion": "apps/v1",
            "kind": "Deployment",
            "metadata": {"name": "d1", "labels": {"app": "d1"}},
            "spec": {
                "replicas": 2,
                "selector": {"matchLabels": {"app": "d1"}},
                "template": {
                    "metadata": {"labels": {"app": "d1"}},
                    "spec": {
                        "containers": [
                            {"name": "busybox", "image": "busybox", "ports": [{"containerPort": 80}]}
                        ]
                    },
                },
            },
        },
    ),
    "namespace": (
        ["create", "namespace", "n1"],
        {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "n1"}},
    ),
    "job": (
        ["create", "job", "j1", "--image=busybox", "--", "sleep", "1"],
        {
            "apiVersion": "batch/v1",
            "kind": "Job",
            "metadata": {"name": "j1"},
            "spec": {
                "template": {
                    "spec": {
                        "containers": [{"name": "j1", "image": "busybox", "command": ["sleep", "1"]}],
                        "restartPolicy": "Never",
                    }
                }
            },
        },
    ),
    "service": (
        ["create", "service", "clusterip", "s2", "--tcp=80:8080"],
        {
            "apiVersion": "v1",
            "kind": "Service",
            "metadata": {"name": "s2", "labels": {"app": "s2"}},
            "spec": {
                "ports": [{"name": "80-8080", "protocol": "TCP", "port": 80, "targetPort": 8080}],
                "selector": {"app": "s2"},
                "type": "ClusterIP",
            },
        },
    ),
    "role": (
        ["create", "role", "r1", "--verb=get", "--resource=pods"],
        {
            "apiVersion": "rbac.authorization.k8s.io/v1",
            "kind": "Role",
            "metadata": {"name": "r1"},
            "rules": [{"verbs": ["get"], "apiGroups": [""], "resources": ["pods"]}],
        },
    ),
    "priorityclass": (
        ["create", "priorityclass", "pc1", "--value=1000"],
        {
            "apiVersion": "scheduling.k8s.io/v1",
            "kind": "PriorityClass",
            "metadata": {"name": "pc1"},
            "value": 1000,
            "preemptionPolicy": "PreemptLowerPriority",
        },
    ),
}

# Bodies captured from kubectl v1.32 with the commands above (regenerate: run the kubectl test
# with PROTOBUF_GOLDEN=1 and paste what it prints).
GOLDEN: dict[str, str] = {
    "configmap": "6b3873000a0f0a0276311209436f6e6669674d6170121c0a120a02633112001a0022002a0032003800420012060a01611201621a002200",
    "secret": "6b3873000a0c0a0276311206536563726574121e0a120a02733112001a0022002a0032003800420012060a016b1201761a001a002200",
    "deployment": "6b3873000a150a07617070732f7631120a4465706c6f796d656e7412b8010a1d0a02643112001a0022002a003200380042005a090a03617070120264311288010802120b0a090a03617070120264311a6f0a1b0a0012001a0022002a003200380042005a090a0361707012026431125012320a0762757379626f78120762757379626f782a00320a0a001000185022002a0042006a007200800100880100900100a201001a00320042004a0052005800600068008201008a01009a0100c2010022020a00280038001a0c0800100018002000280038001a002200",
    "namespace": "6b3873000a0f0a02763112094e616d657370616365121a0a120a026e3112001a0022002a0032003800420012001a020a001a002200",
    "job": "6b3873000a0f0a0862617463682f763112034a6f621284010a120a026a3112001a0022002a00320038004200126432620a100a0012001a0022002a00320038004200124e122b0a026a31120762757379626f781a05736c6565701a01312a0042006a007200800100880100900100a201001a054e65766572320042004a0052005800600068008201008a01009a0100c201001a082000280030003a001a002200",
    "service": "6b3873000a0d0a02763112075365727669636512660a1d0a02733212001a0022002a003200380042005a090a036170701202733212410a1b0a0738302d38303830120354435018502207080010903f1a00280012090a03617070120273321a002209436c757374657249503a00420052005a00600068001a020a001a002200",
    "role": "6b3873000a240a1c726261632e617574686f72697a6174696f6e2e6b38732e696f2f76311204526f6c6512230a120a02723112001a0022002a00320038004200120d0a0367657412001a04706f64731a002200",
    "priorityclass": "6b3873000a250a147363686564756c696e672e6b38732e696f2f7631120d5072696f72697479436c61737312320a130a0370633112001a0022002a0032003800420010e807180022002a14507265656d70744c6f7765725072696f726974791a002200",
}


# ---- kubectl against a discovery stub -------------------------------------------------------

_VERBS = ["create", "delete", "get", "list", "patch", "update", "watch"]
_CORE = [
    ("configmaps", "ConfigMap", True),
    ("secrets", "Secret", True),
    ("namespaces", "Namespace", False),
    ("services", "Service", True),
    ("pods", "Pod", True),
]
_GROUPS = {
    "apps": [("deployments", "Deployment", True)],
    "batch": [("jobs", "Job", True), ("cronjobs", "CronJob", True)],
    "rbac.authorization.k8s.io": [("roles", "Role", True), ("rolebindings", "RoleBinding", True)],
    "networking.k8s.io": [("ingresses", "Ingress", True)],
    "policy": [("poddisruptionbudgets", "PodDisruptionBudget", True)],
    "scheduling.k8s.io": [("priorityclasses", "PriorityClass", False)],
}


def _resource_list(group_version: str, resources: list[tuple[str, str, bool]]) -> dict[str, Any]:
    return {
        "kind": "APIResourceList",
        "apiVersion": "v1",
        "groupVersion": group_version,
        "resources": [
            {"name": n, "singularName": "", "namespaced": ns, "kind": k, "verbs": _VERBS}
            for n, k, ns in resources
        ],
    }


class _Stub:
    """Answers discovery like a v1.32 API server and records every POST body."""

    def __init__(self) -> None:
        self.posts: list[tuple[str, str, bytes]] = []
        self.answer: bytes | None = None  # a protobuf body to answer POSTs with
        self.app = web.Application()
        self.app.router.add_route("*", "/{tail:.*}", self.handle)

    async def handle(self, request: web.Request) -> web.Response:
        path = request.path
        if path == "/version":
            return web.json_response({"major": "1", "minor": "32", "gitVersion": "v1.32.0"})
        if path == "/api":
            return web.json_response(
                {"kind": "APIVersions", "versions": ["v1"], "serverAddressByClientCIDRs": []}
            )
        if path == "/apis":
            groups = [
                {
                    "name": g,
                    "versions": [{"groupVersion": f"{g}/v1", "version": "v1"}],
                    "preferredVersion": {"groupVersion": f"{g}/v1", "version": "v1"},
                }
                for g in _GROUPS
            ]
            return web.json_response({"kind": "APIGroupList", "apiVersion": "v1", "groups": groups})
        if path == "/api/v1":
            return web.json_response(_resource_list("v1", _CORE))
        for group, resources in _GROUPS.items():
            if path == f"/apis/{group}/v1":
                return web.json_response(_resource_list(f"{group}/v1", resources))
        if request.method == "POST":
            body = await request.read()
            self.posts.append((path, request.headers.get("Content-Type", ""), body))
            if self.answer is not None:
                headers = {"Content-Type": "application/vnd.kubernetes.protobuf"}
                return web.Response(status=201, body=self.answer, headers=headers)
            plural = path.rstrip("/").rsplit("/", 1)[-1]
            kinds = {n: (k, "v1") for n, k, _ in _CORE}
            kinds |= {n: (k, f"{g}/v1") for g, rs in _GROUPS.items() for n, k, _ in rs}
            kind, api_version = kinds[plural]
            return web.json_response(
                {"apiVersion": api_version, "kind": kind, "metadata": {"name": "created"}}, status=201
            )
        return web.json_response(
            {"kind": "Status", "apiVersion": "v1", "status": "Failure", "code": 404}, status=404
        )


@pytest.fixture
async def stub(tmp_path: Path) -> Any:
    server = _Stub()
    runner = web.AppRunner(server.app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = runner.addresses[0][1]
    kubeconfig = tmp_path / "kubeconfig"
    kubeconfig.write_text(
        "apiVersion: v1\nkind: Config\n"
        f"clusters: [{{name: c, cluster: {{server: 'http://127.0.0.1:{port}'}}}}]\n"
        "users: [{name: u, user: {}}]\n"
        "contexts: [{name: x, context: {cluster: c, user: u, namespace: default}}]\n"
        "current-context: x\n"
    )
    try:
        yield server, kubeconfig, tmp_path / "cache"
    finally:
        await runner.cleanup()


@pytest.mark.skipif(not shutil.which(KUBECTL), reason="needs kubectl")
async def test_kubectl_create_bodies_decode_to_the_yaml_equivalent(stub: Any) -> None:
    server, kubeconfig, cache = stub
    for name, (args, expected) in EXPECTED.items():
        await _kubectl(kubeconfig, cache, *args)
        _, content_type, body = server.posts[-1]
        assert content_type == "application/vnd.kubernetes.protobuf", name
        if os.environ.get("PROTOBUF_GOLDEN"):
            print(f'    "{name}": "{body.hex()}",')
        assert decode_k8s_protobuf(body) == expected, name


async def _kubectl(kubeconfig: Path, cache: Path, *args: str) -> str:
    proc = await asyncio.create_subprocess_exec(
        KUBECTL,
        "--kubeconfig",
        str(kubeconfig),
        "--cache-dir",
        str(cache),
        *args,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    out, err = await asyncio.wait_for(proc.communicate(), timeout=60)
    assert proc.returncode == 0, (args, err.decode())
    return out.decode()


# Fields added after v1.32: kubectl's Go types skip them, so the probe leaves them out.
_NEWER = frozenset(
    {
        "fileKeyRef",
        "stopSignal",
        "restartPolicyRules",
        "ulimits",
        "hostnameOverride",
        "podCertificate",
        "workloadRef",
        "podReplacementPolicy",
        "terminatingReplicas",
    }
)


def _probe(message: str, depth: int, counter: list[int]) -> bytes:
    """Every field of a message set to a distinct value, nested messages down to a depth."""
    out = b""
    for num, key, kind, typ, flags in sorted(schema()[message].values()):
        if key in _NEWER:
            continue
        counter[0] += 1
        n = counter[0]
        if "I" in flags:
            out += _f(num, _probe(typ, depth, counter))
            continue
        value: bytes
        if kind == "i":
            value = _varint(2 << 3) + _varint(n)
        elif kind == "b":
            value = _varint(2 << 3) + _varint(1)
        elif kind == "d":
            value = _varint(2 << 3 | 1) + struct.pack("<d", n + 0.5)
        elif kind in ("s", "y"):
            value = _f(2, f"v{n}")
        elif depth <= 0:
            continue
        elif kind == "m":
            value = _f(2, _probe(typ, depth - 1, counter))
        else:
            special = {
                "time": _f(1, 1767323045 + n),
                "microtime": _f(1, 1767323045 + n) + _f(2, 123456000),
                "intstr": _f(1, 1) + _f(3, f"s{n}") if n % 2 else _f(2, n),
                "quantity": _f(1, str(n)),
                "raw": _f(1, f'{{"r": {n}}}'),
            }
            value = _f(2, special[typ])
        # `value` is field 2 of a map entry; outside maps it is re-tagged with the real number
        out += _f(num, _f(1, "k") + value) if "M" in flags else _retag(value, num)
    return out


def _retag(value: bytes, num: int) -> bytes:
    wire = value[0] & 7
    return _varint(num << 3 | wire) + value[1:]


_PROBES = {
    "Deployment": ("apps/v1", ["create", "deployment", "d1", "--image=x"]),
    "CronJob": ("batch/v1", ["create", "cronjob", "cj", "--image=x", "--schedule=* * * * *"]),
    "Service": ("v1", ["create", "service", "clusterip", "s2", "--tcp=80:8080"]),
    "RoleBinding": ("rbac.authorization.k8s.io/v1", ["create", "rolebinding", "rb", "--role=r", "--user=u"]),
    "Ingress": ("networking.k8s.io/v1", ["create", "ingress", "i", "--rule=foo.com/bar=svc:80"]),
    "PodDisruptionBudget": ("policy/v1", ["create", "pdb", "p", "--selector=a=b", "--min-available=1"]),
}


@pytest.mark.skipif(not shutil.which(KUBECTL), reason="needs kubectl")
async def test_kubectl_go_types_read_every_field_as_we_do(stub: Any) -> None:
    """Field numbers, JSON names, kinds and inlining agree with the Go types kubectl links."""
    server, kubeconfig, cache = stub
    for kind, (api_version, args) in _PROBES.items():
        message = message_for(api_version, kind)
        assert message
        server.answer = _body(api_version, kind, _probe(message, 14, [0]))
        printed = await _kubectl(kubeconfig, cache, *args, "-o", "json", "--show-managed-fields")
        assert orjson.loads(printed) == decode_k8s_protobuf(server.answer), kind


@pytest.mark.parametrize("name", sorted(GOLDEN))
def test_golden_kubectl_bodies(name: str) -> None:
    assert decode_k8s_protobuf(bytes.fromhex(GOLDEN[name])) == EXPECTED[name][1]


# ---- hand-built bodies ------------------------------------------------------------------------


def _varint(v: int) -> bytes:
    v &= (1 << 64) - 1
    out = bytearray()
    while True:
        b, v = v & 0x7F, v >> 7
        out.append(b | 0x80 if v else b)
        if not v:
            return bytes(out)


def _f(num: int, value: int | bytes | str) -> bytes:
    """A varint (int) or length-delimited (bytes/str) field."""
    if isinstance(value, int):
        return _varint(num << 3) + _varint(value)
    data = value.encode() if isinstance(value, str) else value
    return _varint(num << 3 | 2) + _varint(len(data)) + data


def _entry(num: int, key: str, value: bytes | str) -> bytes:
    return _f(num, _f(1, key) + _f(2, value))


def _body(api_version: str, kind: str, raw: bytes) -> bytes:
    return b"k8s\x00" + _f(1, _f(1, api_version) + _f(2, kind)) + _f(2, raw) + _f(3, "") + _f(4, "")


def _meta(name: str) -> bytes:
    return _f(1, _f(1, name))


def test_pod_with_special_types_and_pointer_semantics() -> None:
    probe = _f(1, _f(2, _f(2, _f(1, 1) + _f(3, "http")))) + _f(3, 2)  # httpGet.port="http" (string)
    container = (
        _f(1, "c")
        + _f(2, "img")
        + _f(6, _f(3, 8080) + _f(4, "TCP"))
        + _f(8, _entry(1, "cpu", _f(1, "100m")) + _entry(2, "memory", _f(1, "64Mi")))
        + _f(11, probe)
        + _f(16, 0)  # stdin=false: by value and omitempty in Go, so dropped
    )
    volume = _f(1, "scratch") + _f(2, _f(2, b""))  # emptyDir: {} is a pointer, so kept
    spec = (
        _f(1, volume)
        + _f(2, container)
        + _f(4, 0)  # terminationGracePeriodSeconds=0 is a pointer: kept
        + _f(21, 0)  # automountServiceAccountToken=false: kept
        + _f(11, 0)  # hostNetwork=false: dropped
        + _f(25, -5)  # negative int32 is a 10-byte varint
    )
    meta = _f(1, "p") + _f(8, _f(1, 1767323045)) + _entry(11, "a", "b")
    obj = decode_k8s_protobuf(_body("v1", "Pod", _f(1, meta) + _f(2, spec) + _f(3, b"")))
    assert obj == {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": "p", "creationTimestamp": "2026-01-02T03:04:05Z", "labels": {"a": "b"}},
        "spec": {
            "volumes": [{"name": "scratch", "emptyDir": {}}],
            "containers": [
                {
                    "name": "c",
                    "image": "img",
                    "ports": [{"containerPort": 8080, "protocol": "TCP"}],
                    "resources": {"limits": {"cpu": "100m"}, "requests": {"memory": "64Mi"}},
                    "readinessProbe": {"httpGet": {"port": "http"}, "timeoutSeconds": 2},
                }
            ],
            "terminationGracePeriodSeconds": 0,
            "automountServiceAccountToken": False,
            "priority": -5,
        },
    }


def test_deployment_replicas_zero_and_intstr_percent() -> None:
    strategy = _f(1, "RollingUpdate") + _f(2, _f(1, _f(1, 0) + _f(2, 0)) + _f(2, _f(1, 1) + _f(3, "25%")))
    spec = _f(1, 0) + _f(4, strategy) + _f(5, 0) + _f(7, 0)
    obj = decode_k8s_protobuf(_body("apps/v1", "Deployment", _meta("d") + _f(2, spec) + _f(3, b"")))
    assert obj["spec"] == {
        "replicas": 0,
        "strategy": {"type": "RollingUpdate", "rollingUpdate": {"maxUnavailable": 0, "maxSurge": "25%"}},
    }


def test_packed_and_unpacked_repeated_ints() -> None:
    packed = _f(4, _varint(1000) + _varint(2000))
    unpacked = _f(4, 3000)
    pod_sc = packed + unpacked + _f(2, 0)  # runAsUser=0 (root) is a pointer: kept
    obj = decode_k8s_protobuf(_body("v1", "Pod", _meta("p") + _f(2, _f(14, pod_sc))))
    assert obj["spec"]["securityContext"] == {"supplementalGroups": [1000, 2000, 3000], "runAsUser": 0}


def test_secret_bytes_string_data_and_unknown_fields() -> None:
    raw = (
        _meta("s")
        + _entry(2, "bin", b"\x00\xff")
        + _entry(4, "plain", "text")
        + _f(3, "Opaque")
        + _f(99, "x")
    )
    obj = decode_k8s_protobuf(_body("v1", "Secret", raw))
    assert obj == {
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": {"name": "s"},
        "data": {"bin": "AP8="},
        "stringData": {"plain": "text"},
        "type": "Opaque",
    }


def test_micro_time_raw_extension_and_double() -> None:
    event = _meta("e") + _f(2, _f(1, 1767323045) + _f(2, 123456789)) + _f(4, "ctrl")
    assert (
        decode_k8s_protobuf(_body("events.k8s.io/v1", "Event", event))["eventTime"]
        == "2026-01-02T03:04:05.123456Z"
    )
    revision = _meta("r") + _f(2, _f(1, b'{"spec":{"x":1}}')) + _f(3, 7)
    assert decode_k8s_protobuf(_body("apps/v1", "ControllerRevision", revision))["data"] == {"spec": {"x": 1}}
    props = (
        _f(5, "integer")
        + _varint(9 << 3 | 1)
        + struct.pack("<d", 10.0)
        + _varint(11 << 3 | 1)
        + struct.pack("<d", 0.5)
    )
    version = _f(1, "v1") + _f(2, 1) + _f(3, 1) + _f(4, _f(1, props))
    crd = _meta("a.b") + _f(2, _f(1, "b") + _f(7, version))
    spec = decode_k8s_protobuf(_body("apiextensions.k8s.io/v1", "CustomResourceDefinition", crd))["spec"]
    assert spec["versions"][0]["schema"]["openAPIV3Schema"] == {
        "type": "integer",
        "maximum": 10,
        "minimum": 0.5,
    }


def test_delete_options_in_any_group_version() -> None:
    body = _body("apps/v1", "DeleteOptions", _f(1, 0) + _f(4, "Foreground"))
    assert decode_k8s_protobuf(body) == {
        "apiVersion": "apps/v1",
        "kind": "DeleteOptions",
        "gracePeriodSeconds": 0,
        "propagationPolicy": "Foreground",
    }


def test_every_builtin_kind_has_a_message() -> None:
    from pocketkube.api.resources import BUILTIN_RESOURCES

    for info in BUILTIN_RESOURCES:
        assert message_for(info.api_version, info.kind) in schema(), info.kind
    assert message_for("autoscaling/v1", "Scale") and message_for("policy/v1", "Eviction")


def test_go_duration() -> None:
    assert [go_duration(n) for n in (0, 1_500_000, 90 * 10**9, 3_723_500_000_000, -(10**9))] == [
        "0s",
        "1.5ms",
        "1m30s",
        "1h2m3.5s",
        "-1s",
    ]


# ---- malformed input: always BadRequest -----------------------------------------------------

_GOOD = _body("v1", "ConfigMap", _meta("c"))


def _nested(depth: int) -> bytes:
    raw = b""
    for _ in range(depth):
        raw = _f(28, raw)  # JSONSchemaProps.not -> not -> ...
    return raw


def test_deep_but_legal_nesting_decodes() -> None:
    crd = _f(2, _f(7, _f(4, _f(1, _nested(90)))))
    spec = decode_k8s_protobuf(_body("apiextensions.k8s.io/v1", "CustomResourceDefinition", crd))["spec"]
    schema_props = spec["versions"][0]["schema"]["openAPIV3Schema"]
    for _ in range(89):
        schema_props = schema_props["not"]
    assert schema_props == {"not": {}}


@pytest.mark.parametrize(
    "body",
    [
        b"",
        b"k8s",
        b'{"kind": "ConfigMap"}',
        b"\x00\x01\x02\x03" + _GOOD[4:],
        _GOOD[:-3],  # truncated
        b"k8s\x00\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff",  # varint too long
        b"k8s\x00\x0b",  # group wire type
        _body("v1", "NoSuchKind", b""),
        _body("v1", "PodSpec", b""),  # a message, not a kind
        _body("v1", "ReplicationController", b""),  # a kind pocketkube does not serve
        _body("example.com/v1", "Widget", b""),
        _body("v1", "", b""),
        _body("v1", "ConfigMap", _f(1, b"\x0a\x05ab")),  # nested length past its end
        _body("v1", "ConfigMap", _f(1, _f(1, b"\xff\xfe"))),  # name is not UTF-8
        _body("v1", "ConfigMap", _f(1, 5)),  # metadata with a varint wire type
        _body("apps/v1", "ControllerRevision", _f(2, _f(1, b"not json"))),
        _body("v1", "Event", _f(6, _f(1, 10**15))),  # time out of range
        b"k8s\x00" + _f(1, _f(1, "v1") + _f(2, "ConfigMap")) + _f(3, "gzip"),
        _body(
            "apiextensions.k8s.io/v1", "CustomResourceDefinition", _f(2, _f(7, _f(4, _f(1, _nested(200)))))
        ),
    ],
)
def test_malformed_bodies_are_bad_requests(body: bytes) -> None:
    with pytest.raises(BadRequest):
        decode_k8s_protobuf(body)


def test_garbage_never_raises_anything_but_bad_request() -> None:
    import random

    rng = random.Random(7)
    for _ in range(3000):
        data = bytearray(_GOOD)
        for _ in range(rng.randint(1, 4)):
            data[rng.randrange(4, len(data))] = rng.randrange(256)
        try:
            decode_k8s_protobuf(bytes(data))
        except BadRequest:
            pass
