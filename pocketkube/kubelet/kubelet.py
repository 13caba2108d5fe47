"""The kubelet's pod loop: watch the pods bound to this node and keep one worker per pod.

Each pod gets a task that syncs its PodWorker whenever the pod changes, a probe reports, or a
timer fires (1 s while anything is starting or backing off), and PATCHes pods/status when the
computed status differs. A pod marked for deletion is stopped within its grace period and then
deleted for good (grace 0) — the API server waits for that. At start, containers recorded on disk
are re-adopted (never restarted); records of pods the API no longer has are cleaned up.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
from dataclasses import dataclass, field
from typing import Any

import orjson

from pocketkube.api import errors
from pocketkube.client.events import EventRecorder
from pocketkube.client.informer import Informer
from pocketkube.client.rest import APIClient
from pocketkube.kubelet.pod_files import DNSSettings
from pocketkube.kubelet.pod_worker import PodWorker
from pocketkube.kubelet.prober import ProbeWorker
from pocketkube.kubelet.records import RecordStore
from pocketkube.kubelet.runtime_service import RuntimeService
from pocketkube.kubelet.startup_trace import PodTrace, StartupTracer, activate, span

log = logging.getLogger(__name__)
Obj = dict[str, Any]


@dataclass
class KubeletConfig:
    node_name: str
    data_dir: str
    node_ip: str = "127.0.0.1"
    dns: DNSSettings = field(default_factory=DNSSettings)
    resync_seconds: float = 1.0


class PodTask:
    def __init__(self, kubelet: Kubelet, uid: str, worker: PodWorker) -> None:
        self.kubelet = kubelet
        self.uid = uid
        self.worker = worker
        self.wake = asyncio.Event()
        self.pod: Obj | None = None
        self.seen = False  # whether the API ever showed this pod to us (an orphan: never)
        self.last_status: bytes = b""
        self.probes: dict[str, asyncio.Task[None]] = {}  # "<kind>/<container id>" -> task
        self.task: asyncio.Task[None] | None = None
        self.trace: PodTrace | None = None

    def update(self, pod: Obj | None) -> None:
        self.pod = pod
        self.seen = self.seen or pod is not None
        self.wake.set()

    def probe_report(self, kind: str, container: str, ok: bool, message: str) -> None:
        st = self.worker.state
        if kind == "readiness":
            st.ready[container] = ok
        elif kind == "startup":
            st.started[container] = ok
            if not ok:
                st.liveness_failed.add(container)
        elif kind == "liveness" and not ok:
            st.liveness_failed.add(container)
        if not ok and self.pod is not None:
            self.kubelet.background(self.kubelet.recorder.event(
                self.pod, "Warning", "Unhealthy", f"{kind.capitalize()} probe failed: {message}"))
        self.wake.set()

    def _sync_probes(self, status: Obj) -> None:
        pod = self.pod or {}
        specs = {c["name"]: c for c in (pod.get("spec") or {}).get("containers") or []}
        wanted: set[str] = set()
        sandbox = self.worker.state.sandbox
        for cs in status.get("containerStatuses") or []:
            if "running" not in (cs.get("state") or {}):
                continue
            cid = cs.get("containerID", "")
            spec = specs.get(cs["name"]) or {}
            for kind, key in (("liveness", "livenessProbe"), ("readiness", "readinessProbe"), ("startup", "startupProbe")):
                probe = spec.get(key)
                if not probe or sandbox is None:
                    continue
                if kind != "startup" and spec.get("startupProbe") and not self.worker.state.started.get(cs["name"]):
                    continue
                if kind == "startup" and self.worker.state.started.get(cs["name"]):
                    continue
                tag = f"{kind}/{cid}"
                wanted.add(tag)
                if tag not in self.probes:
                    rec = next((r for r in self.kubelet.records.for_pod(self.uid)
                                if f"runc://{r.container_id}" == cid), None)
                    if rec is None:
                        continue

                    async def exec_fn(argv: list[str], timeout: float, rec: Any = rec) -> tuple[int, bytes]:
                        return await self.kubelet.runtime.exec_sync(rec, argv, timeout)

                    worker = ProbeWorker(kind, probe, spec, sandbox.ip, exec_fn, self.probe_report)
                    self.probes[tag] = self.kubelet.spawn(worker.run(), f"probe-{tag}")
        for tag in list(self.probes):
            if tag not in wanted:
                self.probes.pop(tag).cancel()

    async def run(self) -> None:
        kubelet = self.kubelet
        activate(self.trace)
        try:
            while True:
                pod = self.pod
                if pod is None or pod["metadata"].get("deletionTimestamp"):
                    await self._terminate(pod)
                    return
                try:
                    status = await self.worker.sync(pod)
                    self._sync_probes(status)
                    await self._report(pod, status)
                except Exception:
                    log.exception("sync of pod %s failed", pod["metadata"].get("name"))
                self.wake.clear()
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self.wake.wait(), kubelet.config.resync_seconds)
        finally:
            for t in self.probes.values():
                t.cancel()

    async def _report(self, pod: Obj, status: Obj) -> None:
        status = {**status, "hostIP": self.kubelet.config.node_ip, "hostIPs": [{"ip": self.kubelet.config.node_ip}]}
        raw = orjson.dumps(status, option=orjson.OPT_SORT_KEYS)
        if raw == self.last_status:
            return
        md = pod["metadata"]
        try:
            with span("status.patch"):
                await self.kubelet.pods.patch(md["name"], {"status": status}, md["namespace"],
                                              subresource="status", field_manager="pocketkube-kubelet")
            self.last_status = raw
        except errors.NotFound:
            return
        if self.trace is not None and _all_started(pod, status):
            self.kubelet.tracer.finish(self.trace)

    async def _terminate(self, pod: Obj | None) -> None:
        # Gone from the API before we could stop it gracefully: force-deleted (kube then uses its
        # minimum grace, 2 s), or deleted while this agent was away (kube's HandlePodCleanups
        # kills such orphans with a 1 s grace override). Their spec is not ours to wait on.
        grace = 2.0 if self.seen else 1.0
        if pod is not None:
            md = pod["metadata"]
            grace = float(md.get("deletionGracePeriodSeconds") if md.get("deletionGracePeriodSeconds") is not None
                          else (pod.get("spec") or {}).get("terminationGracePeriodSeconds", 30))
        await self.worker.terminate(pod, self.uid, grace)
        # Remove containers (and unmount their filesystems) before the pod leaves the API: an
        # agent stopped right after the delete must not leave mounts behind.
        await self.worker.cleanup(self.uid)
        if pod is not None:
            md = pod["metadata"]
            try:
                await self.kubelet.pods.delete(md["name"], md["namespace"], grace_period_seconds=0, uid=self.uid)
            except (errors.NotFound, errors.Conflict):
                pass
        self.kubelet.forget(self.uid)


def _all_started(pod: Obj, status: Obj) -> bool:
    want = {c["name"] for c in (pod.get("spec") or {}).get("containers") or []}
    started = {cs.get("name") for cs in status.get("containerStatuses") or []
               if "running" in (cs.get("state") or {}) and cs.get("started")}
    return bool(want) and want <= started


class Kubelet:
    def __init__(self, client: APIClient, runtime: RuntimeService, config: KubeletConfig) -> None:
        self.client = client
        self.runtime = runtime
        self.config = config
        self.pods = client.core("pods")
        self.records = RecordStore(os.path.join(config.data_dir, "records"))
        self.recorder = EventRecorder(client, "kubelet", host=config.node_name)
        self.informer = Informer(self.pods, field_selector=f"spec.nodeName={config.node_name}")
        self.informer.add_handler(self._changed)
        self.tasks: dict[str, PodTask] = {}
        self._tg: asyncio.TaskGroup | None = None
        self.node_allocatable: dict[str, str] = {}
        self.tracer = StartupTracer()

    def spawn(self, coro: Any, name: str) -> asyncio.Task[None]:
        """A task in the kubelet's group that logs its failure instead of taking the kubelet down."""
        assert self._tg is not None

        async def guarded() -> None:
            try:
                await coro
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("kubelet task %s failed", name)

        return self._tg.create_task(guarded(), name=name)

    def background(self, coro: Any) -> None:
        self.spawn(coro, "kubelet-event")

    async def _lookup(self, namespace: str, kind: str, name: str) -> Obj | None:
        try:
            return await self.client.core(kind).get(name, namespace)
        except errors.NotFound:
            return None

    def _worker(self, pod: Obj) -> PodWorker:
        uid = pod["metadata"]["uid"]
        ns = pod["metadata"]["namespace"]

        async def lookup(kind: str, name: str) -> Obj | None:
            return await self._lookup(ns, kind, name)

        async def emit(p: Obj, etype: str, reason: str, message: str) -> None:
            # Fire and forget, like the kubelet's event broadcaster: the status PATCH that shows a
            # container started must not wait for the Event's round trip (~5-300 ms per start).
            self.background(self._event(p, etype, reason, message))

        return PodWorker(runtime=self.runtime, records=self.records, lookup=lookup,
                         pod_dir=os.path.join(self.config.data_dir, "pods", uid), dns=self.config.dns,
                         node_allocatable=self.node_allocatable, emit=emit)

    async def _event(self, pod: Obj, etype: str, reason: str, message: str) -> None:
        try:
            await self.recorder.event(pod, etype, reason, message)
        except Exception as e:  # best effort: a failed Event must not take the TaskGroup down
            log.debug("event %s for %s: %s", reason, pod["metadata"].get("name"), e)

    def _changed(self, old: Obj | None, new: Obj | None) -> None:
        pod = new if new is not None else old
        assert pod is not None
        uid = pod["metadata"]["uid"]
        task = self.tasks.get(uid)
        if new is None:
            if task is not None:
                task.update(None)
            elif self._tg is not None:
                self._orphan(uid)
            return
        if task is None:
            if self._tg is None:
                return
            task = PodTask(self, uid, self._worker(new))
            task.trace = self.tracer.begin(new["metadata"].get("name", ""))
            self.tasks[uid] = task
            task.update(new)
            task.task = self.spawn(task.run(), f"pod-{new['metadata'].get('name')}")
        else:
            task.update(new)

    def _orphan(self, uid: str) -> None:
        task = PodTask(self, uid, PodWorker(runtime=self.runtime, records=self.records, lookup=self._no_lookup,
                                            pod_dir=os.path.join(self.config.data_dir, "pods", uid),
                                            dns=self.config.dns))
        self.tasks[uid] = task
        task.update(None)
        task.task = self.spawn(task.run(), f"pod-orphan-{uid[:8]}")

    async def _no_lookup(self, kind: str, name: str) -> Obj | None:
        return None

    def forget(self, uid: str) -> None:
        self.tasks.pop(uid, None)

    async def run(self) -> None:
        try:
            await self._run()
        finally:
            self.tracer.close()

    async def _run(self) -> None:
        async with asyncio.TaskGroup() as tg:
            self._tg = tg
            if self.tracer.enabled:
                self.spawn(self.tracer.watch_loop(), "startup-trace-loop-stalls")
            self.informer.start(tg)
            await self.informer.synced.wait()
            for obj in self.informer.list():
                self._changed(None, obj)
            live = {p["metadata"]["uid"] for p in self.informer.list()}
            for uid in self.records.pod_uids():
                if uid not in live and uid not in self.tasks:
                    self._orphan(uid)
