"""Server-side apply (`application/apply-patch+yaml`, `kubectl apply --server-side`).

Follows sigs.k8s.io/structured-merge-diff's Updater.Apply as kube-apiserver runs it:

1. merge the applied configuration into the live object: maps key by key, associative lists
   (list-type map) by their keys, sets by value, atomic lists and maps replaced;
2. the applier now owns exactly the fields it applied (field_paths.members of the configuration);
3. prune: fields the applier owned last time, no longer applies and no other manager owns are
   removed (a struct loses its whole subtree when nobody owns anything under it);
4. conflicts: fields this apply changes or adds that another manager owns are a 409 unless
   `force`, which moves them to the applier; fields removed leave every manager.

Also as kube-apiserver's fieldmanager chain does: an object without managedFields first has its
fields recorded for "before-first-apply"; for the manager "kubectl", conflicts on fields whose live
value still equals the client-side `last-applied-configuration` are forced (migration from
`kubectl apply` to `kubectl apply --server-side`), and that annotation, when present, is rewritten
to the applied configuration.

`reset_fields` names top-level fields (e.g. `status` for the main resource) that an apply neither
sets nor owns, like upstream's ResetFieldsStrategy.

Not covered: version conversion of managed field sets, nested reset fields, the Update-manager
cap, list items without their key fields (treated as having the key absent), duplicate items in
associative lists (the first wins), and `i:` (positional) lists, which are handled as atomic.
"""

from __future__ import annotations

import copy
import json
from collections.abc import Collection
from typing import Any

from pocketkube.api import field_paths
from pocketkube.api.errors import BadRequest, Conflict
from pocketkube.api.field_paths import FieldSet, Path
from pocketkube.api.managed_fields import (
    ManagerEntry,
    decode_managed_fields,
    record_update,
    with_managed_fields,
    without_managed_fields,
)

Schema = dict[str, Any]

LAST_APPLIED = "kubectl.kubernetes.io/last-applied-configuration"


class ApplyConflict(Conflict):
    """409 with one FieldManagerConflict cause per contested field (errors.NewApplyConflict)."""

    def __init__(self, conflicts: list[tuple[ManagerEntry, Path]]) -> None:
        causes = [
            {"reason": "FieldManagerConflict", "message": f"conflict with {_describe(m)}", "field": field_paths.path_string(p)}
            for m, p in conflicts
        ]
        super().__init__(_conflict_message(conflicts), details={"causes": causes})
        self.conflicts = conflicts


def _describe(entry: ManagerEntry) -> str:
    """printManager: `"kubectl"` for appliers, `"x" using apps/v1` for updaters."""
    text = f'"{entry.manager}"'
    if entry.subresource:
        text += f' with subresource "{entry.subresource}"'
    if entry.operation == "Update":
        text += f" using {entry.api_version}"
    return text


def _conflict_message(conflicts: list[tuple[ManagerEntry, Path]]) -> str:
    if len(conflicts) == 1:
        entry, path = conflicts[0]
        return f"Apply failed with 1 conflict: conflict with {_describe(entry)}: {field_paths.path_string(path)}"
    by_manager: dict[str, list[Path]] = {}
    for entry, path in conflicts:
        by_manager.setdefault(_describe(entry), []).append(path)
    lines = []
    for described in sorted(by_manager):
        lines.append(f"conflicts with {described}:")
        lines.extend(f"- {field_paths.path_string(p)}" for p in by_manager[described])
    return f"Apply failed with {len(conflicts)} conflicts: " + "\n".join(lines)


def apply(
    live: dict[str, Any] | None,
    applied: dict[str, Any],
    *,
    manager: str,
    force: bool,
    schema: Schema | None,
    now: str,
    subresource: str = "",
    reset_fields: Collection[str] = (),
) -> dict[str, Any]:
    """The object after `manager` applies `applied` to `live` (None: the object is being created)."""
    if not isinstance(applied, dict):
        raise BadRequest("the applied configuration must be an object")
    if not manager:
        raise BadRequest("fieldManager is required for apply requests")
    meta = applied.get("metadata")
    if meta is not None and not isinstance(meta, dict):
        raise BadRequest("metadata must be an object")
    if isinstance(meta, dict) and meta.get("managedFields") is not None:
        raise BadRequest("metadata.managedFields must be nil")
    managers = decode_managed_fields(live)
    live_obj = without_managed_fields(live)
    config = copy.deepcopy(applied)
    for name in reset_fields:
        config.pop(name, None)  # the live value stays and nobody owns it through this apply
    if live is not None and not managers:
        before = ManagerEntry("before-first-apply", "Update", str(config.get("apiVersion", "")), now, subresource)
        before.fields = field_paths.field_set(live_obj, schema, reset_fields=reset_fields)
        if before.fields:
            managers[before.key] = before

    merged = merge(live_obj, config, schema)
    me = ManagerEntry(manager, "Apply", str(config.get("apiVersion", "")), now, subresource)
    last = managers.get(me.key)
    previous_time = last.time if last is not None else None
    me.fields = field_paths.field_set(config, schema, reset_fields=reset_fields)
    managers[me.key] = me

    if last is not None and last.fields:
        owned: FieldSet = set()
        for entry in managers.values():
            owned |= entry.fields
        # Never prune what ownership tracking ignores (metadata, name, apiVersion...).
        doomed = field_paths.closure(last.fields) - field_paths.closure(owned) - field_paths.STRIPPED
        merged = remove_paths(merged, {p for p in doomed if not _is_key_field(p)}, schema)

    added, modified, removed = field_paths.compare(
        field_paths.members(live_obj, schema, reset_fields=reset_fields),
        field_paths.members(merged, schema, reset_fields=reset_fields),
    )
    contested = added | modified
    conflicts = [
        (entry, path)
        for key, entry in sorted(managers.items())
        if key != me.key
        for path in sorted(entry.fields & contested)
    ]
    if conflicts and not force:
        allowed = _allowed_by_last_applied(live_obj, config, schema) if manager == "kubectl" else set()
        remaining = [(entry, path) for entry, path in conflicts if path not in allowed]
        if remaining:
            raise ApplyConflict(remaining)
    record_update(managers, added, modified, removed, me=me)
    if merged == live_obj and previous_time is not None:
        me.time = previous_time
    if not me.fields:
        del managers[me.key]
    if manager == "kubectl":
        _sync_last_applied(merged, config)
    return with_managed_fields(merged, managers)


def _is_key_field(path: Path) -> bool:
    """Whether `path` is a key field of a list item (`k:{"name":"c"}`, `f:name`): it goes with the item."""
    if len(path) < 2 or not path[-2].startswith("k:") or not path[-1].startswith("f:"):
        return False
    try:
        keys = json.loads(path[-2][2:])
    except ValueError:
        return False
    return isinstance(keys, dict) and path[-1][2:] in keys


def _last_applied(obj: dict[str, Any]) -> str | None:
    annotations = (obj.get("metadata") or {}).get("annotations")
    value = annotations.get(LAST_APPLIED) if isinstance(annotations, dict) else None
    return value if isinstance(value, str) and value else None


def _allowed_by_last_applied(live: dict[str, Any], config: dict[str, Any], schema: Schema | None) -> FieldSet:
    """lastAppliedManager: fields client-side apply last set and that still hold that value."""
    text = _last_applied(live)
    if text is None:
        return set()
    try:
        last = json.loads(text)
    except ValueError:
        return set()
    if not isinstance(last, dict) or last.get("apiVersion") != config.get("apiVersion"):
        return set()
    last_members = field_paths.members(last, schema)
    added, modified, removed = field_paths.compare(last_members, field_paths.members(live, schema))
    return set(last_members) - modified - added - removed


def _sync_last_applied(obj: dict[str, Any], config: dict[str, Any]) -> None:
    """lastAppliedUpdater: keep an existing last-applied annotation equal to what kubectl applied."""
    if _last_applied(obj) is None:
        return
    snapshot = copy.deepcopy(config)
    annotations = (snapshot.get("metadata") or {}).get("annotations")
    if isinstance(annotations, dict):
        annotations.pop(LAST_APPLIED, None)
        if not annotations:
            del snapshot["metadata"]["annotations"]
    obj["metadata"]["annotations"][LAST_APPLIED] = json.dumps(snapshot, separators=(",", ":"))


# --- merge ----------------------------------------------------------------------------------


def merge(live: Any, config: Any, schema: Schema | None) -> Any:
    """SMD TypedValue.Merge: `config` wins, granular maps and keyed lists merge item by item."""
    if isinstance(live, dict) and isinstance(config, dict) and not field_paths.is_atomic_map(schema):
        out = dict(live)
        for key, value in config.items():
            sub, _declared = field_paths.child_schema(schema, key)
            if value is None:
                out.pop(key, None)
            elif key in out:
                out[key] = merge(out[key], value, sub)
            else:
                out[key] = _without_nulls(value)
        return out
    if isinstance(live, list) and isinstance(config, list):
        kind, _keys, item_schema, live_elements = field_paths.list_elements(schema, live)
        _kind, _keys, _items, config_elements = field_paths.list_elements(schema, config)
        if kind != "atomic" and live_elements is not None and config_elements is not None:
            return _merge_items(
                list(zip(live_elements, live, strict=True)),
                list(zip(config_elements, config, strict=True)),
                item_schema,
            )
    return _without_nulls(config)


def _without_nulls(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _without_nulls(v) for k, v in value.items() if v is not None}
    if isinstance(value, list):
        return [_without_nulls(v) for v in value]
    return value


def _merge_items(lhs: list[tuple[str, Any]], rhs: list[tuple[str, Any]], item_schema: Schema | None) -> list[Any]:
    """mergingWalker.visitListItems: config order for shared and new items, live-only items in place."""
    observed_lhs: dict[str, Any] = {}
    for element, item in lhs:
        observed_lhs.setdefault(element, item)
    observed_rhs: dict[str, Any] = {}
    for element, item in rhs:
        observed_rhs.setdefault(element, item)
    shared = [element for element, _ in rhs if element in observed_lhs]
    next_shared = shared.pop(0) if shared else None
    merged_rhs: set[str] = set()
    out: list[Any] = []
    li = ri = 0
    while li < len(lhs) or ri < len(rhs):
        if li < len(lhs) and ri < len(rhs):
            element = lhs[li][0]
            if element == rhs[ri][0]:
                if element not in merged_rhs:
                    merged_rhs.add(element)
                    out.append(merge(observed_lhs[element], observed_rhs[element], item_schema))
                li += 1
                ri += 1
                next_shared = shared.pop(0) if shared else None
                continue
            if element in observed_rhs and next_shared is not None and next_shared != element:
                li += 1
                continue
        if li < len(lhs):
            element, item = lhs[li]
            if element not in observed_rhs:
                out.append(item)
                li += 1
                continue
            if element in merged_rhs:
                li += 1
                continue
        if ri < len(rhs):
            element = rhs[ri][0]
            if element not in merged_rhs:
                merged_rhs.add(element)
                if element in observed_lhs:
                    out.append(merge(observed_lhs[element], observed_rhs[element], item_schema))
                else:
                    out.append(_without_nulls(observed_rhs[element]))
            ri += 1
            if next_shared is not None and next_shared == element:
                next_shared = shared.pop(0) if shared else None
    return out


# --- prune ----------------------------------------------------------------------------------


def remove_paths(obj: Any, paths: FieldSet, schema: Schema | None) -> Any:
    """`obj` without the subtrees at `paths` (SMD RemoveItems); `obj` itself is not mutated."""
    if not paths:
        return obj
    return _remove(obj, paths, schema, ())


def _remove(value: Any, paths: FieldSet, schema: Schema | None, at: Path) -> Any:
    if isinstance(value, dict):
        if field_paths.is_atomic_map(schema):
            return value
        out = {}
        for key, child in value.items():
            path = (*at, "f:" + key)
            if path in paths:
                continue
            sub, _declared = field_paths.child_schema(schema, key)
            out[key] = _remove(child, paths, schema=sub, at=path) if _has_prefix(paths, path) else child
        return out
    if isinstance(value, list):
        _kind, _keys, item_schema, elements = field_paths.list_elements(schema, value)
        if elements is None:
            return value
        kept = []
        for element, item in zip(elements, value, strict=True):
            path = (*at, element)
            if path in paths:
                continue
            kept.append(_remove(item, paths, item_schema, path) if _has_prefix(paths, path) else item)
        return kept
    return value


def _has_prefix(paths: FieldSet, prefix: Path) -> bool:
    n = len(prefix)
    return any(len(p) > n and p[:n] == prefix for p in paths)
