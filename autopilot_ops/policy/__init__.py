"""Pilot-count policy: pure functions that return the number of pilots and the reason."""

from autopilot_ops.policy.rules import Decision, decide
from autopilot_ops.policy.snapshot import (
    Control,
    JobCount,
    PilotCounts,
    QueueConfig,
    RecentActivity,
    Snapshot,
)

__all__ = [
    "Control",
    "Decision",
    "JobCount",
    "PilotCounts",
    "QueueConfig",
    "RecentActivity",
    "Snapshot",
    "decide",
]
