"""PanDA's activated jobs per queue, prodSourceLabel and resource type: one statistics call per cycle.

PanDA 1.0 answers ``/api/v1/statistics/active_job_detailed_stats_by_site`` (``pandaserver/api/v1/
statistics_api.py``, calling ``TaskBuffer.getDetailedJobStatistics`` -> ``db_proxy_mods/job_standalone_module.py:
getDetailedJobStatistics``) with ``{site: {resource type: {prodSourceLabel: {state: count}}}}``, as Harvester's
``panda_communicator.py: get_job_stats_new`` reads it. A server without that method (before 0.7.0) answers HTTP
403 ``method ... is forbidden``: then the older ``active_job_stats_by_site`` is asked, whose counts have no
label (:data:`~autopilot_ops.policy.ANY_LABEL`), and the reason says so.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol

from autopilot_ops.panda.errors import PandaHTTPError
from autopilot_ops.policy import ANY_LABEL, JobCount

#: Job labels that pilots of another label fetch: ``getJobs`` gives a ``user`` pilot ``user``, ``panda`` and
#: ``install`` jobs, and a ``managed`` one ``managed``, ``test``, ``prod_test`` and ``install`` jobs
#: (``job_complex_module.py``); ``install`` goes to either and keeps its own name.
PILOT_LABEL_OF = {"panda": "user", "test": "managed", "prod_test": "managed"}
#: HTTP statuses of a server that lacks a method: 403 ``method ... is forbidden`` (PanDA 1.0), 404 elsewhere.
_NO_SUCH_METHOD = (403, 404)


class StatsClient(Protocol):
    """What :func:`job_stats` asks of a PanDA client (``PandaClient``)."""

    def active_job_detailed_stats_by_site(self) -> Mapping[str, Mapping[str, Mapping[str, Mapping[str, int]]]]: ...

    def active_job_stats_by_site(self) -> Mapping[str, Mapping[str, int]]: ...


@dataclass(frozen=True)
class JobStats:
    """Activated jobs per site, as counts per pilot label and resource type; ``note`` says why they have no
    label, when the server could not tell."""

    activated: Mapping[str, tuple[JobCount, ...]] = field(default_factory=dict)
    note: str | None = None


def job_stats(client: StatsClient) -> JobStats:
    """This cycle's statistics: per label from ``active_job_detailed_stats_by_site``, else without label."""
    try:
        detailed = client.active_job_detailed_stats_by_site()
    except PandaHTTPError as exc:
        if exc.status not in _NO_SUCH_METHOD:
            raise
        note = f"no per-label statistics ({exc.detail}): active_job_stats_by_site, label {ANY_LABEL}"
        return from_site_states(client.active_job_stats_by_site(), note)
    return from_detailed(detailed)


def from_detailed(reply: Mapping[str, Mapping[str, Mapping[str, Mapping[str, int]]]]) -> JobStats:
    """Activated jobs of an ``active_job_detailed_stats_by_site`` reply, per pilot label and resource type."""
    activated: dict[str, tuple[JobCount, ...]] = {}
    for site, by_resource in reply.items():
        counts: dict[tuple[str, str], int] = {}
        for resource_type, by_label in by_resource.items():
            for label, states in by_label.items():
                key = (PILOT_LABEL_OF.get(label, label), str(resource_type))
                counts[key] = counts.get(key, 0) + int(states.get("activated", 0))
        activated[site] = tuple(JobCount(label, rt, n) for (label, rt), n in sorted(counts.items()))
    return JobStats(activated)


def from_site_states(reply: Mapping[str, Mapping[str, int]], note: str | None = None) -> JobStats:
    """Activated jobs of an ``active_job_stats_by_site`` reply: one count per site, for every label."""
    return JobStats(
        {site: (JobCount(ANY_LABEL, ANY_LABEL, int(states.get("activated", 0))),) for site, states in reply.items()},
        note,
    )


def as_job_stats(reply: JobStats | Mapping[str, Any]) -> JobStats:
    """A statistics source's answer as :class:`JobStats`: a ``JobStats`` as it is, and the reply of the older
    ``active_job_stats_by_site`` (``{site: {state: count}}``) as counts for every label."""
    return reply if isinstance(reply, JobStats) else from_site_states(reply)
