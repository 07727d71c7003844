"""One scheduling cycle end to end: PanDA statistics from the dev server over HTTP, the policy, the local
back end and PostgreSQL."""

from __future__ import annotations

import datetime as dt
import json
import socket
from collections.abc import Iterator
from pathlib import Path

import pytest

from autopilot_ops.airflow.config import SchedulerConfig, scheduler_id_for
from autopilot_ops.airflow.operators.scheduler import LocalPilotOperator
from autopilot_ops.backends.base import PilotSpec
from autopilot_ops.backends.local import LocalBackend
from autopilot_ops.panda.client import PandaClient, RetryPolicy
from autopilot_ops.panda.devserver.testing import DevServer
from autopilot_ops.queues.loader import load_queues
from autopilot_ops.scheduler.cycle import CycleSettings, SchedulingCycle
from autopilot_ops.store.connection import Store
from autopilot_ops.store.submissions import begin_submission

from .conftest import wait_for

QUEUES = """
backends:
  - {{name: local, kind: local, parameters: {{state_dir: "{state}"}}}}
  - {{name: batch, kind: slurm}}
defaults: {{backend: local, tags: [t1], queue_limit: 10, max_per_cycle: 3, cycle_period: 60}}
queues:
  - {{name: Q1, site: S1}}
  - {{name: Q2, site: S1, status: offline}}
  - {{name: Q3, site: S2, backend: batch}}
  - {{name: OTHER, site: S3, tags: [t2]}}
"""


@pytest.fixture
def panda(tmp_path: Path) -> Iterator[DevServer]:
    with DevServer(tmp_path / "panda") as server:
        yield server


@pytest.fixture
def queues(store: Store, tmp_path: Path) -> Path:
    path = tmp_path / "queues.yaml"
    path.write_text(QUEUES.format(state=tmp_path / "state"))
    load_queues(store, str(path))
    return path


def make_cycle(store: Store, panda: DevServer, tmp_path: Path, **overrides) -> SchedulingCycle:
    settings = CycleSettings(
        tag="t1",
        scheduler_id="t1@test",
        pilot_command=("sh", "-c", "echo pilot for {queue} at {panda_url}"),
        log_root=tmp_path / "logs",
        panda_url=panda.url,
        **overrides,
    )
    client = PandaClient(panda.url)
    return SchedulingCycle(store, settings, client.active_job_stats_by_site)


def cycle_rows(store: Store) -> dict[tuple[str, str], dict]:
    with store.transaction() as cur:
        cur.execute("SELECT * FROM cycles")
        return {(r["cycle_id"], r["queue"]): dict(r) for r in cur.fetchall()}


def test_cycle_submits_what_the_policy_decides_and_logs_why(
    store: Store, panda: DevServer, queues: Path, tmp_path: Path
) -> None:
    panda.submit_jobs("Q1", 5, f"{panda.url}/noop.sh", "")
    panda.submit_jobs("Q2", 5, f"{panda.url}/noop.sh", "")
    report = make_cycle(store, panda, tmp_path, backend_kinds=("local",)).run("run-1")
    by_queue = {r.queue: r for r in report.results}
    assert set(by_queue) == {"Q1", "Q2"}  # Q3 is on a slurm back end; OTHER has another tag
    assert by_queue["Q1"].decision.n == 3 and by_queue["Q1"].outcome.submitted == 3
    assert by_queue["Q2"].decision.n == 0 and "status offline -> 0" in by_queue["Q2"].decision.reason
    rows = cycle_rows(store)
    q1 = rows[("run-1", "Q1")]
    assert (q1["decided"], q1["submitted"], q1["failed"]) == (3, 3, 0)
    assert q1["inputs"]["activated"] == 5 and q1["inputs"]["queued"] == 0
    assert any("activated=5" in line for line in q1["reason"])
    assert any("max_per_cycle 3" in line for line in q1["reason"])
    assert q1["reason"][-1] == "submit 3"
    with store.transaction() as cur:
        cur.execute("SELECT queue, count(*) AS n FROM pilots GROUP BY queue")
        assert {r["queue"]: r["n"] for r in cur.fetchall()} == {"Q1": 3}
        cur.execute("SELECT id, tag, last_cycle FROM schedulers")
        [scheduler] = cur.fetchall()
    assert scheduler["id"] == "t1@test" and scheduler["last_cycle"] is not None
    logs = sorted((tmp_path / "logs").rglob("*.out"))
    assert len(logs) == 3 and all(path.parent.name == "Q1" for path in logs)
    lines = report.lines()
    assert lines[0].startswith("cycle run-1 of tag t1: 2 queues, 3 pilots submitted")
    assert any(line.startswith("Q1: decided 3 (") for line in lines)


def test_rerun_of_a_cycle_submits_nothing_new(store: Store, panda: DevServer, queues: Path, tmp_path: Path) -> None:
    panda.submit_jobs("Q1", 5, f"{panda.url}/noop.sh", "")
    cycle = make_cycle(store, panda, tmp_path, backend_kinds=("local",))
    cycle.run("run-1")
    again = cycle.run("run-1")
    [q1] = [r for r in again.results if r.queue == "Q1"]
    assert q1.outcome.submitted == 0
    with store.transaction() as cur:
        cur.execute("SELECT count(*) AS n FROM pilots")
        assert cur.fetchone()["n"] == 3
    row = cycle_rows(store)[("run-1", "Q1")]
    assert row["submitted"] == 3 and "not submitted: cycle run-1 was already submitted (done)" in row["reason"]


def test_pause_control_on_the_tag_stops_submission(
    store: Store, panda: DevServer, queues: Path, tmp_path: Path
) -> None:
    panda.submit_jobs("Q1", 5, f"{panda.url}/noop.sh", "")
    with store.transaction() as cur:
        cur.execute(
            "INSERT INTO controls (scope, target, paused, set_by, reason) VALUES ('tag', 't1', true, 'op', 'dt')"
        )
    report = make_cycle(store, panda, tmp_path, backend_kinds=("local",)).run("run-1")
    [q1] = [r for r in report.results if r.queue == "Q1"]
    assert q1.decision.n == 0 and q1.outcome.submitted == 0
    assert any("paused" in line for line in q1.decision.reason)
    assert cycle_rows(store)[("run-1", "Q1")]["inputs"]["controls"] == ["tag:t1"]


def test_panda_down_means_no_submission_and_says_why(store: Store, queues: Path, tmp_path: Path) -> None:
    settings = CycleSettings(
        tag="t1", scheduler_id="t1@test", pilot_command=("true",), log_root=tmp_path / "logs", backend_kinds=("local",)
    )
    client = PandaClient("http://127.0.0.1:9", retry=RetryPolicy(attempts=1), timeout=2)
    report = SchedulingCycle(store, settings, client.active_job_stats_by_site).run("run-1")
    assert report.stats_error is not None
    [q1] = [r for r in report.results if r.queue == "Q1"]
    assert q1.decision.n == 0
    assert q1.decision.reason[-1] == "submit 0"
    assert json.dumps(cycle_rows(store)[("run-1", "Q1")]["inputs"]["activated"]) == "null"


def test_pilots_of_earlier_cycles_are_swept_and_counted(
    store: Store, panda: DevServer, queues: Path, tmp_path: Path
) -> None:
    panda.submit_jobs("Q1", 2, f"{panda.url}/noop.sh", "")
    cycle = make_cycle(store, panda, tmp_path, backend_kinds=("local",))
    cycle.run("run-1")
    backend = LocalBackend("local", {"state_dir": str(tmp_path / "state")})
    with store.transaction() as cur:
        cur.execute("SELECT batch_id FROM pilots")
        ids = [r["batch_id"] for r in cur.fetchall()]
    wait_for(lambda: all(s.state.is_final for s in backend.status(ids).values()))
    report = cycle.run("run-2")
    assert len(report.sweeps["local"].transitions) == 2
    row = cycle_rows(store)[("run-2", "Q1")]
    assert row["inputs"]["queued"] == 0 and row["inputs"]["ended"] == 2


BROKEN_QUEUE = """
backends:
  - {{name: broken, kind: local, parameters: {{state_dir: "{state}", kill_grace_s: soon}}}}
queues:
  - {{name: A_BROKEN, site: S1, backend: broken, tags: [t1], queue_limit: 10, cycle_period: 60}}
"""


def test_one_bad_queue_does_not_stop_its_tag(store: Store, panda: DevServer, queues: Path, tmp_path: Path) -> None:
    broken = tmp_path / "broken.yaml"
    broken.write_text(BROKEN_QUEUE.format(state=tmp_path / "state-broken"))
    load_queues(store, str(broken))
    panda.submit_jobs("A_BROKEN", 5, f"{panda.url}/noop.sh", "")
    panda.submit_jobs("Q1", 5, f"{panda.url}/noop.sh", "")
    report = make_cycle(store, panda, tmp_path, backend_kinds=("local",)).run("run-1")
    by_queue = {r.queue: r for r in report.results}
    assert by_queue["Q1"].outcome.submitted == 3, "the queues after the bad one go on"
    rows = cycle_rows(store)
    bad = rows[("run-1", "A_BROKEN")]
    assert (bad["decided"], bad["submitted"], bad["failed"]) == (5, 0, 5)
    assert "ValueError: could not convert string to float: 'soon'" in bad["reason"][-1]
    assert rows[("run-1", "Q1")]["submitted"] == 3
    with store.transaction() as cur:
        cur.execute("SELECT count(*) AS n FROM submissions WHERE state = 'pending'")
        assert cur.fetchone()["n"] == 0


def crashed_submission(store: Store, tmp_path: Path, n: int) -> list:
    """Pilots a cycle started for Q1 before it died: the key is pending, the pilots run, no row records them."""
    spec = PilotSpec(queue="Q1", cycle_id="crashed", scheduler="t1@test", command=("sleep", "30"),
                     log_root=tmp_path / "logs")
    with store.transaction() as cur:
        assert begin_submission(cur, "Q1", "crashed", "local", n) is None
    return LocalBackend("local", {"state_dir": str(tmp_path / "state")}).submit(n, spec)


#: how the queue is held, if it is: the SQL that holds it
HELD = {
    "active": None,
    "paused": "INSERT INTO controls (scope, target, paused, set_by) VALUES ('queue', 'Q1', true, 'op')",
    "drained": "INSERT INTO controls (scope, target, drain, set_by) VALUES ('queue', 'Q1', true, 'op')",
    "offline": "UPDATE schedconfig SET status = 'offline' WHERE panda_queue = 'Q1'",
}


@pytest.mark.parametrize("held", list(HELD))
def test_pending_keys_are_reconciled_before_deciding(
    store: Store, panda: DevServer, queues: Path, tmp_path: Path, held: str
) -> None:
    """For every queue, the paused, drained and offline ones included (issue 10 s3)."""
    made = crashed_submission(store, tmp_path, 2)
    panda.submit_jobs("Q1", 4, f"{panda.url}/noop.sh", "")
    if HELD[held] is not None:
        with store.transaction() as cur:
            cur.execute(HELD[held])
    report = make_cycle(store, panda, tmp_path, backend_kinds=("local",)).run("run-1")
    [q1] = [r for r in report.results if r.queue == "Q1"]
    row = cycle_rows(store)[("run-1", "Q1")]
    assert row["inputs"]["queued"] == 2, "the crashed cycle's pilots are counted in this decision"
    assert q1.decision.n == (2 if held == "active" else 0), q1.decision.reason  # 4 activated - 2 queued
    with store.transaction() as cur:
        cur.execute("SELECT state FROM submissions WHERE cycle_id = 'crashed'")
        assert cur.fetchone()["state"] == "reconciled"
        cur.execute("SELECT batch_id FROM pilots")
        ids = [r["batch_id"] for r in cur.fetchall()]
    assert len(ids) == len(set(ids)) == 2 + q1.outcome.submitted
    LocalBackend("local", {"state_dir": str(tmp_path / "state")}).cancel([p.batch_id for p in made])


def test_stale_polls_fire_on_the_real_age_of_the_last_good_reply(
    store: Store, panda: DevServer, queues: Path, tmp_path: Path
) -> None:
    panda.submit_jobs("Q1", 5, f"{panda.url}/noop.sh", "")
    t0 = dt.datetime.now(dt.timezone.utc)
    make_cycle(store, panda, tmp_path, backend_kinds=("local",)).run("run-1", now=t0)
    settings = CycleSettings(
        tag="t1", scheduler_id="t1@test", pilot_command=("true",), log_root=tmp_path / "logs", backend_kinds=("local",)
    )
    down = PandaClient("http://127.0.0.1:9", retry=RetryPolicy(attempts=1), timeout=2)
    cycle = SchedulingCycle(store, settings, down.active_job_stats_by_site)
    cycle.run("run-2", now=t0 + dt.timedelta(seconds=61))
    row = cycle_rows(store)[("run-2", "Q1")]
    assert row["inputs"]["panda_data_age"] == 61 and row["inputs"]["activated"] == 5
    assert row["reason"][0].startswith("PanDA statistics failed: ")
    cycle.run("run-3", now=t0 + dt.timedelta(seconds=200))
    row = cycle_rows(store)[("run-3", "Q1")]
    assert "PanDA data 200s old > 3 polls x 60s = 180s -> 0" in row["reason"]
    assert row["decided"] == 0 and row["inputs"]["stats_at"] == t0.isoformat()


def test_workers_of_one_deployment_count_as_one_instance(
    store: Store, panda: DevServer, queues: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    panda.submit_jobs("Q1", 8, f"{panda.url}/noop.sh", "")
    config = SchedulerConfig(tmp_path, tmp_path, None, None, "panda_default", ("sleep", "30"), None, "site-a")
    operator = LocalPilotOperator(task_id="cycle_local", tag="t1", log_root=str(tmp_path / "logs"))
    for worker, run in (("worker-1", "run-1"), ("worker-2", "run-2")):
        monkeypatch.setattr(socket, "gethostname", lambda worker=worker: worker)  # a Celery worker per cycle
        settings = operator.cycle_settings(config, panda.url)
        SchedulingCycle(store, settings, PandaClient(panda.url).active_job_stats_by_site).run(run)
    assert cycle_rows(store)[("run-2", "Q1")]["inputs"]["instances"] == 1
    with store.transaction() as cur:
        cur.execute("SELECT id, host FROM schedulers")
        assert [dict(r) for r in cur.fetchall()] == [{"id": "t1@site-a", "host": "worker-2"}]
        cur.execute("SELECT batch_id FROM pilots")
        LocalBackend("local", {"state_dir": str(tmp_path / "state")}).cancel([r["batch_id"] for r in cur.fetchall()])


def test_the_deployment_id_comes_from_the_environment_over_airflow_cfg(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AIRFLOW__AUTOPILOT__DEPLOYMENT_ID", "from-cfg")
    assert SchedulerConfig.from_airflow_conf().deployment_id == "from-cfg"
    monkeypatch.setenv("AUTOPILOT_DEPLOYMENT_ID", "from-env")
    assert SchedulerConfig.from_airflow_conf().deployment_id == "from-env"
    with pytest.raises(ValueError, match=r"\[autopilot\] deployment_id: 'a@b'"):
        scheduler_id_for("t1", "a@b")


def test_by_default_pilots_are_the_wrapper_and_the_bundle_the_plugin_serves(monkeypatch: pytest.MonkeyPatch,
                                                                             tmp_path: Path) -> None:
    import shlex

    from autopilot_ops.airflow.operators.scheduler import PilotSchedulerOperator
    from autopilot_ops.scheduler.pilot_launch import WRAPPER, WRAPPER_COMMAND

    monkeypatch.delenv("AIRFLOW__AUTOPILOT__PILOT_COMMAND", raising=False)
    monkeypatch.setenv("AIRFLOW__API__BASE_URL", "https://airflow.example.org:8443")
    monkeypatch.setenv("AIRFLOW__AUTOPILOT__PILOT_BUNDLE_DIR", str(tmp_path / "bundles"))
    config = SchedulerConfig.from_airflow_conf()
    assert config.pilot_command == tuple(shlex.split(WRAPPER_COMMAND))
    assert config.bundles is not None
    assert config.bundles.url_template == "https://airflow.example.org:8443/autopilot/pilot/{version}.pyz"
    settings = PilotSchedulerOperator(task_id="cycle", tag="t1").cycle_settings(config, "https://panda.example:25443")
    assert settings.bundles is config.bundles, "the Airflow task gives its cycle the bundles"
    monkeypatch.setenv("AIRFLOW__AUTOPILOT__PILOT_BUNDLE_URL", "https://cdn.example.org/pilots/{version}.pyz")
    assert SchedulerConfig.from_airflow_conf().bundles.url_template == "https://cdn.example.org/pilots/{version}.pyz"
    assert WRAPPER.is_file() and WRAPPER.read_text().startswith("#!/bin/sh")


def test_a_cycle_id_carries_the_deployment_where_there_are_several() -> None:
    from autopilot_ops.airflow.config import DEFAULT_DEPLOYMENT_ID, cycle_id_for

    assert cycle_id_for("scheduled__2026-12-02T21:00:00+00:00", DEFAULT_DEPLOYMENT_ID) == (
        "scheduled__2026-12-02T21:00:00+00:00"
    )
    assert cycle_id_for("scheduled__x", "site-a") != cycle_id_for("scheduled__x", "site-b")


class DiesSubmittingForQ4(LocalBackend):
    """The local back end, whose process dies while it submits for Q4 (a ``KeyboardInterrupt``, which no
    ``except Exception`` catches, stands for the kill)."""

    def submit(self, n: int, spec: PilotSpec) -> list:
        if spec.queue == "Q4":
            raise KeyboardInterrupt
        return super().submit(n, spec)


def test_each_queue_row_is_written_as_the_queue_finishes(
    store: Store, panda: DevServer, queues: Path, tmp_path: Path
) -> None:
    """Issue 10 s3: the rows are not kept for the end of the loop, so a cycle that dies mid-way leaves the rows
    of the queues it finished (Q1 submitted, Q2 offline) and only the dying queue's key pending."""
    extra = tmp_path / "q4.yaml"
    extra.write_text("queues:\n  - {name: Q4, site: S2, backend: local, tags: [t1], queue_limit: 10}\n")
    load_queues(store, str(extra))
    panda.submit_jobs("Q1", 5, f"{panda.url}/noop.sh", "")
    panda.submit_jobs("Q4", 5, f"{panda.url}/noop.sh", "")
    settings = CycleSettings(
        tag="t1", scheduler_id="t1@test", pilot_command=("sleep", "30"), log_root=tmp_path / "logs",
        panda_url=panda.url, backend_kinds=("local",),
    )  # fmt: skip
    stats = PandaClient(panda.url).active_job_stats_by_site
    dying = SchedulingCycle(
        store, settings, stats, backend_factory=lambda name, row: DiesSubmittingForQ4(name, row["parameters"])
    )
    with pytest.raises(KeyboardInterrupt):
        dying.run("run-1")
    rows = cycle_rows(store)
    assert set(rows) == {("run-1", "Q1"), ("run-1", "Q2")}
    assert rows[("run-1", "Q1")]["submitted"] == 3 and rows[("run-1", "Q2")]["decided"] == 0
    with store.transaction() as cur:
        cur.execute("SELECT queue, state FROM submissions ORDER BY queue")
        assert [(r["queue"], r["state"]) for r in cur.fetchall()] == [("Q1", "done"), ("Q4", "pending")]
    SchedulingCycle(store, settings, stats).run("run-2")  # the next cycle settles the dead one's key
    with store.transaction() as cur:
        cur.execute("SELECT count(*) AS n FROM submissions WHERE state = 'pending'")
        assert cur.fetchone()["n"] == 0
        cur.execute("SELECT batch_id FROM pilots")
        LocalBackend("local", {"state_dir": str(tmp_path / "state")}).cancel([r["batch_id"] for r in cur.fetchall()])
