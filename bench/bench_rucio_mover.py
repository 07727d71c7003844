"""The rucio data mover against the real Rucio of ``scripts/rucio-local.sh`` (a POSIX RSE on local disk); prints JSON.

Each run makes 100 files of 1 MB and, through the pilot's staging (the path a job takes, checksums included):

- ``stage_out_100_s``: ``stage_out_file`` of each, as a job's outputs: upload to the RSE, registration with a GUID
  in the job's dataset, and the check of the replica's size and adler32;
- ``stage_in_100_s``: ``stage_in`` of the same 100 as a job's inputs, into a fresh work dir: download, Rucio's
  checksum validation, the mover's adler32 check against Rucio and the pilot's against PanDA's.

Medians over ``--runs``; each run leaves its 100 MB on the RSE (the server keeps every file). Usage:
``python bench/bench_rucio_mover.py [--runs 3]``.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import tempfile
import time
import uuid
from pathlib import Path

from autopilot_ops.pilot.job import parse_job
from autopilot_ops.pilot.staging import stage_in, stage_out_file

SCRIPT = Path(__file__).resolve().parents[1] / "scripts" / "rucio-local.sh"
N = 100
SIZE = 1 << 20
INPUT_URL = "rucio://{scope}/{lfn}?rse={rse}"
OUTPUT_URL = "rucio://{scope}/{lfn}?rse={rse}&dataset={dataset}&guid={guid}"


def rucio_env() -> dict[str, str]:
    lines = subprocess.run([str(SCRIPT), "env"], capture_output=True, text=True, check=True).stdout.splitlines()
    return dict(line.removeprefix("export ").split("=", 1) for line in lines)


def one_run(env: dict[str, str], tmp: Path) -> tuple[float, float]:
    """Stage 100 new files out, then the same 100 in; the seconds of each."""
    scope, rse, tag = env["AUTOPILOT_RUCIO_SCOPE"], env["AUTOPILOT_RUCIO_RSE"], uuid.uuid4().hex
    lfns = [f"bench-{tag}-{i:03d}.dat" for i in range(N)]
    dataset = f"bench.{tag}"
    outputs = tmp / "out"
    outputs.mkdir()
    for lfn in lfns:
        (outputs / lfn).write_bytes(os.urandom(SIZE))
    producer = parse_job({
        "PandaID": 1, "transformation": "/bin/true", "outFiles": ",".join(lfns),
        "scopeOut": ",".join([scope] * N), "realDatasets": ",".join([dataset] * N),
        "ddmEndPointOut": ",".join([rse] * N),
    })
    started = time.perf_counter()
    staged = [stage_out_file(spec, outputs / spec.lfn, OUTPUT_URL) for spec in producer.output_files]
    stage_out = time.perf_counter() - started
    consumer = parse_job({
        "PandaID": 2, "transformation": "/bin/true", "inFiles": ",".join(lfns),
        "scopeIn": ",".join([scope] * N), "GUID": ",".join(f.guid for f in staged),
        "fsize": ",".join(str(f.fsize) for f in staged), "checksum": ",".join(f"ad:{f.adler32}" for f in staged),
        "ddmEndPointIn": ",".join([rse] * N),
    })
    workdir = tmp / "work"
    workdir.mkdir()
    started = time.perf_counter()
    paths = stage_in(consumer, workdir, INPUT_URL)
    stage_in_s = time.perf_counter() - started
    assert [p.read_bytes() for p in paths[:3]] == [(outputs / lfn).read_bytes() for lfn in lfns[:3]]
    return stage_out, stage_in_s


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=3)
    args = parser.parse_args()
    env = rucio_env()
    outs, ins = [], []
    with tempfile.TemporaryDirectory() as home:
        config = Path(home) / "rucio.cfg"
        original = Path(env["AUTOPILOT_RUCIO_CLIENT_CONFIG"]).read_text().rstrip()
        config.write_text(f"{original}\nauth_token_file_path = {home}/token/auth_token\n")
        os.environ.update(RUCIO_CONFIG=str(config), TMPDIR=home)  # before Rucio's client is first imported
        for run in range(args.runs):
            run_dir = Path(home) / f"run{run}"
            run_dir.mkdir()
            stage_out, stage_in_s = one_run(env, run_dir)
            outs.append(stage_out)
            ins.append(stage_in_s)
    print(json.dumps({
        "bench": "rucio_mover", "files": N, "file_bytes": SIZE, "runs": args.runs,
        "stage_out_100_s": round(statistics.median(outs), 3),
        "stage_in_100_s": round(statistics.median(ins), 3),
        "stage_out_per_file_ms": round(statistics.median(outs) / N * 1000, 1),
        "stage_in_per_file_ms": round(statistics.median(ins) / N * 1000, 1),
        "all": {"stage_out": [round(x, 3) for x in outs], "stage_in": [round(x, 3) for x in ins]},
    }))


if __name__ == "__main__":
    main()
