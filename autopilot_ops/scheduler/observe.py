"""Observe: gather what the policy needs for every queue of a tag, with one query per kind of input."""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from autopilot_ops.policy import JobCount, PilotCounts, QueueConfig, RecentActivity, Snapshot
from autopilot_ops.scheduler.tags import SCHEDULER_TAG_SQL
from autopilot_ops.store.controls import controls_in_scope
from autopilot_ops.store.cycles import live_instances
from autopilot_ops.store.pilots import QueueActivity, queue_activity
from autopilot_ops.store.submissions import submission_outcomes

#: PanDA's ``active_job_stats_by_site`` has no prodSourceLabel breakdown; its counts serve every label.
ANY_LABEL = "*"
ANY_RESOURCE_TYPE = "*"


_KIND_FILTER = "(%(kinds)s::text[] IS NULL OR b.kind = ANY(%(kinds)s::text[]))"


def queues_of_tag(cur: Any, tag: str, backend_kinds: Sequence[str] | None = None) -> list[dict[str, Any]]:
    """The ``schedconfig`` rows this tag's scheduler serves, optionally only those on back ends of a kind."""
    cur.execute(
        f"SELECT s.* FROM schedconfig s LEFT JOIN backends b ON b.name = s.backend "
        f"WHERE {SCHEDULER_TAG_SQL} = %(tag)s AND {_KIND_FILTER} ORDER BY s.panda_queue",
        {"tag": tag, "kinds": _kinds(backend_kinds)},
    )
    return [dict(row) for row in cur.fetchall()]


def backends_of_tag(cur: Any, tag: str, backend_kinds: Sequence[str] | None = None) -> list[str]:
    """The back ends this tag's queues submit to."""
    cur.execute(
        f"SELECT DISTINCT s.backend FROM schedconfig s JOIN backends b ON b.name = s.backend "
        f"WHERE {SCHEDULER_TAG_SQL} = %(tag)s AND {_KIND_FILTER} ORDER BY s.backend",
        {"tag": tag, "kinds": _kinds(backend_kinds)},
    )
    return [row["backend"] for row in cur.fetchall()]


def _kinds(backend_kinds: Sequence[str] | None) -> list[str] | None:
    return list(backend_kinds) if backend_kinds is not None else None


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
    global_cap: int | None = None,
    backend_kinds: Sequence[str] | None = None,
) -> Observation:
    queues = queues_of_tag(cur, tag, backend_kinds)
    names = [q["panda_queue"] for q in queues]
    since = now - dt.timedelta(seconds=window_s)
    activity = queue_activity(cur, names, since)
    outcomes = submission_outcomes(cur, names, since)
    all_tags = sorted({t for q in queues for t in q["tags"]})
    all_controls = controls_in_scope(cur, names, all_tags)
    poll_period = min((q["cycle_period"] for q in queues), default=300)
    instances = live_instances(cur, tag, now - dt.timedelta(seconds=3 * poll_period))
    snapshots, inputs = {}, {}
    for queue in queues:
        name = queue["panda_queue"]
        act = activity.get(name, QueueActivity())
        attempts, missed = outcomes.get(name, (0, 0))
        activated = (stats or {}).get(name, {}).get("activated", 0)
        controls = tuple(
            c
            for c in all_controls
            if (c.scope == "queue" and c.target == name) or (c.scope == "tag" and c.target in queue["tags"])
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
    labels = (*row["prod_source_labels"], ANY_LABEL)
    return QueueConfig.from_row({**row, "prod_source_labels": labels})
