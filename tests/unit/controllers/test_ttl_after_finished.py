"""TTL after finished: finished Jobs are deleted (foreground) ttlSecondsAfterFinished after they end."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from pocketkube.controllers.ttl_after_finished import TTLAfterFinishedController, expires_at
from tests.unit.controllers.fake_api import FakeAPI

Obj = dict[str, Any]


def make(ttl: int | None, condition: str | None = "Complete") -> tuple[FakeAPI, TTLAfterFinishedController]:
    api = FakeAPI()
    ctl = TTLAfterFinishedController(api, now=lambda: api.clock)
    api.attach(ctl)
    status: Obj = {}
    if condition:
        status = {"conditions": [{"type": condition, "status": "True", "lastTransitionTime": "2026-01-01T12:00:00Z"}]}
        if condition == "Complete":
            status["completionTime"] = "2026-01-01T12:00:00Z"
    spec: Obj = {} if ttl is None else {"ttlSecondsAfterFinished": ttl}
    api.put("jobs", {"metadata": {"name": "j", "namespace": "ns"}, "spec": spec, "status": status})
    return api, ctl


async def test_deletes_when_due_in_the_foreground() -> None:
    api, ctl = make(ttl=60)
    await ctl.sync("ns/j")
    assert api.items("jobs") and len(ctl.queue._waiting) == 1  # requeued for when it is due
    api.clock += timedelta(seconds=60)
    await ctl.sync("ns/j")
    assert api.deletes == [("jobs", "j", "Foreground")]


async def test_failed_jobs_use_the_condition_time_and_ttl_zero_is_immediate() -> None:
    api, ctl = make(ttl=0, condition="Failed")
    await ctl.sync("ns/j")
    assert api.items("jobs") == []


async def test_unfinished_or_no_ttl_are_kept() -> None:
    for api, ctl in (make(ttl=None), make(ttl=5, condition=None)):
        api.clock += timedelta(days=1)
        await ctl.sync("ns/j")
        assert len(api.items("jobs")) == 1
        assert expires_at(api.items("jobs")[0]) is None
