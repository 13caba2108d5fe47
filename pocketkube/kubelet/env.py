"""Container environment: env and envFrom resolved the way the kubelet does it.

Order: envFrom sources first (configMaps and secrets, with prefix; invalid keys skipped), then
env entries, which win; `$(VAR)` references to earlier variables expand, `$$(VAR)` escapes. Value
sources: configMapKeyRef, secretKeyRef (optional or not), fieldRef (metadata.name/namespace/uid,
labels/annotations['k'], spec.nodeName, spec.serviceAccountName, status.podIP(s), status.hostIP(s)),
resourceFieldRef (limits/requests of cpu, memory, ephemeral-storage, with divisor). A missing
required source is an error naming it, which becomes the container's CreateContainerConfigError.
"""

from __future__ import annotations

import base64
import math
import re
from collections.abc import Awaitable, Callable
from typing import Any

from pocketkube.api.quantity import Quantity

Obj = dict[str, Any]
Lookup = Callable[[str, str], Awaitable[Obj | None]]  # (kind "configmaps"|"secrets", name) -> object or None

_ENV_NAME = re.compile(r"^[-._a-zA-Z][-._a-zA-Z0-9]*$")
_REF = re.compile(r"\$\$|\$\(([-._a-zA-Z][-._a-zA-Z0-9]*)\)")


class EnvError(Exception):
    """A required configMap/secret (or key) is missing: the container cannot be configured."""


def expand(value: str, env: dict[str, str]) -> str:
    def sub(m: re.Match[str]) -> str:
        if m.group(0) == "$$":
            return "$"
        name = m.group(1)
        return env[name] if name in env else m.group(0)

    return _REF.sub(sub, value)


def field_value(pod: Obj, path: str) -> str:
    md = pod.get("metadata") or {}
    spec = pod.get("spec") or {}
    status = pod.get("status") or {}
    m = re.match(r"^metadata\.(labels|annotations)\['(.+)'\]$", path)
    if m:
        return str((md.get(m.group(1)) or {}).get(m.group(2), ""))
    simple = {
        "metadata.name": md.get("name"), "metadata.namespace": md.get("namespace"), "metadata.uid": md.get("uid"),
        "spec.nodeName": spec.get("nodeName"), "spec.serviceAccountName": spec.get("serviceAccountName"),
        "status.podIP": status.get("podIP"), "status.hostIP": status.get("hostIP"),
        "status.podIPs": ",".join(i.get("ip", "") for i in status.get("podIPs") or []),
        "status.hostIPs": ",".join(i.get("ip", "") for i in status.get("hostIPs") or []),
    }
    if path in simple:
        return str(simple[path] or "")
    if path in ("metadata.labels", "metadata.annotations"):
        items = md.get(path.split(".")[1]) or {}
        return "\n".join(f'{k}="{v}"' for k, v in sorted(items.items()))
    raise EnvError(f"unsupported fieldRef path {path!r}")


def resource_value(container: Obj, resource: str, divisor: str | None, node_allocatable: dict[str, str]) -> str:
    kind, _, name = resource.partition(".")
    res = (container.get("resources") or {}).get(kind) or {}
    raw = res.get(name)
    if raw is None and kind == "limits":
        raw = node_allocatable.get(name)  # no limit: the node's allocatable, as the kubelet does
    if raw is None:
        return "0"
    q = Quantity.parse(str(raw))
    d = Quantity.parse(divisor or "1")
    value = q.value / d.value
    return str(math.ceil(value))


async def resolve_env(pod: Obj, container: Obj, lookup: Lookup, *,
                      node_allocatable: dict[str, str] | None = None, service_env: dict[str, str] | None = None) -> dict[str, str]:
    env: dict[str, str] = dict(service_env or {})
    for src in container.get("envFrom") or []:
        prefix = src.get("prefix") or ""
        for kind, key in (("configmaps", "configMapRef"), ("secrets", "secretRef")):
            ref = src.get(key)
            if not ref:
                continue
            obj = await lookup(kind, ref.get("name", ""))
            if obj is None:
                if ref.get("optional"):
                    continue
                what = "configmap" if kind == "configmaps" else "secret"
                raise EnvError(f'{what} "{ref.get("name")}" not found')
            for k, v in _data(kind, obj).items():
                if _ENV_NAME.match(prefix + k):
                    env[prefix + k] = v
    for item in container.get("env") or []:
        name = item.get("name", "")
        if "value" in item or "valueFrom" not in item:
            env[name] = expand(str(item.get("value", "")), env)
            continue
        vf = item["valueFrom"] or {}
        if "fieldRef" in vf:
            env[name] = field_value(pod, vf["fieldRef"].get("fieldPath", ""))
        elif "resourceFieldRef" in vf:
            r = vf["resourceFieldRef"]
            target = container
            if r.get("containerName"):
                for c in (pod.get("spec") or {}).get("containers") or []:
                    if c.get("name") == r["containerName"]:
                        target = c
            env[name] = resource_value(target, r.get("resource", ""), r.get("divisor"), node_allocatable or {})
        else:
            for kind, key in (("configmaps", "configMapKeyRef"), ("secrets", "secretKeyRef")):
                ref = vf.get(key)
                if not ref:
                    continue
                obj = await lookup(kind, ref.get("name", ""))
                what = "configmap" if kind == "configmaps" else "secret"
                if obj is None:
                    if ref.get("optional"):
                        break
                    raise EnvError(f'{what} "{ref.get("name")}" not found')
                data = _data(kind, obj)
                if ref.get("key") not in data:
                    if ref.get("optional"):
                        break
                    raise EnvError(f'couldn\'t find key {ref.get("key")} in {what.capitalize() if what == "secret" else "ConfigMap"} '
                                   f'{pod["metadata"].get("namespace")}/{ref.get("name")}')
                env[name] = data[ref["key"]]
    return env


def _data(kind: str, obj: Obj) -> dict[str, str]:
    if kind == "secrets":
        out = {k: base64.b64decode(v).decode(errors="replace") for k, v in (obj.get("data") or {}).items()}
        out.update(obj.get("stringData") or {})
        return out
    return {str(k): str(v) for k, v in (obj.get("data") or {}).items()}
