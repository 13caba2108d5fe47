"""The node's real runtime: images on overlayfs, CNI sandboxes with a pause process, runc under conmon.

It implements runtime_service.RuntimeService for the pod workers. A pod's sandbox is a network
namespace wired by CNI plus a pause container (catatonit, `runc run --detach`, started while CNI
runs) that the app containers join for ipc and uts; every app container is an OCI bundle built from the pod spec, started by conmon+runc so it
outlives the agent, logging in the CRI format under `pods/<uid>/logs/<container>/<attempt>.log`.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
import os
import shutil
from datetime import UTC, datetime
from typing import Any

import orjson

from pocketkube.api import meta
from pocketkube.kubelet.images.errors import ImageError
from pocketkube.kubelet.images.store import ImageStore, PullPolicy
from pocketkube.kubelet.network.sandbox import SandboxNetwork, pod_hostname
from pocketkube.kubelet.records import ContainerRecord
from pocketkube.kubelet.runtime.container_runtime import ContainerRuntime
from pocketkube.kubelet.runtime.errors import RuntimeError_, SpecError
from pocketkube.kubelet.runtime.host_facts import current_capabilities, passwd_resolver
from pocketkube.kubelet.runtime.oci_spec import Mount, SandboxRef, build_container_spec
from pocketkube.kubelet.runtime_service import Sandbox, StartFailure
from pocketkube.kubelet.startup_trace import span
from pocketkube.kubelet.volumes import VolumeMount

log = logging.getLogger(__name__)
Obj = dict[str, Any]

PAUSE_BINARY = "/usr/bin/catatonit"


def _rfc3339(epoch: float) -> str:
    return meta.format_time(datetime.fromtimestamp(epoch, UTC))


class RuncRuntimeService:
    def __init__(self, *, data_dir: str, images: ImageStore, network: SandboxNetwork, runtime: ContainerRuntime,
                 cgroup_root: str = "/pocketkube", credentials: Any = None) -> None:
        self.data_dir = data_dir
        self.images = images
        self.network = network
        self.runtime = runtime
        self.cgroup_root = cgroup_root
        self.credentials = credentials  # async (pod) -> credentials for the image store
        self.pause_rootfs = os.path.join(data_dir, "pause-rootfs")
        self._pause_pids: dict[str, int] = {}
        # "ALL" and privileged grant what this agent has (no CAP_SYS_RESOURCE on some hosts).
        self._capabilities = current_capabilities()
        self._locks: dict[str, asyncio.Lock] = {}

    # ---- sandbox -----------------------------------------------------------------------------
    def _ensure_pause_rootfs(self) -> None:
        target = os.path.join(self.pause_rootfs, "catatonit")
        if os.path.exists(target):
            return
        for d in ("proc", "dev", "sys", "etc"):
            os.makedirs(os.path.join(self.pause_rootfs, d), exist_ok=True)
        shutil.copy2(PAUSE_BINARY, target + ".tmp")
        os.replace(target + ".tmp", target)

    def _pause_id(self, uid: str) -> str:
        return f"{uid}-pause"

    def _cgroup_parent(self, uid: str) -> str:
        return f"{self.cgroup_root}/pod{uid}"

    async def run_sandbox(self, pod: Obj) -> Sandbox:
        uid = pod["metadata"]["uid"]
        async with self._locks.setdefault(uid, asyncio.Lock()):
            host_network = bool((pod.get("spec") or {}).get("hostNetwork"))
            pause_id = self._pause_id(uid)
            pid = await self._running_pid(pause_id)
            started: list[int] = []

            async def start_pause(netns_path: str | None) -> None:
                if pid is None:
                    with span("pause.run"):
                        started.append(await self._start_pause(pod, pause_id, netns_path, host_network))

            try:
                # The pause process starts while CNI wires the namespace it joins.
                netns_path, podnet = await self.network.setup(pod, with_namespace=start_pause)
            except BaseException:
                if started:  # its namespace was removed again: do not leave it running there
                    with contextlib.suppress(RuntimeError_):
                        await self.runtime.remove_detached(pause_id)
                raise
            pause_pid = started[0] if started else pid
            assert pause_pid is not None
            self._pause_pids[uid] = pause_pid
            return Sandbox(uid, netns_path, podnet.ip, pause_id, host_network)

    async def _start_pause(self, pod: Obj, pause_id: str, netns_path: str | None, host_network: bool) -> int:
        uid = pod["metadata"]["uid"]
        self._ensure_pause_rootfs()
        cdir = os.path.join(self.data_dir, "containers", pause_id)
        bundle = os.path.join(cdir, "bundle")
        spec = build_container_spec(
            pod=pod, container={"name": "POD", "command": ["/catatonit", "-P"]}, image_config={},
            rootfs=self.pause_rootfs, sandbox=SandboxRef(netns_path, None, host_network), mounts=[], env=[],
            cgroup_parent=self._cgroup_parent(uid), hostname=pod_hostname(pod, ""), container_id=pause_id,
            container_type="sandbox")
        spec["root"] = {"path": self.pause_rootfs, "readonly": True}
        os.makedirs(bundle, exist_ok=True)
        with open(os.path.join(bundle, "config.json"), "wb") as f:
            f.write(orjson.dumps(spec))
        with contextlib.suppress(RuntimeError_):
            await self.runtime.delete(pause_id, force=True)  # a stopped one left over
        return await self.runtime.run_detached(pause_id, bundle)

    async def _running_pid(self, container_id: str) -> int | None:
        try:
            st = await self.runtime.state(container_id)
        except RuntimeError_:
            return None
        return st.pid if st.status == "running" and st.pid else None

    async def stop_sandbox(self, pod: Obj | None, pod_uid: str) -> None:
        pause_id = self._pause_id(pod_uid)
        with contextlib.suppress(RuntimeError_):
            await self.runtime.remove_detached(pause_id)  # catatonit -P has nothing to flush
        await asyncio.to_thread(shutil.rmtree, os.path.join(self.data_dir, "containers", pause_id), True)
        with contextlib.suppress(Exception):
            if pod is not None:
                await self.network.teardown(pod)
            else:
                await self.network.teardown_uid(pod_uid)
        self._pause_pids.pop(pod_uid, None)
        await asyncio.to_thread(self._remove_cgroup, pod_uid)  # rmdir of a cgroup may wait on the kernel

    def _remove_cgroup(self, uid: str) -> None:
        rel = self._cgroup_parent(uid).lstrip("/")
        base = "/sys/fs/cgroup"
        with contextlib.suppress(OSError):
            for ctrl in os.listdir(base):
                path = os.path.join(base, ctrl, rel)
                if os.path.isdir(path):
                    for child in sorted(os.listdir(path), reverse=True):
                        with contextlib.suppress(OSError):
                            os.rmdir(os.path.join(path, child))
                    with contextlib.suppress(OSError):
                        os.rmdir(path)

    # ---- images ------------------------------------------------------------------------------
    async def pull_image(self, pod: Obj, container: Obj) -> str:
        ref = str(container.get("image") or "")
        raw_policy = str(container.get("imagePullPolicy") or "IfNotPresent")
        policy: PullPolicy = "IfNotPresent"
        if raw_policy == "Always":
            policy = "Always"
        elif raw_policy == "Never":
            policy = "Never"
        creds = await self.credentials(pod) if self.credentials is not None else None
        try:
            image = await self.images.pull_if_needed(ref, policy, credentials=creds)
        except ImageError as e:
            raise StartFailure("ErrImagePull", str(e)) from e
        return image.id

    # ---- containers --------------------------------------------------------------------------
    def container_id(self, uid: str, name: str, attempt: int) -> str:
        return f"{uid}-{name}-{attempt}"

    async def start_container(self, pod: Obj, container: Obj, sandbox: Sandbox, attempt: int, *, init: bool,
                              env: dict[str, str], mounts: list[VolumeMount], pod_files: dict[str, str],
                              ) -> ContainerRecord:
        uid = pod["metadata"]["uid"]
        name = container["name"]
        cid = self.container_id(uid, name, attempt)
        image = self.images.get(str(container.get("image") or ""))
        if image is None:
            raise StartFailure("ErrImageNeverPull", f'image "{container.get("image")}" is not present')
        cdir = os.path.join(self.data_dir, "containers", cid)
        log_dir = os.path.join(self.data_dir, "pods", uid, "logs", name)
        os.makedirs(log_dir, exist_ok=True)
        log_path = os.path.join(log_dir, f"{attempt}.log")
        now = meta.now_rfc3339()
        rec = ContainerRecord(pod_uid=uid, name=name, attempt=attempt, container_id=cid,
                              image=str(container.get("image") or ""), image_id=image.id,
                              bundle_dir=os.path.join(cdir, "bundle"), log_path=log_path, init=init, created_at=now)
        with contextlib.suppress(RuntimeError_):
            await self.runtime.delete(cid, force=True)
        try:
            with span(f"rootfs.mount {name}"):
                rootfs = await self.images.mount_rootfs(image, cdir)
        except ImageError as e:
            raise StartFailure("CreateContainerError", str(e)) from e
        term_log = os.path.join(cdir, "termination-log")
        open(term_log, "w").close()
        oci_mounts = [Mount(destination=m.destination, source=m.source, read_only=m.read_only) for m in mounts]
        oci_mounts += [Mount(destination=dst, source=src) for dst, src in pod_files.items()
                       if not any(m.destination == dst for m in mounts)]
        oci_mounts.append(Mount(destination=str(container.get("terminationMessagePath") or "/dev/termination-log"),
                                source=term_log))
        pause_pid = self._pause_pids.get(uid)
        try:
            spec = build_container_spec(
                pod=pod, container=container, image_config=dataclasses.asdict(image.config)
                if dataclasses.is_dataclass(image.config) else dict(image.config),  # type: ignore[arg-type]
                rootfs=rootfs, sandbox=SandboxRef(sandbox.netns_path, pause_pid, sandbox.host_network),
                mounts=oci_mounts, env=[f"{k}={v}" for k, v in env.items()],
                cgroup_parent=self._cgroup_parent(uid), hostname=pod_hostname(pod, ""), container_id=cid,
                all_capabilities=self._capabilities, resolve_user=passwd_resolver(rootfs))
        except SpecError as e:
            raise StartFailure("CreateContainerError", str(e)) from e
        os.makedirs(rec.bundle_dir, exist_ok=True)
        with open(os.path.join(rec.bundle_dir, "config.json"), "wb") as f:
            f.write(orjson.dumps(spec))
        try:
            with span(f"create {name}"):
                await self.runtime.create(cid, rec.bundle_dir, log_path, stdin=bool(container.get("stdin")),
                                          tty=bool(container.get("tty")), stdin_once=bool(container.get("stdinOnce")))
            with span(f"start {name}"):
                await self.runtime.start(cid)
        except RuntimeError_ as e:
            message = str(e)
            failed = dataclasses.replace(rec, started_at=now, finished_at=meta.now_rfc3339(), exit_code=128,
                                         reason="StartError", message=message)
            raise StartFailure("RunContainerError", message, failed) from e
        return dataclasses.replace(rec, started_at=meta.now_rfc3339())

    async def refresh(self, rec: ContainerRecord) -> ContainerRecord:
        if rec.exit_code is not None:
            return rec
        status = self.runtime.exit_status(rec.container_id)
        if status is None:
            # The cheap check first: `runc state` per running container per sync was most of
            # the agent's subprocesses (two syncs a second per pod).
            if not os.path.isdir(self.runtime.container_dir(rec.container_id)) and \
                    await self._running_pid(rec.container_id) is None:
                return dataclasses.replace(rec, exit_code=255, finished_at=meta.now_rfc3339(), reason="Unknown",
                                           message="the container is gone (node restarted?)")
            return rec
        reason = "OOMKilled" if status.oom_killed else ("Completed" if status.exit_code == 0 else "Error")
        message = ""
        term = os.path.join(self.data_dir, "containers", rec.container_id, "termination-log")
        with contextlib.suppress(OSError), open(term, errors="replace") as f:
            message = f.read(4096)
        return dataclasses.replace(rec, exit_code=status.exit_code, finished_at=_rfc3339(status.finished_at),
                                   reason=reason, message=message)

    async def stop_container(self, rec: ContainerRecord, grace_seconds: float) -> ContainerRecord:
        with contextlib.suppress(RuntimeError_):
            await self.runtime.stop(rec.container_id, grace_seconds)
        return await self.refresh(rec)

    async def remove_container(self, rec: ContainerRecord) -> None:
        with contextlib.suppress(RuntimeError_):
            await self.runtime.delete(rec.container_id, force=True)
        cdir = os.path.join(self.data_dir, "containers", rec.container_id)
        with contextlib.suppress(ImageError, OSError):
            await self.images.unmount(cdir)
        await asyncio.to_thread(shutil.rmtree, cdir, True)  # the upper dir holds what the container wrote

    async def exec_sync(self, rec: ContainerRecord, argv: list[str], timeout: float) -> tuple[int, bytes]:
        proc = await self.runtime.exec(rec.container_id, argv)
        try:
            out = await asyncio.wait_for(proc.stdout.read(), timeout)
            code = await asyncio.wait_for(proc.wait(), timeout)
        except TimeoutError:
            proc.send_signal(9)
            raise
        return code, out
