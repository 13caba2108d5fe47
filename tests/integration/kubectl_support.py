"""Shared pieces of the real-kubectl end-to-end tests (test_kubectl_*.py).

`Kubectl` runs one real kubectl binary against the session's `pocketkube server`, in the test's own
namespace; `Background` runs a long kubectl (get -w, wait, delete that waits) and reads its output
line by line without sleeping; `rows` splits kubectl's printed tables into cells.
"""

from __future__ import annotations

import json
import os
import queue
import re
import subprocess
import threading
import time
from dataclasses import dataclass
from typing import Any

from tests.conftest import ServerProcess, kubectl_binaries, run_kubectl

BINARIES = kubectl_binaries()
BINARY_IDS = sorted(BINARIES)


@dataclass
class Kubectl:
    """One kubectl binary bound to the test server and the test's namespace."""

    server: ServerProcess
    namespace: str
    binary: str
    name: str

    def __call__(self, *args: str, input: str | None = None, check: bool = True,
                 env: dict[str, str] | None = None, namespaced: bool = True) -> subprocess.CompletedProcess[str]:
        ns = ("-n", self.namespace) if namespaced else ()
        return run_kubectl(self.server, *ns, *args, binary=self.binary, input=input, check=check, env=env)

    def out(self, *args: str, input: str | None = None, namespaced: bool = True) -> str:
        return self(*args, input=input, namespaced=namespaced).stdout

    def fails(self, *args: str, input: str | None = None) -> str:
        """Run a command that must fail; returns its stderr."""
        result = self(*args, input=input, check=False)
        assert result.returncode != 0, f"kubectl {' '.join(args)} succeeded:\n{result.stdout}"
        return result.stderr

    def deleted(self, what: str) -> str:
        """kubectl's line for a deleted namespaced object (1.33+ also names the namespace)."""
        return f"{what} deleted" + ("" if self.name == "kubectl-1.32" else f" from {self.namespace} namespace")

    def obj(self, *args: str, namespaced: bool = True) -> Any:
        return json.loads(self.out("get", *args, "-o", "json", namespaced=namespaced))

    def background(self, *args: str, env: dict[str, str] | None = None) -> Background:
        cache = os.path.join(self.server.data_dir, f"kubectl-cache-{os.path.basename(self.binary)}")
        cmd = [self.binary, "--kubeconfig", self.server.kubeconfig, "--cache-dir", cache,
               "-n", self.namespace, *args]
        proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                                stdin=subprocess.DEVNULL,
                                env={**os.environ, **(env or {}), "HOME": self.server.data_dir})
        return Background(proc)


class Background:
    """A kubectl process running beside the test; its stdout lines arrive on a queue."""

    def __init__(self, proc: subprocess.Popen[str]) -> None:
        self.proc = proc
        self.lines: queue.Queue[str | None] = queue.Queue()
        self.seen: list[str] = []
        self._stderr: str | None = None
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            self.lines.put(line.rstrip("\n"))
        self.lines.put(None)

    def next_line(self, timeout: float = 10.0) -> str:
        """The next stdout line; fails on EOF or after `timeout` seconds."""
        try:
            line = self.lines.get(timeout=timeout)
        except queue.Empty:
            raise AssertionError(f"no output line within {timeout}s; seen: {self.seen}") from None
        if line is None:
            raise AssertionError(f"kubectl exited early; seen: {self.seen}; stderr: {self.stop()[1]}")
        self.seen.append(line)
        return line

    def running(self) -> bool:
        return self.proc.poll() is None

    def finish(self, timeout: float = 10.0) -> tuple[int, str, str]:
        """Wait for the process to exit by itself: (returncode, all stdout, stderr)."""
        code = self.proc.wait(timeout)
        self._reader.join(timeout)
        while True:
            try:
                line = self.lines.get_nowait()
            except queue.Empty:
                break
            if line is not None:
                self.seen.append(line)
        return code, "\n".join(self.seen), self._close()

    def stop(self) -> tuple[int, str]:
        """Terminate (this process only) and return (returncode, stderr)."""
        if self.proc.poll() is None:
            self.proc.terminate()
        code = self.proc.wait(10)
        return code, self._close()

    def _close(self) -> str:
        if self._stderr is None:
            assert self.proc.stderr is not None
            self._stderr = self.proc.stderr.read()
            self._reader.join(10)
            for stream in (self.proc.stdout, self.proc.stderr):
                if stream is not None:
                    stream.close()
        return self._stderr


def rows(table: str) -> list[list[str]]:
    """kubectl's column output as cells, sliced at the header's column starts (kubectl pads columns
    with 3 spaces, and headers such as `NOMINATED NODE` hold single spaces)."""
    lines = [line for line in table.splitlines() if line.strip()]
    if not lines:
        return []
    header = lines[0]
    starts = [m.start() for m in re.finditer(r"(?:(?<=\s\s)|^)\S", header)]
    out: list[list[str]] = []
    for line in lines:
        cells = []
        for i, start in enumerate(starts):
            end = starts[i + 1] if i + 1 < len(starts) else None
            cells.append(line[start:end].strip())
        out.append(cells)
    return out


def poll(fn: Any, *, timeout: float = 10.0, interval: float = 0.05) -> Any:
    """Call fn until it returns something truthy (kubectl-free waits for states kubectl cannot wait on)."""
    deadline = time.monotonic() + timeout
    while True:
        value = fn()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"condition not met within {timeout}s (last value {value!r})")
        time.sleep(interval)
