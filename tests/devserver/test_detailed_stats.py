"""``statistics/active_job_detailed_stats_by_site`` on the dev server, read by the PanDA client: the shape
``getDetailedJobStatistics`` builds (``pandaserver/taskbuffer/db_proxy_mods/job_standalone_module.py``), the
states of the recorded ``active_job_stats_by_site`` reply, and the empty answer's message."""

from __future__ import annotations

from typing import Any

import pytest

from autopilot_ops.panda.client import PandaClient, detailed_job_stats_from
from autopilot_ops.panda.devserver.testing import DevServer
from autopilot_ops.panda.errors import PandaRefused, PandaReplyError
from autopilot_ops.panda.protocol import MESSAGE_NO_DETAILED_STATS, Envelope

PATH = "/api/v1/statistics/active_job_detailed_stats_by_site"


def test_no_active_job_answers_the_real_message_and_reads_as_empty(client, srv: DevServer) -> None:
    assert client.get(PATH).json() == {
        "success": False,
        "message": "Database failure getting the job statistics with resource_type and prodsourcelabel",
        "data": {},
    }
    assert PandaClient(srv.url).active_job_detailed_stats_by_site() == {}


def test_counts_per_site_resource_type_and_label_with_the_recorded_states(
    client, srv: DevServer, reference: dict[str, Any]
) -> None:
    srv.submit_jobs("SITE_A", 2, "http://x/a.sh", "")
    srv.submit_jobs("SITE_A", 1, "http://x/a.sh", "", prod_source_label="user", extra={"resource_type": "MCORE"})
    running = srv.submit_jobs("SITE_B", 1, "http://x/a.sh", "", prod_source_label="user")
    client.acquire("SITE_B", prod_source_label="user")
    client.update(running[0], "running")
    stats = PandaClient(srv.url).active_job_detailed_stats_by_site()
    assert stats == {
        "SITE_A": {
            "Undefined": {"managed": {"activated": 2, "assigned": 0, "running": 0}},
            "MCORE": {"user": {"activated": 1, "assigned": 0, "running": 0}},
        },
        "SITE_B": {"Undefined": {"user": {"running": 1, "activated": 0, "assigned": 0}}},
    }
    recorded_states = set(reference["stats_by_site"]["body"]["data"]["LOCAL_QUEUE"])
    for by_resource in stats.values():
        for by_label in by_resource.values():
            for states in by_label.values():
                assert {"assigned", "activated", "running"} <= set(states) <= recorded_states | {"sent", "starting"}
                assert all(type(n) is int for n in states.values())


@pytest.mark.parametrize(
    ("data", "field"),
    [
        ([1], "data"),
        ({"S": 3}, "data.S"),
        ({"S": {"SCORE": []}}, "data.S.SCORE"),
        ({"S": {"SCORE": {"user": {"activated": "2"}}}}, "data.S.SCORE.user"),
        ({"S": {"SCORE": {"user": {"activated": True}}}}, "data.S.SCORE.user"),
    ],
)
def test_a_broken_reply_names_the_field(data: Any, field: str) -> None:
    with pytest.raises(PandaReplyError) as caught:
        detailed_job_stats_from(PATH, Envelope(True, "", data))
    assert caught.value.field == field


def test_a_refusal_other_than_no_jobs_is_an_error() -> None:
    assert detailed_job_stats_from(PATH, Envelope(False, MESSAGE_NO_DETAILED_STATS, {})) == {}
    with pytest.raises(PandaRefused, match="DB down"):
        detailed_job_stats_from(PATH, Envelope(False, "DB down", None))
