"""Job: run pods to completion (kubernetes pkg/controller/job/job_controller.go, simplified).

Every pod a Job creates carries the `batch.kubernetes.io/job-tracking` finalizer, so it cannot
vanish before it is counted. `sync(key)` first records newly finished pods by uid in
status.uncountedTerminatedPods, then removes their finalizers, then moves them into
status.succeeded / status.failed — a crash between steps never counts a pod twice or loses one
(status writes carry the resourceVersion read, so a stale cache loses the race). Terminating
pods count as failed (podReplacementPolicy TerminatingOrFailed); a podFailurePolicy rule may
ignore a failure or fail the Job at once. Then it decides: failures past backoffLimit or a
passed activeDeadlineSeconds add FailureTarget, enough successes
(completions, or every index for completionMode Indexed) add SuccessCriteriaMet; remaining pods
are deleted and, once none are left, Failed or Complete follows (kube 1.32's order). Otherwise it
keeps min(parallelism, remaining) pods running, or none while suspended; after failures, new
pods wait an exponential backoff (10 s doubling to 6 min, reset by a success).
"""

from __future__ import annotations

import asyncio
import copy
from collections.abc import Callable
from datetime import datetime
from typing import Any

from pocketkube.api import errors, meta
from pocketkube.client.events import EventRecorder
from pocketkube.client.informer import Informer, object_key, split_key
from pocketkube.client.rest import APIClient
from pocketkube.controllers import job_util as ju
from pocketkube.controllers.base import Controller
from pocketkube.controllers.expectations import Expectations
from pocketkube.controllers.owned_pods import observe_pod_event
from pocketkube.controllers.pod_util import controller_ref, deletion_rank, is_ready

Obj = dict[str, Any]
MANAGER = "job-controller"
BACKOFF_BASE = 10.0
BACKOFF_MAX = 360.0


class JobController(Controller):
    name = "job"
    workers = 4

    def __init__(self, client: APIClient, *, now: Callable[[], datetime] = meta.now) -> None:
        super().__init__()
        self.now = now
        self.jobs_client = client.resource("batch", "v1", "jobs")
        self.pods_client = client.core("pods")
        self.jobs = Informer(self.jobs_client)
        self.pods = Informer(self.pods_client)
        self.jobs.add_handler(self.enqueue_handler)
        self.pods.add_handler(self._pod_changed)
        self.informers = [self.jobs, self.pods]
        self.expectations = Expectations()
        self.recorder = EventRecorder(client, MANAGER)
        self.released: set[str] = set()  # pod uids whose finalizer we removed, until the cache agrees
        self.backoff: dict[str, tuple[int, datetime]] = {}  # key -> (failures since a success, last one)
        self.pod_control = self  # test seam: create_pod / delete_pod

    def _pod_changed(self, old: Obj | None, new: Obj | None) -> None:
        if observe_pod_event(old, new, "Job", self.expectations, self.queue) is None:
            return
        pod = new if new is not None else old
        assert pod is not None
        if new is None or ju.TRACKING_FINALIZER not in (new["metadata"].get("finalizers") or []):
            self.released.discard(pod["metadata"].get("uid", ""))

    # ---- pod control -----------------------------------------------------------------------
    async def create_pod(self, job: Obj, index: int | None) -> None:
        created = await self.pods_client.create(ju.new_pod(job, index), job["metadata"]["namespace"],
                                                field_manager=MANAGER)
        await self.recorder.event(job, "Normal", "SuccessfulCreate", f"Created pod: {created['metadata']['name']}")

    async def delete_pod(self, job: Obj, pod: Obj) -> None:
        await self.pods_client.delete(pod["metadata"]["name"], pod["metadata"]["namespace"],
                                      uid=pod["metadata"].get("uid"))
        await self.recorder.event(job, "Normal", "SuccessfulDelete", f"Deleted pod: {pod['metadata']['name']}")

    def _tracked(self, pod: Obj) -> bool:
        return (ju.TRACKING_FINALIZER in (pod["metadata"].get("finalizers") or [])
                and pod["metadata"].get("uid") not in self.released)

    async def release(self, pods: list[Obj]) -> set[str]:
        """Remove the tracking finalizer; the uids that no longer hold it (gone counts as released)."""
        async def one(pod: Obj) -> str | None:
            md = pod["metadata"]
            rest = [f for f in md.get("finalizers") or [] if f != ju.TRACKING_FINALIZER]
            try:
                await self.pods_client.patch(md["name"], {"metadata": {
                    "finalizers": rest or None, "resourceVersion": md["resourceVersion"]}},
                    md["namespace"], field_manager=MANAGER)
            except errors.NotFound:
                return str(md["uid"])
            except errors.Conflict:
                return None
            self.released.add(str(md["uid"]))
            return str(md["uid"])
        results = await asyncio.gather(*(one(p) for p in pods))
        return {r for r in results if r is not None}

    # ---- backoff of failed pods (kube's backoffRecord) ---------------------------------------
    def _note_outcomes(self, key: str, succeeded: int, failed: int) -> None:
        count, last = self.backoff.get(key, (0, self.now()))
        if succeeded:
            count = 0
        if failed:
            count, last = count + failed, self.now()
        self.backoff[key] = (count, last)

    def _backoff_left(self, key: str, now: datetime) -> float:
        count, last = self.backoff.get(key, (0, now))
        if count <= 0:
            return 0.0
        delay: float = min(BACKOFF_BASE * 2.0 ** min(count - 1, 16), BACKOFF_MAX)
        return max(delay - (now - last).total_seconds(), 0.0)

    # ---- sync ------------------------------------------------------------------------------
    def owned_pods(self, job: Obj) -> list[Obj]:
        ns, uid = job["metadata"]["namespace"], job["metadata"]["uid"]
        return [p for p in self.pods.list() if p["metadata"].get("namespace") == ns
                and (controller_ref(p) or {}).get("uid") == uid]

    async def sync(self, key: str) -> None:
        cached = self.jobs.get(key)
        if cached is None:
            self.expectations.forget(key)
            self.backoff.pop(key, None)
            ns, name = split_key(key)
            await self.release([p for p in self.pods.list() if p["metadata"].get("namespace") == ns
                                and (controller_ref(p) or {}).get("kind") == "Job"
                                and (controller_ref(p) or {}).get("name") == name and self._tracked(p)])
            return
        job: Obj = {**copy.deepcopy(cached), "apiVersion": "batch/v1", "kind": "Job"}
        pods = self.owned_pods(job)
        if ju.finished(job) or job["metadata"].get("deletionTimestamp"):
            self.backoff.pop(key, None)
            await self.release([p for p in pods if self._tracked(p)])
            return
        job = await self._count(job, pods)
        await self._decide(key, job, pods)

    async def _patch_status(self, job: Obj, status: Obj) -> Obj:
        updated = await self.jobs_client.patch(job["metadata"]["name"], {
            "metadata": {"resourceVersion": job["metadata"]["resourceVersion"]}, "status": status},
            job["metadata"]["namespace"], subresource="status", field_manager=MANAGER)
        return {**updated, "apiVersion": "batch/v1", "kind": "Job"}

    async def _count(self, job: Obj, pods: list[Obj]) -> Obj:
        """Move finished pods into the counters through uncountedTerminatedPods."""
        status = job.get("status") or {}
        uncounted = status.get("uncountedTerminatedPods") or {}
        unc_s, unc_f = set(uncounted.get("succeeded") or []), set(uncounted.get("failed") or [])
        indexed = (job.get("spec") or {}).get("completionMode") == "Indexed"
        completions = int((job.get("spec") or {}).get("completions") or 0)
        done = ju.parse_indexes(status.get("completedIndexes"))
        suspended = bool((job.get("spec") or {}).get("suspend"))
        fresh_s, fresh_f = set(), set()
        quiet: list[Obj] = []  # stopped by suspension or ignored by podFailurePolicy: not failures
        fail_job: str | None = None  # a podFailurePolicy FailJob rule matched: why
        for p in pods:
            uid = p["metadata"]["uid"]
            if not self._tracked(p) or uid in unc_s or uid in unc_f:
                continue
            phase = (p.get("status") or {}).get("phase")
            if phase == "Succeeded":
                fresh_s.add(uid)
                index = ju.index_of(p)
                if indexed and index is not None and 0 <= index < completions:
                    done.add(index)
            elif phase == "Failed" or p["metadata"].get("deletionTimestamp"):
                matched = ju.failure_policy_match(job, p) if phase == "Failed" else None
                if (suspended and phase != "Failed") or (matched and matched[0] == "Ignore"):
                    quiet.append(p)
                    continue
                fresh_f.add(uid)
                if matched and matched[0] == "FailJob" and fail_job is None:
                    fail_job = matched[1]
        if quiet:
            await self.release(quiet)
        if fresh_s or fresh_f:
            unc_s |= fresh_s
            unc_f |= fresh_f
            patch: Obj = {"uncountedTerminatedPods": {"succeeded": sorted(unc_s), "failed": sorted(unc_f)}}
            if fail_job is not None and not ju.condition_true(job, "FailureTarget"):
                patch["conditions"] = ju.set_condition(list(status.get("conditions") or []), "FailureTarget",
                                                       "True", "PodFailurePolicy", fail_job, self.now())
            if indexed:
                patch["completedIndexes"] = ju.format_indexes(done)
            job = await self._patch_status(job, patch)
            self._note_outcomes(object_key(job), len(fresh_s), len(fresh_f))
        if not unc_s and not unc_f:
            return job
        by_uid = {p["metadata"]["uid"]: p for p in pods}
        released = await self.release([p for u, p in by_uid.items() if (u in unc_s or u in unc_f) and self._tracked(p)])
        gone = {u for u in unc_s | unc_f if u not in by_uid or not self._tracked(by_uid[u])}
        counted_s, counted_f = unc_s & (released | gone), unc_f & (released | gone)
        status = job.get("status") or {}
        succeeded = int(status.get("succeeded") or 0) + len(counted_s)
        if indexed:
            succeeded = len(ju.parse_indexes(status.get("completedIndexes")))
        return await self._patch_status(job, {
            "succeeded": succeeded, "failed": int(status.get("failed") or 0) + len(counted_f),
            "uncountedTerminatedPods": {"succeeded": sorted(unc_s - counted_s) or None,
                                        "failed": sorted(unc_f - counted_f) or None}})

    def _target(self, job: Obj, pods: list[Obj], active: list[Obj], now: datetime) -> tuple[str, str, str] | None:
        """(condition, reason, message) once the Job's outcome is decided."""
        spec, status = job.get("spec") or {}, job.get("status") or {}
        failed = int(status.get("failed") or 0)
        if ((spec.get("template") or {}).get("spec") or {}).get("restartPolicy") == "OnFailure":
            failed += ju.restarts(active)
        if failed > int(spec.get("backoffLimit", 6)):
            return "FailureTarget", "BackoffLimitExceeded", "Job has reached the specified backoff limit"
        deadline = spec.get("activeDeadlineSeconds")
        start = meta.parse_time(str(status.get("startTime") or ""))
        if deadline is not None and start is not None and (now - start).total_seconds() >= int(deadline):
            return "FailureTarget", "DeadlineExceeded", "Job was active longer than specified deadline"
        succeeded = int(status.get("succeeded") or 0)
        completions = spec.get("completions")
        if (completions is not None and succeeded >= int(completions)) or (
                completions is None and succeeded > 0 and not active):
            return "SuccessCriteriaMet", "CompletionsReached", "Reached expected number of succeeded pods"
        return None

    async def _decide(self, key: str, job: Obj, pods: list[Obj]) -> None:
        now = self.now()
        spec, status = job.get("spec") or {}, copy.deepcopy(job.get("status") or {})
        conditions: list[Obj] = list(status.get("conditions") or [])
        active = [p for p in pods if (p.get("status") or {}).get("phase") not in ("Succeeded", "Failed")
                  and not p["metadata"].get("deletionTimestamp")]
        terminating = [p for p in pods if p["metadata"].get("deletionTimestamp")
                       and (p.get("status") or {}).get("phase") not in ("Succeeded", "Failed")]
        suspended = bool(spec.get("suspend"))
        creates: list[int | None] = []
        deletes: list[Obj] = []
        target = next(((c["type"], c.get("reason", ""), c.get("message", "")) for c in conditions
                       if c.get("type") in ("FailureTarget", "SuccessCriteriaMet") and c.get("status") == "True"),
                      None) or self._target(job, pods, active, now)
        if target is not None:
            conditions = ju.set_condition(conditions, target[0], "True", target[1], target[2], now)
            deletes = active
            if not active and not terminating:
                final = "Failed" if target[0] == "FailureTarget" else "Complete"
                conditions = ju.set_condition(conditions, final, "True", target[1], target[2], now)
                if final == "Complete":
                    status["completionTime"] = meta.format_time(now)
                    await self.recorder.event(job, "Normal", "Completed", "Job completed")
                else:
                    await self.recorder.event(job, "Warning", target[1], target[2])
        elif suspended:
            deletes = active
            if not ju.condition_true(job, "Suspended"):
                conditions = ju.set_condition(conditions, "Suspended", "True", "JobSuspended", "Job suspended", now)
        else:
            if ju.condition_true(job, "Suspended"):
                conditions = ju.set_condition(conditions, "Suspended", "False", "JobResumed", "Job resumed", now)
                status["startTime"] = meta.format_time(now)
            status.setdefault("startTime", meta.format_time(now))
            creates, deletes = self._scale(job, active)
            wait = self._backoff_left(key, now)
            if creates and wait > 0:  # failed pods come back after 10 s, 20 s, 40 s … (at most 6 min)
                creates = []
                self.queue.add_after(key, wait)
            deadline = spec.get("activeDeadlineSeconds")
            if deadline is not None:
                started = meta.parse_time(str(status["startTime"])) or now
                self.queue.add_after(key, max(int(deadline) - (now - started).total_seconds(), 0) + 0.05)
        acting = self.expectations.satisfied(key)
        error = await self._act(key, job, creates, deletes) if acting else None
        running = len(active) + (len(creates) - len(deletes) if acting else 0)
        status.update(conditions=conditions or None, active=running or None,
                      ready=sum(1 for p in active if is_ready(p)), terminating=len(terminating))
        old = job.get("status") or {}
        if any(old.get(k) != status.get(k) for k in set(old) | set(status)):
            await self._patch_status(job, status)
        if error is not None:
            raise error

    def _scale(self, job: Obj, active: list[Obj]) -> tuple[list[int | None], list[Obj]]:
        spec, status = job.get("spec") or {}, job.get("status") or {}
        parallelism = int(spec.get("parallelism", 1))
        succeeded = int(status.get("succeeded") or 0)
        completions = spec.get("completions")
        if spec.get("completionMode") == "Indexed" and completions is not None:
            done = ju.parse_indexes(status.get("completedIndexes"))
            seen: set[int] = set()
            extra: list[Obj] = []
            for p in sorted(active, key=deletion_rank, reverse=True):
                index = ju.index_of(p)
                if index is None or index in done or index in seen or not 0 <= index < int(completions):
                    extra.append(p)
                else:
                    seen.add(index)
            keep = [p for p in active if p not in extra]
            extra += sorted(keep, key=deletion_rank)[:max(len(keep) - parallelism, 0)]
            missing = [i for i in range(int(completions)) if i not in done and i not in seen]
            room = max(parallelism - (len(active) - len(extra)), 0)
            return list(missing[:room]), extra
        if completions is None:
            want = len(active) if succeeded > 0 else parallelism
        else:
            want = min(max(int(completions) - succeeded, 0), parallelism)
        diff = want - len(active)
        if diff > 0:
            return [None] * diff, []
        return [], sorted(active, key=deletion_rank)[:-diff] if diff < 0 else []

    async def _act(self, key: str, job: Obj, creates: list[int | None], deletes: list[Obj]) -> Exception | None:
        if not creates and not deletes:
            return None
        self.expectations.expect(key, adds=len(creates), dels=len(deletes))
        results = await asyncio.gather(*(self.pod_control.delete_pod(job, p) for p in deletes), return_exceptions=True)
        failed = [r for r in results if isinstance(r, Exception)]
        if failed:
            self.expectations.lower(key, dels=len(failed))
        error = next((r for r in failed if not isinstance(r, errors.NotFound)), None)
        done, batch = 0, 1
        while done < len(creates):
            chunk = creates[done:done + batch]
            made = await asyncio.gather(*(self.pod_control.create_pod(job, i) for i in chunk), return_exceptions=True)
            done += len(chunk)
            failures = [r for r in made if isinstance(r, Exception)]
            if failures:
                self.expectations.lower(key, adds=len(failures) + len(creates) - done)
                return error or failures[0]
            batch *= 2
        return error
