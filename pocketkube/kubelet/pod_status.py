"""Pod status from what the kubelet knows: container states, phase, conditions (pure).

Rules of kubernetes pkg/kubelet/kubelet_pods.go (getPhase, generateAPIPodStatus) and
status/generate.go: a pod is Pending until its init containers succeeded and its containers
started; Running while any container runs (or will restart); Succeeded when all exited 0 and none
will restart; Failed when all exited and one failed and none will restart.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from pocketkube.kubelet.records import ContainerRecord

Obj = dict[str, Any]


@dataclass
class ContainerView:
    """The kubelet's current view of one container of the spec."""

    name: str
    image: str
    current: ContainerRecord | None = None  # newest attempt
    previous: ContainerRecord | None = None  # the attempt before it
    restart_count: int = 0
    waiting_reason: str = ""
    waiting_message: str = ""
    ready: bool = False
    started: bool = False
    extra: dict[str, Any] = field(default_factory=dict)


def _terminated(rec: ContainerRecord) -> Obj:
    out: Obj = {"exitCode": rec.exit_code if rec.exit_code is not None else 0,
                "reason": rec.reason or ("Completed" if rec.exit_code == 0 else "Error"),
                "startedAt": rec.started_at or None, "finishedAt": rec.finished_at or None,
                "containerID": f"runc://{rec.container_id}"}
    if rec.message:
        out["message"] = rec.message
    return out


def container_status(view: ContainerView) -> Obj:
    cur = view.current
    state: Obj
    if view.waiting_reason:
        state = {"waiting": {"reason": view.waiting_reason, **({"message": view.waiting_message}
                                                                if view.waiting_message else {})}}
    elif cur is not None and cur.running:
        state = {"running": {"startedAt": cur.started_at}}
    elif cur is not None and cur.exit_code is not None:
        state = {"terminated": _terminated(cur)}
    else:
        state = {"waiting": {"reason": "ContainerCreating"}}
    status: Obj = {
        "name": view.name, "image": view.image, "imageID": (cur.image_id if cur else "") or "",
        "ready": view.ready, "started": view.started if cur is not None else False,
        "restartCount": view.restart_count, "state": state,
        "lastState": {"terminated": _terminated(view.previous)} if view.previous and view.previous.exit_code is not None
        else {},
    }
    if cur is not None:
        status["containerID"] = f"runc://{cur.container_id}"
    return status


def compute_phase(restart_policy: str, init_done: bool, init_failed: bool, views: list[ContainerView]) -> str:
    if init_failed:
        return "Failed"
    if not init_done:
        return "Pending"
    running = waiting = succeeded = failed = 0
    for v in views:
        cur = v.current
        if cur is None:
            waiting += 1
        elif cur.running:
            running += 1
        elif cur.exit_code is not None:
            if cur.exit_code == 0:
                succeeded += 1
            else:
                failed += 1
            if v.waiting_reason:  # exited, waiting to restart
                waiting += 1
        else:
            waiting += 1
    if waiting and not running and not (succeeded + failed):
        return "Pending"
    if running:
        return "Running"
    total = len(views)
    if succeeded + failed == total:
        if restart_policy == "Always":
            return "Running"
        if failed and restart_policy == "OnFailure":
            return "Running"
        return "Failed" if failed else "Succeeded"
    return "Running" if restart_policy == "Always" or (succeeded + failed) else "Pending"


def conditions(old: list[Obj], *, initialized: bool, containers_ready: bool, ready: bool, sandbox_ready: bool,
               now: str) -> list[Obj]:
    prev = {c.get("type"): c for c in old}

    def cond(ctype: str, ok: bool, reason: str = "") -> Obj:
        status = "True" if ok else "False"
        p = prev.get(ctype)
        transition = p.get("lastTransitionTime", now) if p and p.get("status") == status else now
        out: Obj = {"type": ctype, "status": status, "lastProbeTime": None, "lastTransitionTime": transition}
        if not ok and reason:
            out["reason"] = reason
        return out

    return [
        cond("PodReadyToStartContainers", sandbox_ready),
        cond("Initialized", initialized, "ContainersNotInitialized"),
        cond("Ready", ready, "ContainersNotReady"),
        cond("ContainersReady", containers_ready, "ContainersNotReady"),
        {**(prev.get("PodScheduled") or {"type": "PodScheduled", "status": "True", "lastTransitionTime": now}),
         "lastProbeTime": None},
    ]
