"""CronJob sync with a fake clock: scheduling, naming, concurrency policies, deadlines, suspend,
history limits, time zones and status."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from pocketkube.api.cron import parse_schedule
from pocketkube.controllers.cronjob import SCHEDULED_ANNOTATION, CronJobController, most_recent
from tests.unit.controllers.fake_api import FakeAPI

Obj = dict[str, Any]
T0 = datetime(2026, 1, 1, 12, 0, 30, tzinfo=UTC)  # creation: half a minute past 12:00


def make(**spec: Any) -> tuple[FakeAPI, CronJobController]:
    api = FakeAPI()
    api.clock = T0
    ctl = CronJobController(api, now=lambda: api.clock)
    api.attach(ctl)
    api.put("cronjobs", {"apiVersion": "batch/v1", "kind": "CronJob",
                         "metadata": {"name": "tick", "namespace": "ns", "creationTimestamp": "2026-01-01T12:00:30Z"},
                         "spec": {"schedule": "*/1 * * * *", "concurrencyPolicy": "Allow", "suspend": False,
                                  "successfulJobsHistoryLimit": 3, "failedJobsHistoryLimit": 1,
                                  "jobTemplate": {"metadata": {"labels": {"team": "a"}}, "spec": {"template": {
                                      "spec": {"restartPolicy": "Never", "containers": [{"name": "c", "image": "x"}]}}}},
                                  **spec}})
    return api, ctl


def jobs(api: FakeAPI) -> list[str]:
    return [j["metadata"]["name"] for j in api.items("jobs")]


def cj(api: FakeAPI) -> Obj:
    return api.get("cronjobs", "ns/tick")


def finish(api: FakeAPI, name: str, outcome: str = "Complete") -> None:
    job = api.get("jobs", f"ns/{name}")
    stamp = api.clock.strftime("%Y-%m-%dT%H:%M:%SZ")
    job["status"] = {"conditions": [{"type": outcome, "status": "True", "lastTransitionTime": stamp}],
                     "startTime": stamp, **({"completionTime": stamp} if outcome == "Complete" else {})}


def minutes(t: datetime) -> int:
    return int(t.timestamp()) // 60


async def test_creates_a_job_per_scheduled_minute() -> None:
    api, ctl = make()
    await ctl.sync("ns/tick")
    assert jobs(api) == []  # 12:01 has not come yet
    api.clock = T0 + timedelta(seconds=31)  # 12:01:01
    await ctl.sync("ns/tick")
    first = f"tick-{minutes(datetime(2026, 1, 1, 12, 1, tzinfo=UTC))}"
    assert jobs(api) == [first]
    job = api.get("jobs", f"ns/{first}")
    assert job["metadata"]["labels"] == {"team": "a"}
    assert job["metadata"]["annotations"][SCHEDULED_ANNOTATION] == "2026-01-01T12:01:00Z"
    assert job["metadata"]["ownerReferences"][0]["kind"] == "CronJob"
    status = cj(api)["status"]
    assert status["lastScheduleTime"] == "2026-01-01T12:01:00Z"
    assert [r["name"] for r in status["active"]] == [first]
    await ctl.sync("ns/tick")
    assert len(jobs(api)) == 1  # not twice for the same minute
    finish(api, first)
    api.clock += timedelta(minutes=1)
    await ctl.sync("ns/tick")
    status = cj(api)["status"]
    assert len(jobs(api)) == 2 and [r["name"] for r in status["active"]] != [first]
    assert status["lastSuccessfulTime"] == "2026-01-01T12:01:01Z"


async def test_missed_runs_start_only_the_latest() -> None:
    api, ctl = make()
    api.clock = T0 + timedelta(minutes=10)
    await ctl.sync("ns/tick")
    assert jobs(api) == [f"tick-{minutes(datetime(2026, 1, 1, 12, 10, tzinfo=UTC))}"]


async def test_starting_deadline_skips_late_runs() -> None:
    api, ctl = make(startingDeadlineSeconds=10)
    api.clock = datetime(2026, 1, 1, 12, 1, 30, tzinfo=UTC)  # 30 s late for 12:01
    await ctl.sync("ns/tick")
    assert jobs(api) == []
    api.clock = datetime(2026, 1, 1, 12, 2, 5, tzinfo=UTC)  # 5 s late for 12:02: fine
    await ctl.sync("ns/tick")
    assert len(jobs(api)) == 1


async def test_forbid_skips_while_a_run_is_active() -> None:
    api, ctl = make(concurrencyPolicy="Forbid")
    api.clock = T0 + timedelta(minutes=1)
    await ctl.sync("ns/tick")
    api.clock += timedelta(minutes=1)
    await ctl.sync("ns/tick")
    assert len(jobs(api)) == 1
    finish(api, jobs(api)[0])
    await ctl.sync("ns/tick")
    assert len(jobs(api)) == 2


async def test_replace_deletes_the_running_job() -> None:
    api, ctl = make(concurrencyPolicy="Replace")
    api.clock = T0 + timedelta(minutes=1)
    await ctl.sync("ns/tick")
    old = jobs(api)[0]
    api.clock += timedelta(minutes=1)
    await ctl.sync("ns/tick")
    assert old not in jobs(api) and len(jobs(api)) == 1
    assert ("jobs", old, "Background") in api.deletes
    assert [r["name"] for r in cj(api)["status"]["active"]] == jobs(api)


async def test_suspend_creates_nothing() -> None:
    api, ctl = make(suspend=True)
    api.clock = T0 + timedelta(minutes=5)
    await ctl.sync("ns/tick")
    assert jobs(api) == []


async def test_history_limits_prune_oldest_finished_jobs() -> None:
    api, ctl = make(successfulJobsHistoryLimit=1, failedJobsHistoryLimit=0)
    made = []
    for i in range(1, 4):
        api.clock = T0 + timedelta(minutes=i)
        await ctl.sync("ns/tick")
        made.append(sorted(jobs(api))[-1])
        finish(api, made[-1], "Failed" if i == 2 else "Complete")
    await ctl.sync("ns/tick")
    assert jobs(api) == [made[2]]


async def test_time_zone() -> None:
    api, ctl = make(schedule="0 9 * * *", timeZone="Europe/Berlin")  # 09:00 CET = 08:00 UTC
    api.clock = datetime(2026, 1, 2, 8, 0, 5, tzinfo=UTC)
    await ctl.sync("ns/tick")
    job = api.items("jobs")[0]
    assert job["metadata"]["annotations"][SCHEDULED_ANNOTATION] == "2026-01-02T09:00:00+01:00"
    assert job["metadata"]["name"] == f"tick-{minutes(datetime(2026, 1, 2, 8, 0, tzinfo=UTC))}"
    api2, ctl2 = make(schedule="CRON_TZ=Europe/Berlin 0 9 * * *")
    api2.clock = datetime(2026, 1, 2, 7, 59, tzinfo=UTC)
    await ctl2.sync("ns/tick")
    assert jobs(api2) == []


def test_most_recent() -> None:
    s = parse_schedule("*/15 * * * *")
    latest, missed = most_recent(s, datetime(2026, 1, 1, 12, 0, tzinfo=UTC), datetime(2026, 1, 1, 13, 7, tzinfo=UTC))
    assert latest == datetime(2026, 1, 1, 13, 0, tzinfo=UTC) and missed == 4
    assert most_recent(s, datetime(2026, 1, 1, 12, 0, tzinfo=UTC), datetime(2026, 1, 1, 12, 14, tzinfo=UTC)) == (None, 0)
