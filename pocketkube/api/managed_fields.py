"""metadata.managedFields: who owns which fields, and how non-apply writes change that.

Every write records its field manager the way kube-apiserver's fieldmanager does. An Update
(create, update, patch) takes every field it added or changed, from whoever held it, and fields it
removed leave every manager; its entry's time moves only when it took fields. Server-side apply
(api/apply.py) shares the entry codec below. Entries are keyed like upstream's manager identifier:
manager, operation, subresource, and apiVersion for Updates only.

Not covered: the cap of ten Update managers (upstream folds the oldest into "ancient-changes"),
resetting managedFields with `[{}]`, and version conversion of field sets (paths are taken as the
same in every version). Reset fields are top-level names only (`reset_fields=("status",)` for the
main resource); the registry strategy still restores their values.
"""

from __future__ import annotations

import copy
from collections.abc import Collection
from dataclasses import dataclass, field
from typing import Any

from pocketkube.api import field_paths
from pocketkube.api.field_paths import FieldSet

Schema = dict[str, Any]


@dataclass
class ManagerEntry:
    manager: str
    operation: str
    api_version: str
    time: str | None
    subresource: str = ""
    fields: FieldSet = field(default_factory=set)

    @property
    def key(self) -> tuple[str, str, str, str]:
        # Appliers keep one entry whatever apiVersion they use; updaters get one per version.
        version = "" if self.operation == "Apply" else self.api_version
        return (self.manager, self.operation, version, self.subresource)

    def encode(self) -> dict[str, Any]:
        entry: dict[str, Any] = {"manager": self.manager, "operation": self.operation, "apiVersion": self.api_version}
        if self.time is not None:
            entry["time"] = self.time
        entry["fieldsType"] = "FieldsV1"
        entry["fieldsV1"] = field_paths.encode_fields(self.fields)
        if self.subresource:
            entry["subresource"] = self.subresource
        return entry


Managers = dict[tuple[str, str, str, str], ManagerEntry]


def decode_managed_fields(obj: dict[str, Any] | None) -> Managers:
    """The entries of `obj`'s metadata.managedFields; malformed entries are skipped."""
    managers: Managers = {}
    raw = ((obj or {}).get("metadata") or {}).get("managedFields")
    if not isinstance(raw, list):
        return managers
    for item in raw:
        if not isinstance(item, dict) or not isinstance(item.get("manager", ""), str):
            continue
        if item.get("fieldsType", "FieldsV1") != "FieldsV1":
            continue
        try:
            fields = field_paths.decode_fields(item.get("fieldsV1") or {})
        except ValueError:
            continue
        entry = ManagerEntry(
            manager=item.get("manager", ""),
            operation=str(item.get("operation", "Update")),
            api_version=str(item.get("apiVersion", "")),
            time=item.get("time") if isinstance(item.get("time"), str) else None,
            subresource=str(item.get("subresource", "")),
            fields=fields,
        )
        if entry.key in managers:
            managers[entry.key].fields |= entry.fields
        else:
            managers[entry.key] = entry
    return managers


def encode_managed_fields(managers: Managers) -> list[dict[str, Any]]:
    """Entries sorted as upstream's sortEncodedManagedFields: operation, time, manager, version."""
    entries = [e for e in managers.values() if e.fields]
    entries.sort(key=lambda e: (e.operation, e.time or "", e.manager, e.api_version, e.subresource))
    return [e.encode() for e in entries]


def without_managed_fields(obj: dict[str, Any] | None) -> dict[str, Any]:
    """A deep copy of `obj` (or {}) without metadata.managedFields."""
    out = copy.deepcopy(obj) if obj else {}
    meta = out.get("metadata")
    if isinstance(meta, dict):
        meta.pop("managedFields", None)
    return out


def _shallow_without_managed_fields(obj: dict[str, Any] | None) -> dict[str, Any]:
    """`obj` (or {}) without metadata.managedFields: the top level and metadata are new dicts,
    every other value is shared with `obj` (only metadata is ever changed on the result)."""
    if not obj:
        return {}
    out = dict(obj)
    meta = out.get("metadata")
    if isinstance(meta, dict):
        out["metadata"] = {k: v for k, v in meta.items() if k != "managedFields"}
    return out


def with_managed_fields(obj: dict[str, Any], managers: Managers) -> dict[str, Any]:
    """`obj` (mutated and returned) carrying `managers` in metadata.managedFields."""
    meta = obj.setdefault("metadata", {})
    encoded = encode_managed_fields(managers)
    if encoded:
        meta["managedFields"] = encoded
    else:
        meta.pop("managedFields", None)
    return obj


def record_update(
    managers: Managers,
    added: FieldSet,
    modified: FieldSet,
    removed: FieldSet,
    *,
    me: ManagerEntry,
    steal: bool = True,
) -> None:
    """Apply one write's comparison to `managers` in place (SMD Updater.update, forced)."""
    taken = added | modified
    for key in list(managers):
        if key == me.key:
            continue
        entry = managers[key]
        if steal:
            entry.fields -= taken
        entry.fields -= removed
        if not entry.fields:
            del managers[key]


def update_managed_fields(
    old: dict[str, Any] | None,
    new: dict[str, Any],
    *,
    manager: str,
    operation: str = "Update",
    schema: Schema | None,
    now: str,
    subresource: str = "",
    reset_fields: Collection[str] = (),
) -> dict[str, Any]:
    """`new` (a new top level and metadata; other values shared) with managedFields recording a
    create/update/patch by `manager`. Neither `old` nor `new` is changed.

    Like kube-apiserver, managedFields sent in `new` are used when present (clients may edit them);
    otherwise the live object's are carried over, so clients that drop them lose nothing.
    """
    managers = decode_managed_fields(new)
    if not managers:
        managers = decode_managed_fields(old)
    old_obj, new_obj = _shallow_without_managed_fields(old), _shallow_without_managed_fields(new)
    new_members = field_paths.members(new_obj, schema, reset_fields=reset_fields)
    if old_obj:
        added, modified, removed = field_paths.compare(
            field_paths.members(old_obj, schema, reset_fields=reset_fields), new_members)
    else:  # a create: compare() against nothing would find every member added
        added, modified, removed = set(new_members), set(), set()
    me = ManagerEntry(manager, operation, str(new_obj.get("apiVersion", "")), now, subresource)
    record_update(managers, added, modified, removed, me=me)
    taken = (added | modified) - removed
    previous = managers.get(me.key)
    if previous is not None:
        previous.fields = (previous.fields | taken) - removed
        if taken:
            previous.time = now
        if not previous.fields:
            del managers[me.key]
    elif taken:
        me.fields = taken
        managers[me.key] = me
    return with_managed_fields(new_obj, managers)
