"""Container runtime layer of the kubelet: OCI configs, conmon + runc, CRI logs.

`oci_spec.build_container_spec` turns a pod's container into config.json (pure);
`ContainerRuntime` runs it under conmon and runc the way CRI-O does; `logs` reads and writes the
CRI log format conmon produces. Nothing here talks to the API server.
"""

from pocketkube.kubelet.runtime.container_runtime import ContainerRuntime, ExitStatus
from pocketkube.kubelet.runtime.errors import (
    ContainerCreateError,
    ContainerNotFound,
    ContainerNotRunning,
    ContainerStartError,
    ExecStartError,
    RuntimeCommandError,
    RuntimeError_,
    SpecError,
)
from pocketkube.kubelet.runtime.exec_process import ExecProcess
from pocketkube.kubelet.runtime.oci_spec import Mount, SandboxRef, build_container_spec
from pocketkube.kubelet.runtime.runc import ContainerState

__all__ = [
    "ContainerCreateError",
    "ContainerNotFound",
    "ContainerNotRunning",
    "ContainerRuntime",
    "ContainerStartError",
    "ContainerState",
    "ExecProcess",
    "ExecStartError",
    "ExitStatus",
    "Mount",
    "RuntimeCommandError",
    "RuntimeError_",
    "SandboxRef",
    "SpecError",
    "build_container_spec",
]
