"""Read-only queries behind the monitor pages and the ``/api/queues`` summary.

``cycles.inputs`` is written by the scheduler core (``autopilot_ops.scheduler.observe``); the monitor reads
its ``activated``, ``queued``, ``running`` and ``held`` keys, and shows nothing for a missing one.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

from autopilot_ops.store.pilots import LIVE_STATES
from autopilot_ops.store.queues import SCHEDULER_TAG_SQL

#: Final pilots are counted on the overview when they ended within this window.
RECENT_WINDOW = dt.timedelta(hours=24)
SERIES_KEYS = ("queued", "running", "activated", "decided")


def queue_summaries(cur: Any, queue: str | None = None, tag: str | None = None,
                    site: str | None = None) -> list[dict[str, Any]]:
    """One row per queue (or only ``queue``, or only the queues of scheduler ``tag`` or of ``site``): its
    scheduler tag, pilots by state, and its last cycle.

    ``pilots`` counts live pilots and those that reached a final state within :data:`RECENT_WINDOW`.
    """
    cur.execute(
        f"SELECT s.panda_queue AS queue, s.site, s.tags, s.status, s.backend, s.cycle_period, s.panda_workers, "
        f"{SCHEDULER_TAG_SQL} AS scheduler_tag, "
        f"c.cycle_id AS last_cycle_id, c.started_at AS last_cycle_at, c.decided AS last_decided, "
        f"c.submitted AS last_submitted, c.failed AS last_failed, c.reason AS last_reason, "
        f"(c.inputs->>'activated')::int AS activated "
        f"FROM schedconfig s LEFT JOIN LATERAL (SELECT cycle_id, started_at, decided, submitted, failed, reason, "
        f"inputs FROM cycles WHERE queue = s.panda_queue ORDER BY started_at DESC LIMIT 1) c ON true "
        f"WHERE (%s::text IS NULL OR s.panda_queue = %s) AND (%s::text IS NULL OR {SCHEDULER_TAG_SQL} = %s) "
        f"AND (%s::text IS NULL OR s.site = %s) ORDER BY scheduler_tag, s.panda_queue",
        (queue, queue, tag, tag, site, site),
    )
    rows = [dict(row) for row in cur.fetchall()]
    counts = pilot_counts(cur, [row["queue"] for row in rows] if queue or tag or site else None)
    for row in rows:
        row["pilots"] = counts.get(row["queue"], {})
    return rows


def pilot_counts(cur: Any, queues: list[str] | None = None) -> dict[str, dict[str, int]]:
    """``{queue: {state: n}}`` of live pilots and of pilots that ended within :data:`RECENT_WINDOW`, for
    ``queues`` (default: every queue)."""
    cur.execute(
        "SELECT queue, state, count(*) AS n FROM pilots WHERE (%s::text[] IS NULL OR queue = ANY(%s)) "
        "AND (state = ANY(%s) OR state_changed_at > now() - %s) GROUP BY queue, state",
        (queues, queues, list(LIVE_STATES), RECENT_WINDOW),
    )
    counts: dict[str, dict[str, int]] = {}
    for row in cur.fetchall():
        counts.setdefault(row["queue"], {})[row["state"]] = int(row["n"])
    return counts


def recent_cycles(cur: Any, queue: str, limit: int = 30) -> list[dict[str, Any]]:
    cur.execute(
        "SELECT cycle_id, scheduler, started_at, ended_at, inputs, decided, reason, submitted, failed "
        "FROM cycles WHERE queue = %s ORDER BY started_at DESC LIMIT %s",
        (queue, limit),
    )
    return [dict(row) for row in cur.fetchall()]


#: The pilots table's sort keys: ``?sort=<key>`` ascending, ``?sort=-<key>`` descending.
PILOT_SORTS = {"id": "id", "state": "state", "submitted": "submitted_at", "changed": "state_changed_at",
               "exit": "exit_code", "heartbeat": "last_heartbeat"}


def recent_pilots(cur: Any, queue: str, limit: int = 50, state: str | None = None,
                  sort: str = "-id") -> list[dict[str, Any]]:
    """The queue's pilots (only those in ``state``), sorted by a :data:`PILOT_SORTS` key, newest id first
    among equals; each with ``panda_ids``, the jobs it reported taking (``pilot.job`` events)."""
    column = PILOT_SORTS[sort.lstrip("-")]
    order = "DESC NULLS LAST" if sort.startswith("-") else "ASC NULLS FIRST"
    cur.execute(
        "SELECT id, backend, batch_id, cycle_id, state, state_reason, submitted_at, state_changed_at, "
        "exit_code, stdout_path, stderr_path, last_heartbeat, prod_source_label "
        f"FROM pilots WHERE queue = %s AND (%s::text IS NULL OR state = %s) ORDER BY {column} {order}, id DESC "
        "LIMIT %s",
        (queue, state, state, limit),
    )
    pilots = [dict(row) for row in cur.fetchall()]
    jobs = pilot_jobs(cur, queue, [p["id"] for p in pilots])
    for pilot in pilots:
        pilot["panda_ids"] = [job["panda_id"] for job in jobs.get(pilot["id"], [])]
    return pilots


def pilot_jobs(cur: Any, queue: str, pilot_ids: list[int]) -> dict[int, list[dict[str, Any]]]:
    """``{pilot id: [{panda_id, taken_at, done_at, state}]}`` from the pilots' ``pilot.job`` and
    ``pilot.job_done`` events, in the order taken."""
    cur.execute(
        "SELECT pilot_id, details->>'job_id' AS panda_id, min(at) FILTER (WHERE what = 'pilot.job') AS taken_at, "
        "max(at) FILTER (WHERE what = 'pilot.job_done') AS done_at, "
        "max(details->>'state') FILTER (WHERE what = 'pilot.job_done') AS state "
        "FROM pilot_events WHERE queue = %s AND pilot_id = ANY(%s) AND what IN ('pilot.job', 'pilot.job_done') "
        "AND details->>'job_id' IS NOT NULL GROUP BY 1, 2 ORDER BY 1, min(at), 2",
        (queue, pilot_ids),
    )
    jobs: dict[int, list[dict[str, Any]]] = {}
    for row in cur.fetchall():
        jobs.setdefault(row["pilot_id"], []).append(dict(row))
    return jobs


def pilot(cur: Any, pilot_id: int) -> dict[str, Any] | None:
    """One pilot's row, every column."""
    cur.execute("SELECT * FROM pilots WHERE id = %s", (pilot_id,))
    row = cur.fetchone()
    return dict(row) if row else None


def pilot_story(cur: Any, pilot: dict[str, Any]) -> list[dict[str, Any]]:
    """What happened to ``pilot``, oldest first: its submission's event (by its cycle), then every event that
    names it (states from the sweeps, what the pilot posted, kill requests)."""
    cur.execute(
        "SELECT id, at, who, what, details FROM pilot_events WHERE queue = %(queue)s AND (pilot_id = %(id)s "
        "OR (pilot_id IS NULL AND what = 'submitted' AND details->>'cycle' = %(cycle)s AND at >= %(since)s)) "
        "ORDER BY at, id",
        {"queue": pilot["queue"], "id": pilot["id"], "cycle": pilot["cycle_id"],
         "since": pilot["submitted_at"] - dt.timedelta(minutes=10)},
    )
    return [dict(row) for row in cur.fetchall()]


def cycle_series(cur: Any, queue: str, limit: int = 200) -> list[dict[str, Any]]:
    """The latest ``limit`` cycles' id, time, :data:`SERIES_KEYS` counts and last reason line, oldest first."""
    cur.execute(
        "SELECT cycle_id, started_at, (inputs->>'queued')::int AS queued, (inputs->>'running')::int AS running, "
        "(inputs->>'activated')::int AS activated, decided, reason[cardinality(reason)] AS outcome "
        "FROM (SELECT cycle_id, started_at, inputs, decided, reason FROM cycles "
        "WHERE queue = %s ORDER BY started_at DESC LIMIT %s) recent ORDER BY started_at",
        (queue, limit),
    )
    return [dict(row) for row in cur.fetchall()]


def recent_events(cur: Any, queue: str, limit: int = 30) -> list[dict[str, Any]]:
    cur.execute(
        "SELECT id, at, who, what, pilot_id, details FROM pilot_events WHERE queue = %s ORDER BY at DESC, id DESC "
        "LIMIT %s",
        (queue, limit),
    )
    return [dict(row) for row in cur.fetchall()]


def queue_controls(cur: Any, queue: str, tags: list[str]) -> list[dict[str, Any]]:
    """Every control row on the queue or its tags, expired ones included (the page marks them)."""
    cur.execute(
        "SELECT scope, target, paused, drain, fixed_number, max_per_cycle, expires_at, set_by, set_at, reason "
        "FROM controls WHERE (scope = 'queue' AND target = %s) OR (scope = 'tag' AND target = ANY(%s)) "
        "ORDER BY scope, target",
        (queue, tags),
    )
    return [dict(row) for row in cur.fetchall()]


def find_pilot(cur: Any, queue: str, pilot_id: int | None, batch_id: str | None) -> dict[str, Any] | None:
    """The pilot of ``queue`` with this database id, or else with this batch id."""
    if pilot_id is not None:
        cur.execute("SELECT id, queue, backend, batch_id FROM pilots WHERE id = %s", (pilot_id,))
    else:
        cur.execute(
            "SELECT id, queue, backend, batch_id FROM pilots WHERE queue = %s AND batch_id = %s "
            "ORDER BY id DESC LIMIT 1",
            (queue, batch_id),
        )
    row = cur.fetchone()
    return dict(row) if row else None


#: The overview's plots: pilots and activated jobs over this window, in :data:`HISTORY_BUCKETS` steps.
HISTORY_WINDOW = dt.timedelta(hours=24)
HISTORY_BUCKETS = 24


#: What the overview's plots are per: every queue together, each scheduler tag, each site.
HISTORY_KEYS = {"all": "'all'", "tag": SCHEDULER_TAG_SQL, "site": "s.site"}


def pilot_history(cur: Any, start: dt.datetime, step: dt.timedelta, per: str = "all",
                  queues: list[str] | None = None) -> list[dict[str, Any]]:
    """Changes of pilot counts since ``start``, in buckets of ``step``, per :data:`HISTORY_KEYS` ``per``, of
    ``queues`` (default: every queue).

    Each row is ``(key, series, bucket, n)``: for ``submitted`` (not yet seen by its back end), ``queued`` (held
    included) and ``running``, ``n`` is the change of the number of pilots in that state at bucket ``bucket``'s
    end (``start + bucket * step``; a change before ``start`` is in bucket 0), to be summed up bucket by bucket;
    for a final state, ``n`` is how many pilots reached it within the bucket.
    A pilot waits from ``submitted_at`` to ``started_at`` (or its end), runs from ``started_at`` to its end.
    """
    bucket = "greatest(0, ceil((date_part('epoch', {}) - %(start)s) / %(step)s))::int"
    changes = (  # (series, time, change, condition)
        ("waiting", "submitted_at", "1", "true"),
        ("waiting", "coalesce(started_at, end_at)", "-1", "coalesce(started_at, end_at) IS NOT NULL"),
        ("'running'", "started_at", "1", "started_at IS NOT NULL"),
        ("'running'", "end_at", "-1", "started_at IS NOT NULL AND end_at IS NOT NULL"),
        ("state", "end_at", "1", "state <> ALL(%(live)s) AND end_at > %(since)s"),
    )
    grouped = " UNION ALL ".join(
        f"SELECT key, {series} AS series, {bucket.format(at)} AS bucket, "
        f"sum({change})::int AS n FROM p WHERE {condition} GROUP BY 1, 2, 3"
        for series, at, change, condition in changes
    )
    join = "" if per == "all" else " JOIN schedconfig s ON s.panda_queue = pilots.queue"
    cur.execute(
        f"WITH p AS MATERIALIZED (SELECT {HISTORY_KEYS[per]} AS key, pilots.state, pilots.submitted_at, "
        f"pilots.started_at, coalesce(pilots.ended_at, CASE WHEN pilots.state <> ALL(%(live)s) "
        f"THEN pilots.state_changed_at END) AS end_at, "
        f"CASE WHEN pilots.state = 'submitted' THEN 'submitted' ELSE 'queued' END AS waiting FROM pilots{join} "
        f"WHERE (pilots.state = ANY(%(live)s) OR pilots.state_changed_at > %(since)s "
        f"OR pilots.ended_at > %(since)s) AND (%(queues)s::text[] IS NULL OR pilots.queue = ANY(%(queues)s))) "
        f"{grouped}",
        {"start": start.timestamp(), "since": start, "step": step.total_seconds(), "live": list(LIVE_STATES),
         "queues": queues},
    )
    return [dict(row) for row in cur.fetchall()]


def activated_history(cur: Any, start: dt.datetime, step: dt.timedelta, per: str = "all",
                      queues: list[str] | None = None) -> list[dict[str, Any]]:
    """Activated jobs since ``start`` (as :func:`pilot_history`'s, but the bucket a cycle started in): the sum
    over the queues of each queue's largest ``activated`` in the bucket."""
    cur.execute(
        f"SELECT {HISTORY_KEYS[per]} AS key, c.bucket, sum(c.activated)::int AS activated "
        f"FROM (SELECT queue, ceil((extract(epoch FROM started_at) - %(start)s) / %(step)s)::int AS bucket, "
        f"max((inputs->>'activated')::int) AS activated FROM cycles WHERE started_at > %(since)s "
        f"AND (%(queues)s::text[] IS NULL OR queue = ANY(%(queues)s)) GROUP BY 1, 2) c "
        f"JOIN schedconfig s ON s.panda_queue = c.queue WHERE c.activated IS NOT NULL GROUP BY 1, 2",
        {"start": start.timestamp(), "since": start, "step": step.total_seconds(), "queues": queues},
    )
    return [dict(row) for row in cur.fetchall()]


def targets_in_force(cur: Any, queues: list[str] | None = None) -> list[dict[str, Any]]:
    """PanDA's numbers of new pilots (``SET_N_WORKERS_JOBTYPE``) not expired, for ``queues`` (default: all)."""
    cur.execute(
        "SELECT queue, job_type, resource_type, n_workers, command_id, received_at, expires_at "
        "FROM panda_worker_targets WHERE expires_at > now() AND (%s::text[] IS NULL OR queue = ANY(%s)) "
        "ORDER BY queue, job_type, resource_type",
        (queues, queues),
    )
    return [dict(row) for row in cur.fetchall()]


def states_seen_at(cur: Any, queue: str | None = None) -> dt.datetime | None:
    """When a back end last reported on a pilot (of ``queue``): the pilot states shown are as of then."""
    cur.execute("SELECT max(last_seen) AS at FROM pilots WHERE %s::text IS NULL OR queue = %s", (queue, queue))
    return cur.fetchone()["at"]
