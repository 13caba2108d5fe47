"""Facts about this machine that a Node reports: capacity, addresses, OS, kernel, runtime versions."""

from __future__ import annotations

import os
import platform
import shutil
import socket
import subprocess
from dataclasses import dataclass, field

from pocketkube import KUBE_GIT_VERSION


def _read(path: str, default: str = "") -> str:
    try:
        with open(path) as f:
            return f.read().strip()
    except OSError:
        return default


def memory_bytes() -> int:
    for line in _read("/proc/meminfo").splitlines():
        if line.startswith("MemTotal:"):
            return int(line.split()[1]) * 1024
    return 0


def os_image() -> str:
    for line in _read("/etc/os-release").splitlines():
        if line.startswith("PRETTY_NAME="):
            return line.split("=", 1)[1].strip().strip('"')
    return "Linux"


def runc_version() -> str:
    runc = shutil.which("runc") or "/usr/sbin/runc"
    try:
        out = subprocess.run([runc, "--version"], capture_output=True, text=True, timeout=5).stdout
    except (OSError, subprocess.TimeoutExpired):
        return "runc://unknown"
    first = out.splitlines()[0] if out else ""
    return "runc://" + (first.split()[-1] if first else "unknown")


def arch() -> str:
    m = platform.machine()
    return {"x86_64": "amd64", "aarch64": "arm64"}.get(m, m)


@dataclass
class NodeFacts:
    hostname: str = field(default_factory=socket.gethostname)
    cpus: int = field(default_factory=lambda: os.cpu_count() or 1)
    memory: int = field(default_factory=memory_bytes)
    max_pods: int = 110
    ephemeral_storage: int = 0

    def capacity(self) -> dict[str, str]:
        cap = {"cpu": str(self.cpus), "memory": f"{self.memory // 1024}Ki", "pods": str(self.max_pods)}
        if self.ephemeral_storage:
            cap["ephemeral-storage"] = f"{self.ephemeral_storage // 1024}Ki"
        return cap

    def node_info(self, runtime_version: str) -> dict[str, str]:
        return {
            "machineID": _read("/etc/machine-id"),
            "systemUUID": _read("/sys/class/dmi/id/product_uuid") or _read("/etc/machine-id"),
            "bootID": _read("/proc/sys/kernel/random/boot_id"),
            "kernelVersion": platform.release(),
            "osImage": os_image(),
            "containerRuntimeVersion": runtime_version,
            "kubeletVersion": KUBE_GIT_VERSION,
            "kubeProxyVersion": KUBE_GIT_VERSION,
            "operatingSystem": "linux",
            "architecture": arch(),
        }
