"""Admission: the built-in plugins kube-apiserver runs before a write is stored.

Implemented here: NamespaceLifecycle (no new objects in missing or terminating namespaces; the
system namespaces cannot be deleted), ServiceAccount (pods get `default`), DefaultTolerationSeconds
(pods tolerate not-ready/unreachable for 300 s), LimitRanger (limitranger.py) and ResourceQuota
(quota.py, last, so it charges the defaulted object).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from pocketkube.api import errors, meta
from pocketkube.api.resources import ResourceInfo
from pocketkube.apiserver import limitranger

if TYPE_CHECKING:
    from pocketkube.apiserver.server import APIServer

Obj = dict[str, Any]

_IMMORTAL_NAMESPACES = frozenset({"default", "kube-system", "kube-public"})


async def admit(server: APIServer, operation: str, info: ResourceInfo, obj: Obj, old: Obj | None,
                dry_run: bool) -> None:
    services = info.group == "" and info.plural == "services"
    if operation == "create":
        if info.namespaced:
            _namespace_lifecycle(server, info, obj)
        if info.group == "" and info.plural == "pods":
            _service_account(obj)
            _default_tolerations(obj, server.config.default_not_ready_toleration_seconds,
                                 server.config.default_unreachable_toleration_seconds)
    if operation in ("create", "update") and info.namespaced:  # before allocation, which a refusal would leak
        await limitranger.admit(server, operation, info, obj, old)
        await server.quota.admit(operation, info, obj, old, dry_run)
    if operation == "create":
        if services and not dry_run:
            await server.allocators.allocate(obj)
    elif services and operation == "create-failed":
        await server.allocators.release_unused(obj, None)
    elif services and operation == "update" and not dry_run:
        await server.allocators.allocate(obj, old)
    elif services and operation == "deleted":
        await server.allocators.release_unused(obj, None)
    elif operation == "delete" and info.group == "" and info.plural == "namespaces":
        name = meta.name_of(obj)
        if name in _IMMORTAL_NAMESPACES:
            raise errors.Forbidden.for_resource("", "namespaces", name, "this namespace may not be deleted")


def _namespace_lifecycle(server: APIServer, info: ResourceInfo, obj: Obj) -> None:
    namespace = meta.namespace_of(obj)
    ns_info = server.table.get("", "v1", "namespaces")
    assert ns_info is not None
    co = server.cache.get(ns_info.key(None, namespace))
    if co is None:
        raise errors.NotFound.for_resource("", "namespaces", namespace)
    if co.obj.get("metadata", {}).get("deletionTimestamp") or (co.obj.get("status") or {}).get("phase") == "Terminating":
        if info.group == "" and info.plural == "events":
            return
        raise errors.Forbidden.for_resource(
            info.group, info.plural, meta.name_of(obj),
            f"unable to create new content in namespace {namespace} because it is being terminated")


def _service_account(pod: Obj) -> None:
    spec = pod.setdefault("spec", {})
    if not spec.get("serviceAccountName"):
        spec["serviceAccountName"] = spec.get("serviceAccount") or "default"
    spec["serviceAccount"] = spec["serviceAccountName"]


def _default_tolerations(pod: Obj, not_ready: int, unreachable: int) -> None:
    spec = pod.setdefault("spec", {})
    tolerations = list(spec.get("tolerations") or [])
    defaults = (
        {"key": "node.kubernetes.io/not-ready", "operator": "Exists", "effect": "NoExecute",
         "tolerationSeconds": not_ready},
        {"key": "node.kubernetes.io/unreachable", "operator": "Exists", "effect": "NoExecute",
         "tolerationSeconds": unreachable},
    )
    for default in defaults:
        if not any(t.get("key") == default["key"] and t.get("effect") in (None, "", "NoExecute") for t in tolerations):
            tolerations.append(dict(default))
    spec["tolerations"] = tolerations
