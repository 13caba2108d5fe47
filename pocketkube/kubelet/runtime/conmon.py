"""Launch conmon the way CRI-O does: it runs `runc create` and then monitors the container.

conmon double-forks, calls setsid and is reparented to init, so the container and its monitor
outlive the agent; conmon writes the CRI log, the exit code (exits dir and persist dir) and an
`oom` file. We synchronise through `_OCI_SYNCPIPE`: conmon writes one JSON line, `{"data": pid}`
or `{"data": -1, "message": "..."}`, and keeps the pipe open until it exits, so read one line only.
The launcher's stdio is /dev/null and a file: a pipe would be held by conmon/runc forever. Its
working directory is the persist dir, because on OOM conmon also creates a legacy `oom` file in
its cwd (CRI-O runs it in the bundle dir).
"""

from __future__ import annotations

import asyncio
import json
import os
from dataclasses import dataclass
from typing import BinaryIO

from pocketkube.kubelet import spawn
from pocketkube.kubelet.runtime.errors import ContainerCreateError, RuntimeCommandError
from pocketkube.kubelet.runtime.runc import runc_message

CONMON = "/usr/bin/conmon"


@dataclass(frozen=True)
class ConmonPaths:
    """Per-container files; `persist_dir` also receives conmon's `exit` and `oom` files."""

    persist_dir: str
    exits_dir: str
    socket_dir: str

    @property
    def pidfile(self) -> str:
        return os.path.join(self.persist_dir, "pidfile")

    @property
    def conmon_pidfile(self) -> str:
        return os.path.join(self.persist_dir, "conmon.pid")

    @property
    def conmon_log(self) -> str:
        return os.path.join(self.persist_dir, "conmon.log")


def conmon_argv(*, conmon: str, runc: str, runc_root: str, container_id: str, bundle_dir: str,
                log_path: str, paths: ConmonPaths, log_size_max: int | None = None, stdin: bool = False,
                tty: bool = False, stdin_once: bool = False) -> list[str]:
    """conmon's command line; `stdin`/`tty` for containers that ask for them (kubectl run -it), whose
    I/O then goes through conmon's attach socket (`<socket dir>/<id>/attach`)."""
    argv = [
        conmon, "--api-version", "1", "-c", container_id, "-u", container_id, "-n", container_id,
        "-r", runc, "--runtime-arg", f"--root={runc_root}",
        "-b", bundle_dir, "-p", paths.pidfile, "-P", paths.conmon_pidfile,
        "-l", f"k8s-file:{log_path}", "--exit-dir", paths.exits_dir,
        "--socket-dir-path", paths.socket_dir, "--persist-dir", paths.persist_dir, "--log-level", "info",
    ]
    if log_size_max is not None:
        argv += ["--log-size-max", str(log_size_max)]
    if stdin:
        argv += ["--stdin"] + ([] if stdin_once else ["--leave-stdin-open"])
    if tty:
        argv.append("--terminal")
    return argv


async def _read_sync_line(fd: int, timeout: float) -> bytes:
    """One line from the sync pipe's read end (which this function closes)."""
    loop = asyncio.get_running_loop()
    reader = asyncio.StreamReader()
    transport, _ = await loop.connect_read_pipe(
        lambda: asyncio.StreamReaderProtocol(reader), os.fdopen(fd, "rb", buffering=0))
    try:
        return await asyncio.wait_for(reader.readline(), timeout)
    finally:
        transport.close()


async def launch(argv: list[str], *, container_id: str, paths: ConmonPaths, timeout: float = 60.0) -> int:
    """Run conmon; return the container's pid once `runc create` succeeded, else raise.

    ContainerCreateError carries runc's message (`runc create failed: ... executable file not
    found in $PATH`); RuntimeCommandError means conmon itself failed or timed out.
    """
    read_fd, write_fd = os.pipe2(os.O_CLOEXEC)
    env = {"_OCI_SYNCPIPE": str(write_fd), "PATH": os.environ.get("PATH", "/usr/sbin:/usr/bin:/sbin:/bin")}
    try:
        with _open_append(paths.conmon_log) as log:
            # The launcher forks the monitor and exits (about 3 ms); started off the event loop.
            launched = spawn.run(argv, env=env, pass_fds=(write_fd,), stdout=spawn.DEVNULL, stderr=log,
                                 start_new_session=True, timeout=timeout,
                                 # conmon also writes a legacy `oom` file into its working directory
                                 cwd=paths.persist_dir)
            returncode = (await launched).returncode
    except BaseException:
        os.close(read_fd)
        raise
    finally:
        os.close(write_fd)
    try:
        line = await _read_sync_line(read_fd, timeout)
    except TimeoutError as e:
        _kill_conmon(paths)
        raise RuntimeCommandError(f"conmon did not report a pid within {timeout:g}s",
                                  container_id=container_id) from e
    if not line:
        raise RuntimeCommandError(f"conmon exited ({returncode}) without reporting: {_tail(paths.conmon_log)}",
                                  container_id=container_id, returncode=returncode)
    try:
        message = json.loads(line)
        pid = int(message["data"])
    except (ValueError, KeyError, TypeError) as e:
        raise RuntimeCommandError(f"conmon sync pipe: unexpected {line!r}", container_id=container_id) from e
    if pid <= 0:
        raise ContainerCreateError(runc_message(str(message.get("message", ""))) or "runc create failed",
                                   container_id=container_id)
    return pid


def _open_append(path: str) -> BinaryIO:
    return open(path, "ab")


def read_pid(path: str) -> int | None:
    try:
        with open(path) as f:
            text = f.read().strip()
    except OSError:
        return None
    return int(text) if text.isdigit() else None


def _kill_conmon(paths: ConmonPaths) -> None:
    pid = read_pid(paths.conmon_pidfile)
    if pid:
        try:
            os.kill(pid, 9)
        except ProcessLookupError:
            pass


def _tail(path: str, limit: int = 2000) -> str:
    try:
        with open(path, "rb") as f:
            f.seek(0, os.SEEK_END)
            f.seek(max(0, f.tell() - limit))
            return f.read().decode(errors="replace").strip()
    except OSError:
        return ""
