"""Where a pod's startup time goes on this node: one timestamped span per step, per pod.

Kubernetes' kubelet keeps a pod startup latency tracker (pkg/kubelet/util/
pod_startup_latency_tracker.go) and logs "Observed pod startup duration" once a pod's containers
have all started. This is the same idea with the steps spelled out — informer delivery, netns,
each CNI plugin, pause, rootfs mount, conmon + `runc create`, `runc start`, the status PATCH — so
a benchmark can line them up against its own POST and watch timestamps (same machine, same wall
clock). Off unless `POCKETKUBE_STARTUP_TRACE` names a file; then one JSON line per pod is appended
when its status first shows every container started.

The current pod's trace travels in a ContextVar: each pod's worker runs in its own task, and
`asyncio.gather` children inherit the context, so runtime code marks spans without being told
which pod it works for.
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import os
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import IO

import orjson

ENV = "POCKETKUBE_STARTUP_TRACE"


@dataclass
class PodTrace:
    pod: str
    seen: float = field(default_factory=time.time)
    spans: list[tuple[str, float, float]] = field(default_factory=list)
    done: bool = False

    def add(self, step: str, start: float, end: float) -> None:
        self.spans.append((step, start, end))


_current: contextvars.ContextVar[PodTrace | None] = contextvars.ContextVar("pod_startup_trace", default=None)


class StartupTracer:
    """Writes finished traces to the file named by $POCKETKUBE_STARTUP_TRACE (disabled if unset)."""

    def __init__(self, path: str | None = None) -> None:
        self.path = path if path is not None else os.environ.get(ENV, "")
        self._file: IO[bytes] | None = None

    @property
    def enabled(self) -> bool:
        return bool(self.path)

    def begin(self, pod: str) -> PodTrace | None:
        """A trace for a pod the informer just delivered (None when tracing is off)."""
        return PodTrace(pod) if self.enabled else None

    def finish(self, trace: PodTrace | None) -> None:
        """Record a trace once (the first status that shows every container started)."""
        if trace is None or trace.done:
            return
        trace.done = True
        self._write({"pod": trace.pod, "seen": trace.seen, "reported": time.time(),
                     "spans": [[s, a, b] for s, a, b in trace.spans]})

    def _write(self, line: dict[str, object]) -> None:
        if self._file is None:
            self._file = open(self.path, "ab")  # kept open for the agent's life
        self._file.write(orjson.dumps(line) + b"\n")
        self._file.flush()

    def close(self) -> None:
        if self._file is not None:
            self._file.close()
            self._file = None

    async def watch_loop(self, *, period: float = 0.01, threshold: float = 0.05) -> None:
        """Record event-loop stalls (a blocking call on the loop delays every pod's start)."""
        if not self.enabled:
            return
        loop = asyncio.get_running_loop()
        while True:
            before, cpu = loop.time(), time.thread_time()
            await asyncio.sleep(period)
            lag = loop.time() - before - period
            if lag > threshold:
                # The loop thread's CPU over the stall tells Python work on the loop (close to the
                # lag) from a blocking system call or a CPU-starved process (close to zero).
                self._write({"stall": lag, "cpu": time.thread_time() - cpu, "at": time.time()})


def activate(trace: PodTrace | None) -> None:
    """Make `trace` the current one for the calling task (and the tasks it starts)."""
    _current.set(trace)


@contextlib.contextmanager
def span(step: str) -> Iterator[None]:
    """Time the enclosed step for the current pod's trace (nothing when tracing is off)."""
    trace = _current.get()
    if trace is None or trace.done:
        yield
        return
    start = time.time()
    try:
        yield
    finally:
        trace.add(step, start, time.time())
