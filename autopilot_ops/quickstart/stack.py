"""``autopilot up`` and ``autopilot down`` step by step: the database, the dev PanDA server with the demo jobs,
Airflow with the demo scheduler unpaused, and the progress of the demo until its jobs are done."""

from __future__ import annotations

import secrets
import signal
import time
from collections.abc import Callable
from pathlib import Path

import psycopg2

from autopilot_ops.airflow.schedconfig_snapshot import write_snapshot
from autopilot_ops.queues.errors import QueueFileError
from autopilot_ops.quickstart.airflow import (
    ADMIN_USER,
    API_SERVER,
    COMPONENTS,
    DEMO_DAG_ID,
    airflow_environment,
    airflow_services,
    ensure_admin_password,
    passwords_file,
    recorded_environment,
    running_components,
    snapshot_path,
    start_airflow,
    unpause_when_parsed,
    wait_for_api,
)
from autopilot_ops.quickstart.celery import WORKERS
from autopilot_ops.quickstart.database import (
    bring_up_database,
    embedded_server,
    ensure_airflow_database,
    stop_database,
    uses_embedded_server,
)
from autopilot_ops.quickstart.devserver import demo_queues, devserver_service, inject_demo_jobs, start_devserver
from autopilot_ops.quickstart.processes import Service, kill_processes, processes_of, stop_services
from autopilot_ops.quickstart.progress import follow
from autopilot_ops.quickstart.readiness import check_alive
from autopilot_ops.quickstart.redis import redis_service, start_redis
from autopilot_ops.quickstart.settings import QuickstartError, Settings
from autopilot_ops.quickstart.workers import EXECUTOR_CLASSES, every_worker, worker_services
from autopilot_ops.store.connection import Store, redact

#: How long ``up`` waits for the demo jobs before giving up (the services keep running).
DEMO_TIMEOUT = 900.0


def up(settings: Settings, say: Callable[[str], None] = print) -> None:
    """Bring every service up (reusing those that run) and follow the demo until its jobs are done."""
    began = time.monotonic()
    settings.home.mkdir(parents=True, exist_ok=True)
    say(f"AutoPilot quick start in {settings.home}")

    try:
        dsn, loaded = bring_up_database()
    except psycopg2.Error as exc:
        hint = ""
        if uses_embedded_server():
            hint = f"\nif {embedded_server().data_dir} was made by an older AutoPilot, remove it after `autopilot down`"
        raise QuickstartError(f"database step (schema and demo queues): {str(exc).strip()}{hint}") from None
    except QueueFileError as exc:
        raise QuickstartError(f"database step (demo queues): {exc}") from None
    queues = "; ".join(f"{Path(result.source).name}: {result.plan.summary()}" for result in loaded)
    say(f"[1/4] database ready: {redact(dsn)}; demo queues: {queues}")
    with Store(dsn) as store:
        write_snapshot(store, snapshot_path(settings))
        queues = demo_queues(store)

    pid, started = start_devserver(settings)
    injected = inject_demo_jobs(settings, queues)
    say(
        f"[2/4] PanDA dev server {'started' if started else 'already running'} (pid {pid}) at {settings.panda_url}; "
        + (f"{injected} demo jobs injected" if injected else "demo jobs were injected before")
    )

    password, created = ensure_admin_password(settings)
    if settings.executor == "celery":
        pid, started = start_redis(settings)
        say(
            f"      Redis (Celery broker) {'started' if started else 'already running'} (pid {pid}) "
            f"on 127.0.0.1:{settings.redis_port}"
        )
    services = airflow_services(settings, {})
    running = running_components(settings)
    if len(running) == len(COMPONENTS):
        env = recorded_environment(settings)
        _require_executor(settings, env)
        say(f"[3/4] Airflow already running (pids {', '.join(str(p) for p in running.values())})")
        services += _start_missing_workers(settings, env, say)
    else:
        components = f"db migrate, api-server, scheduler, dag-processor, triggerer{_workers_note(settings)}"
        say(f"[3/4] starting Airflow ({components})...")
        jwt_secret = secrets.token_urlsafe(48)  # 64 characters: the length HS512 wants
        env = airflow_environment(settings, dsn, ensure_airflow_database(dsn), jwt_secret)
        services = start_airflow(settings, env)
        wait_for_api(settings, services)
        unpause_when_parsed(settings, services, password)
        say(f"      Airflow up at {settings.airflow_url}; {DEMO_DAG_ID} unpaused")
    if settings.executor == "celery":
        services.append(redis_service(settings))

    say("[4/4] waiting for the demo jobs (pilots submitted by the demo scheduler through the local back end)")
    with Store(dsn) as store:
        progress = follow(settings, store, DEMO_TIMEOUT, lambda: check_alive([*services, devserver_service(settings)]))
    failed = progress.total - progress.jobs["finished"]
    say(
        f"demo done in {time.monotonic() - began:.0f} s: {progress.jobs['finished']}/{progress.total} jobs finished"
        + (f", {failed} did not (see {settings.home / 'logs'})" if failed else "")
    )
    say("")
    say(f"  Airflow UI:        {settings.airflow_url}/")
    say(f"  AutoPilot monitor: {settings.monitor_url}")
    say(f"  PanDA dev server:  {settings.panda_url}/")
    if created:
        say(f"  login:             {ADMIN_USER} / {password}   (kept in {passwords_file(settings)})")
    else:
        say(f"  login:             {ADMIN_USER}, password in {passwords_file(settings)}")
    say(f"  logs:              {settings.services_dir}")


def _workers_note(settings: Settings) -> str:
    kind = {"celery": "CeleryExecutor, {n} Celery workers", "edge": "EdgeExecutor, {n} Edge workers"}
    return f"; {kind[settings.executor].format(n=WORKERS)}" if settings.executor in kind else ""


def _require_executor(settings: Settings, env: dict[str, str]) -> None:
    """Fail if the running Airflow was started with another executor than the one asked for."""
    running = env.get("AIRFLOW__CORE__EXECUTOR", EXECUTOR_CLASSES["local"])
    if running != EXECUTOR_CLASSES[settings.executor]:
        raise QuickstartError(
            f"Airflow runs with the {running} already; `autopilot down` first to run it with "
            f"--executor {settings.executor}"
        )


def _start_missing_workers(settings: Settings, env: dict[str, str], say: Callable[[str], None]) -> list[Service]:
    """Start the executor's workers that do not run (one was killed, or its host came back); all of them."""
    workers = worker_services(settings, env)
    for worker in workers:
        if worker.pid() is None:
            say(f"      {worker.name} was not running: started (pid {worker.start()})")
    return workers


def all_services(settings: Settings) -> list[Service]:
    """Every service ``up`` may start, whichever the executor (those not started have no PID)."""
    return [
        *airflow_services(settings, {}),
        *every_worker(settings),
        devserver_service(settings),
        redis_service(settings),
    ]


def stay_in_foreground(settings: Settings, say: Callable[[str], None] = print) -> None:
    """Watch the services until Ctrl-C (or SIGTERM) or until one dies, then stop everything."""
    services = [service for service in all_services(settings) if service.pid() is not None]
    signal.signal(signal.SIGTERM, signal.default_int_handler)
    say("running in the foreground; Ctrl-C stops everything")
    try:
        while True:
            check_alive(services)
            time.sleep(2)
    except KeyboardInterrupt:
        say("stopping...")
    finally:
        down(settings, say)


def started_services(settings: Settings) -> list[str]:
    """Names of the services of ``up`` that run now (the embedded database included)."""
    names = [s.name for s in all_services(settings) if s.pid() is not None]
    if uses_embedded_server() and embedded_server().is_running():
        names.insert(0, "embedded PostgreSQL")
    return names


def down(settings: Settings, say: Callable[[str], None] = print) -> None:
    """Stop what ``up`` started: Airflow's and the dev server's process groups, any straggler of ours
    (pilots, task processes that left their group), then the embedded database. Safe to repeat."""
    airflow = [*airflow_services(settings, {}), *every_worker(settings)]
    # the API server last: a task the scheduler or a worker lets finish still reports through it
    stopped = stop_services([s for s in airflow if s.name != API_SERVER])
    stopped += stop_services(
        [s for s in airflow if s.name == API_SERVER] + [devserver_service(settings), redis_service(settings)]
    )
    say(f"stopped: {', '.join(stopped)}" if stopped else "no AutoPilot service was running")
    leftovers = processes_of(settings.home, settings.airflow_home)
    if leftovers:
        kill_processes(leftovers)
        say(f"stopped {len(leftovers)} leftover processes (pilots, Airflow task processes)")
    survivors = processes_of(settings.home, settings.airflow_home)
    if survivors:
        raise QuickstartError(f"processes {', '.join(map(str, survivors))} of {settings.home} survived SIGKILL")
    if uses_embedded_server():
        say("embedded database stopped" if stop_database() else "embedded database was not running")
