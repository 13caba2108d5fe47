"""Run components as child processes: start, restart on crash with backoff, stop gracefully.

The control plane uses both cores this way (the API server in the supervising process, control
loops in their own), and a crashing loop is restarted without losing anything: its state is in
the API server.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import signal
import sys

log = logging.getLogger(__name__)


class ChildProcess:
    def __init__(self, name: str, argv: list[str], *, log_path: str | None = None,
                 env: dict[str, str] | None = None, hold_path: str | None = None) -> None:
        self.name = name
        # While this file exists the child is not (re)started: `cluster stop-node` stops a node's
        # agent this way, as a machine whose kubelet died, without the supervisor reviving it.
        self.hold_path = hold_path
        self.argv = argv
        self.log_path = log_path
        self.env = env
        self.proc: asyncio.subprocess.Process | None = None
        self.restarts = 0
        self._stopping = False

    async def run(self) -> None:
        """Keep the child running until cancelled; restarts it with backoff when it exits."""
        backoff = 0.5
        try:
            while True:
                await self._wait_released()
                stdout = open(self.log_path, "ab") if self.log_path else None
                try:
                    self.proc = await asyncio.create_subprocess_exec(
                        *self.argv, stdin=asyncio.subprocess.DEVNULL, stdout=stdout or None,
                        stderr=asyncio.subprocess.STDOUT if stdout else None,
                        env={**os.environ, **(self.env or {})}, start_new_session=True,
                        preexec_fn=_die_with_parent)
                finally:
                    if stdout:
                        stdout.close()
                started = asyncio.get_running_loop().time()
                code = await self.proc.wait()
                if self._stopping:
                    return
                lived = asyncio.get_running_loop().time() - started
                if lived > 30:
                    backoff = 0.5
                log.warning("%s exited with %s; restarting in %.1fs", self.name, code, backoff)
                self.restarts += 1
                await asyncio.sleep(backoff)
                backoff = min(backoff * 2, 30.0)
        finally:
            await self.stop()

    async def _wait_released(self) -> None:
        # A file polled, not an Event: another process (`cluster stop-node`) creates and removes it.
        while self.hold_path:
            if not os.path.exists(self.hold_path):
                return
            await asyncio.sleep(0.2)

    async def stop(self, grace: float = 5.0) -> None:
        self._stopping = True
        proc = self.proc
        if proc is None or proc.returncode is not None:
            return
        with contextlib.suppress(ProcessLookupError):
            proc.send_signal(signal.SIGTERM)
        try:
            await asyncio.wait_for(proc.wait(), grace)
        except TimeoutError:
            with contextlib.suppress(ProcessLookupError):
                proc.kill()
            await proc.wait()


def _die_with_parent() -> None:
    """In the child, before exec: get SIGTERM when the supervisor dies, even by SIGKILL, so a killed
    server never leaves orphaned control loops behind (containers are conmon's, not ours)."""
    import ctypes

    libc = ctypes.CDLL(None, use_errno=True)
    pr_set_pdeathsig = 1
    libc.prctl(pr_set_pdeathsig, signal.SIGTERM, 0, 0, 0)


def pocketkube_argv(*args: str) -> list[str]:
    return [sys.executable, "-m", "pocketkube", *args]
