"""Kubernetes strategic merge patch (`application/strategic-merge-patch+json`).

`kubectl apply` (client-side), `kubectl edit` and `rollout restart` send these. The rules follow
k8s.io/apimachinery/pkg/util/strategicpatch (patch.go, `mergeMap` with MergeParallelList and
IgnoreUnmatchedNulls, as kube-apiserver calls it), driven by the schema extensions
`x-kubernetes-patch-strategy` and `x-kubernetes-patch-merge-key` from api/schema.py:

- maps merge recursively; a null deletes a key;
- a list whose strategy is `merge` merges by its merge key (containers by name, ports by
  containerPort, ...), or as a set union for primitive lists (finalizers); other lists are replaced;
- directives: `$patch: replace|delete` on maps, `{"$patch": "delete", <key>: v}` and
  `{"$patch": "replace"}` as list elements, `$deleteFromPrimitiveList/<f>`, `$setElementOrder/<f>`
  and `$retainKeys`. Element order: `$setElementOrder` > order in the patch > order in the object.

Custom resources have no schema here; kube-apiserver refuses SMP for them with 415, see
`supports_strategic_merge_patch`. Given no schema this module falls back to a JSON merge patch.

Differences from upstream, on purpose: values the object did not have are taken from the patch with
nulls and directive keys dropped (upstream keeps them and lets the typed decode drop them); fields
missing from the schema merge like plain maps and replace like plain lists instead of failing.
"""

from __future__ import annotations

import copy
from typing import Any

from pocketkube.api import schema as k8s_schema
from pocketkube.api import strategic_merge_order as lists
from pocketkube.api.merge_patch import apply_merge_patch
from pocketkube.api.strategic_merge_order import StrategicMergePatchError

Schema = dict[str, Any]

DIRECTIVE = "$patch"
RETAIN_KEYS = "$retainKeys"
SET_ELEMENT_ORDER = "$setElementOrder"
DELETE_FROM_PRIMITIVE_LIST = "$deleteFromPrimitiveList"


def supports_strategic_merge_patch(schema: Schema | None) -> bool:
    """Whether SMP applies to a kind: built-ins with a schema yes, custom resources (None) no (415)."""
    return schema is not None


def apply_strategic_merge_patch(original: dict[str, Any], patch: dict[str, Any], schema: Schema | None) -> dict[str, Any]:
    """Return `original` with `patch` applied; neither argument is mutated."""
    if not isinstance(patch, dict):
        raise StrategicMergePatchError("strategic merge patch must be a JSON object")
    if schema is None:
        merged = apply_merge_patch(original, patch)
        assert isinstance(merged, dict)
        return merged
    try:
        return _merge_map(copy.deepcopy(original), copy.deepcopy(patch), schema)
    except StrategicMergePatchError:
        raise
    except (TypeError, ValueError, AttributeError, RecursionError) as e:
        raise StrategicMergePatchError(f"invalid strategic merge patch: {e}") from e


def _bad(message: str) -> StrategicMergePatchError:
    return StrategicMergePatchError(message)


def _kind(value: Any) -> str:
    if isinstance(value, dict):
        return "map"
    if isinstance(value, list):
        return "list"
    if isinstance(value, bool):
        return "bool"
    if isinstance(value, int | float):
        return "number"
    if isinstance(value, str):
        return "string"
    return "null"


# --- schema lookups -------------------------------------------------------------------------


def _field_meta(schema: Schema | None, key: str) -> tuple[Schema | None, str, str]:
    """(field schema, patch strategy without retainKeys, merge key) of `key` in an object schema."""
    if schema is None:
        return None, "", ""
    props = k8s_schema.properties(schema)
    if props:
        raw = props.get(key)
        sub = k8s_schema.resolve(raw) if isinstance(raw, dict) else None
    else:
        sub = k8s_schema.additional_properties(schema)
    if sub is None:
        return None, "", ""
    strategy = _strategy(str(sub.get("x-kubernetes-patch-strategy", "")))
    merge_key = str(sub.get("x-kubernetes-patch-merge-key", ""))
    return sub, strategy, merge_key


def _strategy(declared: str) -> str:
    # Mirrors extractRetainKeysPatchStrategy: "retainKeys" may accompany one real strategy.
    parts = [p for p in declared.split(",") if p]
    rest = [p for p in parts if p != "retainKeys"]
    if len(rest) > 1 or len(parts) > 2:
        raise _bad(f"unexpected patch strategy: {declared}")
    return rest[0] if rest else ""


def _items(schema: Schema | None) -> Schema | None:
    return k8s_schema.items_schema(schema) if schema is not None else None


# --- maps -----------------------------------------------------------------------------------


def _merge_map(original: dict[str, Any], patch: dict[str, Any], schema: Schema | None) -> dict[str, Any]:
    """Merge `patch` into `original` (a private copy, mutated) and return it."""
    if DIRECTIVE in patch:
        directive = patch[DIRECTIVE]
        if directive == "replace":
            replaced: dict[str, Any] = _clean({k: v for k, v in patch.items() if k != DIRECTIVE})
            return replaced
        if directive == "delete":
            return {}
        raise _bad(f"unknown patch type: {directive} in map: {lists.dumps(patch)}")
    _apply_retain_keys(original, patch)
    handled = _merge_ordered_lists(original, patch, schema)
    for key, patch_value in patch.items():
        if key in handled or key == RETAIN_KEYS:
            continue
        is_delete_list = key.startswith(DELETE_FROM_PRIMITIVE_LIST)
        if is_delete_list:
            key = _extract_key(key, DELETE_FROM_PRIMITIVE_LIST)
        if patch_value is None:
            original.pop(key, None)
            continue
        if key not in original or _kind(original[key]) != _kind(patch_value):
            if not is_delete_list:
                original[key] = _clean(patch_value)
            continue
        sub, strategy, merge_key = _field_meta(schema, key)
        current = original[key]
        if isinstance(current, dict):
            if strategy == "replace":
                original[key] = _clean(patch_value)
            else:
                original[key] = _merge_map(current, patch_value, sub)
        elif isinstance(current, list):
            if strategy == "merge" or is_delete_list:
                original[key] = _merge_list(current, patch_value, _items(sub), merge_key, is_delete_list)
            else:
                original[key] = _clean(patch_value)
        else:
            original[key] = patch_value
    return original


def _extract_key(key: str, prefix: str) -> str:
    head, sep, rest = key.partition("/")
    if not sep or head != prefix or not rest:
        if prefix == DELETE_FROM_PRIMITIVE_LIST:
            raise _bad("invalid patch format of primitive list")
        raise _bad("invalid patch format of setElementOrder list")
    return rest


def _apply_retain_keys(original: dict[str, Any], patch: dict[str, Any]) -> None:
    if RETAIN_KEYS not in patch:
        return
    retain = patch[RETAIN_KEYS]
    if not isinstance(retain, list) or not all(isinstance(k, str) for k in retain):
        raise _bad("invalid patch format of retainKeys")
    keep = set(retain)
    for key, value in patch.items():
        if key == RETAIN_KEYS or value is None or key.startswith(("$deleteFromPrimitiveList/", "$setElementOrder/")):
            continue
        if key not in keep:
            raise _bad(f"invalid patch format of retainKeys: {key!r} is not in $retainKeys")
    for key in [k for k in original if k not in keep]:
        del original[key]


def _is_directive(key: str) -> bool:
    return key in (DIRECTIVE, RETAIN_KEYS) or key.startswith((f"{SET_ELEMENT_ORDER}/", f"{DELETE_FROM_PRIMITIVE_LIST}/"))


def _clean(value: Any) -> Any:
    """A patch value taken as-is: nulls and directive keys dropped, deleted list elements removed."""
    if isinstance(value, dict):
        if value.get(DIRECTIVE) == "delete":
            return {}
        return {k: _clean(v) for k, v in value.items() if v is not None and not _is_directive(k)}
    if isinstance(value, list):
        return [
            _clean(v)
            for v in value
            if not (isinstance(v, dict) and (v.get(DIRECTIVE) == "delete" or v == {DIRECTIVE: "replace"}))
        ]
    return value


# --- lists ----------------------------------------------------------------------------------


def _element_kind(*groups: list[Any]) -> str:
    kind = ""
    for items in groups:
        for item in items:
            k = _kind(item)
            if k == "list":
                raise _bad("lists of lists are not supported")
            if kind and k != kind:
                raise _bad(f"list element types are not identical: {lists.dumps(list(groups))}")
            kind = k
    return kind


def _merge_list(
    original: list[Any], patch: list[Any], item_schema: Schema | None, merge_key: str, is_delete_list: bool
) -> list[Any]:
    if not original and not patch:
        return original
    kind = _element_kind(original, patch)
    if kind != "map":
        if is_delete_list:
            gone = {lists.identity_of_value(v) for v in patch}
            return [v for v in original if lists.identity_of_value(v) not in gone]
        merged = lists.dedupe([*original, *patch])
        mk = ""
    else:
        if not merge_key:
            raise _bad("cannot merge lists without merge key")
        original, patch = _apply_list_directives(original, patch, merge_key)
        merged = _merge_by_key(original, patch, merge_key, item_schema)
        mk = merge_key
    patch_items, server_only = lists.partition(merged, patch, mk)
    return lists.normalize_order(patch_items, server_only, patch, original, mk)


def _apply_list_directives(
    original: list[Any], patch: list[Any], merge_key: str
) -> tuple[list[Any], list[Any]]:
    """Handle `$patch` elements: delete by merge key, or replace the whole list (mergeSliceWithSpecialElements)."""
    plain: list[Any] = []
    replace = False
    for item in patch:
        if DIRECTIVE not in item:
            plain.append(item)
            continue
        directive = item[DIRECTIVE]
        if directive == "delete":
            gone = lists.merge_key_of(item, merge_key)
            original = [o for o in original if not (merge_key in o and lists.identity_of_value(o[merge_key]) == gone)]
        elif directive == "replace":
            replace = True
        elif directive == "merge":
            raise _bad("merging lists cannot yet be specified in the patch")
        else:
            raise _bad(f"unknown patch type: {directive} in map: {lists.dumps(item)}")
    if replace:
        return [_clean(p) for p in plain], []
    return original, plain


def _merge_by_key(original: list[Any], patch: list[Any], merge_key: str, item_schema: Schema | None) -> list[Any]:
    merged = list(original)
    for item in patch:
        key = lists.merge_key_of(item, merge_key)
        for i, existing in enumerate(merged):
            if merge_key in existing and lists.identity_of_value(existing[merge_key]) == key:
                merged[i] = _merge_map(existing, item, item_schema)
                break
        else:
            merged.append(_clean(item))
    return merged


# --- $setElementOrder -----------------------------------------------------------------------


def _merge_ordered_lists(original: dict[str, Any], patch: dict[str, Any], schema: Schema | None) -> set[str]:
    """Process every `$setElementOrder/<f>` with its list `<f>`; return the patch keys consumed."""
    handled: set[str] = set()
    for key, order in patch.items():
        if not key.startswith(SET_ELEMENT_ORDER):
            continue
        handled.add(key)
        field = _extract_key(key, SET_ELEMENT_ORDER)
        if not isinstance(order, list):
            raise _bad("invalid patch format of setElementOrder list")
        found_original, found_patch = field in original, field in patch
        current, change = original.get(field), patch.get(field)
        if found_original and not isinstance(current, list):
            raise _bad(f"{field}: expected a list in the object for {key}")
        if found_patch and not isinstance(change, list):
            raise _bad(f"{field}: expected a list in the patch for {key}")
        sub, strategy, merge_key = _field_meta(schema, field)
        lists.validate_set_order(change or [], order, merge_key)
        merged: Any
        if found_original and found_patch:
            assert isinstance(current, list) and isinstance(change, list)
            if strategy == "merge":
                merged = _merge_list(current, change, _items(sub), merge_key, False)
            else:
                merged = _clean(change)
        elif found_patch:
            merged = _clean(change)
        elif found_original:
            merged = current
        else:
            continue
        handled.add(field)
        assert isinstance(merged, list)
        if not merged:
            original[field] = merged
            continue
        kind = _element_kind(merged)
        mk = merge_key if kind == "map" else ""
        if kind == "map" and not mk:
            original[field] = merged
            continue
        patch_items, server_only = lists.partition(merged, order, mk)
        original[field] = lists.normalize_order(patch_items, server_only, order, current or [], mk)
    return handled

