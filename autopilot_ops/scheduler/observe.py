"""Observe: gather what the policy needs for every queue of a tag, with one query per kind of input."""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from autopilot_ops.policy import Control, JobCount, PilotCounts, QueueConfig, RecentActivity, Snapshot
from autopilot_ops.scheduler.tags import SCHEDULER_TAG_SQL
from autopilot_ops.store.cycles import live_instances
from autopilot_ops.store.pilots import QueueActivity, queue_activity
from autopilot_ops.store.submissions import submission_outcomes

#: PanDA's ``active_job_stats_by_site`` has no prodSourceLabel breakdown; its counts serve every label.
ANY_LABEL = "*"
ANY_RESOURCE_TYPE = "*"


def queues_of_tag(cur: Any, tag: str) -> list[dict[str, Any]]:
    """The ``schedconfig`` rows this tag's scheduler serves."""
    cur.execute(f"SELECT * FROM schedconfig WHERE {SCHEDULER_TAG_SQL} = %s ORDER BY panda_queue", (tag,))
    return [dict(row) for row in cur.fetchall()]


def backends_of_tag(cur: Any, tag: str) -> list[str]:
    """The back ends this tag's queues submit to."""
    cur.execute(
        f"SELECT DISTINCT backend FROM schedconfig WHERE {SCHEDULER_TAG_SQL} = %s AND backend IS NOT NULL "
        "ORDER BY backend",
        (tag,),
    )
    return [row["backend"] for row in cur.fetchall()]


def controls_in_scope(cur: Any, queues: Sequence[str], tags: Sequence[str]) -> list[dict[str, Any]]:
    """Control rows set on any of ``queues`` or ``tags`` (expiry is left to the policy, which reports it)."""
    cur.execute(
        "SELECT * FROM controls WHERE (scope = 'queue' AND target = ANY(%s)) OR (scope = 'tag' AND target = ANY(%s))",
        (list(queues), list(tags)),
    )
    return [dict(row) for row in cur.fetchall()]


@dataclass(frozen=True)
class Observation:
    """Inputs of one cycle for every queue of a tag."""

    queues: list[dict[str, Any]]
    snapshots: dict[str, Snapshot]
    inputs: dict[str, dict[str, Any]]


def observe(
    cur: Any,
    tag: str,
    stats: Mapping[str, Mapping[str, int]] | None,
    stats_age: float | None,
    now: dt.datetime,
    *,
    window_s: int = 3600,
    empty_runtime_s: int = 60,
    global_cap: int | None = None,
) -> Observation:
    queues = queues_of_tag(cur, tag)
    names = [q["panda_queue"] for q in queues]
    since = now - dt.timedelta(seconds=window_s)
    activity = queue_activity(cur, names, since, empty_runtime_s)
    outcomes = submission_outcomes(cur, names, since)
    all_tags = sorted({t for q in queues for t in q["tags"]})
    control_rows = controls_in_scope(cur, names, all_tags)
    poll_period = min((q["cycle_period"] for q in queues), default=300)
    instances = live_instances(cur, tag, now - dt.timedelta(seconds=3 * poll_period))
    snapshots, inputs = {}, {}
    for queue in queues:
        name = queue["panda_queue"]
        act = activity.get(name, QueueActivity())
        attempts, missed = outcomes.get(name, (0, 0))
        activated = (stats or {}).get(name, {}).get("activated", 0)
        controls = tuple(
            _control(row)
            for row in control_rows
            if (row["scope"] == "queue" and row["target"] == name)
            or (row["scope"] == "tag" and row["target"] in queue["tags"])
        )
        snapshots[name] = Snapshot(
            queue=_queue_config(queue),
            activated=(JobCount(ANY_LABEL, ANY_RESOURCE_TYPE, int(activated)),) if stats is not None else (),
            pilots=PilotCounts(queued=act.queued, running=act.running, held=act.held),
            recent=RecentActivity(attempts=attempts, missed=missed, ended=act.ended, empty=act.empty),
            controls=controls,
            instances=instances,
            panda_data_age=stats_age,
            poll_period=float(queue["cycle_period"]),
            global_cap=global_cap,
            now=now,
        )
        inputs[name] = {
            "activated": activated if stats is not None else None,
            "queued": act.queued,
            "running": act.running,
            "held": act.held,
            "attempts": attempts,
            "missed": missed,
            "ended": act.ended,
            "empty": act.empty,
            "instances": instances,
            "panda_data_age": stats_age,
            "controls": [c.label for c in controls],
        }
    return Observation(queues, snapshots, inputs)


def _queue_config(row: Mapping[str, Any]) -> QueueConfig:
    return QueueConfig(
        panda_queue=row["panda_queue"],
        status=row["status"],
        prod_source_labels=(*row["prod_source_labels"], ANY_LABEL),
        queue_limit=row["queue_limit"],
        queue_ratio=row["queue_ratio"],
        min_queued=row["min_queued"],
        max_queued=row["max_queued"],
        max_pilots=row["max_pilots"],
        max_per_cycle=row["max_per_cycle"],
        jobs_per_pilot=row["jobs_per_pilot"],
    )


def _control(row: Mapping[str, Any]) -> Control:
    return Control(
        scope=row["scope"],
        target=row["target"],
        set_by=row["set_by"],
        paused=row["paused"],
        drain=row["drain"],
        fixed_number=row["fixed_number"],
        max_per_cycle=row["max_per_cycle"],
        expires_at=row["expires_at"],
        reason=row["reason"],
    )
