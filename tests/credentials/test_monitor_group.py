"""The monitor groups a queue the credential gate stopped under "credential expiring", by the gate's reason line."""

from __future__ import annotations

import datetime as dt

from autopilot_ops.airflow.webapp.idle import why_idle
from autopilot_ops.policy import JobCount, QueueConfig, Snapshot, decide
from autopilot_ops.policy.credentials import CredentialLifetime


def test_a_queue_stopped_for_its_credential_shows_as_credential_expiring() -> None:
    now = dt.datetime.now(dt.timezone.utc)
    expiring = CredentialLifetime("proxy", "/etc/grid/x509up", 3600, ("managed",), expires_in=600)
    decision = decide(Snapshot(queue=QueueConfig("Q1", queue_limit=5), activated=(JobCount("managed", "SCORE", 3),),
                               panda_data_age=0.0, now=now, credentials=(expiring,)))
    row = {"queue": "Q1", "status": "online", "last_cycle_at": now, "last_decided": decision.n,
           "last_reason": list(decision.reason)}
    assert why_idle(row, stopped=False) == (
        "credential expiring", "credential proxy /etc/grid/x509up expires in 10 min < 1 h -> 0"
    )
