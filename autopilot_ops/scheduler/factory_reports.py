"""The pilot factory's periodic reports: its heartbeat (at start and every 10 min) and each queue's worker
statistics (every 5 min), as Harvester's ``harvesterbody/propagator.py`` sends ``update_worker_stats`` and its
``master`` thread ``is_alive``.

Statistics are ``{job type: {resource type: {"running", "submitted", "finished", "to_submit"}}}``, the shape of
Harvester's ``harvestercore/db_proxy.py: get_worker_stats_bulk``: live pilots by PanDA worker state, pilots
finished in the last window, and PanDA's own number of new workers for the queue as ``to_submit``.
"""

from __future__ import annotations

import datetime as dt
import functools
import logging
import subprocess
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from autopilot_ops import __version__
from autopilot_ops.errors import describe_error
from autopilot_ops.panda.errors import PandaError
from autopilot_ops.panda.factory import FactoryClient
from autopilot_ops.scheduler.worker_reports import job_type, resource_type, worker_state
from autopilot_ops.store.connection import Store
from autopilot_ops.store.factory_reports import HEARTBEAT, due_reports, mark_sent, statistics_report
from autopilot_ops.store.panda_commands import worker_targets
from autopilot_ops.store.workers import worker_counts

log = logging.getLogger(__name__)

HEARTBEAT_PERIOD_S = 600
STATISTICS_PERIOD_S = 300
#: Finished pilots are counted over this window.
FINISHED_WINDOW_S = 3600


@dataclass
class FactoryReport:
    """What one round of periodic reports sent, or why it stopped."""

    heartbeat: bool | None = None
    statistics: list[str] = field(default_factory=list)
    error: str | None = None


def send_due_reports(
    store: Store, factory: FactoryClient, queues: Sequence[str], started: dt.datetime, now: dt.datetime
) -> FactoryReport:
    """The heartbeat and the queues' statistics that are due; the first failure stops the round."""
    report = FactoryReport()
    harvester_id = factory.harvester_id
    with store.transaction() as cur:
        heartbeat_due = due_reports(cur, harvester_id, [HEARTBEAT], now - dt.timedelta(seconds=HEARTBEAT_PERIOD_S))
        wanted = [statistics_report(q) for q in queues]
        stats_due = due_reports(cur, harvester_id, wanted, now - dt.timedelta(seconds=STATISTICS_PERIOD_S))
    try:
        if heartbeat_due:
            report.heartbeat = factory.heartbeat(started, __version__, commit_stamp())
            if report.heartbeat:  # the server's first answer is a failure while it creates the row
                with store.transaction() as cur:
                    mark_sent(cur, harvester_id, [HEARTBEAT], now)
        due_queues = [q for q in queues if statistics_report(q) in stats_due]
        for queue, statistics in worker_statistics(store, due_queues, now).items():
            factory.report_worker_statistics(queue, statistics)
            with store.transaction() as cur:
                mark_sent(cur, harvester_id, [statistics_report(queue)], now)
            report.statistics.append(queue)
    except PandaError as exc:  # sent again when next due
        report.error = describe_error(exc)
        log.warning("pilot-factory report to PanDA stopped: %s", exc)
    return report


def worker_statistics(store: Store, queues: Sequence[str], now: dt.datetime) -> dict[str, dict[str, Any]]:
    """Each queue's worker statistics, per pilot label (job type) and resource type."""
    if not queues:
        return {}
    since = now - dt.timedelta(seconds=FINISHED_WINDOW_S)
    with store.transaction() as cur:
        rows = worker_counts(cur, queues, since)
        targets = worker_targets(cur, queues)
    stats: dict[str, dict[str, Any]] = {}
    for row in rows:
        state = worker_state(row["state"], row["started"])
        if state not in ("submitted", "running", "finished"):
            continue
        label = row["prod_source_label"] or job_type(row["prod_source_labels"])
        kind = stats.setdefault(row["queue"], {}).setdefault(label, {})
        counts = kind.setdefault(resource_type(row["corecount"]), _zero())
        counts[state] += int(row["n"])
    for queue, found in targets.items():
        for target in found:
            if target.expires_at > now:
                counts = stats.setdefault(queue, {}).setdefault(target.job_type, {}).setdefault(
                    target.resource_type, _zero()
                )
                counts["to_submit"] = target.n_workers
    for queue in queues:  # a queue with no pilot yet is reported too, so PanDA's pilot streaming sees it
        stats.setdefault(queue, {"managed": {"SCORE": _zero()}})
    return stats


def _zero() -> dict[str, int]:
    return {"running": 0, "submitted": 0, "finished": 0, "to_submit": 0}


@functools.cache
def commit_stamp() -> str:
    """The source checkout's commit (``<hash> <date>``), or the package version when installed from a wheel."""
    package_dir = Path(__file__).resolve().parents[1]
    try:
        done = subprocess.run(
            ["git", "-C", str(package_dir), "log", "-1", "--format=%h %cI"],
            capture_output=True, text=True, timeout=5, check=False,
        )
    except (OSError, subprocess.SubprocessError):
        return __version__
    return done.stdout.strip() or __version__
