"""Namespace strategy: Active on create; deletion marks it Terminating until its finalizers clear.

`spec.finalizers` (["kubernetes"]) is changed only through the /finalize subresource, by the
namespace controller once the namespace is empty; then the object goes away
(kubernetes pkg/registry/core/namespace/storage/storage.go).
"""

from __future__ import annotations

import copy
from typing import Any

from pocketkube.apiserver.registry.strategy import Strategy

Obj = dict[str, Any]


class NamespaceStrategy(Strategy):
    return_deleted_object = True

    def prepare_for_create(self, obj: Obj) -> None:
        super().prepare_for_create(obj)
        obj["status"] = {"phase": "Active"}
        spec = obj.setdefault("spec", {})
        if not spec.get("finalizers"):
            spec["finalizers"] = ["kubernetes"]
        labels = obj["metadata"].setdefault("labels", {})
        labels["kubernetes.io/metadata.name"] = obj["metadata"].get("name", "")

    def prepare_for_update(self, new: Obj, old: Obj) -> None:
        super().prepare_for_update(new, old)
        new["spec"] = copy.deepcopy(old.get("spec") or {})
        labels = new["metadata"].setdefault("labels", {})
        labels["kubernetes.io/metadata.name"] = new["metadata"].get("name", "")

    def prepare_for_finalize(self, new: Obj, old: Obj) -> Obj:
        out = copy.deepcopy(old)
        out.setdefault("spec", {})["finalizers"] = list((new.get("spec") or {}).get("finalizers") or [])
        out["metadata"]["resourceVersion"] = (new.get("metadata") or {}).get("resourceVersion", "")
        return out

    def delete_pending(self, obj: Obj) -> bool:
        return bool((obj.get("spec") or {}).get("finalizers"))

    def on_delete_pending(self, obj: Obj) -> None:
        obj.setdefault("status", {})["phase"] = "Terminating"
