"""Typed runtime errors, carrying the runtime's own message so the kubelet can show it.

The kubelet turns these into container states: a `SpecError` becomes waiting
`CreateContainerConfigError`; a create or start failure becomes waiting `RunContainerError` with a
last state terminated `StartError` (exit code 128), as with containerd. `str(err)` is runc's or
conmon's message verbatim (for example `exec: "nosuch": executable file not found in $PATH`).
Imports nothing else of pocketkube.
"""

from __future__ import annotations


class RuntimeError_(Exception):
    """Base of every container runtime failure; `reason` is the kubelet-facing reason."""

    reason = "RuntimeError"
    #: the reason a container shows as its last terminated state when this error stops it
    terminated_reason = "Error"
    exit_code = 128

    def __init__(self, message: str, *, container_id: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.container_id = container_id


class SpecError(RuntimeError_):
    """The pod or image cannot be turned into an OCI config (no command, user name unresolvable...)."""

    reason = "CreateContainerConfigError"


class ContainerCreateError(RuntimeError_):
    """conmon or `runc create` failed: the process could not be set up (missing executable, bad mount)."""

    reason = "RunContainerError"
    terminated_reason = "StartError"


class ContainerStartError(RuntimeError_):
    """`runc start` failed on a created container."""

    reason = "RunContainerError"
    terminated_reason = "StartError"


class ContainerNotFound(RuntimeError_):
    """runc knows no container by this id."""

    reason = "NotFound"


class ContainerNotRunning(RuntimeError_):
    """The operation needs a running container (kill, exec)."""

    reason = "NotRunning"


class ExecStartError(RuntimeError_):
    """`runc exec` could not start the process; the kubelet reports it like a failed exec (126/127)."""

    reason = "ExecError"


class RuntimeCommandError(RuntimeError_):
    """Any other runc/conmon failure, with its exit status."""

    def __init__(self, message: str, *, container_id: str | None = None, returncode: int | None = None) -> None:
        super().__init__(message, container_id=container_id)
        self.returncode = returncode
