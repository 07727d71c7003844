"""Why a queue submits nothing, read from its last cycle's decision and reason and the controls in force."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

#: The overview's groups of queues that submit nothing, in the order shown.
GROUPS = ("paused", "offline", "stale data", "credential expiring", "throttled", "no work", "other")
_THROTTLES = ("max_pilots", "max_per_cycle", "global cap", "trickle", "-> cap")


def stop_line(reason: Iterable[str]) -> str | None:
    """The first line of a reason trace that brought the number to 0 (``... -> 0``)."""
    return next((line for line in reason if line.endswith("-> 0")), None)


def why_idle(queue: Mapping[str, Any], stopped: bool) -> tuple[str, str] | None:
    """``(group, the line that says why)`` for a queue whose last cycle submitted nothing, or that is paused
    or draining now (``stopped``) or offline; ``None`` for a queue that submits, or that never had a cycle."""
    if queue["status"] in ("offline", "brokeroff"):
        return "offline", f"status {queue['status']}"
    if stopped:
        return "paused", "paused or draining (see its controls)"
    if queue["last_cycle_at"] is None or queue["last_decided"]:
        return None
    line = stop_line(queue["last_reason"] or ()) or "decided 0"
    if line.startswith("status "):
        return "offline", line
    if line.endswith((" paused -> 0", " drains -> 0")):
        return "paused", line
    if "PanDA data" in line:
        return "stale data", line
    if line.startswith("credential "):
        return "credential expiring", line
    if any(word in line for word in _THROTTLES):
        return "throttled", line
    if line.startswith(("target ", "n_act=")) or "activated=0" in line:
        return "no work", line
    return "other", line


def idle_groups(queues: Iterable[Mapping[str, Any]], stopped: set[str]) -> dict[str, list[tuple[Mapping[str, Any],
                                                                                                  str]]]:
    """``{group: [(queue row, why)]}`` in :data:`GROUPS` order, only groups with queues; ``stopped`` names the
    queues a pause or drain in force holds."""
    groups: dict[str, list[tuple[Mapping[str, Any], str]]] = {name: [] for name in GROUPS}
    for queue in queues:
        found = why_idle(queue, queue["queue"] in stopped)
        if found is not None:
            groups[found[0]].append((queue, found[1]))
    return {name: members for name, members in groups.items() if members}
