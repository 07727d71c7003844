"""Pilot-count policy: pure functions that return the number of pilots and the reason."""

from autopilot_ops.policy.inputs import (
    Control,
    JobCount,
    PandaTarget,
    PilotCounts,
    QueueConfig,
    RecentActivity,
    Snapshot,
)
from autopilot_ops.policy.rules import Decision, decide

__all__ = [
    "Control",
    "Decision",
    "JobCount",
    "PandaTarget",
    "PilotCounts",
    "QueueConfig",
    "RecentActivity",
    "Snapshot",
    "decide",
]
