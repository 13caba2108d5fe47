"""`runc exec` as an async process handle with stdin/stdout/stderr streams (kubectl exec, probes).

Without a TTY the exec'd process gets our pipes directly. With a TTY, runc runs in the
foreground with `--tty` and its stdio on a host pty we open: runc allocates the container's own
pty in the container's devpts and copies between the two; we read and write our master.
`resize()` sets our pty's window and sends runc SIGWINCH, which runc answers by resizing the
container's pty. (A `--console-socket` would hand us the container pty directly, but runc only
allows it with `--detach`, which loses the exit code.) Our pty starts in the mode runc gives it
(raw but with OPOST|ONLCR); runc clears ONLCR on the container side only after the process may
have written, so CR CR LF from that window is folded back to CR LF.

Start failures are reported before the handle is returned: runc writes `--pid-file` only once
the process runs, and logs its own error (JSON, `--log`) apart from the process's stderr; so a
missing executable raises ExecStartError with runc's message. `wait()` waits for runc's exit
(through a pidfd), not for EOF, so a daemon the command left behind cannot hang it.
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import json
import os
import signal
import struct
import subprocess
import termios
import tty as tty_mod
import uuid

from pocketkube.kubelet.runtime.errors import ContainerNotFound, ContainerNotRunning, ExecStartError
from pocketkube.kubelet.runtime.fd_streams import FdReader, FdWriter
from pocketkube.kubelet.runtime.runc import Runc, classify


class ExecProcess:
    """A running `runc exec`; stdout carries both streams merged when tty=True (stderr is None).

    Output stays readable after wait(); aclose() (or `async with`) kills what is still running
    and releases the pipes, for callers that stop early (probe timeouts, closed streams).
    """

    def __init__(self, popen: subprocess.Popen[bytes], *, stdin: FdWriter | None,
                 out: FdReader, err: FdReader | None, tty: bool, pid_file: str, work_files: list[str]) -> None:
        self._popen = popen
        self.stdin = stdin
        self._out = out
        self._err = err
        self.stdout = out.reader
        self.stderr = err.reader if err is not None else None
        self._tty = tty
        self._pid_file = pid_file
        self._work_files = work_files
        self.returncode: int | None = None

    @property
    def pid(self) -> int:
        """The runc process (it forwards signals to the exec'd process)."""
        return self._popen.pid

    def resize(self, cols: int, rows: int) -> None:
        """Window size of the TTY (no-op without one): ours first, then runc copies it inward."""
        if self._tty and self._out.fd is not None and self.returncode is None:
            fcntl.ioctl(self._out.fd, termios.TIOCSWINSZ, struct.pack("HHHH", rows, cols, 0, 0))
            self.send_signal(signal.SIGWINCH)

    def send_signal(self, sig: int) -> None:
        """To runc, which forwards it to the exec'd process (SIGKILL is not forwarded: see kill())."""
        if self.returncode is None:
            with contextlib.suppress(ProcessLookupError):
                self._popen.send_signal(sig)

    def kill(self) -> None:
        """SIGKILL the exec'd process itself (pid from runc's pid file); runc then exits."""
        if self.returncode is not None:
            return
        try:
            with open(self._pid_file) as f:
                pid = int(f.read().strip())
            os.kill(pid, signal.SIGKILL)
        except (OSError, ValueError):
            self.send_signal(signal.SIGKILL)

    async def wait(self) -> int:
        """The exec'd process's exit code (runc passes it through)."""
        if self.returncode is None:
            await _wait_child(self._popen)
            self.returncode = int(self._popen.returncode)
            for path in self._work_files:
                with contextlib.suppress(OSError):
                    os.unlink(path)
            if self.stdin is not None:
                self.stdin.close()  # nobody reads it any more; output readers close at EOF
        return self.returncode

    async def aclose(self) -> None:
        if self.returncode is None:
            self.kill()
            await self.wait()
        if self.stdin is not None:
            self.stdin.close()
        self._out.close()
        if self._err is not None:
            self._err.close()

    async def __aenter__(self) -> ExecProcess:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()


async def _wait_child(popen: subprocess.Popen[bytes]) -> None:
    """Reap our child without a child watcher: a pidfd becomes readable when it exits."""
    if popen.poll() is not None:
        return
    loop = asyncio.get_running_loop()
    pidfd = os.pidfd_open(popen.pid)
    done = loop.create_future()
    loop.add_reader(pidfd, _resolve, done)
    try:
        if popen.poll() is None:
            await done
    finally:
        loop.remove_reader(pidfd)
        os.close(pidfd)
    popen.wait()


def _runc_log_error(path: str) -> str:
    try:
        with open(path) as f:
            lines = [json.loads(line) for line in f if line.strip()]
    except (OSError, ValueError):
        return ""
    errors = [str(item.get("msg", "")) for item in lines if item.get("level") in ("error", "fatal")]
    return errors[-1] if errors else ""


async def start_exec(runc: Runc, container_id: str, argv: list[str], *, work_dir: str, tty: bool = False,
                     env: dict[str, str] | None = None, user: str | None = None, cwd: str | None = None,
                     start_timeout: float = 30.0) -> ExecProcess:
    """Start `runc exec`; return once the process runs (pid file written) or raise ExecStartError."""
    token = uuid.uuid4().hex[:12]
    pid_file = os.path.join(work_dir, f"exec-{token}.pid")
    log_file = os.path.join(work_dir, f"exec-{token}.log")
    args = [runc.binary, "--root", runc.root, "--log", log_file, "--log-format", "json", "exec",
            "--pid-file", pid_file]
    for key, value in (env or {}).items():
        args += ["--env", f"{key}={value}"]
    if user:
        args += ["--user", user]
    if cwd:
        args += ["--cwd", cwd]
    if tty:
        args.append("--tty")
    args += [container_id, *argv]
    fds: list[int] = []
    master: int | None = None
    popen: subprocess.Popen[bytes] | None = None
    try:
        if tty:
            master, slave = os.openpty()
            os.set_inheritable(master, False)
            _runc_host_tty_mode(slave)
            fds = [master]
            try:
                popen = _spawn(args, slave, slave, slave)
            finally:
                os.close(slave)
        else:
            in_r, in_w = os.pipe2(os.O_CLOEXEC)
            out_r, out_w = os.pipe2(os.O_CLOEXEC)
            err_r, err_w = os.pipe2(os.O_CLOEXEC)
            fds = [in_w, out_r, err_r]
            try:
                popen = _spawn(args, in_r, out_w, err_w)
            finally:
                for fd in (in_r, out_w, err_w):
                    os.close(fd)
        await _await_started(popen, pid_file, log_file, container_id, start_timeout)
    except BaseException:
        if popen is not None and popen.poll() is None:
            popen.kill()
            popen.wait()
        for fd in fds:
            with contextlib.suppress(OSError):
                os.close(fd)
        raise
    work_files = [pid_file, log_file]
    if master is not None:
        stdin = FdWriter(os.dup(master))
        return ExecProcess(popen, stdin=stdin, out=FdReader(master, transform=_undouble_cr), err=None, tty=True, pid_file=pid_file,
                           work_files=work_files)
    in_w, out_r, err_r = fds
    return ExecProcess(popen, stdin=FdWriter(in_w), out=FdReader(out_r), err=FdReader(err_r), tty=False,
                       pid_file=pid_file, work_files=work_files)


async def _await_started(popen: subprocess.Popen[bytes], pid_file: str, log_file: str, container_id: str,
                         timeout: float) -> None:
    """Poll (2 ms) until runc wrote the pid file (the process runs) or exited (it could not start)."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while not _nonempty(pid_file):
        if popen.poll() is not None:
            if _nonempty(pid_file):
                return
            message = _runc_log_error(log_file) or f"runc exec exited with {popen.returncode}"
            error = classify(message, container_id, popen.returncode)
            if isinstance(error, ContainerNotFound | ContainerNotRunning):
                raise error
            raise ExecStartError(message, container_id=container_id)
        if loop.time() > deadline:
            raise ExecStartError(f"runc exec did not start within {timeout:g}s", container_id=container_id)
        await asyncio.sleep(0.002)


def _runc_host_tty_mode(fd: int) -> None:
    """What runc's SetRaw makes of the host side (raw, but OPOST|ONLCR kept), set before runc runs,
    so no output or input passes through a cooked (echoing) terminal first."""
    tty_mod.setraw(fd, termios.TCSANOW)
    attrs = termios.tcgetattr(fd)
    attrs[1] |= termios.OPOST | termios.ONLCR
    termios.tcsetattr(fd, termios.TCSANOW, attrs)


def _undouble_cr(data: bytes) -> bytes:
    """runc clears ONLCR on the container's pty only after receiving it, racing the process: what
    is written first is translated twice (container pty, then ours) into CR CR LF."""
    return data.replace(b"\r\r\n", b"\r\n")


def _resolve(future: asyncio.Future[None]) -> None:
    if not future.done():
        future.set_result(None)


def _spawn(args: list[str], stdin: int, stdout: int, stderr: int) -> subprocess.Popen[bytes]:
    """runc in its own session (so a ^C to the agent is not a ^C to the exec)."""
    return subprocess.Popen(args, stdin=stdin, stdout=stdout, stderr=stderr, start_new_session=True)


def _nonempty(path: str) -> bool:
    try:
        return os.path.getsize(path) > 0
    except OSError:
        return False
