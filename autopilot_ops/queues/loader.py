"""``autopilot queues load``: read, validate and store a queue file, all or nothing."""

from __future__ import annotations

from dataclasses import dataclass

from autopilot_ops.queues.errors import Problem, QueueFileError
from autopilot_ops.queues.formats import QueueDocument, parse_document
from autopilot_ops.queues.plan import DEFAULT_MAX_PRUNE_SHARE, LoadPlan, make_plan, prune_refusal
from autopilot_ops.queues.source import decode_document, read_source
from autopilot_ops.store.backends import backend_names, upsert_backend
from autopilot_ops.store.connection import Store
from autopilot_ops.store.events import record_event
from autopilot_ops.store.queues import delete_queues, read_queues, upsert_queues


class _DryRun(Exception):
    """Raised inside the transaction to roll a dry run back."""


@dataclass(frozen=True)
class LoadResult:
    source: str
    plan: LoadPlan
    dry_run: bool
    #: Why the load is refused (a dry run reports it instead of raising).
    refusal: str | None = None


def read_queue_file(location: str, default_backend: str | None = None) -> QueueDocument:
    """Read and validate a queue file without touching the database."""
    text, hint = read_source(location)
    return parse_document(decode_document(text, location, hint), location, default_backend)


def load_queues(
    store: Store,
    location: str,
    *,
    dry_run: bool = False,
    prune: bool = False,
    force: bool = False,
    max_prune_share: float = DEFAULT_MAX_PRUNE_SHARE,
    default_backend: str | None = None,
    who: str = "autopilot queues load",
) -> LoadResult:
    """Load ``location`` into ``schedconfig`` in one transaction; raise ``QueueFileError`` and write nothing
    if any queue is bad, or if pruning would remove more than ``max_prune_share`` of the queues or all of them
    (unless ``force``; an empty input is always refused). With ``dry_run`` the plan is computed against the
    database and rolled back, and a refusal is returned in ``refusal`` instead of raised."""
    document = read_queue_file(location, default_backend)
    plan = LoadPlan()
    refusal = None
    try:
        with store.transaction() as cur:
            # Serialise loads, so two concurrent loads cannot interleave their diffs.
            cur.execute("LOCK TABLE schedconfig IN SHARE ROW EXCLUSIVE MODE")
            for backend in document.backends:
                upsert_backend(
                    cur,
                    backend.name,
                    backend.kind,
                    backend.submit_host,
                    backend.parameters,
                    backend.enabled,
                    backend.owner,
                    backend.worker_queue,
                )
            _check_backends(document, backend_names(cur), location)
            stored = read_queues(cur)
            plan = make_plan(stored, document.queues, prune)
            refusal = prune_refusal(plan, len(stored), len(document.queues), max_prune_share, force)
            if dry_run:
                raise _DryRun
            if refusal:
                raise QueueFileError([Problem(location, None, None, refusal)])
            upsert_queues(cur, plan.writes, location)
            delete_queues(cur, plan.removed)
            record_event(
                cur,
                who,
                "queues-loaded",
                details={
                    "source": location,
                    "added": len(plan.added),
                    "changed": len(plan.changed),
                    "removed": len(plan.removed),
                    "unchanged": plan.unchanged,
                },
            )
    except _DryRun:
        pass
    return LoadResult(location, plan, dry_run, refusal)


def _check_backends(document: QueueDocument, known: set[str], source: str) -> None:
    problems = [
        Problem(
            source,
            queue.panda_queue,
            "backend",
            f"unknown back end {queue.backend!r} (known: "
            f"{', '.join(sorted(known)) or 'none; add one with autopilot backends add'})",
        )
        for queue in document.queues
        if queue.backend is not None and queue.backend not in known
    ]
    if problems:
        raise QueueFileError(problems)
