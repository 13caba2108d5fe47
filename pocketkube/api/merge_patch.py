"""RFC 7386 JSON merge patch (`application/merge-patch+json`).

What `kubectl label`, `annotate` and `scale` send, and what kube-apiserver applies to custom
resources instead of a strategic merge patch. A null deletes a key, objects merge recursively,
anything else (lists included) replaces the target wholesale. Inputs are never mutated: the result
shares no containers with either argument.
"""

from __future__ import annotations

import copy
from typing import Any


def apply_merge_patch(target: Any, patch: Any) -> Any:
    """Return `target` with `patch` merged in (RFC 7386 section 2, MergePatch)."""
    if not isinstance(patch, dict):
        return copy.deepcopy(patch)
    result = copy.deepcopy(target) if isinstance(target, dict) else {}
    _merge_into(result, patch)
    return result


def _merge_into(target: dict[str, Any], patch: dict[str, Any]) -> None:
    for key, value in patch.items():
        if value is None:
            target.pop(key, None)
        elif isinstance(value, dict):
            current = target.get(key)
            if not isinstance(current, dict):
                current = {}
                target[key] = current
            _merge_into(current, value)
        else:
            target[key] = copy.deepcopy(value)


def create_merge_patch(original: Any, modified: Any) -> Any:
    """The smallest merge patch turning `original` into `modified` (inverse of apply_merge_patch)."""
    if not isinstance(original, dict) or not isinstance(modified, dict):
        return copy.deepcopy(modified)
    patch: dict[str, Any] = {}
    for key in original:
        if key not in modified:
            patch[key] = None
    for key, value in modified.items():
        if key not in original:
            patch[key] = _without_nulls(value)
        elif isinstance(value, dict) and isinstance(original[key], dict):
            sub = create_merge_patch(original[key], value)
            if sub:
                patch[key] = sub
        elif value != original[key] or type(value) is not type(original[key]):
            patch[key] = copy.deepcopy(value)
    return patch


def _without_nulls(value: Any) -> Any:
    # A null inside an added object would read as "delete" when the patch is applied.
    if isinstance(value, dict):
        return {k: _without_nulls(v) for k, v in value.items() if v is not None}
    return copy.deepcopy(value)
