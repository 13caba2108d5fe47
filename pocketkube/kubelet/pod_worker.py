"""One pod's worker: converge what runs on the node to the pod's spec, then report its status.

Each sync (kubernetes pkg/kubelet/kuberuntime/kuberuntime_manager.go SyncPod, simplified):
volumes and the sandbox first; init containers one at a time, each to success; then every app
container started, restarted per restartPolicy with CrashLoopBackOff (10 s doubling to 5 min,
reset after 10 min of running), or killed when its liveness probe fails. A deleted pod is stopped
(preStop, SIGTERM, grace period, SIGKILL) and then removed from the API by the kubelet.
"""

from __future__ import annotations

import asyncio
import logging
import time
from dataclasses import dataclass, field
from typing import Any

from pocketkube.api import meta
from pocketkube.kubelet.env import EnvError, Lookup, resolve_env
from pocketkube.kubelet.pod_files import DNSSettings, write_pod_files
from pocketkube.kubelet.pod_status import ContainerView, compute_phase, conditions, container_status
from pocketkube.kubelet.records import ContainerRecord, RecordStore
from pocketkube.kubelet.runtime_service import RuntimeService, Sandbox, StartFailure
from pocketkube.kubelet.startup_trace import span
from pocketkube.kubelet.volumes import PodVolumes, VolumeError

log = logging.getLogger(__name__)
Obj = dict[str, Any]

BACKOFF_START = 10.0
BACKOFF_MAX = 300.0
BACKOFF_RESET = 600.0


@dataclass
class Backoff:
    delay: float = 0.0
    until: float = 0.0

    def failed(self, now: float, *, start: float = BACKOFF_START, cap: float = BACKOFF_MAX) -> float:
        self.delay = start if self.delay == 0 else min(self.delay * 2, cap)
        self.until = now + self.delay
        return self.delay


@dataclass
class WorkerState:
    sandbox: Sandbox | None = None
    volumes: PodVolumes | None = None
    pod_files: dict[str, str] = field(default_factory=dict)
    backoff: dict[str, Backoff] = field(default_factory=dict)
    waiting: dict[str, tuple[str, str]] = field(default_factory=dict)  # container -> (reason, message)
    ready: dict[str, bool] = field(default_factory=dict)  # readiness probe results
    started: dict[str, bool] = field(default_factory=dict)  # startup probe results
    liveness_failed: set[str] = field(default_factory=set)
    backoff_until: dict[str, float] = field(default_factory=dict)  # when a waiting container may restart
    sandbox_error: str = ""
    volume_error: str = ""
    terminated: bool = False


class PodWorker:
    def __init__(self, *, runtime: RuntimeService, records: RecordStore, lookup: Lookup, pod_dir: str,
                 dns: DNSSettings, node_allocatable: dict[str, str] | None = None,
                 emit: Any = None, clock: Any = time.monotonic) -> None:
        self.runtime = runtime
        self.records = records
        self.lookup = lookup
        self.pod_dir = pod_dir
        self.dns = dns
        self.node_allocatable = node_allocatable or {}
        self.state = WorkerState()
        self.emit = emit  # async (pod, type, reason, message) -> None, for Events
        self.clock = clock

    async def _event(self, pod: Obj, etype: str, reason: str, message: str) -> None:
        if self.emit is not None:
            await self.emit(pod, etype, reason, message)

    # ---- container records -------------------------------------------------------------------
    async def _views(self, pod: Obj, containers: list[Obj], init: bool) -> list[ContainerView]:
        uid = pod["metadata"]["uid"]
        recs = [r for r in self.records.for_pod(uid) if r.init == init]
        views = []
        for c in containers:
            mine = sorted((r for r in recs if r.name == c["name"]), key=lambda r: r.attempt)
            cur = mine[-1] if mine else None
            if cur is not None and cur.exit_code is None:
                refreshed = await self.runtime.refresh(cur)
                if refreshed.exit_code is not None:
                    self.records.save(refreshed)
                cur = refreshed
            prev = mine[-2] if len(mine) > 1 else None
            waiting = self.state.waiting.get(c["name"], ("", ""))
            view = ContainerView(name=c["name"], image=c.get("image", ""), current=cur, previous=prev,
                                 restart_count=cur.attempt if cur else 0, waiting_reason=waiting[0],
                                 waiting_message=waiting[1])
            views.append(view)
        return views

    def _should_restart(self, policy: str, rec: ContainerRecord) -> bool:
        if policy == "Always":
            return True
        if policy == "OnFailure":
            return rec.exit_code != 0
        return False

    async def _start(self, pod: Obj, container: Obj, attempt: int, *, init: bool) -> None:
        name = container["name"]
        assert self.state.sandbox is not None and self.state.volumes is not None
        try:
            try:
                env = await resolve_env(pod, container, self.lookup, node_allocatable=self.node_allocatable)
            except EnvError as e:
                raise StartFailure("CreateContainerConfigError", str(e)) from e
            try:
                mounts = self.state.volumes.mounts_for(container)
            except VolumeError as e:
                raise StartFailure("CreateContainerConfigError", str(e)) from e
            with span(f"image.check {name}"):
                await self.runtime.pull_image(pod, container)
            rec = await self.runtime.start_container(pod, container, self.state.sandbox, attempt, init=init, env=env,
                                                     mounts=mounts, pod_files=self.state.pod_files)
        except StartFailure as e:
            now = self.clock()
            bo = self.state.backoff.setdefault(name, Backoff())
            bo.failed(now)
            if e.record is not None:
                self.records.save(e.record)
            if e.reason == "ErrImagePull":
                self.state.waiting[name] = ("ErrImagePull", e.message)
                await self._event(pod, "Warning", "Failed", f"Failed to pull image \"{container.get('image')}\": "
                                  f"{e.message}")
            else:
                self.state.waiting[name] = (e.reason, e.message)
                await self._event(pod, "Warning", "Failed", f"Error: {e.message}")
            return
        self.records.save(rec)
        self.state.waiting.pop(name, None)
        await self._event(pod, "Normal", "Started", f"Started container {name}")

    async def _converge(self, pod: Obj, container: Obj, view: ContainerView, policy: str, *, init: bool) -> None:
        name = container["name"]
        now = self.clock()
        cur = view.current
        bo = self.state.backoff.setdefault(name, Backoff())
        if cur is None:
            # Never started, or its start failed (image pull, config): retry after the backoff.
            if bo.until > now:
                reason = self.state.waiting.get(name, ("", ""))[0]
                if reason in ("ErrImagePull", "ImagePullBackOff"):
                    self.state.waiting[name] = ("ImagePullBackOff", f'Back-off pulling image "{container.get("image")}"')
                return
            await self._start(pod, container, 0, init=init)
            return
        if cur.running:
            if name in self.state.liveness_failed:
                self.state.liveness_failed.discard(name)
                await self._event(pod, "Normal", "Killing",
                                  f"Container {name} failed liveness probe, will be restarted")
                grace = float((pod.get("spec") or {}).get("terminationGracePeriodSeconds", 30))
                stopped = await self.runtime.stop_container(cur, grace)
                self.records.save(stopped)
            return
        if not self._should_restart(policy, cur):
            return
        # kube's doBackOff: the first restart is immediate; after that, wait 10 s, 20 s, ... 5 min
        # counted from when the container finished; a container that ran 10 min resets it.
        ran = _seconds_between(cur.started_at, cur.finished_at)
        if ran is not None and ran >= BACKOFF_RESET:
            bo.delay = 0.0
        finished = meta.parse_time(cur.finished_at)
        since = (time.time() - finished.timestamp()) if finished else 1e9
        if bo.delay > 0 and since < bo.delay:
            self._set_crashloop(pod, name, bo)
            self.state.backoff_until[name] = now + (bo.delay - since)
            return
        bo.delay = BACKOFF_START if bo.delay == 0 else min(bo.delay * 2, BACKOFF_MAX)
        self.state.waiting.pop(name, None)
        await self._start(pod, container, cur.attempt + 1, init=init)

    def _set_crashloop(self, pod: Obj, name: str, bo: Backoff) -> None:
        md = pod["metadata"]
        self.state.waiting[name] = ("CrashLoopBackOff", f"back-off {int(bo.delay)}s restarting failed container="
                                    f"{name} pod={md.get('name')}_{md.get('namespace')}({md.get('uid')})")

    # ---- sync ----------------------------------------------------------------------------------
    async def sync(self, pod: Obj) -> Obj:
        """Converge; returns the status to report."""
        spec = pod.get("spec") or {}
        policy = spec.get("restartPolicy", "Always")
        if self.state.volumes is None:
            self.state.volumes = PodVolumes(self.pod_dir, pod, self.lookup, node_allocatable=self.node_allocatable)
        try:
            with span("volumes"):
                await self.state.volumes.setup()
            self.state.volume_error = ""
        except VolumeError as e:
            if self.state.volume_error != str(e):
                await self._event(pod, "Warning", "FailedMount", f'MountVolume.SetUp failed: {e}')
            self.state.volume_error = str(e)
            return self._status(pod, [], [], sandbox_ready=False)
        if self.state.sandbox is None:
            try:
                with span("sandbox"):
                    self.state.sandbox = await self.runtime.run_sandbox(pod)
                self.state.sandbox_error = ""
            except Exception as e:
                if self.state.sandbox_error != str(e):
                    await self._event(pod, "Warning", "FailedCreatePodSandBox", f"Failed to create pod sandbox: {e}")
                self.state.sandbox_error = str(e)
                return self._status(pod, [], [], sandbox_ready=False)
        self.state.pod_files = write_pod_files(self.pod_dir, pod, self.state.sandbox.ip, self.dns)
        init_specs = list(spec.get("initContainers") or [])
        init_views = await self._views(pod, init_specs, init=True)
        for c, v in zip(init_specs, init_views, strict=True):
            if v.current is not None and v.current.exit_code == 0:
                continue
            init_policy = "Never" if policy == "Never" else "OnFailure"
            await self._converge(pod, c, v, init_policy, init=True)
            break
        init_views = await self._views(pod, init_specs, init=True)
        init_done = all(v.current is not None and v.current.exit_code == 0 for v in init_views)
        views: list[ContainerView] = []
        app_specs = list(spec.get("containers") or [])
        if init_done:
            views = await self._views(pod, app_specs, init=False)
            # The app containers are independent once the init containers are done: start them
            # together (the kubelet starts them one by one; each is ~4 process starts here).
            outcomes = await asyncio.gather(*(self._converge(pod, c, v, policy, init=False)
                                              for c, v in zip(app_specs, views, strict=True)),
                                            return_exceptions=True)
            for outcome in outcomes:
                if isinstance(outcome, BaseException):
                    raise outcome
            views = await self._views(pod, app_specs, init=False)
        return self._status(pod, init_views, views, sandbox_ready=True)

    def _status(self, pod: Obj, init_views: list[ContainerView], views: list[ContainerView], *,
                sandbox_ready: bool) -> Obj:
        spec = pod.get("spec") or {}
        policy = spec.get("restartPolicy", "Always")
        specs = {c["name"]: c for c in spec.get("containers") or []}
        for v in views:
            running = v.current is not None and v.current.running
            has_startup = bool(specs.get(v.name, {}).get("startupProbe"))
            v.started = running and (self.state.started.get(v.name, False) if has_startup else True)
            has_readiness = bool(specs.get(v.name, {}).get("readinessProbe"))
            v.ready = running and v.started and (self.state.ready.get(v.name, False) if has_readiness else True)
        for v in init_views:
            v.ready = v.current is not None and v.current.exit_code == 0
        init_specs = spec.get("initContainers") or []
        init_done = all(v.current is not None and v.current.exit_code == 0 for v in init_views) and \
            len(init_views) == len(init_specs)
        init_failed = policy == "Never" and any(v.current is not None and v.current.exit_code not in (None, 0)
                                                for v in init_views)
        if not sandbox_ready:
            init_done = False
        all_views = views or [ContainerView(name=c["name"], image=c.get("image", ""))
                              for c in spec.get("containers") or []]
        phase = compute_phase(policy, init_done, init_failed, views if init_done else all_views)
        containers_ready = bool(views) and all(v.ready for v in views)
        now = meta.now_rfc3339()
        old = pod.get("status") or {}
        status: Obj = {
            "phase": phase,
            "conditions": conditions(old.get("conditions") or [], initialized=init_done,
                                     containers_ready=containers_ready, ready=containers_ready,
                                     sandbox_ready=sandbox_ready, now=now),
            "containerStatuses": [container_status(v) for v in all_views],
            "startTime": old.get("startTime") or now,
            "qosClass": old.get("qosClass"),
        }
        if not views:
            for cs in status["containerStatuses"]:
                if self.state.volume_error or self.state.sandbox_error or not init_done:
                    cs["state"] = {"waiting": {"reason": "PodInitializing" if sandbox_ready and init_specs
                                               else "ContainerCreating"}}
        if init_specs:
            status["initContainerStatuses"] = [container_status(v) for v in init_views] or [
                container_status(ContainerView(name=c["name"], image=c.get("image", ""))) for c in init_specs]
        if self.state.sandbox is not None:
            ip = self.state.sandbox.ip
            status["podIP"] = ip
            status["podIPs"] = [{"ip": ip}]
        status["hostIP"] = old.get("hostIP") or ""
        return {k: v for k, v in status.items() if v is not None}

    # ---- termination -------------------------------------------------------------------------
    async def terminate(self, pod: Obj | None, pod_uid: str, grace: float) -> None:
        """Stop every container (preStop, TERM, grace, KILL), then the sandbox and the volumes."""
        recs = [r for r in self.records.for_pod(pod_uid) if r.exit_code is None]
        specs = {c["name"]: c for c in ((pod or {}).get("spec") or {}).get("containers") or []}

        async def stop(rec: ContainerRecord) -> None:
            rec = await self.runtime.refresh(rec)
            if rec.exit_code is not None:
                self.records.save(rec)
                return
            hook = ((specs.get(rec.name) or {}).get("lifecycle") or {}).get("preStop") or {}
            if "exec" in hook and grace > 0:
                try:
                    await asyncio.wait_for(self.runtime.exec_sync(rec, list(hook["exec"].get("command") or []), grace),
                                           grace)
                except (TimeoutError, Exception) as e:
                    log.debug("preStop of %s: %s", rec.name, e)
            if pod is not None:
                await self._event(pod, "Normal", "Killing", f"Stopping container {rec.name}")
            self.records.save(await self.runtime.stop_container(rec, grace))

        await asyncio.gather(*(stop(r) for r in recs))
        await self.runtime.stop_sandbox(pod, pod_uid)
        self.state.sandbox = None
        if self.state.volumes is not None:
            await self.state.volumes.teardown()
        self.state.terminated = True

    async def cleanup(self, pod_uid: str) -> None:
        for rec in self.records.for_pod(pod_uid):
            await self.runtime.remove_container(rec)
        await self.records.forget_pod_async(pod_uid)


def _seconds_between(start: str, end: str) -> float | None:
    a, b = meta.parse_time(start), meta.parse_time(end)
    if a is None or b is None:
        return None
    return (b - a).total_seconds()
