"""One job run in-process with custom VO plugins: the plugin hooks, and failures inside the pilot."""

from __future__ import annotations

import threading
import time

from autopilot_ops.panda.client import PandaClient, RetryPolicy
from autopilot_ops.panda.devserver.testing import DevServer
from autopilot_ops.pilot import errorcodes
from autopilot_ops.pilot.config import PilotConfig
from autopilot_ops.pilot.jobrun import JobRun
from autopilot_ops.pilot.outbox import Outbox
from autopilot_ops.pilot.reporting import Reporter
from autopilot_ops.pilot.vo.generic import GenericVO

QUEUE = "LOCAL_QUEUE"


class EchoVO(GenericVO):
    """Runs every payload through ``sh -c``, adds a variable, and calls exit code 3 a 'setup failure'."""

    def environment(self, job, workdir, base):
        return {**super().environment(job, workdir, base), "MY_VO_SETTING": "on"}

    def payload_command(self, job, transformation):
        return ["/bin/sh", "-c", f'echo "setting=$MY_VO_SETTING"; exec {transformation} {job.job_pars}']

    def map_exit_code(self, job, exit_code):
        if exit_code == 3:
            return 1110, "VO setup failure"
        return super().map_exit_code(job, exit_code)


class BrokenVO(GenericVO):
    def environment(self, job, workdir, base):
        raise RuntimeError("the VO plugin is broken")


def run_one(tmp_path, server, vo, script_body, make_script):
    trf = make_script("trf.sh", script_body)
    job_id = server.submit_jobs(QUEUE, 1, str(trf), "")[0]
    config = PilotConfig(
        queue=QUEUE, server_url=server.url, workdir=tmp_path / "work", home=tmp_path / "home", keep_workdir=True
    )
    with PandaClient(server.url, retry=RetryPolicy(attempts=2, backoff=0.01)) as client:
        raw = client.acquire_jobs(QUEUE)[0]
        runner = JobRun(config, Reporter(client, Outbox(config.outbox)), vo, lambda: None, threading.Event())
        outcome = runner.run(raw, time.monotonic())
    return job_id, outcome, config.workdir / f"PanDA_Pilot-{job_id}"


def test_vo_plugin_hooks(tmp_path, make_script):
    with DevServer(tmp_path / "srv") as server:
        job_id, outcome, workdir = run_one(tmp_path, server, EchoVO(), "exit 3\n", make_script)
        assert (workdir / "payload.stdout").read_text() == "setting=on\n"
        job = server.job(job_id)
        assert (outcome.state, outcome.pilot_error_code) == ("failed", 1110)
        assert job["pilot_error_code"] == 1110 and job["pilot_error_diag"] == "VO setup failure"
        assert job["trans_exit_code"] == 3


def test_unexpected_error_is_still_reported(tmp_path, make_script):
    with DevServer(tmp_path / "srv") as server:
        job_id, outcome, _ = run_one(tmp_path, server, BrokenVO(), "exit 0\n", make_script)
        job = server.job(job_id)
        assert outcome.state == "failed" and job["status"] == "failed"
        assert job["pilot_error_code"] == errorcodes.UNKNOWNEXCEPTION
        assert "the VO plugin is broken" in job["pilot_error_diag"]
