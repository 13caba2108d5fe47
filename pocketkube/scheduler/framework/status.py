"""Status: what a plugin says about a pod (and a node), and how that decides retrying.

Plugins return None for success on the hot path (no allocation per node); a Status otherwise.
"""

from __future__ import annotations

import enum


class Code(enum.IntEnum):
    # The pod fits / the step succeeded.
    SUCCESS = 0
    # An internal failure (bad object, API error): the pod goes to backoffQ and is retried after its
    # backoff whatever the cluster does, because the failure was ours, not the cluster's.
    ERROR = 1
    # The pod does not fit now, but a cluster change (a pod leaving, a node growing) or preemption could
    # make room: the pod waits among the unschedulable pods until an event that the rejecting plugin
    # registered for moves it back (or the 5-minute flush does).
    UNSCHEDULABLE = 2
    # The pod does not fit and preemption cannot help (taint, selector, cordon): same waiting as
    # Unschedulable, and PostFilter (preemption) skips the node ("Preemption is not helpful").
    UNSCHEDULABLE_AND_UNRESOLVABLE = 3
    # Only from PreFilter/PreScore: the plugin has nothing to say about this pod, so the framework skips
    # its Filter/Score for the cycle. Never causes a retry.
    SKIP = 4


class Status:
    __slots__ = ("code", "plugin", "reasons")

    def __init__(self, code: Code, *reasons: str, plugin: str = "") -> None:
        self.code = code
        self.reasons: tuple[str, ...] = reasons
        self.plugin = plugin

    @property
    def rejected(self) -> bool:
        return self.code in (Code.UNSCHEDULABLE, Code.UNSCHEDULABLE_AND_UNRESOLVABLE)

    def message(self) -> str:
        return ", ".join(self.reasons)

    def __repr__(self) -> str:
        return f"Status({self.code.name}, {self.reasons!r}, plugin={self.plugin!r})"

    @classmethod
    def unschedulable(cls, *reasons: str, plugin: str = "") -> Status:
        return cls(Code.UNSCHEDULABLE, *reasons, plugin=plugin)

    @classmethod
    def unresolvable(cls, *reasons: str, plugin: str = "") -> Status:
        return cls(Code.UNSCHEDULABLE_AND_UNRESOLVABLE, *reasons, plugin=plugin)


SKIP = Status(Code.SKIP)
