"""RFC 7386 merge patch: the RFC's appendix A table plus what kubectl label/annotate/scale send."""

from __future__ import annotations

import copy
from typing import Any

import pytest

from pocketkube.api.merge_patch import apply_merge_patch, create_merge_patch

CASES: list[tuple[str, Any, Any, Any]] = [
    # RFC 7386 appendix A
    ("replace value", {"a": "b"}, {"a": "c"}, {"a": "c"}),
    ("add key", {"a": "b"}, {"b": "c"}, {"a": "b", "b": "c"}),
    ("null deletes", {"a": "b"}, {"a": None}, {}),
    ("null deletes one", {"a": "b", "b": "c"}, {"a": None}, {"b": "c"}),
    ("list replaces", {"a": ["b"]}, {"a": "c"}, {"a": "c"}),
    ("value to list", {"a": "c"}, {"a": ["b"]}, {"a": ["b"]}),
    ("nested", {"a": {"b": "c"}}, {"a": {"b": "d", "c": None}}, {"a": {"b": "d"}}),
    ("list of maps replaced", {"a": [{"b": "c"}]}, {"a": [1]}, {"a": [1]}),
    ("array target", ["a", "b"], ["c", "d"], ["c", "d"]),
    ("object over array", {"a": "b"}, ["c"], ["c"]),
    ("null patch", {"a": "foo"}, None, None),
    ("string patch", {"a": "foo"}, "bar", "bar"),
    ("null value kept out", {"e": None}, {"a": 1}, {"e": None, "a": 1}),
    ("scalar target", [1, 2], {"a": "b", "c": None}, {"a": "b"}),
    ("new nested nulls dropped", {}, {"a": {"bb": {"ccc": None}}}, {"a": {"bb": {}}}),
    # kubectl
    (
        "kubectl label",
        {"metadata": {"name": "x", "labels": {"a": "1"}}},
        {"metadata": {"labels": {"b": "2"}}},
        {"metadata": {"name": "x", "labels": {"a": "1", "b": "2"}}},
    ),
    (
        "kubectl label a-",
        {"metadata": {"name": "x", "labels": {"a": "1"}}},
        {"metadata": {"labels": {"a": None}}},
        {"metadata": {"name": "x", "labels": {}}},
    ),
    (
        "kubectl scale",
        {"spec": {"replicas": 1, "selector": {"matchLabels": {"app": "w"}}}},
        {"spec": {"replicas": 3}},
        {"spec": {"replicas": 3, "selector": {"matchLabels": {"app": "w"}}}},
    ),
    (
        "CR list replaced wholesale",
        {"spec": {"items": [{"name": "a"}, {"name": "b"}]}},
        {"spec": {"items": [{"name": "c"}]}},
        {"spec": {"items": [{"name": "c"}]}},
    ),
]


@pytest.mark.parametrize(("target", "patch", "expected"), [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_apply_merge_patch(target: Any, patch: Any, expected: Any) -> None:
    target_before, patch_before = copy.deepcopy(target), copy.deepcopy(patch)
    assert apply_merge_patch(target, patch) == expected
    assert target == target_before and patch == patch_before


def test_result_shares_nothing_with_inputs() -> None:
    target = {"a": {"b": [1]}, "c": {"d": 1}}
    patch = {"e": {"f": [2]}}
    result = apply_merge_patch(target, patch)
    result["a"]["b"].append(3)
    result["e"]["f"].append(3)
    assert target == {"a": {"b": [1]}, "c": {"d": 1}}
    assert patch == {"e": {"f": [2]}}


ROUND_TRIPS: list[tuple[Any, Any]] = [
    ({"a": 1, "b": {"c": 2, "d": 3}}, {"a": 2, "b": {"c": 2}}),
    ({"a": [1, 2]}, {"a": [1, 2, 3], "x": {"y": 1}}),
    ({"a": {"b": 1}}, {"a": 1}),
    ({}, {"a": {"b": {}}}),
]


@pytest.mark.parametrize(("original", "modified"), ROUND_TRIPS)
def test_create_merge_patch_round_trips(original: Any, modified: Any) -> None:
    assert apply_merge_patch(original, create_merge_patch(original, modified)) == modified
