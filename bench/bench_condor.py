"""HTCondor back end against the local pool of scripts/condor-local.sh: submit 500 pilots in one transaction,
ask their status, find them by tags, remove them; print JSON with median seconds.

The pilots are submitted on hold, so nothing runs and the figures are the schedd's alone. When the pool is not
up (no client settings, or the schedd does not answer), the figures are null and ``skipped`` says why; start it
with ``scripts/condor-local.sh start`` (as root).
"""

from __future__ import annotations

import json
import os
import shutil
import statistics
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from autopilot_ops.backends.base import BackendError, PilotSpec
from autopilot_ops.backends.condor import CondorBackend

PILOTS = int(os.environ.get("BENCH_PILOTS", "500"))
REPEATS = int(os.environ.get("BENCH_REPEATS", "5"))
CLIENT_ENV = Path(os.environ.get("AUTOPILOT_CONDOR_HOME", "/var/lib/autopilot-condor")) / "client.env"
JOB_OWNER = os.environ.get("AUTOPILOT_CONDOR_USER", "autopilot")


def timed(action: Callable[[], Any]) -> tuple[float, Any]:
    start = time.perf_counter()
    result = action()
    return time.perf_counter() - start, result


def median(values: list[float]) -> float:
    return round(statistics.median(values), 4)


def bench(backend: CondorBackend, log_root: Path) -> dict[str, Any]:
    submit_s, status_s, find_s, remove_s = [], [], [], []
    for repeat in range(REPEATS):
        spec = PilotSpec(
            queue="BENCH",
            cycle_id=f"bench-{os.getpid()}-{repeat}",
            scheduler="bench",
            command=["/bin/true"],
            log_root=log_root,
            parameters={"submit": {"hold": "True"}},
        )
        seconds, pilots = timed(lambda spec=spec: backend.submit(PILOTS, spec))
        submit_s.append(seconds)
        ids = [p.batch_id for p in pilots]
        try:
            seconds, statuses = timed(lambda ids=ids: backend.status(ids))
            if len(statuses) != len(ids):
                raise RuntimeError(f"status() knew {len(statuses)} of {len(ids)} pilots")
            status_s.append(seconds)
            seconds, found = timed(lambda spec=spec: backend.find_pilots(spec.queue, spec.cycle_id))
            if len(found or []) != len(ids):
                raise RuntimeError(f"find_pilots() found {len(found or [])} of {len(ids)} pilots")
            find_s.append(seconds)
        finally:
            seconds, _ = timed(lambda ids=ids: backend.cancel(ids))
            remove_s.append(seconds)
    return {
        "submit_one_transaction_median_s": median(submit_s),
        "status_median_s": median(status_s),
        "find_by_tags_median_s": median(find_s),
        "remove_median_s": median(remove_s),
    }


def main() -> None:
    result: dict[str, Any] = {"backend": "condor", "pilots": PILOTS, "repeats": REPEATS}
    if not CLIENT_ENV.exists():
        result["skipped"] = f"{CLIENT_ENV} is missing: run scripts/condor-local.sh start"
        print(json.dumps(result, indent=2))
        return
    log_root = Path(tempfile.mkdtemp(prefix="autopilot-bench-condor-", dir="/tmp"))
    log_root.chmod(0o755)
    backend = CondorBackend("bench", {"config_file": str(CLIENT_ENV), "job_owner": JOB_OWNER})
    try:
        result.update(bench(backend, log_root))
    except BackendError as exc:
        result["skipped"] = str(exc)
    finally:
        shutil.rmtree(log_root, ignore_errors=True)
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
