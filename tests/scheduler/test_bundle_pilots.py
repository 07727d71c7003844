"""Pilots at a real site, by default: a cycle submits the wrapper to the real Slurm cluster, the real HTCondor
pool (whose chroot has Debian's bare python3 and nothing of AutoPilot) and the real ARC CE (as its mapped user);
the wrapper fetches the queue's pilot bundle from the plugin's route, checks its sha256, and the bundle runs the
dev server's job to finished, its logs back in the log root."""

from __future__ import annotations

import os
import shlex
import shutil
import socket
import tempfile
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import uvicorn
from fastapi import FastAPI

from autopilot_ops import __version__
from autopilot_ops.airflow.webapp import bundles
from autopilot_ops.panda.client import PandaClient
from autopilot_ops.panda.devserver.testing import DevServer
from autopilot_ops.pilot.shelf import BundleShelf
from autopilot_ops.queues.loader import load_queues
from autopilot_ops.scheduler.cycle import CycleSettings, SchedulingCycle
from autopilot_ops.scheduler.job_stats import job_stats
from autopilot_ops.scheduler.pilot_launch import WRAPPER, WRAPPER_COMMAND, PilotBundles, bundle_url_template
from autopilot_ops.store.connection import Store

from ..conftest import service_is_up, service_settings
from .conftest import wait_for

ARC_SCRIPT = Path(__file__).resolve().parents[2] / "scripts" / "arc-local.sh"
CONDOR_ENV = Path(os.environ.get("AUTOPILOT_CONDOR_HOME", "/var/lib/autopilot-condor")) / "client.env"
JOB_OWNER = os.environ.get("AUTOPILOT_CONDOR_USER", "autopilot")
#: The pilot's own options after the wrapper's: one job, quick, payloads from the dev server only.
PILOT_OPTIONS = ("--allow-url-prefix", "{panda_url}/", "--max-jobs", "1", "--time-floor", "0", "--heartbeat", "5",
                 "--final-patience", "0")
QUEUES = """
backends:
  - {{name: slurm, kind: slurm}}
  - {{name: condor, kind: condor, parameters: {{config_file: "{condor_env}", job_owner: "{owner}", history_s: 600}}}}
defaults: {{tags: [t1], queue_limit: 5, max_per_cycle: 1, max_pilots: 1, cycle_period: 60}}
queues:
  - {{name: SLURM_Q, site: S1, backend: slurm}}
  - {{name: CONDOR_Q, site: S2, backend: condor}}
"""


@pytest.fixture
def shared(tmp_path: Path) -> Iterator[Path]:
    """A directory under the host's /tmp, which the HTCondor chroot shares, that the job owner can use."""
    root = Path(tempfile.mkdtemp(prefix="autopilot-bundle-pilots-", dir="/tmp"))
    root.chmod(0o755)
    yield root
    shutil.rmtree(root, ignore_errors=True)


@pytest.fixture
def plugin_url(tmp_path: Path) -> Iterator[str]:
    """The plugin's bundle routes, mounted at /autopilot as Airflow mounts the plugin, on a real uvicorn."""
    app = FastAPI()
    app.state.bundle_shelf = BundleShelf(tmp_path / "served-bundles")
    app.include_router(bundles.router)
    root = FastAPI()
    root.mount("/autopilot", app)
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    server = uvicorn.Server(uvicorn.Config(root, host="127.0.0.1", port=port, log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not server.started:
        assert thread.is_alive() and time.monotonic() < deadline, "uvicorn did not start"
        time.sleep(0.02)
    yield f"http://127.0.0.1:{port}"
    server.should_exit = True
    thread.join(10)


@pytest.fixture
def panda(tmp_path: Path) -> Iterator[DevServer]:
    files = tmp_path / "files"
    files.mkdir()
    (files / "hello.sh").write_text('#!/bin/sh\necho "payload on $(hostname) as $(id -un)"\n')
    with DevServer(tmp_path / "panda", files_dir=files) as server:
        yield server


def make_cycle(store: Store, panda: DevServer, plugin_url: str, tmp_path: Path, shared: Path) -> SchedulingCycle:
    """The default wrapper command. This pool's schedd runs in a chroot that sees only the host's /tmp, so the
    wrapper it sends is a copy there (a site's schedd, on the submit host, reads the installed one)."""
    wrapper = shared / WRAPPER.name
    shutil.copy2(WRAPPER, wrapper)
    wrapper.chmod(0o755)
    command = [part.replace("{wrapper}", str(wrapper)) for part in shlex.split(WRAPPER_COMMAND)]
    home = shared / "pilot-home"  # the Slurm pilot runs as root, the HTCondor one as the job owner: both write here
    for directory in (home, home / "outbox", home / "storage", home / "storage" / "autopilot"):
        directory.mkdir()
        directory.chmod(0o1777)
    settings = CycleSettings(
        tag="t1", scheduler_id="t1@bundle-test", log_root=shared / "logs", panda_url=panda.url,
        pilot_command=(*command, *PILOT_OPTIONS),
        environment={"AUTOPILOT_PILOT_HOME": str(home)},
        bundles=PilotBundles(BundleShelf(tmp_path / "scheduler-bundles"), bundle_url_template(plugin_url)),
    )
    client = PandaClient(panda.url)
    return SchedulingCycle(store, settings, lambda: job_stats(client), client)


def logs_of(pilot: dict) -> str:
    """The pilot's stdout and stderr (the wrapper writes its own lines to stderr)."""
    return "".join(Path(pilot[key]).read_text(errors="replace") for key in ("stdout_path", "stderr_path"))


def fetched_from_the_plugin(log: str, plugin_url: str) -> bool:
    """Whether the wrapper's log says it ran the bundle it fetched from the plugin, and ended well."""
    url = f"{plugin_url}/autopilot/pilot/{__version__}.pyz"
    return f"pilot code {url} (" in log and "wrapper_exit=0" in log


def story(store: Store, panda: DevServer, queue: str, panda_id: int) -> str:
    """What the pilots of ``queue`` and its job came to, for a failure's message."""
    with store.transaction() as cur:
        cur.execute("SELECT * FROM pilots WHERE queue = %s ORDER BY id", (queue,))
        pilots = [dict(row) for row in cur.fetchall()]
    lines = [f"{queue}: job {panda.job(panda_id)['status']}"]
    for pilot in pilots:
        lines.append(f"pilot {pilot['batch_id']} {pilot['state']} {pilot['state_reason']}")
        for key in ("stdout_path", "stderr_path"):
            path = Path(pilot[key]) if pilot[key] else None
            lines.append(path.read_text(errors="replace")[-1500:] if path and path.exists() else f"({key}: none)")
    return "\n".join(lines)


def pilot_of(store: Store, queue: str) -> dict:
    with store.transaction() as cur:
        cur.execute("SELECT * FROM pilots WHERE queue = %s", (queue,))
        [row] = cur.fetchall()
        return dict(row)


@pytest.mark.condor
@pytest.mark.skipif(os.geteuid() != 0 or shutil.which("sbatch") is None or not CONDOR_ENV.exists(),
                    reason="needs root, the Slurm cluster and the HTCondor pool of scripts/*-local.sh")
def test_slurm_and_htcondor_pilots_are_the_wrapper_and_the_bundle(store, panda, plugin_url, tmp_path, shared):
    path = tmp_path / "queues.yaml"
    path.write_text(QUEUES.format(condor_env=CONDOR_ENV, owner=JOB_OWNER))
    load_queues(store, str(path))
    jobs = {queue: panda.submit_jobs(queue, 1, f"{panda.url}/hello.sh", "") for queue in ("SLURM_Q", "CONDOR_Q")}
    cycle = make_cycle(store, panda, plugin_url, tmp_path, shared)
    report = cycle.run("bundle-c1")
    assert {r.queue: r.outcome.submitted for r in report.results} == {"SLURM_Q": 1, "CONDOR_Q": 1}, report
    for queue in ("SLURM_Q", "CONDOR_Q"):
        assert pilot_of(store, queue)["pilot_version"] == __version__

    def finished() -> bool:
        cycle.run(f"bundle-{time.monotonic_ns()}")  # the sweep follows the pilots to their end
        return all(panda.job(ids[0])["status"] in ("finished", "failed") for ids in jobs.values())

    try:
        wait_for(finished, timeout=180, interval=3)
    except AssertionError:
        pytest.fail("\n".join(story(store, panda, queue, ids[0]) for queue, ids in jobs.items()))
    for queue, ids in jobs.items():
        log = logs_of(pilot_of(store, queue))
        assert panda.job(ids[0])["status"] == "finished", f"{queue}: {panda.job(ids[0])}\n{log[-3000:]}"
        assert fetched_from_the_plugin(log, plugin_url), f"{queue}: {log[-2000:]}"


ARC_QUEUES = """
backends:
  - {{name: arc, kind: arc, parameters: {{ce: "{ce}", proxy: "{proxy}", ca_dir: "{ca_dir}", state_dir: "{state}"}}}}
defaults: {{tags: [t1], queue_limit: 5, max_per_cycle: 1, max_pilots: 1, cycle_period: 60}}
queues:
  - {{name: ARC_Q, site: S3, backend: arc}}
"""


@pytest.mark.skipif(not service_is_up(ARC_SCRIPT), reason="the ARC CE of scripts/arc-local.sh is not running")
def test_arc_ce_pilots_are_the_wrapper_and_the_bundle(store, panda, plugin_url, tmp_path, shared):
    arc = service_settings(ARC_SCRIPT)
    path = tmp_path / "queues.yaml"
    path.write_text(ARC_QUEUES.format(ce=arc["AUTOPILOT_ARC_URL"], proxy=arc["AUTOPILOT_ARC_PROXY"],
                                      ca_dir=arc["AUTOPILOT_ARC_CA_DIR"], state=tmp_path / "arc-state"))
    load_queues(store, str(path))
    [panda_id] = panda.submit_jobs("ARC_Q", 1, f"{panda.url}/hello.sh", "")
    cycle = make_cycle(store, panda, plugin_url, tmp_path, shared)
    report = cycle.run("arc-c1")
    assert [r.outcome.submitted for r in report.results] == [1], report

    def ended() -> bool:
        cycle.run(f"arc-{time.monotonic_ns()}")
        return pilot_of(store, "ARC_Q")["state"] in ("finished", "failed")

    try:
        wait_for(ended, timeout=240, interval=3)
    except AssertionError:
        pytest.fail(story(store, panda, "ARC_Q", panda_id))
    assert panda.job(panda_id)["status"] == "finished", story(store, panda, "ARC_Q", panda_id)
    log = logs_of(pilot_of(store, "ARC_Q"))
    assert fetched_from_the_plugin(log, plugin_url), log[-2000:]
    assert pilot_of(store, "ARC_Q")["pilot_version"] == __version__
