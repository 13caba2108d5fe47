"""What the pod workers need from the container runtime, as a protocol (the real one is
runtime_runc.py over runc+conmon+CNI+overlayfs; unit tests use a fake)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Protocol

from pocketkube.kubelet.records import ContainerRecord
from pocketkube.kubelet.volumes import VolumeMount

Obj = dict[str, Any]


@dataclass
class Sandbox:
    pod_uid: str
    netns_path: str | None
    ip: str
    pause_id: str | None
    host_network: bool = False


class StartFailure(Exception):
    """A container could not be started; `reason` is what the pod status says (kube's words:
    ErrImagePull, CreateContainerConfigError, CreateContainerError, RunContainerError, StartError)."""

    def __init__(self, reason: str, message: str, record: ContainerRecord | None = None) -> None:
        super().__init__(f"{reason}: {message}")
        self.reason = reason
        self.message = message
        self.record = record


class RuntimeService(Protocol):
    async def run_sandbox(self, pod: Obj) -> Sandbox: ...

    async def stop_sandbox(self, pod: Obj | None, pod_uid: str) -> None: ...

    async def pull_image(self, pod: Obj, container: Obj) -> str:
        """Pull per imagePullPolicy; returns the image id. StartFailure("ErrImagePull", ...) on error."""
        ...

    async def start_container(self, pod: Obj, container: Obj, sandbox: Sandbox, attempt: int, *, init: bool,
                              env: dict[str, str], mounts: list[VolumeMount], pod_files: dict[str, str],
                              ) -> ContainerRecord: ...

    async def refresh(self, rec: ContainerRecord) -> ContainerRecord:
        """Update exit code / finish time / OOMKilled from the runtime; never raises for a gone container."""
        ...

    async def stop_container(self, rec: ContainerRecord, grace_seconds: float) -> ContainerRecord: ...

    async def remove_container(self, rec: ContainerRecord) -> None: ...

    async def exec_sync(self, rec: ContainerRecord, argv: list[str], timeout: float) -> tuple[int, bytes]: ...
