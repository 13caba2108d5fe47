"""The default strategy every resource starts from, and the registry of per-resource overrides.

A strategy answers the questions the generic store asks about a kind: how to default and validate
it, what a create or an update may change (status through the main resource, spec through
/status), whether metadata.generation is kept, and how a delete proceeds.
"""

from __future__ import annotations

import copy
from typing import Any

from pocketkube.api.errors import FieldError
from pocketkube.api.resources import ResourceInfo

Obj = dict[str, Any]

# Kinds whose objects carry metadata.generation (bumped on spec changes).
_GENERATION_GROUPS = frozenset({"apps", "batch", "policy", "networking.k8s.io", "apiextensions.k8s.io"})
_GENERATION_KINDS: frozenset[tuple[str, str]] = frozenset()


class Strategy:
    """Behaviour shared by all kinds; subclasses override what differs."""

    # Return the object (not a Status) from DELETE (kube: ReturnDeletedObject).
    return_deleted_object = False
    # Reject updates without metadata.resourceVersion (kube: AllowUnconditionalUpdate false).
    allow_unconditional_update = True

    def __init__(self, info: ResourceInfo) -> None:
        self.info = info
        self.has_status = info.subresource("status") is not None or (info.custom and self._custom_status)
        self.keeps_generation = info.custom or info.group in _GENERATION_GROUPS or (
            (info.group, info.kind) in _GENERATION_KINDS)

    _custom_status = False

    # ---- defaults and validation -----------------------------------------------------------
    def default(self, obj: Obj) -> None:
        from pocketkube.api import defaults

        defaults.apply_defaults(self.info.group, self.info.version, self.info.kind, obj)

    def validate(self, obj: Obj) -> list[FieldError]:
        from pocketkube.api import validation

        return validation.validate(self.info.group, self.info.version, self.info.kind, obj, None,
                                   namespaced=self.info.namespaced)

    def validate_update(self, new: Obj, old: Obj) -> list[FieldError]:
        from pocketkube.api import validation

        return validation.validate(self.info.group, self.info.version, self.info.kind, new, old,
                                   namespaced=self.info.namespaced)

    # ---- create / update -------------------------------------------------------------------
    def prepare_for_create(self, obj: Obj) -> None:
        if self.has_status:
            obj.pop("status", None)
        if self.keeps_generation:
            obj["metadata"]["generation"] = 1
        else:
            obj["metadata"].pop("generation", None)

    def prepare_for_update(self, new: Obj, old: Obj) -> None:
        if self.has_status:
            if "status" in old:
                new["status"] = copy.deepcopy(old["status"])
            else:
                new.pop("status", None)
        if self.keeps_generation:
            gen = int(old.get("metadata", {}).get("generation") or 1)
            if _spec_changed(new, old):
                gen += 1
            new["metadata"]["generation"] = gen
        else:
            new["metadata"].pop("generation", None)

    def prepare_for_status_update(self, new: Obj, old: Obj) -> Obj:
        """A write to /status: everything but status (and a few metadata fields) comes from old."""
        out = copy.deepcopy(old)
        if "status" in new:
            out["status"] = new["status"]
        else:
            out.pop("status", None)
        md_new = new.get("metadata") or {}
        out["metadata"]["resourceVersion"] = md_new.get("resourceVersion", "")
        if "managedFields" in md_new:
            out["metadata"]["managedFields"] = md_new["managedFields"]
        return out

    def validate_status_update(self, new: Obj, old: Obj) -> list[FieldError]:
        return []

    # ---- delete ----------------------------------------------------------------------------
    def graceful_delete_seconds(self, obj: Obj, requested: int | None) -> int:
        """Seconds the deletion should wait (0 = delete now); only pods wait."""
        return 0

    def delete_pending(self, obj: Obj) -> bool:
        """Whether a delete must wait for something other than metadata.finalizers (namespaces)."""
        return False

    def on_delete_pending(self, obj: Obj) -> None:
        """Adjust an object whose deletion has started but not finished (namespace → Terminating)."""


def _spec_changed(new: Obj, old: Obj) -> bool:
    skip = ("metadata", "status")
    keys = (set(new) | set(old)) - set(skip)
    return any(new.get(k) != old.get(k) for k in keys)
