"""A fake container runtime for pod-worker unit tests: containers "run" a scripted exit."""

from __future__ import annotations

import dataclasses
from typing import Any

from pocketkube.api import meta
from pocketkube.kubelet.records import ContainerRecord
from pocketkube.kubelet.runtime_service import Sandbox, StartFailure
from pocketkube.kubelet.volumes import VolumeMount

Obj = dict[str, Any]


class FakeRuntime:
    def __init__(self) -> None:
        self.exits: dict[str, list[int | None]] = {}  # container name -> exit codes per attempt (None: runs)
        self.bad_images: set[str] = set()
        self.started: list[tuple[str, int]] = []
        self.stopped: list[str] = []
        self.sandboxes: set[str] = set()

    async def run_sandbox(self, pod: Obj) -> Sandbox:
        self.sandboxes.add(pod["metadata"]["uid"])
        return Sandbox(pod["metadata"]["uid"], "/run/netns/fake", "10.42.0.7", "pause")

    async def stop_sandbox(self, pod: Obj | None, pod_uid: str) -> None:
        self.sandboxes.discard(pod_uid)

    async def pull_image(self, pod: Obj, container: Obj) -> str:
        if container.get("image") in self.bad_images:
            raise StartFailure("ErrImagePull", "manifest unknown")
        return "sha256:fake"

    async def start_container(self, pod: Obj, container: Obj, sandbox: Sandbox, attempt: int, *, init: bool,
                              env: dict[str, str], mounts: list[VolumeMount], pod_files: dict[str, str]) -> ContainerRecord:
        name = container["name"]
        self.started.append((name, attempt))
        script = self.exits.get(name, [None])
        code = script[min(attempt, len(script) - 1)]
        now = meta.now_rfc3339()
        return ContainerRecord(pod_uid=pod["metadata"]["uid"], name=name, attempt=attempt,
                               container_id=f"{name}-{attempt}", image=container.get("image", ""),
                               image_id="sha256:fake", bundle_dir="", log_path="", init=init, created_at=now,
                               started_at=now, finished_at=now if code is not None else "", exit_code=code,
                               reason="" if code is None else ("Completed" if code == 0 else "Error"))

    async def refresh(self, rec: ContainerRecord) -> ContainerRecord:
        return rec

    async def stop_container(self, rec: ContainerRecord, grace_seconds: float) -> ContainerRecord:
        self.stopped.append(rec.name)
        return dataclasses.replace(rec, exit_code=137, finished_at=meta.now_rfc3339(), reason="Error")

    async def remove_container(self, rec: ContainerRecord) -> None:
        pass

    async def exec_sync(self, rec: ContainerRecord, argv: list[str], timeout: float) -> tuple[int, bytes]:
        return 0, b""
