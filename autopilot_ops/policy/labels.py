"""Which prodSourceLabel each of a queue's new pilots asks PanDA for: a pure function of the number decided.

- A queue serving one label gives all its pilots that label (and says nothing about it).
- A unified queue (several labels, e.g. ``managed`` and ``user``) splits them in proportion to the activated jobs
  of each label (largest remainders, ties to the label listed first), so its analysis pilots find analysis
  jobs, or to PanDA's numbers per job type when its ``SET_N_WORKERS_JOBTYPE`` numbers are in force; with no
  activated job of any served label (a fixed number, ``keep_one_pilot``) they go to its first label.
- Counts under :data:`ANY_LABEL` (PanDA's ``active_job_stats_by_site``, which has no per-label breakdown) are
  counted for the first label, and the reason says so.
- A queue in status ``test`` asks for :data:`TEST_LABEL`, as pilot3 does (``pilot/control/job.py:
  get_job_label``: "PQ status set to test - will use job label / prodSourceLabel test"); PanDA itself turns
  ``managed``, ``user`` and ``unified`` into ``test`` for a site in test status (``pandaserver/api/v1/
  pilot_api.py: acquire_jobs``), and ``getJobs`` then hands out ``test``, ``prod_test`` and ``install`` jobs
  and HammerCloud's ``gangarobot`` ones (``job_complex_module.py``). ``ptest`` and ``rc_test*`` are the labels
  of release-candidate pilot versions (``JobUtils.list_ptest_prod_sources``), not of test queues.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

#: The label of counts that serve every label (a statistics reply with no per-label breakdown).
ANY_LABEL = "*"
#: What the pilots of a queue with no label ask for: ``getJobs`` reads no label as ``managed``
#: (``job_complex_module.py``), and our pilot's ``--prod-source-label`` defaults to it.
DEFAULT_LABEL = "managed"
#: What a test queue's pilots ask for (pilot3 ``get_job_label``; PanDA's ``pilot_api.py``).
TEST_LABEL = "test"


@dataclass(frozen=True, slots=True)
class LabelSplit:
    """Pilots per label, in the queue's order of labels (labels with none left out), and why."""

    numbers: tuple[tuple[str, int], ...]
    reason: str


def split_by_label(
    n: int, activated: Mapping[str, int], labels: Sequence[str], status: str = "online", basis: str = "activated"
) -> LabelSplit:
    """Give ``n`` pilots of a queue serving ``labels`` (in status ``status``) their labels, in proportion to
    ``activated`` (label -> activated jobs, or what ``basis`` names; :data:`ANY_LABEL` counts for the first
    label)."""
    served = [label for label in dict.fromkeys(labels) if label != ANY_LABEL] or [DEFAULT_LABEL]
    if n <= 0:
        return LabelSplit((), "")
    if status == "test":
        return LabelSplit(((TEST_LABEL, n),), f"labels: {TEST_LABEL} {n} (status test)")
    if len(served) == 1:
        return LabelSplit(((served[0], n),), "")
    counts = {label: activated.get(label, 0) for label in served}
    unlabelled = activated.get(ANY_LABEL, 0)
    counts[served[0]] += unlabelled
    total = sum(counts.values())
    if total == 0:
        numbers = {label: 0 for label in served}
        numbers[served[0]] = n
    else:
        numbers = _largest_remainders(n, counts, total)
    reason = "labels: " + ", ".join(
        f"{label} {numbers[label]} (of {counts[label]}{' ' + basis if index == 0 else ''})"
        for index, label in enumerate(served)
    )
    if unlabelled:
        reason += f"; {ANY_LABEL}={unlabelled} counted for {served[0]} (no per-label statistics)"
    elif total == 0:
        reason += f"; nothing activated: all to {served[0]}, the first label"
    return LabelSplit(tuple((label, k) for label, k in numbers.items() if k > 0), reason)


def _largest_remainders(n: int, counts: Mapping[str, int], total: int) -> dict[str, int]:
    """``n`` split in proportion to ``counts`` (summing to ``total`` > 0), rounded so the parts sum to ``n``."""
    numbers = {label: n * count // total for label, count in counts.items()}
    order = list(counts)
    by_remainder = sorted(order, key=lambda label: (-(n * counts[label] % total), order.index(label)))
    for label in by_remainder[: n - sum(numbers.values())]:
        numbers[label] += 1
    return numbers
