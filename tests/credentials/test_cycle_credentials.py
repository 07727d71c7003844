"""Credentials through a whole cycle: the local back end, real pilots and the dev PanDA server, which takes only
the token. The pilots get jobs with the queue's token, their payloads see it only when the queue says so, a
near-expiry token stops submission with the reason, and the token's value is nowhere: not in any table, log file
or captured log."""

from __future__ import annotations

import logging
import re
import sys
import tarfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from autopilot_ops.panda.client import PandaAuth, PandaClient
from autopilot_ops.panda.devserver.testing import DevServer
from autopilot_ops.queues.loader import load_queues
from autopilot_ops.scheduler.cycle import CycleSettings, SchedulingCycle
from autopilot_ops.store.connection import Store

from .fakes import make_token

QUEUES = """
backends:
  - {{name: local, kind: local, parameters: {{state_dir: "{state}", kill_grace_s: 1}}}}
defaults: {{backend: local, tags: [t1], queue_limit: 5, max_per_cycle: 1, cycle_period: 60}}
queues:
  - name: Q1
    site: S1
    credentials: {{"*": {{kind: token, path: "{token}", origin: test.example}}}}
  - name: Q2
    site: S1
    credentials: {{"*": {{kind: token, path: "{token}", origin: test.example, pass_to_payload: true}}}}
"""
ENV_SCRIPT = "#!/bin/sh\nenv\n"


@pytest.fixture
def token_file(tmp_path: Path) -> tuple[Path, str]:
    path = tmp_path / "secrets" / "panda-token"
    path.parent.mkdir()
    return path, make_token(path, 86400)


@pytest.fixture
def panda(tmp_path: Path, token_file: tuple[Path, str]) -> Iterator[DevServer]:
    files = tmp_path / "files"
    files.mkdir()
    (files / "env.sh").write_text(ENV_SCRIPT)
    with DevServer(tmp_path / "panda", files_dir=files, auth="token", token=token_file[1]) as server:
        yield server


@pytest.fixture
def queues(store: Store, tmp_path: Path, token_file: tuple[Path, str]) -> None:
    path = tmp_path / "queues.yaml"
    path.write_text(QUEUES.format(state=tmp_path / "state", token=token_file[0]))
    load_queues(store, str(path))


def make_cycle(store: Store, panda: DevServer, tmp_path: Path, token: str) -> SchedulingCycle:
    """A cycle of tag t1 whose pilots each take one job, the scheduler itself with the token."""
    command = (
        sys.executable, "-m", "autopilot_ops.pilot", "run", "--queue", "{queue}", "--server", "{panda_url}",
        "--allow-url-prefix", "{panda_url}/", "--once", "--heartbeat", "1", "--retries", "2", "--backoff", "0.2",
        "--final-patience", "0", "--workdir", str(tmp_path / "work" / "{queue}"), "--keep-workdir",
        "--home", str(tmp_path / "pilot-home"),
    )  # fmt: skip
    for queue in ("Q1", "Q2"):
        (tmp_path / "work" / queue).mkdir(parents=True, exist_ok=True)
    settings = CycleSettings(
        tag="t1", scheduler_id="t1@credentials", pilot_command=command, log_root=tmp_path / "logs",
        panda_url=panda.url, backend_kinds=("local",),
    )
    client = PandaClient(panda.url, auth=PandaAuth(token=token, origin="test.example"))
    return SchedulingCycle(store, settings, client.active_job_stats_by_site, client)


def wait_for(predicate: Callable[[], bool], timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.2)


def payload_env(tmp_path: Path, queue: str, panda_id: int) -> dict[str, str]:
    stdout = tmp_path / "work" / queue / f"PanDA_Pilot-{panda_id}" / "payload.stdout"
    return dict(line.split("=", 1) for line in stdout.read_text().splitlines() if "=" in line)


def texts_under(root: Path) -> Iterator[tuple[Path, str]]:
    """Every file under ``root``, tarballs' members too, as text."""
    for path in root.rglob("*"):
        if not path.is_file():
            continue
        if tarfile.is_tarfile(path):
            with tarfile.open(path) as archive:
                for member in archive.getmembers():
                    extracted = archive.extractfile(member)
                    if extracted is not None:
                        yield path / member.name, extracted.read().decode(errors="replace")
        else:
            yield path, path.read_bytes().decode(errors="replace")


def tables_holding(store: Store, secret: str) -> list[str]:
    """The tables of the test's schema with a row whose text (every column) holds ``secret``."""
    with store.transaction() as cur:
        cur.execute("SELECT tablename FROM pg_tables WHERE schemaname = current_schema()")
        tables = [row["tablename"] for row in cur.fetchall()]
        assert {"schedconfig", "cycles", "pilots", "pilot_events", "backends"} <= set(tables)
        found = []
        for table in tables:
            cur.execute(f'SELECT count(*) AS n FROM "{table}" AS t WHERE position(%s IN t::text) > 0', (secret,))
            if cur.fetchone()["n"]:
                found.append(table)
    return found


def test_pilots_use_the_token_and_it_is_never_written_anywhere(
    store: Store, queues: None, panda: DevServer, tmp_path: Path, token_file: tuple[Path, str],
    caplog: pytest.LogCaptureFixture, capsys: pytest.CaptureFixture[str],
) -> None:
    caplog.set_level(logging.DEBUG)
    path, token = token_file
    [job1] = panda.submit_jobs("Q1", 1, f"{panda.url}/env.sh", "")
    [job2] = panda.submit_jobs("Q2", 1, f"{panda.url}/env.sh", "")
    cycle = make_cycle(store, panda, tmp_path, token)
    report = cycle.run("c1")
    assert report.submitted == 2, report.lines()
    wait_for(lambda: panda.job(job1)["status"] == "finished" and panda.job(job2)["status"] == "finished")
    cycle.run("c2")  # the sweep records the pilots' ends

    with store.transaction() as cur:
        cur.execute("SELECT inputs FROM cycles WHERE cycle_id = 'c1' AND queue = 'Q1'")
        assert cur.fetchone()["inputs"]["credentials"] == [f"token {path}: 23 h 59 min left (minimum 1 h)"]

    # the payload sees the pilot's credential only on the queue that passes it on
    hidden, passed = payload_env(tmp_path, "Q1", job1), payload_env(tmp_path, "Q2", job2)
    assert "PANDAID" in hidden and not {"PANDA_AUTH_TOKEN_FILE", "PANDA_AUTH_ORIGIN", "X509_USER_PROXY"} & set(hidden)
    assert (passed["PANDA_AUTH_TOKEN_FILE"], passed["PANDA_AUTH_ORIGIN"]) == (str(path), "test.example")

    secrets = (token, token.rsplit(".", 1)[1])
    assert all(any(secret in text for _, text in texts_under(path.parent)) for secret in secrets), "the search works"
    for secret in secrets:
        assert tables_holding(store, secret) == []
        for root in (tmp_path / "logs", tmp_path / "work", tmp_path / "pilot-home", tmp_path / "state"):
            leaks = [str(p) for p, text in texts_under(root) if secret in text]
            assert leaks == []
        assert secret not in caplog.text
        captured = capsys.readouterr()
        assert secret not in captured.out + captured.err
    assert len(list((tmp_path / "logs").rglob("*.err"))) == 2, "the pilots' log files were searched"


def test_a_near_expiry_token_stops_submission_and_says_why(
    store: Store, queues: None, panda: DevServer, tmp_path: Path, token_file: tuple[Path, str]
) -> None:
    path, token = token_file
    make_token(path, 12 * 60)
    panda.submit_jobs("Q1", 1, f"{panda.url}/env.sh", "")
    report = make_cycle(store, panda, tmp_path, token).run("c1")
    assert report.submitted == 0
    with store.transaction() as cur:
        cur.execute("SELECT queue, decided, reason FROM cycles WHERE cycle_id = 'c1' ORDER BY queue")
        rows = cur.fetchall()
        cur.execute("SELECT count(*) AS n FROM pilots")
        assert cur.fetchone()["n"] == 0
    for row in rows:
        assert row["decided"] == 0
        assert any(re.fullmatch(rf"credential token {path} expires in 1[12] min < 1 h -> 0", line)
                   for line in row["reason"]), row["reason"]
    path.unlink()
    [q1, _] = make_cycle(store, panda, tmp_path, token).run("c2").results
    assert f"credential token file {path} unreadable: No such file or directory -> 0" in q1.decision.reason

