"""The condor-ce back end's ARC route: 100 pilots through the HTCondor pool's gridmanager to the real A-REX 7 of
``scripts/arc7-local.sh`` (after ``scripts/condor-local.sh start``); prints JSON, medians of ``--runs``.

- ``submit_100_s``: ``CondorCEBackend.submit(100, ...)``, one schedd transaction;
- ``on_the_ce_100_s``: from the submission until the gridmanager has taken each of the 100 to A-REX (it holds an
  A-REX job id for it: delegation, ADL submission and the upload of the pilot's script by HTCondor's arc_gahp) or
  held it (``held`` counts those, ``held_reasons`` says why);
- ``status_sweep_100_s``: ``CondorCEBackend.status`` of those 100 (one schedd query);
- ``cancelled_100_s``: from ``cancel`` until none of the 100 is left in the schedd's queue (the gridmanager's
  ``action=kill`` and ``action=clean`` on A-REX).
Usage: ``python bench/bench_condor_arc.py [--runs 3]``.
"""

from __future__ import annotations

import argparse
import json
import shutil
import statistics
import subprocess
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from autopilot_ops.backends.base import PilotSpec
from autopilot_ops.backends.condor import CondorCEBackend

REPO = Path(__file__).resolve().parents[1]
ARC7_SCRIPT = REPO / "scripts" / "arc7-local.sh"
CONDOR_ROOT = Path("/var/lib/autopilot-condor/root")
CONDOR_ENV = Path("/var/lib/autopilot-condor/client.env")
N = 100
MARKER = "autopilot-bench-condor-arc"


def arc7_env() -> dict[str, str]:
    lines = subprocess.run([str(ARC7_SCRIPT), "env"], capture_output=True, text=True, check=True).stdout.splitlines()
    return dict(line.removeprefix("export ").split("=", 1) for line in lines)


def trust_the_test_ca(ca_dir: Path) -> None:
    """The CE's CA certificates (never its key) where the chroot's arc_gahp looks for trust anchors."""
    certificates = CONDOR_ROOT / "etc" / "grid-security" / "certificates"
    certificates.mkdir(parents=True, exist_ok=True)
    for item in ca_dir.iterdir():
        if item.suffix in (".pem", ".signing_policy", ".0") and not item.name.endswith("-key.pem"):
            shutil.copy2(item.resolve(), certificates / item.name)


def wait(check: Callable[[], bool], what: str, timeout_s: float = 600) -> float:
    started = time.perf_counter()
    while not check():
        if time.perf_counter() - started > timeout_s:
            raise SystemExit(f"bench_condor_arc: timed out after {timeout_s} s waiting for {what}")
        time.sleep(0.5)
    return time.perf_counter() - started


def one_run(env: dict[str, str], owner: str) -> dict[str, Any]:
    shared = Path(tempfile.mkdtemp(prefix="autopilot-bench-condor-arc-", dir="/tmp"))
    try:
        shared.chmod(0o755)
        shutil.chown(shared, owner)
        proxy = shared / "proxy.pem"
        shutil.copy2(env["AUTOPILOT_ARC7_PROXY"], proxy)
        proxy.chmod(0o600)
        shutil.chown(proxy, owner)
        backend = CondorCEBackend("bench", {"config_file": str(CONDOR_ENV), "job_owner": owner, "flavour": "arc",
                                            "ce": env["AUTOPILOT_ARC7_URL"] + "/rest/1.0", "x509_proxy": str(proxy)})
        script = shared / "pilot.sh"  # uploaded with each job, as the wrapper is
        script.write_text(f"#!/bin/sh\nsleep 300 # {MARKER}\n")
        script.chmod(0o755)
        spec = PilotSpec(queue="BENCH", cycle_id=f"bench-{time.time_ns()}", scheduler="bench", command=[str(script)],
                         log_root=shared / "logs")
        started = time.perf_counter()
        pilots = backend.submit(N, spec)
        submit_s = time.perf_counter() - started
        ids = [pilot.batch_id for pilot in pilots]

        held: dict[str, str] = {}

        def all_taken() -> bool:
            ads = backend._ads_by_id(ids, ["ClusterId", "ProcId", "GridJobId", "JobStatus", "HoldReason"])
            held.update({i: str(ad.get("HoldReason")) for i, ad in ads.items() if ad.get("JobStatus") == 5})
            return len(ads) == N and all(isinstance(ad.get("GridJobId"), str) or ad.get("JobStatus") == 5
                                         for ad in ads.values())

        on_the_ce_s = submit_s + wait(all_taken, "the gridmanager to take all pilots to A-REX")
        started = time.perf_counter()
        statuses = backend.status(ids)
        sweep_s = time.perf_counter() - started
        assert len(statuses) == N, f"the sweep saw {len(statuses)} of {N} pilots"
        started = time.perf_counter()
        backend.cancel(ids)
        cancelled_s = wait(lambda: not backend._query(backend._tag_constraint("BENCH", spec.cycle_id),
                                                      ["ClusterId", "ProcId"]), "the cancelled pilots to leave")
        return {"submit": submit_s, "on_the_ce": on_the_ce_s, "status": sweep_s, "cancelled": cancelled_s,
                "held": len(held), "held_reasons": sorted(set(held.values()))}
    finally:
        subprocess.run(["pkill", "-u", env["AUTOPILOT_ARC7_JOB_USER"], "-f", MARKER], check=False)
        shutil.rmtree(shared, ignore_errors=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=3)
    args = parser.parse_args()
    env = arc7_env()
    trust_the_test_ca(Path(env["AUTOPILOT_ARC7_CA_DIR"]))
    owner = CONDOR_ENV.read_text().split("AUTOPILOT_CONDOR_USER=")[-1].split()[0]  # the pool's job owner
    runs = [one_run(env, owner) for _ in range(args.runs)]
    timed = ("submit", "on_the_ce", "status", "cancelled")
    medians = {name: round(statistics.median(run[name] for run in runs), 3) for name in timed}
    print(json.dumps({
        "bench": "condor_arc", "pilots": N, "runs": args.runs,
        "submit_100_s": medians["submit"], "on_the_ce_100_s": medians["on_the_ce"],
        "status_sweep_100_s": medians["status"], "cancelled_100_s": medians["cancelled"],
        "held": [run["held"] for run in runs], "held_reasons": sorted({r for run in runs for r in run["held_reasons"]}),
        "all": {name: [round(run[name], 3) for run in runs] for name in timed},
    }))


if __name__ == "__main__":
    main()
