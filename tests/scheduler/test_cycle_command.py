"""``autopilot cycle TAG``: one cycle in the foreground, with the DAG task's code; ``--dry-run`` changes nothing."""

from __future__ import annotations

from pathlib import Path

from autopilot_ops.cli.main import main
from autopilot_ops.panda.devserver.testing import DevServer
from autopilot_ops.queues.loader import load_queues

QUEUES = """
backends: [{{name: local, kind: local, parameters: {{state_dir: "{state}"}}}}]
defaults: {{backend: local, tags: [t1], queue_limit: 10, max_per_cycle: 2}}
queues: [{{name: Q1, site: S1}}]
"""


def test_a_dry_run_decides_and_a_cycle_submits(store, pg_dsn, tmp_path: Path, capsys, monkeypatch) -> None:
    (tmp_path / "q.yaml").write_text(QUEUES.format(state=tmp_path / "state"))
    load_queues(store, str(tmp_path / "q.yaml"))
    monkeypatch.setenv("AUTOPILOT_LOG_ROOT", str(tmp_path / "logs"))
    monkeypatch.setenv("AIRFLOW__AUTOPILOT__PILOT_COMMAND", "true")
    with DevServer(tmp_path / "panda") as panda:
        panda.submit_jobs("Q1", 5, f"{panda.url}/noop.sh", "")
        args = ["cycle", "t1", "--dsn", pg_dsn, "--panda-url", panda.url, "--harvester-id", "cli-test"]
        assert main([*args, "--dry-run"]) == 0
        out = capsys.readouterr().out
        assert "Q1: decided 2" in out and "skipped: dry run" in out
        with store.transaction() as cur:
            cur.execute("SELECT (SELECT count(*) FROM pilots) + (SELECT count(*) FROM cycles) "
                        "+ (SELECT count(*) FROM schedulers) AS n")
            assert cur.fetchone()["n"] == 0, "a dry run writes nothing"
        assert main(args) == 0
        assert "Q1: decided 2" in capsys.readouterr().out
        with store.transaction() as cur:
            cur.execute("SELECT count(*) AS n FROM pilots")
            assert cur.fetchone()["n"] == 2
        assert [w["status"] for w in panda.workers("cli-test")] == ["submitted", "submitted"]
