"""Job helpers: conditions, completion-index sets ("0-2,5") and the pods a Job creates.

Split from job.py so the control loop reads as decisions; everything here is pure.
"""

from __future__ import annotations

import copy
from datetime import datetime
from typing import Any

from pocketkube.api import meta
from pocketkube.controllers.pod_util import pod_from_template

Obj = dict[str, Any]

TRACKING_FINALIZER = "batch.kubernetes.io/job-tracking"
INDEX_KEY = "batch.kubernetes.io/job-completion-index"
JOB_NAME_LABELS = ("batch.kubernetes.io/job-name", "job-name")
UID_LABELS = ("batch.kubernetes.io/controller-uid", "controller-uid")


def condition_true(job: Obj, ctype: str) -> bool:
    return any(c.get("type") == ctype and c.get("status") == "True"
               for c in (job.get("status") or {}).get("conditions") or [])


def finished(job: Obj) -> str | None:
    """"Complete" or "Failed" once the Job is over (its counters are final), else None."""
    for ctype in ("Complete", "Failed"):
        if condition_true(job, ctype):
            return ctype
    return None


def set_condition(conditions: list[Obj], ctype: str, status: str, reason: str, message: str,
                  now: datetime) -> list[Obj]:
    stamp = meta.format_time(now)
    out = [dict(c) for c in conditions]
    for c in out:
        if c.get("type") == ctype:
            if c.get("status") != status:
                c.update(status=status, reason=reason, message=message, lastProbeTime=stamp,
                         lastTransitionTime=stamp)
            return out
    out.append({"type": ctype, "status": status, "lastProbeTime": stamp, "lastTransitionTime": stamp,
                "reason": reason, "message": message})
    return out


def parse_indexes(text: str | None) -> set[int]:
    out: set[int] = set()
    for part in (text or "").split(","):
        part = part.strip()
        if not part:
            continue
        low, _, high = part.partition("-")
        try:
            out.update(range(int(low), int(high or low) + 1))
        except ValueError:
            continue
    return out


def format_indexes(indexes: set[int]) -> str:
    parts: list[str] = []
    run: list[int] = []
    for i in sorted(indexes):
        if run and i == run[-1] + 1:
            run.append(i)
            continue
        if run:
            parts.append(str(run[0]) if len(run) == 1 else f"{run[0]}-{run[-1]}")
        run = [i]
    if run:
        parts.append(str(run[0]) if len(run) == 1 else f"{run[0]}-{run[-1]}")
    return ",".join(parts)


def index_of(pod: Obj) -> int | None:
    md = pod.get("metadata") or {}
    value = (md.get("annotations") or {}).get(INDEX_KEY, (md.get("labels") or {}).get(INDEX_KEY))
    try:
        return int(value) if value is not None else None
    except ValueError:
        return None


def new_pod(job: Obj, index: int | None) -> Obj:
    """The pod for one attempt: job labels, the tracking finalizer, and for Indexed Jobs the index
    (annotation, label, hostname `<job>-<index>` and $JOB_COMPLETION_INDEX)."""
    name, uid = job["metadata"]["name"], job["metadata"]["uid"]
    template = copy.deepcopy((job.get("spec") or {}).get("template") or {})
    tmeta = template.setdefault("metadata", {})
    labels = tmeta.setdefault("labels", {})
    for key in UID_LABELS:
        labels[key] = uid
    for key in JOB_NAME_LABELS:
        labels[key] = name
    tmeta["finalizers"] = [*(tmeta.get("finalizers") or []), TRACKING_FINALIZER]
    generate = f"{name}-"
    if index is not None:
        labels[INDEX_KEY] = str(index)
        tmeta["annotations"] = {**(tmeta.get("annotations") or {}), INDEX_KEY: str(index)}
        spec = template.setdefault("spec", {})
        spec.setdefault("hostname", f"{name}-{index}")
        env = {"name": "JOB_COMPLETION_INDEX", "valueFrom": {"fieldRef": {
            "apiVersion": "v1", "fieldPath": f"metadata.annotations['{INDEX_KEY}']"}}}
        for c in [*(spec.get("initContainers") or []), *(spec.get("containers") or [])]:
            if not any(e.get("name") == "JOB_COMPLETION_INDEX" for e in c.get("env") or []):
                c["env"] = [*(c.get("env") or []), dict(env)]
        generate = f"{name}-{index}-"
    return pod_from_template(template, job, generate_name=generate)


def restarts(pods: list[Obj]) -> int:
    return sum(int(cs.get("restartCount") or 0) for p in pods
               for cs in (p.get("status") or {}).get("containerStatuses") or [])


def _failed_container(pod: Obj, req: Obj) -> Obj | None:
    """The first container that exited non-zero with a code the requirement selects."""
    status = pod.get("status") or {}
    values = {int(v) for v in req.get("values") or []}
    for cs in [*(status.get("initContainerStatuses") or []), *(status.get("containerStatuses") or [])]:
        if req.get("containerName") and cs.get("name") != req["containerName"]:
            continue
        code = ((cs.get("state") or {}).get("terminated") or {}).get("exitCode")
        if code is None or int(code) == 0:
            continue
        if (int(code) in values) == (req.get("operator") == "In"):
            return dict(cs)
    return None


def failure_policy_match(job: Obj, pod: Obj) -> tuple[str, str] | None:
    """(action, message) of the first podFailurePolicy rule a Failed pod matches."""
    policy = (job.get("spec") or {}).get("podFailurePolicy") or {}
    md = pod.get("metadata") or {}
    where = f"{md.get('namespace')}/{md.get('name')}"
    for i, rule in enumerate(policy.get("rules") or []):
        action = str(rule.get("action") or "")
        if rule.get("onExitCodes"):
            cs = _failed_container(pod, rule["onExitCodes"])
            if cs is not None:
                code = cs["state"]["terminated"]["exitCode"]
                return action, (f"Container {cs.get('name')} for pod {where} failed with exit code {code} "
                                f"matching {action} rule at index {i}")
        for pattern in rule.get("onPodConditions") or []:
            for c in (pod.get("status") or {}).get("conditions") or []:
                if c.get("type") == pattern.get("type") and c.get("status") == pattern.get("status", "True"):
                    return action, f"Pod {where} has condition {c.get('type')} matching {action} rule at index {i}"
    return None
