"""The agent's stdlib event loop waits for subprocesses through pidfds, not a thread per process."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from tests.conftest import REPO

PROBE = """
import asyncio, threading
from pocketkube.cli.main import _run_async

async def main():
    print(type(asyncio.get_child_watcher()).__name__)
    async def one():
        proc = await asyncio.create_subprocess_exec("sleep", "0.2")
        await asyncio.sleep(0.05)
        print(threading.active_count())
        return await proc.wait()
    print(await asyncio.gather(one(), one(), one()))

_run_async(main(), uvloop_ok=False)
"""


@pytest.mark.skipif(sys.version_info >= (3, 12), reason="3.12's default watcher already uses pidfds")
def test_agent_loop_uses_pidfd_child_watcher() -> None:
    # In a child process: the watcher is process-wide state.
    out = subprocess.run([sys.executable, "-W", "error", "-c", PROBE], cwd=REPO, capture_output=True, text=True,
                         env={**os.environ, "PYTHONPATH": REPO}, timeout=60, check=True).stdout.split()
    assert out[0] == "PidfdChildWatcher"
    assert out[1:4] == ["1", "1", "1"]  # no waitpid thread per subprocess (ThreadedChildWatcher: 4)
    assert out[4:] == ["[0,", "0,", "0]"]
