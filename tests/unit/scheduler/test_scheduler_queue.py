"""SchedulingQueue: priority/FIFO order, backoff doubling to 10 s, moves on cluster events."""

from __future__ import annotations

import pytest
from sched_testlib import pod

from pocketkube.scheduler.framework.interface import (
    ASSIGNED_POD_DELETE,
    NODE_ADD,
    NODE_UPDATE,
    ClusterEvent,
)
from pocketkube.scheduler.queue import SchedulingQueue
from pocketkube.scheduler.types import PodInfo
from pocketkube.util.clock import FakeClock

EVENTS: dict[str, list[ClusterEvent]] = {"NodeResourcesFit": [ASSIGNED_POD_DELETE, NODE_ADD],
                                         "TaintToleration": [NODE_ADD, NODE_UPDATE]}


def make() -> tuple[SchedulingQueue, FakeClock]:
    clock = FakeClock()
    return SchedulingQueue(events=EVENTS, clock=clock), clock


def info(name: str, priority: int = 0) -> PodInfo:
    return PodInfo(pod(name, priority=priority))


async def test_priority_then_fifo() -> None:
    q, _ = make()
    for name, prio in (("low1", 0), ("high", 100), ("low2", 0), ("mid", 10)):
        q.add(info(name, prio))
    order = [(await q.pop()).pod.name for _ in range(4)]
    assert order == ["high", "mid", "low1", "low2"]


async def test_backoff_doubles_to_ten_seconds() -> None:
    q, clock = make()
    q.add(info("p"))
    durations = []
    for _ in range(6):
        qpi = q.try_pop()
        assert qpi is not None
        durations.append(q.backoff_duration(qpi))
        q.add_unschedulable(qpi, q.scheduling_cycle, error=True)
        assert q.try_pop() is None  # still backing off
        clock.advance(q.backoff_duration(qpi))
    assert durations == [1.0, 2.0, 4.0, 8.0, 10.0, 10.0]


async def test_unschedulable_moves_only_on_interesting_event() -> None:
    q, clock = make()
    q.add(info("p"))
    qpi = q.try_pop()
    assert qpi is not None
    qpi.unschedulable_plugins = {"TaintToleration"}
    q.add_unschedulable(qpi, q.scheduling_cycle)
    assert "default/p" in q.unschedulable
    assert q.move_all_to_active_or_backoff(ASSIGNED_POD_DELETE) == 0  # a pod leaving cannot fix a taint
    assert q.move_all_to_active_or_backoff(NODE_UPDATE) == 1
    assert q.try_pop() is None  # moved to backoffQ: its 1 s backoff has not expired yet
    assert q.backoff_keys() == ["default/p"]
    clock.advance(1.0)
    popped = q.try_pop()
    assert popped is not None and popped.pod.name == "p"


async def test_event_during_cycle_sends_failure_to_backoff() -> None:
    q, _ = make()
    q.add(info("p"))
    qpi = q.try_pop()
    assert qpi is not None
    cycle = q.scheduling_cycle
    q.move_all_to_active_or_backoff(NODE_ADD)  # arrives while p is being tried
    qpi.unschedulable_plugins = {"NodeResourcesFit"}
    q.add_unschedulable(qpi, cycle)
    assert not q.unschedulable and q.backoff_keys() == ["default/p"]


async def test_leftover_flush_after_five_minutes() -> None:
    q, clock = make()
    q.add(info("p"))
    qpi = q.try_pop()
    assert qpi is not None
    qpi.unschedulable_plugins = {"TaintToleration"}
    q.add_unschedulable(qpi, q.scheduling_cycle)
    clock.advance(299)
    q.flush_unschedulable_leftover()
    assert "default/p" in q.unschedulable
    clock.advance(2)
    q.flush_unschedulable_leftover()
    assert q.active_keys() == ["default/p"]


async def test_update_moves_unschedulable_pod_and_delete_drops() -> None:
    q, clock = make()
    q.add(info("p"))
    qpi = q.try_pop()
    assert qpi is not None
    qpi.unschedulable_plugins = {"TaintToleration"}
    q.add_unschedulable(qpi, q.scheduling_cycle)
    clock.advance(5)
    q.update(info("p"))
    assert q.active_keys() == ["default/p"]
    q.delete("default/p")
    assert len(q) == 0 and q.try_pop() is None


async def test_deleted_while_in_flight_is_not_parked() -> None:
    q, _ = make()
    q.add(info("p"))
    qpi = q.try_pop()
    assert qpi is not None
    q.delete("default/p")
    q.add_unschedulable(qpi, q.scheduling_cycle)
    assert len(q) == 0


async def test_pop_waits_for_add() -> None:
    import asyncio
    q = SchedulingQueue(events=EVENTS)
    waiter = asyncio.ensure_future(q.pop())
    await asyncio.sleep(0)
    assert not waiter.done()
    q.add(info("late"))
    got = await asyncio.wait_for(waiter, 1)
    assert got.pod.name == "late"


@pytest.mark.parametrize("attempts,expected", [(1, 1.0), (3, 4.0), (10, 10.0)])
def test_backoff_duration(attempts: int, expected: float) -> None:
    q, _ = make()
    q.add(info("p"))
    qpi = q.try_pop()
    assert qpi is not None
    qpi.attempts = attempts
    assert q.backoff_duration(qpi) == expected
