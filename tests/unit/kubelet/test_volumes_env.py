"""Volume contents and modes, and container environment resolution, as the kubelet builds them."""

from __future__ import annotations

import base64
import os
import stat
from typing import Any

import pytest

from pocketkube.kubelet.env import EnvError, expand, resolve_env
from pocketkube.kubelet.volumes import PodVolumes, VolumeError, atomic_write

OBJECTS: dict[tuple[str, str], dict[str, Any]] = {
    ("configmaps", "cfg"): {"data": {"a.conf": "alpha", "b.conf": "beta"}},
    ("secrets", "sec"): {"data": {"password": base64.b64encode(b"s3cret").decode()}},
}


def read(path: str) -> str:
    with open(path) as f:
        return f.read()


async def lookup(kind: str, name: str) -> dict[str, Any] | None:
    return OBJECTS.get((kind, name))


POD = {"metadata": {"name": "p", "namespace": "ns", "uid": "u1", "labels": {"app": "web"}},
       "spec": {"nodeName": "n1", "containers": [{"name": "c", "resources": {"limits": {"memory": "64Mi"}}}]},
       "status": {"podIP": "10.42.0.5"}}


async def test_configmap_secret_downward_volumes(tmp_path: Any) -> None:
    pod = {**POD, "spec": {**POD["spec"], "volumes": [  # type: ignore[dict-item]
        {"name": "cfg", "configMap": {"name": "cfg", "items": [{"key": "a.conf", "path": "x/a", "mode": 0o600}]}},
        {"name": "sec", "secret": {"secretName": "sec", "defaultMode": 0o400}},
        {"name": "info", "downwardAPI": {"items": [{"path": "labels", "fieldRef": {"fieldPath": "metadata.labels"}},
                                                   {"path": "mem", "resourceFieldRef": {"containerName": "c",
                                                    "resource": "limits.memory", "divisor": "1Mi"}}]}},
        {"name": "scratch", "emptyDir": {}}]}}
    vols = PodVolumes(str(tmp_path), pod, lookup)
    paths = await vols.setup()
    a = os.path.join(paths["cfg"], "x", "a")
    assert read(a) == "alpha"
    assert stat.S_IMODE(os.stat(a).st_mode) == 0o600
    assert not os.path.exists(os.path.join(paths["cfg"], "b.conf"))
    pw = os.path.join(paths["sec"], "password")
    assert read(pw) == "s3cret" and stat.S_IMODE(os.stat(pw).st_mode) == 0o400
    assert os.path.islink(pw) and os.readlink(pw) == "..data/password"
    assert read(os.path.join(paths["info"], "labels")) == 'app="web"'
    assert read(os.path.join(paths["info"], "mem")) == "64"
    assert os.path.isdir(paths["scratch"])
    await vols.teardown()
    assert not os.path.exists(os.path.join(str(tmp_path), "volumes"))


async def test_missing_configmap_names_it(tmp_path: Any) -> None:
    pod = {**POD, "spec": {**POD["spec"], "volumes": [{"name": "v", "configMap": {"name": "nope"}}]}}  # type: ignore[dict-item]
    with pytest.raises(VolumeError, match='configmap "nope" not found'):
        await PodVolumes(str(tmp_path), pod, lookup).setup()


def test_atomic_update_replaces_data(tmp_path: Any) -> None:
    atomic_write(str(tmp_path), {"k": (b"1", 0o644), "old": (b"x", 0o644)})
    atomic_write(str(tmp_path), {"k": (b"2", 0o644)})
    assert read(os.path.join(tmp_path, "k")) == "2"
    assert not os.path.lexists(os.path.join(tmp_path, "old"))
    assert len([e for e in os.listdir(tmp_path) if e.startswith("..20")]) == 1


async def test_env_resolution() -> None:
    container = {"name": "c", "resources": {"limits": {"memory": "64Mi"}},
                 "envFrom": [{"configMapRef": {"name": "cfg"}, "prefix": "CFG_"}],
                 "env": [{"name": "A", "value": "x"}, {"name": "B", "value": "$(A)-y-$$(A)"},
                         {"name": "POD", "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}}},
                         {"name": "IP", "valueFrom": {"fieldRef": {"fieldPath": "status.podIP"}}},
                         {"name": "PW", "valueFrom": {"secretKeyRef": {"name": "sec", "key": "password"}}},
                         {"name": "MEM", "valueFrom": {"resourceFieldRef": {"resource": "limits.memory",
                                                                            "divisor": "1Mi"}}}]}
    env = await resolve_env(POD, container, lookup)
    assert env["B"] == "x-y-$(A)" and env["POD"] == "p" and env["IP"] == "10.42.0.5"
    assert env["PW"] == "s3cret" and env["MEM"] == "64"
    assert "CFG_a.conf" in env
    with pytest.raises(EnvError, match='configmap "missing" not found'):
        await resolve_env(POD, {"envFrom": [{"configMapRef": {"name": "missing"}}]}, lookup)
    assert expand("$(NOPE)", {}) == "$(NOPE)"
