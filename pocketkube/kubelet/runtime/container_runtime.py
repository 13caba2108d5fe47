"""The kubelet's container runtime: conmon + runc, CRI-O style, with state that outlives the agent.

create() has conmon run `runc create` (container left "created"); start() is `runc start`.
run_detached() is a plain `runc run --detach` with no monitor, for the pod's pause process.
Everything needed to re-adopt a container after the agent restarts lives on disk: runc's state
under `runc_root` (ids, pids, bundle and pod annotations via `list()`), and per container under
`root_dir/<id>/` conmon's pid files and `exit`/`oom` files plus our `started_at`. Exit codes are
read from `exits_dir/<id>` (written by conmon after the container is reaped and its log flushed).
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import shutil
import signal
import time
from collections.abc import Sequence
from dataclasses import dataclass

from pocketkube.kubelet import spawn
from pocketkube.kubelet.runtime import conmon
from pocketkube.kubelet.runtime.errors import (
    ContainerCreateError,
    ContainerNotFound,
    ContainerNotRunning,
    ContainerStartError,
)
from pocketkube.kubelet.runtime.exec_process import ExecProcess, start_exec
from pocketkube.kubelet.runtime.runc import RUNC, ContainerState, Runc, runc_message


@dataclass(frozen=True)
class ExitStatus:
    """How a container ended: exit code (128+signal when killed), OOM flag, when (epoch seconds)."""

    exit_code: int
    oom_killed: bool
    finished_at: float


class ContainerRuntime:
    """One node's containers. All paths are created on construction."""

    def __init__(self, root_dir: str, runc_root: str, exits_dir: str, *, runc_path: str = RUNC,
                 conmon_path: str = conmon.CONMON, log_size_max: int | None = None,
                 create_timeout: float = 60.0, poll_interval: float = 0.5) -> None:
        self.root_dir = root_dir
        self.exits_dir = exits_dir
        self.runc = Runc(runc_root, binary=runc_path)
        self.conmon_path = conmon_path
        self.log_size_max = log_size_max
        self.create_timeout = create_timeout
        self.poll_interval = poll_interval
        self.socket_dir = os.path.join(root_dir, "sockets")
        for path in (root_dir, runc_root, exits_dir, self.socket_dir):
            os.makedirs(path, mode=0o700, exist_ok=True)

    def container_dir(self, container_id: str) -> str:
        """conmon's persist dir: pidfile, conmon.pid, conmon.log, exit, oom, started_at."""
        return os.path.join(self.root_dir, container_id)

    def _paths(self, container_id: str) -> conmon.ConmonPaths:
        return conmon.ConmonPaths(self.container_dir(container_id), self.exits_dir, self.socket_dir)

    async def create(self, container_id: str, bundle_dir: str, log_path: str, *, stdin: bool = False,
                     tty: bool = False, stdin_once: bool = False) -> int:
        """conmon + `runc create`; returns the container's pid (state "created")."""
        paths = self._paths(container_id)
        os.makedirs(paths.persist_dir, mode=0o700, exist_ok=True)
        os.makedirs(os.path.dirname(log_path) or ".", exist_ok=True)
        argv = conmon.conmon_argv(conmon=self.conmon_path, runc=self.runc.binary, runc_root=self.runc.root,
                                  container_id=container_id, bundle_dir=bundle_dir, log_path=log_path,
                                  paths=paths, log_size_max=self.log_size_max, stdin=stdin, tty=tty,
                                  stdin_once=stdin_once)
        try:
            return await conmon.launch(argv, container_id=container_id, paths=paths, timeout=self.create_timeout)
        except BaseException:
            # runc may have left a half-created container behind (CRI-O deletes it too)
            with contextlib.suppress(Exception):
                await self.runc.delete(container_id, force=True)
            raise

    async def start(self, container_id: str) -> None:
        """`runc start`, then wait (1 ms polls, at most 1 s) until the process has exec'd.

        runc start returns once it opened the exec fifo, while `runc init` (Go) may still be
        PID 1; a SIGTERM then makes Go exit with status 2 instead of reaching the program.
        """
        try:
            await self.runc.start(container_id)
        except (ContainerNotFound, ContainerNotRunning):
            raise
        except Exception as e:
            raise ContainerStartError(str(e), container_id=container_id) from e
        pid = conmon.read_pid(self._paths(container_id).pidfile)
        for _ in range(1000 if pid else 0):
            if pid is None or _comm(pid) != "runc:[2:INIT]":
                break
            await asyncio.sleep(0.001)
        _write_text(os.path.join(self.container_dir(container_id), "started_at"), f"{time.time():.9f}\n")

    async def run_detached(self, container_id: str, bundle_dir: str, *, timeout: float = 60.0) -> int:
        """`runc run --detach` with no monitor; returns the pid of the running container.

        For the pod sandbox's pause process: it has no output and no exit code anyone reads,
        so conmon, a separate `runc start` and their two process starts buy it nothing (CRI-O's
        `drop_infra_ctr` goes further and drops it). It still outlives the agent (runc exits,
        the process is reparented) and is found again by `runc state`. stdio is /dev/null and a
        file: the container inherits runc's, and a pipe would stay open as long as it runs.
        """
        persist = self.container_dir(container_id)
        os.makedirs(persist, mode=0o700, exist_ok=True)
        pidfile = os.path.join(persist, "pidfile")
        errors_path = os.path.join(persist, "runc-run.log")
        try:
            with open(errors_path, "wb") as err:
                rc = (await spawn.run(
                    self.runc.argv("run", "--detach", "--pid-file", pidfile, "--bundle", bundle_dir, container_id),
                    stdout=spawn.DEVNULL, stderr=err, start_new_session=True, timeout=timeout)).returncode
        except BaseException:
            with contextlib.suppress(Exception):
                await self.runc.delete(container_id, force=True)
            raise
        pid = conmon.read_pid(pidfile)
        if rc != 0 or pid is None:
            with open(errors_path, errors="replace") as f:
                message = runc_message(f.read()) or f"runc run exited {rc}"
            with contextlib.suppress(Exception):
                await self.runc.delete(container_id, force=True)
            raise ContainerCreateError(message, container_id=container_id)
        return pid

    async def remove_detached(self, container_id: str, *, timeout: float = 5.0) -> None:
        """SIGKILL a container started by run_detached, wait for it to exit, delete it.

        Waiting (pidfd) before `runc delete` spares its `--force` path, which sleeps 100 ms after
        the kill before it even looks. Also works for a container that has a conmon.
        """
        if self.runc.exists(container_id):
            pid = conmon.read_pid(os.path.join(self.container_dir(container_id), "pidfile"))
            with contextlib.suppress(ContainerNotRunning, ContainerNotFound):
                await self.runc.kill(container_id, signal.SIGKILL)
            if pid is not None:
                await _wait_exit(pid, timeout)
        await self.delete(container_id, force=True)

    def attach_socket(self, container_id: str) -> str:
        """conmon's attach socket (SOCK_SEQPACKET) of a container created with stdin or a TTY."""
        return os.path.join(self.socket_dir, container_id, "attach")

    def started_at(self, container_id: str) -> float | None:
        try:
            with open(os.path.join(self.container_dir(container_id), "started_at")) as f:
                return float(f.read().strip())
        except (OSError, ValueError):
            return None

    async def kill(self, container_id: str, sig: int | str, *, all_processes: bool = False) -> None:
        await self.runc.kill(container_id, sig, all_processes=all_processes)

    async def state(self, container_id: str) -> ContainerState:
        return await self.runc.state(container_id)

    async def list(self) -> list[ContainerState]:
        """Every container runc knows under this root, for re-adoption after an agent restart."""
        return await self.runc.list()

    def conmon_pid(self, container_id: str) -> int | None:
        return conmon.read_pid(self._paths(container_id).conmon_pidfile)

    def exit_status(self, container_id: str) -> ExitStatus | None:
        """None while running (or never started); read from the exits dir, else the persist dir."""
        for path in (os.path.join(self.exits_dir, container_id),
                     os.path.join(self.container_dir(container_id), "exit")):
            try:
                with open(path) as f:
                    text = f.read().strip()
                finished = os.stat(path).st_mtime
            except OSError:
                continue
            if text.lstrip("-").isdigit():
                oom = os.path.exists(os.path.join(self.container_dir(container_id), "oom"))
                return ExitStatus(int(text), oom, finished)
        return None

    def exit_code(self, container_id: str) -> int | None:
        status = self.exit_status(container_id)
        return status.exit_code if status else None

    async def wait(self, container_id: str, timeout: float | None = None) -> ExitStatus | None:
        """Until the exit file appears (None on timeout); woken by conmon's exit through a pidfd."""
        loop = asyncio.get_running_loop()
        deadline = None if timeout is None else loop.time() + timeout
        while True:
            status = self.exit_status(container_id)
            if status is not None:
                return status
            remaining = None if deadline is None else deadline - loop.time()
            if remaining is not None and remaining <= 0:
                return None
            step = self.poll_interval if remaining is None else min(self.poll_interval, remaining)
            await self._wait_conmon(container_id, step)

    async def _wait_conmon(self, container_id: str, timeout: float) -> None:
        pid = self.conmon_pid(container_id)
        try:
            pidfd = os.pidfd_open(pid) if pid else None
        except OSError:
            pidfd = None
        if pidfd is None:
            await asyncio.sleep(min(timeout, 0.02))
            return
        loop = asyncio.get_running_loop()
        exited = loop.create_future()
        loop.add_reader(pidfd, _resolve, exited)
        try:
            await asyncio.wait_for(exited, timeout)
        except TimeoutError:
            pass
        finally:
            loop.remove_reader(pidfd)
            os.close(pidfd)
        if exited.done():
            # conmon wrote the exit file before exiting; a pid reused by another process would not
            # have, so poll briefly instead of spinning on a readable pidfd.
            await asyncio.sleep(0.005 if self.exit_status(container_id) else min(timeout, 0.02))

    async def stop(self, container_id: str, grace_seconds: float) -> ExitStatus | None:
        """SIGTERM, wait `grace_seconds`, then SIGKILL every process of the container."""
        if self.exit_status(container_id) is None:
            with contextlib.suppress(ContainerNotRunning, ContainerNotFound):
                await self.runc.kill(container_id, signal.SIGTERM)
            status = await self.wait(container_id, grace_seconds)
            if status is not None:
                return status
            with contextlib.suppress(ContainerNotRunning, ContainerNotFound):
                await self.runc.kill(container_id, signal.SIGKILL, all_processes=True)
        return await self.wait(container_id, 10.0)

    async def delete(self, container_id: str, *, force: bool = False) -> None:
        """runc delete (removes its cgroup), then our files. Missing containers are not an error."""
        with contextlib.suppress(ContainerNotFound):
            await self.runc.delete(container_id, force=force)
        if force:
            pid = self.conmon_pid(container_id)
            if pid and _is_conmon(pid):
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGKILL)
        await asyncio.to_thread(shutil.rmtree, self.container_dir(container_id), True)  # off the loop
        # conmon's attach-socket symlink (socket dir -> bundle dir); the bundle is the caller's
        for leftover in (os.path.join(self.exits_dir, container_id), os.path.join(self.socket_dir, container_id)):
            with contextlib.suppress(FileNotFoundError):
                os.unlink(leftover)

    async def exec(self, container_id: str, argv: Sequence[str], *, tty: bool = False,
                   env: dict[str, str] | None = None, user: str | None = None,
                   cwd: str | None = None) -> ExecProcess:
        """`runc exec` in the running container; raises ExecStartError with runc's message."""
        work_dir = self.container_dir(container_id)
        if not _is_dir(work_dir):
            raise ContainerNotFound(f"container {container_id} does not exist", container_id=container_id)
        return await start_exec(self.runc, container_id, [*argv], work_dir=work_dir, tty=tty, env=env,
                                user=user, cwd=cwd)


async def _wait_exit(pid: int, timeout: float) -> None:
    """Until process `pid` has exited (a zombie counts), at most `timeout` s."""
    try:
        pidfd = os.pidfd_open(pid)
    except OSError:  # already gone (or reaped)
        return
    loop = asyncio.get_running_loop()
    exited = loop.create_future()
    loop.add_reader(pidfd, _resolve, exited)
    try:
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(exited, timeout)
    finally:
        loop.remove_reader(pidfd)
        os.close(pidfd)


def _is_conmon(pid: int) -> bool:
    """Guard against a stale pid file naming a pid reused by another process."""
    return _comm(pid) == "conmon"


def _resolve(future: asyncio.Future[None]) -> None:
    if not future.done():
        future.set_result(None)


def _write_text(path: str, text: str) -> None:
    with open(path, "w") as f:
        f.write(text)


def _is_dir(path: str) -> bool:
    return os.path.isdir(path)


def _comm(pid: int) -> str | None:
    try:
        with open(f"/proc/{pid}/comm") as f:
            return f.read().strip()
    except OSError:
        return None
