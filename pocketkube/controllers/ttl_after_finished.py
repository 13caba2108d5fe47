"""TTL after finished: delete Jobs `spec.ttlSecondsAfterFinished` after they complete or fail
(kubernetes pkg/controller/ttlafterfinished).

The finish time is status.completionTime, else the lastTransitionTime of the Complete/Failed
condition. A Job not yet due is requeued for exactly when it will be; a due one is re-read from
the API first (the TTL may have just been changed) and deleted in the foreground, so its pods go
before it does. The clock is injected for tests.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from datetime import datetime, timedelta
from typing import Any

from pocketkube.api import errors, meta
from pocketkube.client.informer import Informer, split_key
from pocketkube.client.rest import APIClient
from pocketkube.controllers.base import Controller
from pocketkube.controllers.job_util import finished

log = logging.getLogger(__name__)
Obj = dict[str, Any]


def expires_at(job: Obj) -> datetime | None:
    """When a finished Job with a TTL may be deleted; None if it has no TTL or has not finished."""
    ttl = (job.get("spec") or {}).get("ttlSecondsAfterFinished")
    outcome = finished(job)
    if ttl is None or outcome is None:
        return None
    status = job.get("status") or {}
    done = meta.parse_time(str(status.get("completionTime") or ""))
    if done is None:
        for c in status.get("conditions") or []:
            if c.get("type") == outcome and c.get("status") == "True":
                done = meta.parse_time(str(c.get("lastTransitionTime") or ""))
    if done is None:
        return None
    return done + timedelta(seconds=int(ttl))


class TTLAfterFinishedController(Controller):
    name = "ttl-after-finished"
    workers = 2

    def __init__(self, client: APIClient, *, now: Callable[[], datetime] = meta.now) -> None:
        super().__init__()
        self.now = now
        self.jobs_client = client.resource("batch", "v1", "jobs")
        self.jobs = Informer(self.jobs_client)
        self.jobs.add_handler(self._job_changed)
        self.informers = [self.jobs]

    def _job_changed(self, old: Obj | None, new: Obj | None) -> None:
        if new is not None and expires_at(new) is not None and not new["metadata"].get("deletionTimestamp"):
            self.enqueue(new)

    async def sync(self, key: str) -> None:
        job = self.jobs.get(key)
        if job is None or job["metadata"].get("deletionTimestamp"):
            return
        due = expires_at(job)
        if due is None:
            return
        now = self.now()
        if due > now:
            self.queue.add_after(key, (due - now).total_seconds())
            return
        ns, name = split_key(key)
        try:
            fresh = await self.jobs_client.get(name, ns)
        except errors.NotFound:
            return
        due = expires_at(fresh)
        if due is None or fresh["metadata"].get("deletionTimestamp"):
            return
        if due > now:
            self.queue.add_after(key, (due - now).total_seconds())
            return
        log.info("ttl-after-finished: deleting job %s", key)
        try:
            await self.jobs_client.delete(name, ns, propagation_policy="Foreground", uid=fresh["metadata"].get("uid"))
        except (errors.NotFound, errors.Conflict):
            pass
