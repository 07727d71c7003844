"""Checks shared by the fault tests (issue 10, section 5): zero jobs lost, read from the dev PanDA server."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from autopilot_ops.panda.devserver.testing import DevServer


def acquired_jobs(panda: DevServer, panda_ids: Iterable[int]) -> dict[int, dict[str, Any]]:
    """The jobs of ``panda_ids`` the server handed out to a pilot: those whose history has ``sent``."""
    jobs = {panda_id: panda.job(panda_id) for panda_id in panda_ids}
    return {i: job for i, job in jobs.items() if any(h["status"] == "sent" for h in job["history"])}


def assert_no_job_lost(panda: DevServer, panda_ids: Iterable[int], acquired: int) -> None:
    """Zero jobs lost: of ``panda_ids``, the server handed out ``acquired`` jobs, each once (one ``sent`` in its
    history, so no job went to two pilots), and every one of them ended ``finished`` on the server."""
    jobs = acquired_jobs(panda, panda_ids)
    story = {
        i: (job["status"], job["pilot_error_code"], job["pilot_error_diag"], [h["status"] for h in job["history"]])
        for i, job in jobs.items()
    }
    assert len(jobs) == acquired, f"expected {acquired} jobs handed out, got {story}"
    for job in jobs.values():
        assert [h["status"] for h in job["history"]].count("sent") == 1, story
        assert job["status"] == "finished", story
