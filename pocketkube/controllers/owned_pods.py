"""Pod events as the workload controllers (DaemonSet, StatefulSet, Job) read them: which owner a
pod event concerns and whether it is the deletion their expectations wait for."""

from __future__ import annotations

from typing import Any

from pocketkube.controllers.pod_util import controller_ref

Obj = dict[str, Any]


def owner_key(pod: Obj, kind: str) -> str | None:
    """`namespace/name` of the pod's controller if it is a `kind`."""
    ref = controller_ref(pod)
    if ref is None or ref.get("kind") != kind:
        return None
    return f"{pod['metadata'].get('namespace')}/{ref['name']}"


def deletion_observed(old: Obj | None, new: Obj | None) -> bool:
    """A deletion counts once: when deletionTimestamp appears, or on DELETED if it never did."""
    if old is None:
        return False
    was = bool((old.get("metadata") or {}).get("deletionTimestamp"))
    if new is None:
        return not was
    return bool((new.get("metadata") or {}).get("deletionTimestamp")) and not was
