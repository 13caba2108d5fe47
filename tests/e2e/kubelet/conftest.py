"""Fixtures for real runc + conmon tests: a busybox rootfs, a runtime in a scratch dir, full clean-up.

Everything is named `pktest-<random>` and the cgroups live under `/pocketkube-test-<random>`,
so the finalizer can remove exactly what the test created: runc containers (delete --force),
conmon processes (by the pid in conmon.pid), cgroup dirs in every hierarchy, and the scratch dir.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import shutil
import signal
import subprocess
import tempfile
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import pytest

from pocketkube.kubelet.runtime import ContainerRuntime, Mount, SandboxRef, build_container_spec
from pocketkube.kubelet.runtime.host_facts import cgroup_dirs, remove_cgroup
from tests.support.registry import local_registry

__all__ = ["local_registry"]

RUNC = "/usr/sbin/runc"
CONMON = "/usr/bin/conmon"
BUSYBOX = "/usr/bin/busybox"
APPLETS = ["sh", "sleep", "echo", "cat", "ls", "httpd", "wget", "id", "hostname", "ps", "head", "tr",
           "grep", "tty", "stty", "env", "true", "false", "kill", "printf", "wc", "yes", "dd", "trap"]


def _require_host() -> None:
    if os.geteuid() != 0:
        pytest.skip("needs root")
    for path in (RUNC, CONMON, BUSYBOX):
        if not os.path.exists(path):
            pytest.skip(f"needs {path}")


def pytest_asyncio_loop_factories(config: pytest.Config, item: pytest.Item) -> dict[str, Callable[[], asyncio.AbstractEventLoop]]:
    """Runtime tests on both loops (pipes and child handling differ under uvloop); the network layer
    needs the standard loop (pyroute2's netlink sockets), which is what the agent runs when it runs pods."""
    import uvloop

    if item.path.name != "test_runtime.py":
        return {"asyncio": asyncio.new_event_loop}
    return {"asyncio": asyncio.new_event_loop, "uvloop": uvloop.new_event_loop}


@pytest.fixture(scope="session")
def busybox_rootfs() -> Iterator[str]:
    """A rootfs with the static busybox and its applets as symlinks (no image store needed)."""
    _require_host()
    base = tempfile.mkdtemp(prefix="pktest-rootfs-", dir="/tmp")
    rootfs = os.path.join(base, "rootfs")
    for sub in ("bin", "proc", "dev", "sys", "tmp", "etc", "www"):
        os.makedirs(os.path.join(rootfs, sub))
    shutil.copy2(BUSYBOX, os.path.join(rootfs, "bin", "busybox"))
    for applet in APPLETS:
        os.symlink("busybox", os.path.join(rootfs, "bin", applet))
    with open(os.path.join(rootfs, "etc", "passwd"), "w") as f:
        f.write("root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/:/bin/false\n")
    yield rootfs
    shutil.rmtree(base, ignore_errors=True)


@dataclass
class RuntimeEnv:
    """One test's runtime, scratch dir and naming; `bundle()` writes a config.json from a pod spec."""

    tag: str
    base: str
    rootfs: str
    cgroup_parent: str
    runtime: ContainerRuntime
    ids: list[str] = field(default_factory=list)

    def new_id(self, name: str) -> str:
        cid = f"{self.tag}-{name}"
        self.ids.append(cid)
        return cid

    def log_path(self, cid: str) -> str:
        return os.path.join(self.base, "logs", cid, "0.log")

    def bundle(self, cid: str, container: dict[str, Any], *, pod_spec: dict[str, Any] | None = None,
               sandbox: SandboxRef | None = None, mounts: list[Mount] | None = None,
               env: list[str] | None = None, image_config: dict[str, Any] | None = None) -> str:
        pod = {"metadata": {"name": "p", "namespace": "default", "uid": "u-1"}, "spec": pod_spec or {}}
        config = build_container_spec(
            pod=pod, container=container, image_config=image_config or {"Env": ["PATH=/bin"]},
            rootfs=self.rootfs, sandbox=sandbox or SandboxRef(netns_path=None), mounts=mounts or [],
            env=env or [], cgroup_parent=self.cgroup_parent, hostname="p", container_id=cid)
        bundle = os.path.join(self.base, "bundles", cid)
        os.makedirs(bundle)
        with open(os.path.join(bundle, "config.json"), "w") as f:
            json.dump(config, f, indent=1)
        return bundle


def cleanup_runtime(env: RuntimeEnv) -> None:
    """Remove every trace, whatever state the test left things in."""
    runc_root = env.runtime.runc.root
    ids = set(env.ids)
    with contextlib.suppress(OSError, ValueError, subprocess.SubprocessError):
        out = subprocess.run([RUNC, "--root", runc_root, "list", "--format", "json"], capture_output=True,
                             stdin=subprocess.DEVNULL, timeout=10).stdout
        ids |= {c["id"] for c in json.loads(out or b"null") or []}
    for cid in ids:
        subprocess.run([RUNC, "--root", runc_root, "delete", "--force", cid], capture_output=True,
                       stdin=subprocess.DEVNULL, timeout=10)
        pid = env.runtime.conmon_pid(cid)
        if pid:
            with contextlib.suppress(OSError):
                with open(f"/proc/{pid}/comm") as f:
                    if f.read().strip() == "conmon":
                        os.kill(pid, signal.SIGKILL)
    deadline = time.monotonic() + 5
    while (alive := processes_mentioning(env.tag)) and time.monotonic() < deadline:
        time.sleep(0.05)
    left = remove_cgroup(env.cgroup_parent)
    shutil.rmtree(env.base, ignore_errors=True)
    assert not alive, f"processes left behind: {alive}"
    assert not left, f"cgroups left behind: {left}"


def processes_mentioning(text: str) -> list[str]:
    """Live (non-zombie) processes whose command line contains `text`: conmon and runc carry the id."""
    found = []
    for pid in os.listdir("/proc"):
        if not pid.isdigit() or int(pid) == os.getpid():
            continue
        try:
            with open(f"/proc/{pid}/cmdline", "rb") as f:
                cmdline = f.read().replace(b"\0", b" ").decode(errors="replace")
        except OSError:
            continue
        if text in cmdline:
            found.append(f"{pid}: {cmdline.strip()}")
    return found


@pytest.fixture
def rt(busybox_rootfs: str) -> Iterator[RuntimeEnv]:
    tag = f"pktest-{uuid.uuid4().hex[:8]}"
    base = tempfile.mkdtemp(prefix=f"{tag}-", dir="/tmp")
    runtime = ContainerRuntime(os.path.join(base, "c"), os.path.join(base, "runc"), os.path.join(base, "exits"))
    env = RuntimeEnv(tag, base, busybox_rootfs, f"/pocketkube-test-{tag[7:]}", runtime)
    try:
        yield env
    finally:
        cleanup_runtime(env)
        assert not any(os.path.exists(d) for d in cgroup_dirs(env.cgroup_parent))
