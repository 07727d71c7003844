"""The quick start's PanDA dev server: a background service serving the demo transformation, and the demo
jobs injected into it once."""

from __future__ import annotations

import itertools
import shutil
import sys
import uuid
from importlib import resources
from pathlib import Path

from autopilot_ops.panda.devserver.database import Database, DatabaseError
from autopilot_ops.panda.devserver.jobspec import build_job_spec
from autopilot_ops.panda.devserver.jobstore import JobStore
from autopilot_ops.panda.devserver.submitter import SubmitError, submit_specs
from autopilot_ops.quickstart.processes import MARKER_VARIABLE, Service
from autopilot_ops.quickstart.readiness import wait_for_url
from autopilot_ops.quickstart.settings import QuickstartError, Settings, require_free_port
from autopilot_ops.store.connection import Store

TRANSFORMATION = "demo-transformation.sh"
#: Sum of squares up to this number: a short computation; the script also sleeps 2 s, so pilots are seen running.
DEMO_N = 200000
#: A job silent this long fails (the quick start's pilots send a heartbeat every minute), so jobs whose pilot was
#: stopped by ``autopilot down`` end ``failed`` after the next ``up`` instead of staying ``running`` for hours.
HEARTBEAT_TIMEOUT = 300


def devserver_service(settings: Settings) -> Service:
    return Service(
        name="panda-devserver",
        argv=[
            sys.executable,
            "-m",
            "autopilot_ops.cli.main",
            "panda-devserver",
            "--host",
            "127.0.0.1",
            "--port",
            str(settings.panda_port),
            "--db",
            str(database_path(settings)),
            "--files",
            str(files_dir(settings)),
            "--heartbeat-timeout",
            str(HEARTBEAT_TIMEOUT),
            "--quiet",
        ],
        directory=settings.services_dir,
        env={"AUTOPILOT_HOME": str(settings.home), MARKER_VARIABLE: str(settings.home)},
        cwd=settings.home,
    )


def database_path(settings: Settings) -> Path:
    return settings.home / "panda-devserver.db"


def files_dir(settings: Settings) -> Path:
    return settings.home / "panda-files"


def start_devserver(settings: Settings) -> tuple[int, bool]:
    """Start the dev server unless it runs; return its PID and whether it was started now."""
    service = devserver_service(settings)
    pid = service.pid()
    if pid is not None:
        return pid, False
    require_free_port(settings.panda_port, "PanDA dev server", "AUTOPILOT_PANDA_PORT")
    directory = files_dir(settings)
    directory.mkdir(parents=True, exist_ok=True)
    with resources.as_file(resources.files("autopilot_ops") / "data" / TRANSFORMATION) as source:
        shutil.copyfile(source, directory / TRANSFORMATION)
    pid = service.start()
    wait_until_alive(settings, service)
    return pid, True


def wait_until_alive(settings: Settings, service: Service, timeout: float = 30.0) -> None:
    """Wait for ``GET /api/v1/system/is_alive``; fail with the log's tail if the server exits or stays silent."""
    wait_for_url(f"{settings.panda_url}/api/v1/system/is_alive", [service], timeout, interval=0.2)


def demo_queues(store: Store) -> list[tuple[str, int]]:
    """``(queue, corecount)`` of the queues tagged ``demo``."""
    with store.transaction() as cur:
        cur.execute(
            "SELECT panda_queue, coalesce(corecount, 1) AS corecount FROM schedconfig "
            "WHERE 'demo' = ANY(tags) ORDER BY panda_queue"
        )
        return [(row["panda_queue"], max(int(row["corecount"]), 1)) for row in cur.fetchall()]


def inject_demo_jobs(settings: Settings, queues: list[tuple[str, int]]) -> int:
    """Submit ``settings.demo_jobs`` jobs spread over ``queues``, unless the dev server holds jobs already;
    return how many were submitted now. Each job writes one output file, declared as its output."""
    if not queues or job_states(settings):
        return 0
    transformation = f"{settings.panda_url}/{TRANSFORMATION}"
    specs = []
    for (queue, cores), _ in zip(itertools.cycle(queues), range(settings.demo_jobs)):
        output = f"demo.{uuid.uuid4().hex[:12]}.out"
        specs.append(
            build_job_spec(
                queue,
                transformation,
                f"--n {DEMO_N} --output {output}",
                out_files=[output],
                core_count=cores,
                label="demo",
            )
        )
    try:
        return len(submit_specs(settings.panda_url, specs))
    except SubmitError as exc:
        raise QuickstartError(f"injecting the demo jobs into {settings.panda_url}: {exc}") from None


def job_states(settings: Settings) -> list[str]:
    """The status of every job in the dev server's database (empty if it has none yet)."""
    path = database_path(settings)
    if not path.is_file():
        return []
    try:
        database = Database(path)
    except DatabaseError as exc:
        raise QuickstartError(f"reading the dev server's jobs from {path}: {exc}") from None
    try:
        return [job["status"] for job in JobStore(database).jobs()]
    finally:
        database.close()
