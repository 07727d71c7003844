"""A pause set through the control API stops submission in the scheduler's next cycle, and the reason shows."""

from __future__ import annotations

from autopilot_ops.airflow.hooks.panda import PandaHook
from autopilot_ops.scheduler.cycle import CycleSettings, SchedulingCycle


def test_a_paused_queue_gets_no_pilot_and_its_neighbour_still_does(client, seed, store, devserver, bearer, tmp_path):
    seed.queue("Q_PAUSED", ["alpha"])
    seed.queue("Q_OPEN", ["alpha"], backend="off-1")
    with store.transaction() as cur:  # Q_OPEN's back end is disabled: its decision is made, nothing is run
        cur.execute("UPDATE backends SET enabled = false WHERE name = 'off-1'")
    for queue in ("Q_PAUSED", "Q_OPEN"):
        devserver.submit_jobs(queue, 3, f"{devserver.url}/hello.sh", "--sleep 0")
    reply = client.post("/api/controls/queue/Q_PAUSED", headers=bearer("op"),
                        json={"paused": True, "reason": "site downtime"})
    assert reply.status_code == 200

    settings = CycleSettings(tag="alpha", scheduler_id="test-alpha", pilot_command=["true"], log_root=tmp_path,
                             sweep=False)
    report = SchedulingCycle(store, settings, PandaHook("panda_dev").active_job_stats_by_site).run("cycle-1")

    decisions = {r.queue: r.decision for r in report.results}
    assert decisions["Q_PAUSED"].n == 0
    assert "control queue:Q_PAUSED (by token:panda-server: site downtime) paused -> 0" in decisions["Q_PAUSED"].reason
    assert decisions["Q_OPEN"].n == 3, "the neighbour's 3 activated jobs still count"
    assert seed.row("SELECT count(*) AS n FROM pilots WHERE queue = 'Q_PAUSED'")["n"] == 0

    page = client.get("/queues/Q_PAUSED", headers=bearer("viewer")).text
    assert "paused -&gt; 0" in page and "site downtime" in page
