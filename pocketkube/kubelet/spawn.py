"""Run the kubelet's short-lived commands (CNI plugins, runc, conmon's launcher) from worker threads.

Starting a process — `_posixsubprocess.fork_exec`: vfork, then wait until the child has exec'd —
took 5.8 ms on average under load (cProfile of the agent in bench_pod_startup: 475 starts, 2.75 s),
and asyncio's subprocess API does it on the event loop thread. A pod start runs about seven
commands, so a burst of pods blocked the agent's loop for seconds in chunks of up to half a second
(the trace's loop-stall watcher: 2.5 s of a 4.2 s burst of 30, 0.26 s of it on CPU), and the
commands of different pods started one after another. `subprocess.run` in a worker thread blocks
only that thread: the loop keeps serving the other pods, and starts proceed in parallel.

A caller that is cancelled stops waiting; the command itself still runs to its end or `timeout`
(these are commands of a few milliseconds, and cutting `runc` or a CNI plugin short mid-way would
leave more to clean up than letting it finish).
"""

from __future__ import annotations

import asyncio
import subprocess
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import IO, TypeVar

PIPE = subprocess.PIPE
DEVNULL = subprocess.DEVNULL
_Target = int | IO[bytes] | None
T = TypeVar("T")
_executor: ThreadPoolExecutor | None = None
MAX_WORKERS = 16  # commands of that many pods at once; beyond it they queue (the cores are busy anyway)


def _pool() -> ThreadPoolExecutor:
    global _executor
    if _executor is None:
        _executor = ThreadPoolExecutor(max_workers=MAX_WORKERS, thread_name_prefix="kubelet-spawn")
    return _executor


async def call(fn: Callable[[], T]) -> T:
    """`fn()` in one of the same worker threads (for work that itself waits on a new thread or process)."""
    return await asyncio.get_running_loop().run_in_executor(_pool(), fn)


async def run(argv: Sequence[str], *, input: bytes | None = None, env: Mapping[str, str] | None = None,
              cwd: str | None = None, stdout: _Target = PIPE, stderr: _Target = PIPE,
              pass_fds: Sequence[int] = (), start_new_session: bool = False,
              timeout: float = 30.0) -> subprocess.CompletedProcess[bytes]:
    """Run `argv` to completion in a worker thread. OSError if it cannot start; TimeoutError after
    `timeout` s (the process is killed first, by subprocess, by its own pid)."""

    def call() -> subprocess.CompletedProcess[bytes]:
        try:
            return subprocess.run(list(argv), input=input, stdin=DEVNULL if input is None else None,
                                  stdout=stdout, stderr=stderr, env=dict(env) if env is not None else None,
                                  cwd=cwd, pass_fds=tuple(pass_fds), start_new_session=start_new_session,
                                  timeout=timeout, check=False)
        except subprocess.TimeoutExpired as e:
            raise TimeoutError(f"{argv[0]} did not finish within {timeout:g} s") from e

    return await asyncio.get_running_loop().run_in_executor(_pool(), call)
