"""Pod events as the workload controllers (DaemonSet, StatefulSet, Job) read them: which owner a
pod event concerns and whether it is the deletion their expectations wait for."""

from __future__ import annotations

from typing import Any

from pocketkube.client.workqueue import WorkQueue
from pocketkube.controllers.expectations import Expectations
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


def observe_pod_event(old: Obj | None, new: Obj | None, kind: str, expectations: Expectations,
                      queue: WorkQueue) -> str | None:
    """The pod handler the workload controllers share: lower the owner's expectations for an add
    or a deletion and enqueue the owner; returns its key (None if a `kind` does not own the pod)."""
    pod = new if new is not None else old
    assert pod is not None
    key = owner_key(pod, kind)
    if key is None:
        return None
    if old is None:
        expectations.observed_add(key)
    elif deletion_observed(old, new):
        expectations.observed_delete(key)
    queue.add(key)
    return key
