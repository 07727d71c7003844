"""Progress of the demo: jobs finished out of total on the dev server, pilots by state in the store."""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass

from autopilot_ops.panda.protocol import FINAL_STATES
from autopilot_ops.quickstart.devserver import job_states
from autopilot_ops.quickstart.settings import QuickstartError, Settings
from autopilot_ops.store.connection import Store


@dataclass(frozen=True)
class Progress:
    jobs: Counter[str]
    pilots: Counter[str]

    @property
    def total(self) -> int:
        return sum(self.jobs.values())

    @property
    def done(self) -> bool:
        return all(state in FINAL_STATES for state in self.jobs)  # no jobs at all (AUTOPILOT_DEMO_JOBS=0): done

    def line(self) -> str:
        others = ", ".join(f"{state} {n}" for state, n in sorted(self.jobs.items()) if state != "finished")
        pilots = ", ".join(f"{state} {n}" for state, n in sorted(self.pilots.items())) or "none yet"
        jobs = f"jobs finished {self.jobs['finished']}/{self.total}" + (f" ({others})" if others else "")
        return f"{jobs}; pilots: {pilots}"


def observe(settings: Settings, store: Store) -> Progress:
    with store.transaction() as cur:
        cur.execute("SELECT state, count(*) AS n FROM pilots GROUP BY state")
        pilots = Counter({row["state"]: int(row["n"]) for row in cur.fetchall()})
    return Progress(Counter(job_states(settings)), pilots)


def follow(
    settings: Settings, store: Store, timeout: float, check: Callable[[], None], interval: float = 2.0
) -> Progress:
    """Print a line whenever the progress changes, until every job is final; ``check`` raises if a service died."""
    deadline = time.monotonic() + timeout
    shown = ""
    while True:
        check()
        progress = observe(settings, store)
        line = progress.line()
        if line != shown:
            print(f"  {time.strftime('%H:%M:%S')} {line}", flush=True)
            shown = line
        if progress.done:
            return progress
        if time.monotonic() > deadline:
            raise QuickstartError(
                f"the demo jobs were not all done after {timeout:.0f} s ({line}); the services keep running: "
                f"see the logs in {settings.services_dir} and {settings.home / 'logs'}"
            )
        time.sleep(interval)
