"""The disruption controller's arithmetic (kube's pkg/controller/disruption tests, in spirit)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from pocketkube.api import meta
from pocketkube.api.disruption import scaled_value
from pocketkube.controllers.disruption import budget_status, disrupted_pods, healthy_count, pdb_pods

NOW = datetime(2026, 11, 26, 12, 0, 0, tzinfo=UTC)


def pod(name: str, *, ready: bool = True, deleting: bool = False, labels: dict[str, str] | None = None,
        ns: str = "default") -> dict[str, Any]:
    md: dict[str, Any] = {"name": name, "namespace": ns, "labels": labels if labels is not None else {"app": "web"}}
    if deleting:
        md["deletionTimestamp"] = meta.format_time(NOW)
    return {"metadata": md, "status": {"phase": "Running",
                                       "conditions": [{"type": "Ready", "status": "True" if ready else "False"}]}}


def pdb(spec: dict[str, Any], status: dict[str, Any] | None = None) -> dict[str, Any]:
    return {"metadata": {"name": "b", "namespace": "default", "generation": 3}, "spec": spec, "status": status or {}}


def test_selector_nil_selects_nothing_and_empty_selects_everything_in_the_namespace() -> None:
    pods = [pod("a"), pod("b", labels={"app": "db"}), pod("c", ns="other")]
    assert pdb_pods(pdb({}), pods) == []
    assert [p["metadata"]["name"] for p in pdb_pods(pdb({"selector": {}}), pods)] == ["a", "b"]
    assert [p["metadata"]["name"] for p in pdb_pods(pdb({"selector": {"matchLabels": {"app": "web"}}}), pods)] == ["a"]


@pytest.mark.parametrize(("value", "total", "want"), [(2, 10, 2), ("50%", 3, 2), ("10%", 5, 1), ("0%", 5, 0),
                                                      ("100%", 7, 7)])
def test_percentages_round_up(value: Any, total: int, want: int) -> None:
    assert scaled_value(value, total) == want


def test_healthy_pods_exclude_unready_terminating_and_disrupted_ones() -> None:
    pods = [pod("a"), pod("b", ready=False), pod("c", deleting=True), pod("d"), pod("e")]
    assert healthy_count(pods, {"e": meta.format_time(NOW)}) == 2


def test_disrupted_pods_are_kept_until_deleted_or_two_minutes_old() -> None:
    recorded = {"fresh": meta.format_time(NOW - timedelta(seconds=30)),
                "stale": meta.format_time(NOW - timedelta(minutes=3)),
                "deleting": meta.format_time(NOW), "gone": meta.format_time(NOW)}
    budget = pdb({"minAvailable": 1}, {"disruptedPods": recorded})
    kept, recheck = disrupted_pods(budget, [pod("fresh"), pod("stale"), pod("deleting", deleting=True)], NOW)
    assert kept == {"fresh": recorded["fresh"]}
    assert recheck == NOW + timedelta(seconds=90)


def test_status_allows_the_surplus_over_desired_healthy_and_never_less_than_zero() -> None:
    new = budget_status(pdb({"minAvailable": 2}), expected=3, desired=2, healthy=3, disrupted={})
    st = new["status"]
    assert (st["currentHealthy"], st["desiredHealthy"], st["expectedPods"], st["disruptionsAllowed"],
            st["observedGeneration"]) == (3, 2, 3, 1, 3)
    assert [(c["type"], c["status"], c["reason"]) for c in st["conditions"]] == [
        ("DisruptionAllowed", "True", "SufficientPods")]
    st = budget_status(new, expected=3, desired=2, healthy=1, disrupted={"x": "t"})["status"]
    assert st["disruptionsAllowed"] == 0 and st["disruptedPods"] == {"x": "t"}
    assert [(c["status"], c["reason"]) for c in st["conditions"]] == [("False", "InsufficientPods")]
    assert budget_status(new, expected=0, desired=0, healthy=2, disrupted={})["status"]["disruptionsAllowed"] == 0
