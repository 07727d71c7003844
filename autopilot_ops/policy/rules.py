"""How many pilots to submit to one queue this cycle, and why: a pure function of a :class:`Snapshot`.

The rules run in a fixed order, and each step that changes something, or stops the cycle, adds one line
to the reason trace; the last line is always ``submit <n>``.

1. Gates, each of which gives 0: status ``offline``/``brokeroff``; a control that pauses or drains the
   queue (controls whose ``expires_at`` is not after ``snapshot.now`` are ignored and say so); PanDA data
   older than ``stale_polls`` poll periods, or none at all; a credential the pilots would carry with less than
   the queue's minimum lifetime left, or one that cannot be read (:mod:`autopilot_ops.policy.credentials`).
2. The number: a control's ``fixed_number`` if one is in force; else, on status ``test``, enough pilots
   to keep ``test_pilots`` queued; else the core formula::

       Q_eff = clamp(floor(ratio * running), max(min_queued, 1), max_queued)   if a ratio is set
             = clamp(queue_limit, min_queued, max_queued)                      otherwise (None = unbounded)
       n_act = ceil(activated / (instances * jobs_per_pilot))   # activated: served labels only
       n     = max(min(Q_eff, n_act) - queued, 0)               # held pilots are not queued

   then the throttles (missed-submission rate or empty-pilot share over its limit: at most 1, a trickle
   that never drops to 0 while there is demand) and ``keep_one_pilot``. PanDA's numbers of new workers
   (``SET_N_WORKERS_JOBTYPE``) for the served labels, unexpired, then replace that number (the queue's
   ``panda_workers`` is ``target``) or bound it (``cap``).
3. The caps, on every number from step 2: ``max_pilots - alive`` (held pilots are alive), the smaller of
   the queue's and the controls' ``max_per_cycle``, and ``snapshot.global_cap``.
4. The labels (:mod:`autopilot_ops.policy.labels`): a unified queue's pilots split in proportion to the activated
   jobs of each label it serves; a test queue's pilots ask for ``test``.

Known faults of the two schedulers this follows, and what is done here instead (files read at
PanDAWMS/autopyfactory 9d0d389, paths under autopyfactory/plugins/queue/, and HSF/harvester d561b72):

- AutoPyFactory chains sched plugins, each fed the previous one's output (``_callscheds`` in
  autopyfactory/queues.py). The result depends on the chain's order and can go negative:
  ``sched/MaxToRun.py`` returns ``min(n, max_to_run - all_pilots)``, ``sched/KeepNRunning.py`` says it
  "may output a negative number", ``sched/MaxPending.py`` allows negatives by default, and a
  ``sched/MinPerCycle.py`` placed after ``sched/StatusOffline.py`` turns an offline queue's 0 back into
  pilots. Here the order is fixed, gates return at once, and every step stays >= 0.
- AutoPyFactory returns 0 whenever a status source is missing or older than ``wmsstatus.panda.maxage``
  (360 s by default, whatever the poll interval: ``wmsstatus/Panda.py`` ``getInfo``; ``sched/Ready.py``,
  ``MaxToRun.py``, ``StatusTest.py``), with only "Invalid wmsinfo or batchinfo" in the label, so a broken
  source keeps a queue at 0 without saying why or for how long.
  Here staleness is counted in poll periods and the trace gives the age and the limit; failure-driven
  throttles (missed submissions, empty pilots) trickle 1 pilot instead of 0, so recovery shows.
- ``sched/Throttle.py`` returns its ``submit`` number (1) even when the input was 0, creating pilots with
  no demand, and passes the full input on any error. Here the trickle is ``min(n, 1)``.
- ``sched/StatusTest.py`` submits a fixed number every cycle (default 0) whatever is already pending, and
  ``sched/StatusOffline.py`` can be configured to submit to an offline queue. Here a test queue keeps
  ``test_pilots`` (default 1) queued, still capped, and offline is always 0.
- ``sched/Ready.py`` submits ``activated - pending`` from every factory: N factories on one queue flood it
  N times over. Here each of the live instances submits its share ``1/instances``.
- Harvester reads 0 as "no limit" for ``nQueueLimitWorker``, ``maxWorkers`` and ``maxNewWorkersPerCycle``
  (``n_queue >= n_queue_limit_per_rt > 0``, ``if max_workers > 0``, ``if maxNewWorkersPerCycle > 0`` in
  pandaharvester/harvesterbody/worker_adjuster.py) but as zero in the multi-resource-type aggregation of
  the same function (``max(n_queue_limit - n_queue_total, 0)``, ``max_new_workers_per_cycle >= 0``).
  And ``get_worker_limits`` in pandaharvester/harvestercore/db_proxy.py evaluates a ratio limit to
  ``min(limit, int(running * ratio / 100))`` = 0 when nothing runs and no minimum is set, which the
  adjuster then reads as "no limit". Here ``None`` is no limit and 0 is zero everywhere, and a ratio's
  lower bound is at least 1 so a queue with nothing running can start.
- Harvester truncates (``int(n_activated * factor)``) and, unless ``noPilotsWhenNoActiveJobs`` is set,
  keeps a pilot queued on every queue with no activated jobs; its throttler plugins set the number to 0.
  Here ``n_act`` rounds up, the idle pilot is the opt-in ``keep_one_pilot``, and throttles trickle.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from autopilot_ops.policy.credentials import credential_gate
from autopilot_ops.policy.inputs import Control, Snapshot
from autopilot_ops.policy.labels import ANY_LABEL, split_by_label

# floor(ratio * running) must not lose a pilot to binary fractions: 0.29 * 100 == 28.999999999999996.
_RATIO_EPSILON = 1e-9


@dataclass(frozen=True, slots=True)
class Decision:
    """The number of pilots to submit, the steps that led to it (for ``cycles.reason``), and how many of them
    ask for each prodSourceLabel (:func:`~autopilot_ops.policy.labels.split_by_label`)."""

    n: int
    reason: tuple[str, ...]
    labels: tuple[tuple[str, int], ...] = ()

    def __str__(self) -> str:
        return "; ".join(self.reason)


@dataclass(slots=True)
class _ControlsInForce:
    paused: Control | None = None
    drain: Control | None = None
    fixed: Control | None = None
    per_cycle: Control | None = None


def decide(snapshot: Snapshot) -> Decision:
    """Apply the gates, the number and the caps described in this module to ``snapshot``."""
    queue = snapshot.queue
    trace: list[str] = []
    if queue.status in ("offline", "brokeroff"):
        return _stop(trace, f"status {queue.status} -> 0")
    controls = _controls_in_force(snapshot, trace)
    if controls.paused is not None:
        return _stop(trace, f"{controls.paused.describe()} paused -> 0")
    if controls.drain is not None:
        return _stop(trace, f"{controls.drain.describe()} drains -> 0")
    stale = _staleness(snapshot)
    if stale:
        return _stop(trace, stale)
    expiring = credential_gate(snapshot.credentials)
    if expiring:
        return _stop(trace, expiring)

    weights, basis = _activated_by_label(snapshot), "activated"
    if controls.fixed is not None:
        n = controls.fixed.fixed_number or 0
        trace.append(f"{controls.fixed.describe()} fixed_number {n} -> {n}")
    elif queue.status == "test":
        n = max(queue.test_pilots - snapshot.pilots.queued, 0)
        trace.append(f"status test: keep {queue.test_pilots} queued, queued {snapshot.pilots.queued} -> {n}")
    else:
        n = _core(snapshot, trace)
        n, panda_numbers = _panda_targets(snapshot, n, trace)
        if panda_numbers:
            weights, basis = panda_numbers, "from PanDA"
    n = _caps(snapshot, controls.per_cycle, n, trace)
    split = split_by_label(n, weights, queue.prod_source_labels, queue.status, basis)
    if split.reason:
        trace.append(split.reason)
    trace.append(f"submit {n}")
    return Decision(n, tuple(trace), split.numbers)


def _activated_by_label(snapshot: Snapshot) -> dict[str, int]:
    """Activated jobs per label, over every resource type."""
    by_label: dict[str, int] = {}
    for job_count in snapshot.activated:
        by_label[job_count.prod_source_label] = by_label.get(job_count.prod_source_label, 0) + job_count.count
    return by_label


def _panda_targets(snapshot: Snapshot, n: int, trace: list[str]) -> tuple[int, dict[str, int]]:
    """PanDA's numbers of new workers for the labels the queue serves, as the queue's ``panda_workers`` says:
    the number itself (``target``), or at most it (``cap``), and PanDA's number per label (empty when none is
    in force: the labels then split by activated jobs). Expired ones are ignored, and say so."""
    queue = snapshot.queue
    if queue.panda_workers == "ignore" or not snapshot.panda_targets:
        return n, {}
    served = [t for t in snapshot.panda_targets if t.job_type in queue.prod_source_labels]
    assert snapshot.now is not None  # Snapshot checks it
    live = [t for t in served if t.expires_at > snapshot.now]
    for target in served:
        if target not in live:
            trace.append(f"{target.describe()} expired at {target.expires_at.isoformat()} -> ignored")
    if not live:
        return n, {}
    number = sum(t.n_workers for t in live)
    by_label: dict[str, int] = {}
    for target in live:
        by_label[target.job_type] = by_label.get(target.job_type, 0) + target.n_workers
    said = " + ".join(t.describe() for t in live)
    if queue.panda_workers == "target":
        trace.append(f"{said} -> target {number}")
        return number, by_label
    capped = min(n, number)
    trace.append(f"{said} -> cap {number}: {n} -> {capped}")
    return capped, by_label


def _stop(trace: list[str], why: str) -> Decision:
    trace.append(why)
    trace.append("submit 0")
    return Decision(0, tuple(trace))


def _controls_in_force(snapshot: Snapshot, trace: list[str]) -> _ControlsInForce:
    """Merge the unexpired controls: any pause or drain holds; the queue's own fixed number beats its
    tags' (among tags, the smallest); the smallest per-cycle maximum holds."""
    merged = _ControlsInForce()
    for control in snapshot.controls:
        if control.expires_at is not None and control.expires_at <= snapshot.now:  # set: Snapshot checks it
            trace.append(f"{control.describe()} expired at {control.expires_at.isoformat()} -> ignored")
            continue
        if control.paused and merged.paused is None:
            merged.paused = control
        if control.drain and merged.drain is None:
            merged.drain = control
        if control.fixed_number is not None and (
            merged.fixed is None or _fixed_rank(control) < _fixed_rank(merged.fixed)
        ):
            merged.fixed = control
        if control.max_per_cycle is not None and (
            merged.per_cycle is None or control.max_per_cycle < (merged.per_cycle.max_per_cycle or 0)
        ):
            merged.per_cycle = control
    return merged


def _fixed_rank(control: Control) -> tuple[int, int]:
    return (0 if control.scope == "queue" else 1, control.fixed_number or 0)


def _staleness(snapshot: Snapshot) -> str | None:
    """Why the PanDA data is too old to act on, or None if it is fresh enough."""
    age = snapshot.panda_data_age
    polls = snapshot.queue.stale_polls
    if age is None:
        return "no PanDA data yet -> 0"
    limit = polls * snapshot.poll_period
    if age > limit:
        return f"PanDA data {age:g}s old > {polls} polls x {snapshot.poll_period:g}s = {limit:g}s -> 0"
    return None


def _core(snapshot: Snapshot, trace: list[str]) -> int:
    """Target queued pilots, minus those queued; then the throttles and keep_one_pilot."""
    queue = snapshot.queue
    pilots = snapshot.pilots
    activated = _activated(snapshot, trace)
    per_share = snapshot.instances * queue.jobs_per_pilot
    n_act = -(-activated // per_share)
    trace.append(
        f"n_act=ceil({activated}/{snapshot.instances} instances/{queue.jobs_per_pilot} jobs_per_pilot)={n_act}"
    )
    q_eff = _queue_target(snapshot, trace)
    if q_eff is not None and snapshot.own_pilots is not None and snapshot.instances > 1:
        share = -(-q_eff // snapshot.instances)  # each instance fills its part of the queue's bound
        trace.append(f"Q_eff share=ceil({q_eff}/{snapshot.instances} instances)={share}")
        q_eff = share
    target = n_act if q_eff is None else min(q_eff, n_act)
    mine = snapshot.own_pilots if snapshot.own_pilots is not None else pilots
    n = max(target - mine.queued, 0)
    held = f" (held {mine.held} not counted)" if mine.held else ""
    whose = "queued (this instance's)" if snapshot.own_pilots is not None else "queued"
    trace.append(f"target {target} - {whose} {mine.queued}{held} -> {n}")
    n = _throttle(snapshot, n, trace)
    if queue.keep_one_pilot and n == 0 and activated == 0 and pilots.queued + pilots.running == 0:
        n = 1
        trace.append("keep_one_pilot: nothing activated, none queued or running -> 1")
    return n


def _activated(snapshot: Snapshot, trace: list[str]) -> int:
    """Activated jobs with the labels the queue serves (``*`` serves every label); the trace lists the others
    apart."""
    served_labels = (*snapshot.queue.prod_source_labels, ANY_LABEL)
    served: dict[str, int] = {}
    other: dict[str, int] = {}
    for job_count in snapshot.activated:
        label = job_count.prod_source_label
        if label in served_labels:
            served[label] = served.get(label, 0) + job_count.count
        else:
            other[label] = other.get(label, 0) + job_count.count
    total = sum(served.values())
    line = f"activated={total}"
    if served:
        line += f" ({_counts(served)})"
    if other:
        line += f" [not served: {_counts(other)}]"
    trace.append(line)
    return total


def _counts(by_label: dict[str, int]) -> str:
    return " ".join([f"{label}={count}" for label, count in sorted(by_label.items())])


def _queue_target(snapshot: Snapshot, trace: list[str]) -> int | None:
    """Q_eff, the number of queued pilots to aim for; None when nothing bounds it."""
    queue = snapshot.queue
    if queue.queue_ratio is not None:
        running = snapshot.pilots.running
        base: int | None = math.floor(queue.queue_ratio * running + _RATIO_EPSILON)
        floor_value = max(queue.min_queued, 1)
        floor_why = "min_queued" if queue.min_queued >= 1 else "a ratio needs a first pilot"
        seen = f"ratio {queue.queue_ratio:g} x running {running} = {base}"
    else:
        base = queue.queue_limit
        floor_value, floor_why = queue.min_queued, "min_queued"
        seen = "no queue_limit" if base is None else f"queue_limit {base}"
    q_eff = base
    if q_eff is not None and q_eff < floor_value:
        q_eff = floor_value
        seen += f", raised to {floor_value} ({floor_why})"
    if queue.max_queued is not None and (q_eff is None or q_eff > queue.max_queued):
        q_eff = queue.max_queued
        seen += f", lowered to max_queued {q_eff}"
    trace.append(f"Q_eff={'unbounded' if q_eff is None else q_eff} ({seen})")
    return q_eff


def _throttle(snapshot: Snapshot, n: int, trace: list[str]) -> int:
    """A trickle of at most 1 pilot when submissions miss or pilots end empty too often."""
    queue = snapshot.queue
    recent = snapshot.recent
    checks = (
        ("missed", recent.missed, recent.attempts, queue.missed_rate_limit),
        ("empty", recent.empty, recent.ended, queue.empty_share_limit),
    )
    for name, part, whole, limit in checks:
        if limit is None or whole < queue.throttle_min_count or part / whole <= limit:
            continue
        trickle = min(n, 1)
        trace.append(f"{name} {part}/{whole}={part / whole:.0%} > {limit:.0%} -> trickle: {n} -> {trickle}")
        n = trickle
    return n


def _caps(snapshot: Snapshot, control_cap: Control | None, n: int, trace: list[str]) -> int:
    """Lower n to every cap that binds, saying which."""
    queue = snapshot.queue
    if queue.max_pilots is not None:
        alive = snapshot.pilots.alive
        room = max(queue.max_pilots - alive, 0)
        if n > room:
            trace.append(f"max_pilots {queue.max_pilots} - alive {alive} = {room}: {n} -> {room}")
            n = room
    per_cycle, source = queue.max_per_cycle, "queue"
    if control_cap is not None and (per_cycle is None or (control_cap.max_per_cycle or 0) < per_cycle):
        per_cycle, source = control_cap.max_per_cycle, control_cap.describe()
    if per_cycle is not None and n > per_cycle:
        trace.append(f"max_per_cycle {per_cycle} ({source}): {n} -> {per_cycle}")
        n = per_cycle
    if snapshot.global_cap is not None and n > snapshot.global_cap:
        trace.append(f"global cap {snapshot.global_cap}: {n} -> {snapshot.global_cap}")
        n = snapshot.global_cap
    return n
