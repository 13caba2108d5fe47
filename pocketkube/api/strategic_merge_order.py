"""List helpers for strategic merge patch: element identity, ordering and `$setElementOrder` checks.

Split out of api/strategic_merge.py. Identity follows Go's `==` on decoded JSON (1 == 1.0, but
true != 1); ordering is upstream's normalizeElementOrder/mergeSortedSlice: `$setElementOrder` >
order in the patch > order in the live object.
"""

from __future__ import annotations

from typing import Any

import orjson

from pocketkube.api.errors import BadRequest

DIRECTIVE = "$patch"


class StrategicMergePatchError(BadRequest):
    """A malformed strategic merge patch (400, as kube-apiserver answers)."""


def bad(message: str) -> StrategicMergePatchError:
    return StrategicMergePatchError(message)


def dumps(value: Any) -> str:
    return orjson.dumps(value, option=orjson.OPT_SORT_KEYS).decode()


def identity_of_value(value: Any) -> tuple[str, Any]:
    """A hashable identity with Go's equality: 1 == 1.0, but True != 1 and "1" != 1."""
    if isinstance(value, bool):
        return ("b", value)
    if isinstance(value, int | float):
        return ("n", value)
    if isinstance(value, str):
        return ("s", value)
    if value is None:
        return ("z", None)
    return ("j", dumps(value))


def dedupe(items: list[Any]) -> list[Any]:
    seen: set[tuple[str, Any]] = set()
    out = []
    for item in items:
        h = identity_of_value(item)
        if h not in seen:
            seen.add(h)
            out.append(item)
    return out


def merge_key_of(item: Any, merge_key: str) -> tuple[str, Any]:
    if not isinstance(item, dict):
        raise bad(f"expected a map in a list merged by {merge_key!r}, got {dumps(item)}")
    if merge_key not in item:
        raise bad(f"map: {dumps(item)} does not contain declared merge key: {merge_key}")
    return identity_of_value(item[merge_key])


def identity(item: Any, merge_key: str) -> tuple[str, Any]:
    return merge_key_of(item, merge_key) if merge_key else identity_of_value(item)


def partition(items: list[Any], by: list[Any], merge_key: str) -> tuple[list[Any], list[Any]]:
    """Split `items` into those whose identity appears in `by` and the rest."""
    present = {identity(b, merge_key) for b in by}
    inside = [i for i in items if identity(i, merge_key) in present]
    outside = [i for i in items if identity(i, merge_key) not in present]
    return inside, outside


def normalize_order(
    patch_items: list[Any], server_only: list[Any], patch_order: list[Any], server_order: list[Any], merge_key: str
) -> list[Any]:
    """normalizeElementOrder: sort each side by its own order, then interleave by the server order."""
    patch_items = sort_by(patch_items, patch_order, merge_key)
    server_only = sort_by(server_only, server_order, merge_key)
    position = positions(server_order, merge_key)
    out: list[Any] = []
    i = j = 0
    while i < len(server_only) or j < len(patch_items):
        if i >= len(server_only):
            out.append(patch_items[j])
            j += 1
        elif j >= len(patch_items):
            out.append(server_only[i])
            i += 1
        else:
            li = position.get(identity(server_only[i], merge_key))
            ri = position.get(identity(patch_items[j], merge_key))
            if li is not None and ri is not None and li < ri:
                out.append(server_only[i])
                i += 1
            else:
                out.append(patch_items[j])
                j += 1
    return out


def positions(order: list[Any], merge_key: str) -> dict[tuple[str, Any], int]:
    position: dict[tuple[str, Any], int] = {}
    for n, item in enumerate(order):
        if merge_key and not (isinstance(item, dict) and merge_key in item):
            continue
        position.setdefault(identity(item, merge_key), n)
    return position


def sort_by(items: list[Any], order: list[Any], merge_key: str) -> list[Any]:
    position = positions(order, merge_key)
    known = [i for i in items if identity(i, merge_key) in position]
    rest = [i for i in items if identity(i, merge_key) not in position]
    known.sort(key=lambda i: position[identity(i, merge_key)])
    return known + rest


def validate_set_order(patch_list: list[Any], order: list[Any], merge_key: str) -> None:
    """Every non-directive element of the patch list appears in the order list, in the same order."""
    if not patch_list or not order:
        return
    if merge_key:
        for item in order:
            merge_key_of(item, merge_key)
    elements = [p for p in patch_list if not (isinstance(p, dict) and DIRECTIVE in p)]
    p = s = 0
    while p < len(elements) and s < len(order):
        if identity(elements[p], merge_key) == identity(order[s], merge_key):
            p += 1
        s += 1
    if p < len(elements):
        raise bad(
            f"The order in patch list: {dumps(patch_list)} doesn't match $setElementOrder list: {dumps(order)}"
        )
