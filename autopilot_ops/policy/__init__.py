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
from autopilot_ops.policy.labels import ANY_LABEL, TEST_LABEL, LabelSplit, split_by_label
from autopilot_ops.policy.rules import Decision, decide

__all__ = [
    "ANY_LABEL",
    "TEST_LABEL",
    "Control",
    "Decision",
    "JobCount",
    "LabelSplit",
    "PandaTarget",
    "PilotCounts",
    "QueueConfig",
    "RecentActivity",
    "Snapshot",
    "decide",
    "split_by_label",
]
