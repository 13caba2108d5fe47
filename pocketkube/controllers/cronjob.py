"""CronJob: create a Job at each scheduled time (kubernetes pkg/controller/cronjob/cronjob_controllerv2.go).

`sync(key)` reconciles status.active with the Jobs the CronJob owns, records lastSuccessfulTime,
prunes finished Jobs beyond successfulJobsHistoryLimit / failedJobsHistoryLimit, then finds the
most recent scheduled time since lastScheduleTime (or creation) that has not run — skipped if
older than startingDeadlineSeconds — and, honouring concurrencyPolicy (Allow, Forbid: skip while
one runs, Replace: delete the running ones first), creates Job `<name>-<minutes since epoch>`.
It then requeues itself for the next scheduled time. The schedule is read in spec.timeZone (or a
`CRON_TZ=` prefix), default UTC. The clock is injected (`now`) so tests never wait a minute.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from datetime import datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pocketkube.api import errors, meta
from pocketkube.api.cron import CronError, Schedule, parse_schedule
from pocketkube.client.events import EventRecorder
from pocketkube.client.informer import Informer
from pocketkube.client.rest import APIClient
from pocketkube.controllers.base import Controller
from pocketkube.controllers.job_util import finished
from pocketkube.controllers.pod_util import controller_ref, owner_reference

log = logging.getLogger(__name__)
Obj = dict[str, Any]
MANAGER = "cronjob-controller"
SCHEDULED_ANNOTATION = "batch.kubernetes.io/cronjob-scheduled-timestamp"
MAX_MISSED = 100_000


def time_zone(cj: Obj) -> ZoneInfo:
    spec = cj.get("spec") or {}
    name = spec.get("timeZone")
    text = str(spec.get("schedule") or "")
    if not name and text.startswith(("CRON_TZ=", "TZ=")):
        name = text.split(None, 1)[0].partition("=")[2]
    return ZoneInfo(name or "UTC")


def most_recent(schedule: Schedule, earliest: datetime, now: datetime) -> tuple[datetime | None, int]:
    """(latest activation in (earliest, now], how many were missed) — kube's mostRecentScheduleTime."""
    latest: datetime | None = None
    missed = 0
    t = schedule.next_after(earliest)
    while t is not None and t <= now and missed < MAX_MISSED:
        latest, missed = t, missed + 1
        t = schedule.next_after(t)
    return latest, missed


def rfc3339(t: datetime) -> str:
    """Go's time.RFC3339 in the schedule's zone: `2026-11-25T18:00:00Z` or `...T19:00:00+01:00`."""
    return t.isoformat(timespec="seconds").replace("+00:00", "Z")


def job_name(cj: Obj, scheduled: datetime) -> str:
    return f"{cj['metadata']['name']}-{int(scheduled.timestamp()) // 60}"


class CronJobController(Controller):
    name = "cronjob"
    workers = 2

    def __init__(self, client: APIClient, *, now: Callable[[], datetime] = meta.now) -> None:
        super().__init__()
        self.now = now
        self.cj_client = client.resource("batch", "v1", "cronjobs")
        self.jobs_client = client.resource("batch", "v1", "jobs")
        self.cronjobs = Informer(self.cj_client)
        self.jobs = Informer(self.jobs_client)
        self.cronjobs.add_handler(self.enqueue_handler)
        self.jobs.add_handler(self._job_changed)
        self.informers = [self.cronjobs, self.jobs]
        self.recorder = EventRecorder(client, MANAGER)

    def _job_changed(self, old: Obj | None, new: Obj | None) -> None:
        job = new if new is not None else old
        assert job is not None
        ref = controller_ref(job)
        if ref is not None and ref.get("kind") == "CronJob":
            self.queue.add(f"{job['metadata'].get('namespace')}/{ref['name']}")

    def owned_jobs(self, cj: Obj) -> list[Obj]:
        ns, uid = cj["metadata"]["namespace"], cj["metadata"]["uid"]
        return [j for j in self.jobs.list() if j["metadata"].get("namespace") == ns
                and (controller_ref(j) or {}).get("uid") == uid]

    async def sync(self, key: str) -> None:
        cached = self.cronjobs.get(key)
        if cached is None or cached["metadata"].get("deletionTimestamp"):
            return
        cj: Obj = {**cached, "apiVersion": "batch/v1", "kind": "CronJob"}
        now = self.now()
        jobs = self.owned_jobs(cj)
        status: Obj = dict(cj.get("status") or {})
        by_uid = {j["metadata"]["uid"]: j for j in jobs}
        active = [r for r in status.get("active") or [] if r.get("uid") in by_uid and not finished(by_uid[r["uid"]])]
        for j in jobs:
            if not finished(j) and not any(r.get("uid") == j["metadata"]["uid"] for r in active):
                active.append(self._ref(j))
        for r in status.get("active") or []:
            job = by_uid.get(r.get("uid"))
            if job is not None and finished(job) == "Complete":
                await self.recorder.event(cj, "Normal", "SawCompletedJob",
                                          f"Saw completed job: {r.get('name')}, condition: Complete")
        successes = [meta.parse_time(str((j.get("status") or {}).get("completionTime") or "")) for j in jobs
                     if finished(j) == "Complete"]
        last_ok = max((t for t in successes if t is not None), default=None)
        if last_ok is not None:
            status["lastSuccessfulTime"] = meta.format_time(last_ok)
        await self._prune(cj, jobs)
        if not (cj.get("spec") or {}).get("suspend"):
            active = await self._schedule(key, cj, now, status, active, by_uid)
        status["active"] = active or None
        old = cj.get("status") or {}
        if any(old.get(k) != status.get(k) for k in set(old) | set(status)):
            try:
                # The resourceVersion makes a write from a stale cache fail (and retry) instead of
                # turning lastScheduleTime back.
                await self.cj_client.patch(cj["metadata"]["name"], {
                    "metadata": {"resourceVersion": cj["metadata"].get("resourceVersion")}, "status": status},
                    cj["metadata"]["namespace"], subresource="status", field_manager=MANAGER)
            except errors.NotFound:
                pass

    @staticmethod
    def _ref(job: Obj) -> Obj:
        md = job["metadata"]
        return {"apiVersion": "batch/v1", "kind": "Job", "name": md["name"], "namespace": md.get("namespace"),
                "uid": md["uid"], "resourceVersion": md.get("resourceVersion")}

    async def _schedule(self, key: str, cj: Obj, now: datetime, status: Obj, active: list[Obj],
                        by_uid: dict[str, Obj]) -> list[Obj]:
        spec = cj.get("spec") or {}
        try:
            tz = time_zone(cj)
            schedule = parse_schedule(str(spec.get("schedule") or ""))
        except (CronError, ZoneInfoNotFoundError, ValueError) as e:
            await self.recorder.event(cj, "Warning", "InvalidSchedule", f"invalid schedule: {e}")
            return active
        local_now = now.astimezone(tz)
        earliest = meta.parse_time(str(status.get("lastScheduleTime") or "")) \
            or meta.parse_time(str(cj["metadata"].get("creationTimestamp") or "")) or now
        deadline = spec.get("startingDeadlineSeconds")
        if deadline is not None:
            earliest = max(earliest, now - timedelta(seconds=int(deadline)))
        scheduled, missed = most_recent(schedule, earliest.astimezone(tz), local_now)
        upcoming = schedule.next_after(local_now)
        if upcoming is not None:
            self.queue.add_after(key, max((upcoming - local_now).total_seconds(), 0) + 0.1)
        if scheduled is None:
            return active
        if missed > 100:
            await self.recorder.event(cj, "Warning", "TooManyMissedTimes",
                                      f"too many missed start times: {missed}. Set or decrease .spec.startingDeadlineSeconds or check clock skew")
        name = job_name(cj, scheduled)
        if any(j["metadata"]["name"] == name for j in by_uid.values()):
            status["lastScheduleTime"] = meta.format_time(scheduled)  # already ran; our cache was behind
            return active
        policy = spec.get("concurrencyPolicy", "Allow")
        if policy == "Forbid" and active:
            log.debug("cronjob %s: skipping %s, previous run still active", key, name)
            return active
        if policy == "Replace":
            for ref in active:
                try:
                    await self.jobs_client.delete(ref["name"], ref.get("namespace"), propagation_policy="Background")
                    await self.recorder.event(cj, "Normal", "SuccessfulDelete", f"Deleted job {ref['name']}")
                except errors.NotFound:
                    pass
            active = []
        job = await self._create_job(cj, name, scheduled)
        if job is not None:
            active = [*active, self._ref(job)]
        status["lastScheduleTime"] = meta.format_time(scheduled)
        return active

    async def _create_job(self, cj: Obj, name: str, scheduled: datetime) -> Obj | None:
        template = (cj.get("spec") or {}).get("jobTemplate") or {}
        tmeta = template.get("metadata") or {}
        md: Obj = {"name": name, "namespace": cj["metadata"]["namespace"], "labels": dict(tmeta.get("labels") or {}),
                   "annotations": {**(tmeta.get("annotations") or {}),
                                   SCHEDULED_ANNOTATION: rfc3339(scheduled)},
                   "ownerReferences": [owner_reference(cj)]}
        body = {"apiVersion": "batch/v1", "kind": "Job", "metadata": md, "spec": template.get("spec") or {}}
        try:
            job = await self.jobs_client.create(body, cj["metadata"]["namespace"], field_manager=MANAGER)
        except errors.AlreadyExists:
            existing = await self.jobs_client.get(name, cj["metadata"]["namespace"])
            return existing if (controller_ref(existing) or {}).get("uid") == cj["metadata"]["uid"] else None
        await self.recorder.event(cj, "Normal", "SuccessfulCreate", f"Created job {name}")
        return job

    async def _prune(self, cj: Obj, jobs: list[Obj]) -> None:
        spec = cj.get("spec") or {}
        for outcome, field in (("Complete", "successfulJobsHistoryLimit"), ("Failed", "failedJobsHistoryLimit")):
            limit = spec.get(field)
            if limit is None:
                continue
            done = sorted((j for j in jobs if finished(j) == outcome and not j["metadata"].get("deletionTimestamp")),
                          key=lambda j: str((j.get("status") or {}).get("startTime")
                                            or j["metadata"].get("creationTimestamp") or ""))
            for job in done[:max(len(done) - int(limit), 0)]:
                try:
                    await self.jobs_client.delete(job["metadata"]["name"], job["metadata"]["namespace"],
                                                  propagation_policy="Background")
                    await self.recorder.event(cj, "Normal", "SuccessfulDelete", f"Deleted job {job['metadata']['name']}")
                except errors.NotFound:
                    pass
