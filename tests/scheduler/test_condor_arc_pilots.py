"""The HTCondor route to an ARC CE, from a scheduler cycle: a condor-ce queue of flavour arc sends its pilot through the
HTCondor pool's schedd (scripts/condor-local.sh), whose gridmanager submits it with a delegated proxy to the real
A-REX 7 of scripts/arc7-local.sh; there it is the wrapper, fetches the queue's bundle from the plugin's route, runs
the dev server's job to finished as the CE's mapped user, and its logs come back to the log root."""

from __future__ import annotations

import shutil
import time
from pathlib import Path

import pytest

from autopilot_ops import __version__
from autopilot_ops.queues.loader import load_queues

from ..backends.test_condor_arc import ARC7_SCRIPT, CONDOR_ENV, job_owner, trust_the_test_ca
from ..conftest import service_is_up, service_settings
from . import test_bundle_pilots as site
from .conftest import wait_for

# The site test's fixtures: a dev server with a payload, the plugin's bundle routes, a directory under /tmp.
panda, plugin_url, shared = site.panda, site.plugin_url, site.shared

QUEUES = """
backends:
  - {{name: ce, kind: condor-ce, parameters: {{config_file: "{condor_env}", job_owner: "{owner}", history_s: 600,
                                               flavour: arc, ce: "{ce}", x509_proxy: "{proxy}"}}}}
defaults: {{tags: [t1], queue_limit: 5, max_per_cycle: 1, max_pilots: 1, cycle_period: 60}}
queues:
  - {{name: ARC_GRID_Q, site: S4, backend: ce}}
"""


@pytest.mark.condor
@pytest.mark.skipif(not CONDOR_ENV.exists(), reason="the HTCondor pool of scripts/condor-local.sh is not set up")
@pytest.mark.skipif(not service_is_up(ARC7_SCRIPT), reason="the A-REX 7 of scripts/arc7-local.sh is not running")
def test_a_cycles_pilot_through_htcondor_to_the_arc_ce_finishes_a_dev_server_job(store, panda, plugin_url,
                                                                                  tmp_path, shared):
    arc7 = service_settings(ARC7_SCRIPT)
    trust_the_test_ca(Path(arc7["AUTOPILOT_ARC7_CA_DIR"]))
    proxy = shared / "proxy.pem"  # HTCondor reads it as the job owner
    shutil.copy2(arc7["AUTOPILOT_ARC7_PROXY"], proxy)
    proxy.chmod(0o600)
    shutil.chown(proxy, job_owner())
    path = tmp_path / "queues.yaml"
    path.write_text(QUEUES.format(condor_env=CONDOR_ENV, owner=job_owner(), ce=arc7["AUTOPILOT_ARC7_URL"] + "/rest/1.0",
                                  proxy=proxy))
    load_queues(store, str(path))
    [panda_id] = panda.submit_jobs("ARC_GRID_Q", 1, f"{panda.url}/hello.sh", "")
    cycle = site.make_cycle(store, panda, plugin_url, tmp_path, shared)
    submitted = time.monotonic()
    report = cycle.run("arc-grid-c1")
    assert [r.outcome.submitted for r in report.results] == [1], report

    def ended() -> bool:
        cycle.run(f"arc-grid-{time.monotonic_ns()}")
        return site.pilot_of(store, "ARC_GRID_Q")["state"] in ("finished", "failed")

    try:
        wait_for(ended, timeout=300, interval=3)
    except AssertionError:
        pytest.fail(site.story(store, panda, "ARC_GRID_Q", panda_id))
    print(f"a cycle's pilot through HTCondor to A-REX 7, submit to ended: {time.monotonic() - submitted:.0f} s")
    pilot = site.pilot_of(store, "ARC_GRID_Q")
    assert pilot["state"] == "finished", site.story(store, panda, "ARC_GRID_Q", panda_id)
    assert panda.job(panda_id)["status"] == "finished", site.story(store, panda, "ARC_GRID_Q", panda_id)
    log = site.logs_of(pilot)
    assert site.fetched_from_the_plugin(log, plugin_url), log[-2000:]
    assert pilot["pilot_version"] == __version__
