"""The scheduling framework: Status codes, plugin protocols, the plugin registry and a profile.

A profile (`runtime.Framework`) runs the extension points in kube's order: PreFilter → Filter →
PreScore → Score → NormalizeScore, then weights and sums the scores. Plugins live in
`pocketkube.scheduler.plugins`, one per module.
"""

from pocketkube.scheduler.framework.interface import (
    ActionType,
    ClusterEvent,
    CycleState,
    FilterPlugin,
    Plugin,
    PreFilterPlugin,
    PreScorePlugin,
    ScorePlugin,
)
from pocketkube.scheduler.framework.status import Code, Status

__all__ = ["ActionType", "ClusterEvent", "Code", "CycleState", "FilterPlugin", "Plugin", "PreFilterPlugin",
           "PreScorePlugin", "ScorePlugin", "Status"]
