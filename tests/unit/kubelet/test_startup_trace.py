"""The pod startup trace: spans follow the pod's task (and its gathered children), one line per pod."""

from __future__ import annotations

import asyncio
import json
import time
from typing import Any

from pocketkube.kubelet.startup_trace import StartupTracer, activate, span


def lines(path: Any) -> list[dict[str, Any]]:
    return [json.loads(line) for line in path.read_text().splitlines()]


async def test_spans_of_a_pod_and_its_children_land_in_one_line(tmp_path: Any) -> None:
    out = tmp_path / "trace.jsonl"
    tracer = StartupTracer(str(out))
    trace_a, trace_b = tracer.begin("a"), tracer.begin("b")

    async def child(step: str) -> None:
        with span(step):
            await asyncio.sleep(0.01)

    async def worker(trace: Any, steps: list[str]) -> None:
        activate(trace)
        with span("sandbox"):
            await asyncio.gather(*(child(s) for s in steps))
        tracer.finish(trace)
        with span("after"):  # a finished trace records nothing more
            pass
        tracer.finish(trace)  # and is written once

    await asyncio.gather(worker(trace_a, ["cni.bridge", "pause.run"]), worker(trace_b, ["netns"]))
    with span("no pod"):  # outside any pod's task: nothing recorded, nothing raised
        pass
    tracer.close()
    got = {rec["pod"]: rec for rec in lines(out)}
    assert set(got) == {"a", "b"}
    assert sorted(s[0] for s in got["a"]["spans"]) == ["cni.bridge", "pause.run", "sandbox"]
    assert [s[0] for s in got["b"]["spans"]] == ["netns", "sandbox"]
    for rec in got.values():
        for _, start, end in rec["spans"]:
            assert rec["seen"] <= start <= end <= rec["reported"]
        outer = next(s for s in rec["spans"] if s[0] == "sandbox")
        assert all(outer[1] <= s[1] and s[2] <= outer[2] for s in rec["spans"])


async def test_disabled_by_default(tmp_path: Any, monkeypatch: Any) -> None:
    monkeypatch.delenv("POCKETKUBE_STARTUP_TRACE", raising=False)
    tracer = StartupTracer()
    assert not tracer.enabled and tracer.begin("a") is None
    tracer.finish(None)
    await asyncio.wait_for(tracer.watch_loop(), 1)  # returns at once when off


async def test_event_loop_stall_is_recorded_with_the_loop_threads_cpu(tmp_path: Any) -> None:
    out = tmp_path / "trace.jsonl"
    tracer = StartupTracer(str(out))
    watcher = asyncio.get_running_loop().create_task(tracer.watch_loop(period=0.005, threshold=0.05))
    await asyncio.sleep(0.02)
    time.sleep(0.15)  # noqa: ASYNC251 - the point: a blocking call on the loop, off CPU
    t0 = time.thread_time()
    while time.thread_time() - t0 < 0.12:  # Python work on the loop, on CPU
        pass
    await asyncio.sleep(0.02)
    watcher.cancel()
    tracer.close()
    stalls = [rec for rec in lines(out) if "stall" in rec]
    assert stalls and max(s["stall"] for s in stalls) >= 0.25
    worst = max(stalls, key=lambda s: s["stall"])
    assert 0.1 <= worst["cpu"] < worst["stall"]
