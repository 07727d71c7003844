"""Compare incoming queue definitions with the stored ones: what a load would add, change and remove."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from autopilot_ops.queues.model import COLUMNS, QueueDefinition


@dataclass(frozen=True)
class Change:
    queue: str
    fields: dict[str, tuple[Any, Any]]  # field -> (stored, incoming)


@dataclass
class LoadPlan:
    added: list[QueueDefinition] = field(default_factory=list)
    changed: list[tuple[QueueDefinition, Change]] = field(default_factory=list)
    removed: list[str] = field(default_factory=list)
    unchanged: int = 0

    @property
    def writes(self) -> list[QueueDefinition]:
        """Rows to insert or update."""
        return self.added + [queue for queue, _ in self.changed]

    def summary(self) -> str:
        return (
            f"{len(self.added)} added, {len(self.changed)} changed, "
            f"{len(self.removed)} removed, {self.unchanged} unchanged"
        )

    def lines(self) -> list[str]:
        """One line per change, for ``--dry-run``."""
        out = [f"+ {queue.panda_queue}" for queue in self.added]
        for _, change in self.changed:
            parts = ", ".join(f"{name}: {old!r} -> {new!r}" for name, (old, new) in sorted(change.fields.items()))
            out.append(f"~ {change.queue}: {parts}")
        out.extend(f"- {name}" for name in self.removed)
        return out


def make_plan(stored: Mapping[str, Mapping[str, Any]], incoming: Iterable[QueueDefinition], prune: bool) -> LoadPlan:
    """The changes that turn ``stored`` (rows by queue name) into ``incoming``."""
    plan = LoadPlan()
    names = set()
    for queue in incoming:
        names.add(queue.panda_queue)
        old = stored.get(queue.panda_queue)
        if old is None:
            plan.added.append(queue)
            continue
        new = queue.as_row()
        diff = {name: (old[name], new[name]) for name in COLUMNS if old[name] != new[name]}
        if diff:
            plan.changed.append((queue, Change(queue.panda_queue, diff)))
        else:
            plan.unchanged += 1
    if prune:
        plan.removed = sorted(set(stored) - names)
    return plan


#: The largest share of the stored queues that ``--prune`` removes without ``--force``.
DEFAULT_MAX_PRUNE_SHARE = 0.10


def prune_refusal(plan: LoadPlan, stored: int, incoming: int, max_share: float, force: bool) -> str | None:
    """Why a pruning plan must not be carried out, or ``None``. An empty input is refused even with ``force``:
    a truncated download or an empty file never means "remove everything"."""
    removed = len(plan.removed)
    if not removed:
        return None
    if incoming == 0:
        return (
            f"the file holds no queues; --prune refuses to remove all {stored} stored queues "
            "on an empty input (even with --force)"
        )
    if force:
        return None
    if removed == stored:
        return f"--prune would remove all {stored} queues; pass --force to allow it"
    if removed > max_share * stored:
        return (
            f"--prune would remove {removed} of {stored} queues ({removed / stored:.0%}), more than the limit "
            f"{max_share:.0%} (--max-prune-share); pass --force to allow it"
        )
    return None
