"""The ARC-CE back end against the real A-REX of ``scripts/arc-local.sh``, beside ARC's own client; prints JSON.

- ``submit_100_s``: ``ArcBackend.submit(100, ...)``: one xRSL multi-request and 100 uploads of each job's launch
  script, over one keep-alive connection (median of ``--runs``);
- ``status_sweep_100_s``: ``ArcBackend.status`` of those 100 (a bulk REST status, then the control directory's
  state of each job REST does not show as final);
- ``arcsub_100_s``: 100 ``arcsub`` calls of the same job, one process each (as a script around ARC's client
  would), measured once per run.
Each run's jobs are killed and cleaned afterwards. Usage: ``python bench/bench_arc.py [--runs 3]``.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import tempfile
import time
from pathlib import Path

from autopilot_ops.backends.arc import ArcBackend
from autopilot_ops.backends.base import PilotSpec

SCRIPT = Path(__file__).resolve().parents[1] / "scripts" / "arc-local.sh"
N = 100


def arc_env() -> dict[str, str]:
    lines = subprocess.run([str(SCRIPT), "env"], capture_output=True, text=True, check=True).stdout.splitlines()
    return dict(line.removeprefix("export ").split("=", 1) for line in lines)


def arcsub_100(env: dict[str, str], workdir: Path) -> float:
    """100 arcsub calls; the jobs are killed and cleaned afterwards."""
    client_env = dict(os.environ, HOME=str(workdir), X509_CERT_DIR=env["AUTOPILOT_ARC_CA_DIR"],
                      X509_USER_PROXY=env["AUTOPILOT_ARC_PROXY"])
    job = workdir / "job.xrsl"
    job.write_text('&(executable="/bin/true")(stdout="pilot.out")(outputfiles=("pilot.out" ""))(jobname="bench")')
    jobs = workdir / "jobs.dat"
    started = time.perf_counter()
    for _ in range(N):
        subprocess.run(["arcsub", "-C", env["AUTOPILOT_ARC_URL"], "-j", str(jobs), str(job)], env=client_env,
                       check=True, capture_output=True)
    elapsed = time.perf_counter() - started
    subprocess.run(["arckill", "-a", "-j", str(jobs)], env=client_env, capture_output=True)
    subprocess.run(["arcclean", "-a", "-f", "-j", str(jobs)], env=client_env, capture_output=True)
    return elapsed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=3)
    args = parser.parse_args()
    env = arc_env()
    submits, sweeps, arcsubs = [], [], []
    for _ in range(args.runs):
        with tempfile.TemporaryDirectory() as tmp:
            backend = ArcBackend("bench", {"ce": env["AUTOPILOT_ARC_URL"], "proxy": env["AUTOPILOT_ARC_PROXY"],
                                           "ca_dir": env["AUTOPILOT_ARC_CA_DIR"], "state_dir": f"{tmp}/state",
                                           "transfer_executable": False})
            spec = PilotSpec(queue="BENCH", cycle_id="bench", scheduler="bench", command=["/bin/sleep", "120"],
                             log_root=Path(tmp) / "logs")
            started = time.perf_counter()
            pilots = backend.submit(N, spec)
            submits.append(time.perf_counter() - started)
            ids = [pilot.batch_id for pilot in pilots]
            started = time.perf_counter()
            backend.status(ids)
            sweeps.append(time.perf_counter() - started)
            backend.cancel(ids)
            record = json.loads(next((Path(tmp) / "state").glob("*.json")).read_text())
            backend.client().jobs("clean", [job for job in record["jobs"] if job])
            backend.close()
            arcsubs.append(arcsub_100(env, Path(tmp)))
    subprocess.run(["pkill", "-u", env["AUTOPILOT_ARC_JOB_USER"], "-f", "/bin/sleep 120"], check=False)
    print(json.dumps({
        "bench": "arc", "pilots": N, "runs": args.runs,
        "submit_100_s": round(statistics.median(submits), 3),
        "status_sweep_100_s": round(statistics.median(sweeps), 3),
        "arcsub_100_s": round(statistics.median(arcsubs), 3),
        "all": {"submit": [round(x, 3) for x in submits], "status": [round(x, 3) for x in sweeps],
                "arcsub": [round(x, 3) for x in arcsubs]},
    }))


if __name__ == "__main__":
    main()
