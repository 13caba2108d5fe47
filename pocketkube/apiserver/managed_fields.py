"""Record who changed which fields (metadata.managedFields) on every non-apply write.

Server-side apply computes managedFields itself (api/apply.py); creates, updates and patches go
through this hook so their managers appear as kube-apiserver records them (operation Update).
"""

from __future__ import annotations

from typing import Any

from pocketkube.api import meta, schema
from pocketkube.api.resources import ResourceInfo
from pocketkube.apiserver.registry.store import ManagedFieldsHook

Obj = dict[str, Any]


def managed_fields_hook(info: ResourceInfo) -> ManagedFieldsHook | None:
    sch = None if info.custom else schema.definition_for(info.group, info.version, info.kind)
    has_status = info.subresource("status") is not None

    def hook(old: Obj | None, new: Obj, manager: str, operation: str, subresource: str) -> Obj:
        from pocketkube.api.managed_fields import update_managed_fields

        reset = ("status",) if not subresource and has_status else ()
        result: Obj = update_managed_fields(old, new, manager=manager, operation=operation, schema=sch,
                                            now=meta.now_rfc3339(), subresource=subresource, reset_fields=reset)
        return result

    return hook
