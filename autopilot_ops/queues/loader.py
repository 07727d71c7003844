"""``autopilot queues load``: read, validate and store a queue file, all or nothing."""

from __future__ import annotations

from dataclasses import dataclass

from autopilot_ops.queues.errors import Problem, QueueFileError
from autopilot_ops.queues.formats import QueueDocument, parse_document
from autopilot_ops.queues.plan import LoadPlan, make_plan
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
    default_backend: str | None = None,
    who: str = "autopilot queues load",
) -> LoadResult:
    """Load ``location`` into ``schedconfig`` in one transaction; raise ``QueueFileError`` and write nothing
    if any queue is bad. With ``dry_run`` the plan is computed against the database and rolled back."""
    document = read_queue_file(location, default_backend)
    plan = LoadPlan()
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
                )
            _check_backends(document, backend_names(cur), location)
            plan = make_plan(read_queues(cur), document.queues, prune)
            if dry_run:
                raise _DryRun
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
    return LoadResult(location, plan, dry_run)


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
