"""The ``autopilot`` command line for the database, queues and back ends."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from autopilot_ops.cli.main import main
from autopilot_ops.store.schema import latest_version


@pytest.fixture
def cli(pg_dsn: str, capsys: pytest.CaptureFixture[str]):
    """Run ``autopilot ARGS --dsn <isolated schema>``; return (exit status, stdout, stderr)."""

    def run(*args: str) -> tuple[int, str, str]:
        status = main([*args, "--dsn", pg_dsn])
        out, err = capsys.readouterr()
        return status, out, err

    return run


def test_db_init_then_status(cli) -> None:
    status, out, _ = cli("db", "status")
    assert status == 1 and "not initialised" in out
    assert cli("db", "init")[0] == 0
    status, out, _ = cli("db", "status")
    latest = latest_version()
    assert status == 0 and f"schema version: {latest} (newest {latest})" in out and "schedconfig" in out


def test_queue_commands(cli, repo_root: Path) -> None:
    cli("db", "init")
    demo = str(repo_root / "autopilot_ops" / "data" / "demo-queues.yaml")
    status, out, _ = cli("queues", "load", demo, "--dry-run")
    assert status == 0 and "+ DEMO_SITE_A" in out and "would be 3 added" in out
    status, out, _ = cli("queues", "list")
    assert "DEMO_SITE_A" not in out
    assert cli("queues", "load", demo)[0] == 0
    status, out, _ = cli("queues", "list", "--json")
    assert [row["panda_queue"] for row in json.loads(out)] == ["DEMO_SITE_A", "DEMO_SITE_A_MCORE", "DEMO_SITE_B"]
    status, out, _ = cli("queues", "set-status", "DEMO_SITE_B", "brokeroff")
    assert status == 0 and "online -> brokeroff" in out
    status, out, _ = cli("queues", "show", "DEMO_SITE_B")
    assert json.loads(out)["status"] == "brokeroff"
    status, _, err = cli("queues", "show", "NOPE")
    assert status == 2 and "no queue named 'NOPE'" in err


def test_bad_queue_file_exits_non_zero_and_prints_first_bad_field(cli, tmp_path: Path) -> None:
    cli("db", "init")
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps({"Q": {"site": "S", "status": "online", "maxrss": "lots", "maxtime": -1}}))
    status, _, err = cli("queues", "load", str(bad))
    assert status == 1
    first = err.splitlines()[0]
    assert first == f"autopilot: error: {bad}: queue 'Q': field 'maxrss': must be an integer, got 'lots'"
    assert "nothing was written" in err
    assert json.loads(cli("queues", "list", "--json")[1]) == []


def test_prune_refusal_exits_non_zero_and_dry_run_shows_it(cli, tmp_path: Path) -> None:
    cli("db", "init")
    full = tmp_path / "full.json"
    full.write_text(json.dumps({f"Q{i}": {"site": "S", "status": "online"} for i in range(4)}))
    assert cli("queues", "load", str(full))[0] == 0
    empty = tmp_path / "empty.json"
    empty.write_text("{}")
    status, out, err = cli("queues", "load", str(empty), "--prune", "--dry-run")
    assert status == 1 and "- Q0" in out and "refused: " in err and "holds no queues" in err
    status, _, err = cli("queues", "load", str(empty), "--prune", "--force")
    assert status == 1 and "holds no queues" in err
    half = tmp_path / "half.json"
    half.write_text(json.dumps({f"Q{i}": {"site": "S", "status": "online"} for i in range(2)}))
    status, _, err = cli("queues", "load", str(half), "--prune")
    assert status == 1 and "would remove 2 of 4 queues (50%)" in err
    assert len(json.loads(cli("queues", "list", "--json")[1])) == 4
    status, out, _ = cli("queues", "load", str(half), "--prune", "--max-prune-share", "0.5")
    assert status == 0 and "2 removed" in out


@pytest.mark.parametrize("name", ["bad name; drop table", "../x", "a" * 51, ".hidden"])
def test_backend_names_are_held_to_the_rule(cli, name: str) -> None:
    cli("db", "init")
    status, _, err = cli("backends", "add", name, "--kind", "local")
    assert status == 2 and f"NAME {name!r}: must be a PanDA name" in err
    assert "letters, digits" in err


def test_backend_commands(cli, repo_root: Path) -> None:
    cli("db", "init")
    status, out, _ = cli("backends", "add", "pool1", "--kind", "slurm", "--param", "partition=debug", "--param", "n=3")
    assert status == 0 and "added" in out
    status, out, _ = cli("backends", "list")
    assert "pool1" in out and '"partition": "debug"' in out and '"n": 3' in out
    status, _, err = cli("backends", "add", "x", "--kind", "teleport")
    assert status == 2 and "no back end of kind 'teleport'" in err
    cli("queues", "load", str(repo_root / "autopilot_ops" / "data" / "demo-queues.yaml"))
    status, _, err = cli("backends", "remove", "local")
    assert status == 2 and "used by queues: DEMO_SITE_A" in err
    assert cli("backends", "remove", "pool1")[0] == 0
    status, _, err = cli("backends", "remove", "pool1")
    assert status == 2 and "no back end named 'pool1'" in err


def test_console_script_reports_unreachable_database() -> None:
    result = subprocess.run(
        [str(Path(sys.executable).parent / "autopilot"), "db", "status", "--dsn", "postgresql://nobody@127.0.0.1:1/x"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 2
    assert "cannot connect to PostgreSQL at postgresql://nobody@127.0.0.1:1/x" in result.stderr
    assert "Traceback" not in result.stderr
