"""Observe: gather what the policy needs for every queue of a tag, with one query per kind of input."""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from autopilot_ops.credentials.checks import credential_lifetimes
from autopilot_ops.policy import ANY_LABEL, JobCount, PandaTarget, PilotCounts, QueueConfig, RecentActivity, Snapshot
from autopilot_ops.scheduler.job_stats import JobStats
from autopilot_ops.store.controls import controls_in_scope
from autopilot_ops.store.cycles import last_good_stats, live_instances
from autopilot_ops.store.panda_commands import worker_targets
from autopilot_ops.store.pilots import QueueActivity, queue_activity
from autopilot_ops.store.queues import SCHEDULER_TAG_SQL, WORKER_QUEUE_SQL
from autopilot_ops.store.submissions import submission_outcomes

_KIND_FILTER = "(%(kinds)s::text[] IS NULL OR b.kind = ANY(%(kinds)s::text[]))"
_WORKER_QUEUE_FILTER = f"(%(worker_queue)s::text IS NULL OR {WORKER_QUEUE_SQL} = %(worker_queue)s)"


def queues_of_tag(
    cur: Any, tag: str, backend_kinds: Sequence[str] | None = None, worker_queue: str | None = None
) -> list[dict[str, Any]]:
    """The ``schedconfig`` rows this tag's scheduler serves, optionally only those on back ends of a kind and
    those routed to one Airflow worker queue."""
    cur.execute(
        f"SELECT s.* FROM schedconfig s LEFT JOIN backends b ON b.name = s.backend "
        f"WHERE {SCHEDULER_TAG_SQL} = %(tag)s AND {_KIND_FILTER} AND {_WORKER_QUEUE_FILTER} ORDER BY s.panda_queue",
        {"tag": tag, "kinds": _kinds(backend_kinds), "worker_queue": worker_queue},
    )
    return [dict(row) for row in cur.fetchall()]


def backends_of_tag(
    cur: Any, tag: str, backend_kinds: Sequence[str] | None = None, worker_queue: str | None = None
) -> list[str]:
    """The back ends this tag's queues submit to (those of one worker queue's queues, with ``worker_queue``)."""
    cur.execute(
        f"SELECT DISTINCT s.backend FROM schedconfig s JOIN backends b ON b.name = s.backend "
        f"WHERE {SCHEDULER_TAG_SQL} = %(tag)s AND {_KIND_FILTER} AND {_WORKER_QUEUE_FILTER} ORDER BY s.backend",
        {"tag": tag, "kinds": _kinds(backend_kinds), "worker_queue": worker_queue},
    )
    return [row["backend"] for row in cur.fetchall()]


def _kinds(backend_kinds: Sequence[str] | None) -> list[str] | None:
    return list(backend_kinds) if backend_kinds is not None else None


@dataclass(frozen=True)
class PandaData:
    """Activated jobs per queue (in all, and per label and resource type), and when PanDA said so: this cycle's
    reply, or else the last good one (so ``stale_polls`` sees the real age of the data; its total only, for
    every label), with why this cycle's call failed or why its counts have no label."""

    activated: Mapping[str, int]
    fetched_at: Mapping[str, dt.datetime]
    error: str | None = None
    counts: Mapping[str, tuple[JobCount, ...]] = field(default_factory=dict)
    note: str | None = None


def panda_data(
    cur: Any, names: Sequence[str], stats: JobStats | None, error: str | None, now: dt.datetime
) -> PandaData:
    """This cycle's statistics for ``names``, or, when the call failed, the last good reply persisted."""
    if stats is not None:
        counts = {n: stats.activated.get(n, ()) for n in names}
        totals = {n: sum(c.count for c in found) for n, found in counts.items()}
        return PandaData(totals, dict.fromkeys(names, now), counts=counts, note=stats.note)
    last = last_good_stats(cur, names)
    counts = {n: _recorded_counts(total, by_label) for n, (total, _, by_label) in last.items()}
    return PandaData({n: a for n, (a, _, _) in last.items()}, {n: at for n, (_, at, _) in last.items()}, error, counts)


def _recorded_counts(total: int, by_label: Mapping[str, int] | None) -> tuple[JobCount, ...]:
    """The counts a cycle recorded (``inputs.activated_by_label``: ``label/resource type`` -> n), or, from a cycle
    that recorded none, its total for every label."""
    if by_label is None:
        return (JobCount(ANY_LABEL, ANY_LABEL, total),)
    return tuple(JobCount(*key.split("/", 1), int(n)) for key, n in by_label.items())


@dataclass(frozen=True)
class Observation:
    """Inputs of one cycle for every queue of a tag."""

    queues: list[dict[str, Any]]
    snapshots: dict[str, Snapshot]
    inputs: dict[str, dict[str, Any]]


def observe(
    cur: Any,
    queues: list[dict[str, Any]],
    tag: str,
    panda: PandaData,
    now: dt.datetime,
    *,
    window_s: int = 3600,
    global_cap: int | None = None,
    backend_parameters: Mapping[str, Mapping[str, Any]] | None = None,
    scheduler: str | None = None,
) -> Observation:
    """Snapshots of ``queues`` (rows of :func:`queues_of_tag`) for the policy, and the inputs to log;
    ``backend_parameters`` (by back-end name) hold the back ends' credentials. Where several instances serve the
    tag, ``scheduler``'s own pilots are counted against its share of the jobs (Harvester's instances each count
    their own workers), while the caps bound every instance's pilots."""
    names = [q["panda_queue"] for q in queues]
    since = now - dt.timedelta(seconds=window_s)
    poll_period = min((q["cycle_period"] for q in queues), default=300)
    instances = live_instances(cur, tag, now - dt.timedelta(seconds=3 * poll_period))
    activity = queue_activity(cur, names, since)
    own = queue_activity(cur, names, since, scheduler) if instances > 1 and scheduler is not None else None
    outcomes = submission_outcomes(cur, names, since)
    all_tags = sorted({t for q in queues for t in q["tags"]})
    all_controls = controls_in_scope(cur, names, all_tags)
    targets = worker_targets(cur, names)
    snapshots, inputs = {}, {}
    for queue in queues:
        name = queue["panda_queue"]
        act = activity.get(name, QueueActivity())
        attempts, missed = outcomes.get(name, (0, 0))
        activated = panda.activated.get(name)
        fetched_at = panda.fetched_at.get(name)
        age = None if fetched_at is None else max((now - fetched_at).total_seconds(), 0.0)
        controls = tuple(
            c
            for c in all_controls
            if (c.scope == "queue" and c.target == name) or (c.scope == "tag" and c.target in queue["tags"])
        )
        panda_targets = tuple(
            PandaTarget(t.command_id, t.job_type, t.resource_type, t.n_workers, t.expires_at)
            for t in targets.get(name, ())
        )
        credentials = credential_lifetimes(queue, (backend_parameters or {}).get(queue["backend"] or ""), now)
        snapshots[name] = Snapshot(
            queue=QueueConfig.from_row(queue),
            activated=panda.counts.get(name, ()),
            pilots=PilotCounts(queued=act.queued, running=act.running, held=act.held),
            own_pilots=_own_counts(own, name),
            recent=RecentActivity(attempts=attempts, missed=missed, ended=act.ended, empty=act.empty),
            controls=controls,
            instances=instances,
            panda_data_age=age,
            poll_period=float(queue["cycle_period"]),
            global_cap=global_cap,
            now=now,
            panda_targets=panda_targets,
            credentials=credentials,
        )
        inputs[name] = {
            "activated": activated,
            "activated_by_label": {f"{c.prod_source_label}/{c.resource_type}": c.count
                                   for c in panda.counts.get(name, ())},
            "stats_note": panda.note,
            "stats_at": fetched_at.isoformat() if fetched_at is not None else None,
            "stats_error": panda.error,
            "queued": act.queued,
            "queued_own": None if own is None else own.get(name, QueueActivity()).queued,
            "running": act.running,
            "held": act.held,
            "attempts": attempts,
            "missed": missed,
            "ended": act.ended,
            "empty": act.empty,
            "instances": instances,
            "panda_data_age": age,
            "controls": [c.label for c in controls],
            "panda_targets": [t.describe() for t in panda_targets],
            "credentials": [c.describe() for c in credentials],
        }
    return Observation(queues, snapshots, inputs)


def _own_counts(own: Mapping[str, QueueActivity] | None, queue: str) -> PilotCounts | None:
    """This instance's live pilots of ``queue``, where several instances serve it."""
    if own is None:
        return None
    mine = own.get(queue, QueueActivity())
    return PilotCounts(queued=mine.queued, running=mine.running, held=mine.held)
