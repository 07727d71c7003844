"""The quick start's Airflow: api-server, scheduler, dag-processor and triggerer as four background services
(what ``airflow standalone`` runs, minus its supervisor, which leaves them behind on SIGTERM), LocalExecutor on
a PostgreSQL metadata database, AutoPilot's ``dags/`` and ``plugins/``, and a fixed admin login."""

from __future__ import annotations

import json
import os
import secrets
import shlex
import subprocess
import sys
import time
from pathlib import Path

from autopilot_ops.airflow.naming import scheduler_dag_id
from autopilot_ops.airflow.rest_api import AirflowAPI
from autopilot_ops.quickstart.processes import MARKER_VARIABLE, Service, stop_services
from autopilot_ops.quickstart.readiness import check_alive, wait_for_url
from autopilot_ops.quickstart.settings import REPO_ROOT, QuickstartError, Settings, require_free_port
from autopilot_ops.quickstart.workers import every_worker, executor_environment, worker_services

#: The components ``airflow standalone`` starts (``airflow/cli/commands/standalone_command.py``), with their
#: arguments: no log server (``airflow/utils/serve_logs/core.py`` listens on every interface, and is only needed
#: by workers on other machines; here the API server reads the task logs from the shared log folder).
COMPONENTS = {
    "api-server": (),
    "scheduler": ("--skip-serve-logs",),
    "dag-processor": (),
    "triggerer": ("--skip-serve-logs",),
}
API_SERVER = "airflow-api-server"
ADMIN_USER = "admin"
DEMO_DAG_ID = scheduler_dag_id("demo")
#: Unpaused with the demo scheduler: the snapshot refresh, and the sweep that moves pilots to their final state.
SERVICE_DAG_IDS = ("autopilot-sync", "autopilot-monitor")
#: A pilot keeps taking jobs for this many seconds (pilot3's time floor), so a few pilots drain the demo.
PILOT_TIME_FLOOR = 30


def passwords_file(settings: Settings) -> Path:
    return settings.airflow_home / "passwords.json"


def snapshot_path(settings: Settings) -> Path:
    return settings.home / "schedconfig-snapshot.json"


def airflow_environment(settings: Settings, dsn: str, metadata_url: str, jwt_secret: str) -> dict[str, str]:
    """The settings of every Airflow component, as ``AIRFLOW__<SECTION>__<KEY>`` variables."""
    python = shlex.quote(sys.executable)
    pilot_command = (
        f"{python} -m autopilot_ops.pilot run --queue {{queue}} --server {{panda_url}} "
        f"--allow-url-prefix {{panda_url}}/ --time-floor {PILOT_TIME_FLOOR} --heartbeat 60 "
        f"--home {shlex.quote(str(settings.home / 'pilot-home'))}"
    )
    return {
        "AIRFLOW_HOME": str(settings.airflow_home),
        "AUTOPILOT_HOME": str(settings.home),
        MARKER_VARIABLE: str(settings.home),
        "AIRFLOW__CORE__EXECUTOR": "LocalExecutor",
        "AIRFLOW__CORE__PARALLELISM": "4",
        "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
        "AIRFLOW__CORE__DAGS_FOLDER": str(REPO_ROOT / "dags"),
        "AIRFLOW__CORE__PLUGINS_FOLDER": str(REPO_ROOT / "plugins"),
        "AIRFLOW__CORE__AUTH_MANAGER": "airflow.api_fastapi.auth.managers.simple.simple_auth_manager.SimpleAuthManager",
        "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_USERS": f"{ADMIN_USER}:admin",
        "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_PASSWORDS_FILE": str(passwords_file(settings)),
        "AIRFLOW__CORE__EXECUTION_API_SERVER_URL": f"{settings.airflow_url}/execution/",
        "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": metadata_url,
        "AIRFLOW__API__HOST": "127.0.0.1",
        "AIRFLOW__API__PORT": str(settings.airflow_port),
        "AIRFLOW__API__WORKERS": "1",
        "AIRFLOW__API__BASE_URL": settings.airflow_url,
        "AIRFLOW__API_AUTH__JWT_SECRET": jwt_secret,
        "AIRFLOW__DAG_PROCESSOR__REFRESH_INTERVAL": "30",
        "AIRFLOW__AUTOPILOT__DSN": dsn,
        "AIRFLOW__AUTOPILOT__SNAPSHOT_PATH": str(snapshot_path(settings)),
        "AIRFLOW__AUTOPILOT__LOG_ROOT": str(settings.home / "logs"),
        "AIRFLOW__AUTOPILOT__PILOT_COMMAND": pilot_command,
        "AIRFLOW__AUTOPILOT__PANDA_CONN_ID": "panda_default",
        "AIRFLOW_CONN_PANDA_DEFAULT": json.dumps({"conn_type": "panda", "host": settings.panda_url}),
        **executor_environment(settings),
    }


def environment_file(settings: Settings) -> Path:
    return settings.airflow_home / "environment.json"


def record_environment(settings: Settings, env: dict[str, str]) -> None:
    """Keep the running Airflow's settings (mode 0600: they hold the JWT secret and the broker's password), so
    a later ``up`` starts a missing worker with them and knows which executor runs."""
    path = environment_file(settings)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as handle:
        json.dump(env, handle)


def recorded_environment(settings: Settings) -> dict[str, str]:
    """The settings the running Airflow was started with (empty if none were kept)."""
    try:
        document = json.loads(environment_file(settings).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    return document if isinstance(document, dict) else {}


def airflow_services(settings: Settings, env: dict[str, str]) -> list[Service]:
    airflow = str(settings.venv_bin / "airflow")
    return [
        Service(f"airflow-{name}", [airflow, name, *extra], settings.services_dir, env, cwd=settings.airflow_home)
        for name, extra in COMPONENTS.items()
    ]


def running_components(settings: Settings) -> dict[str, int]:
    """PIDs of the Airflow components that run now, by service name."""
    services = airflow_services(settings, {})
    return {service.name: pid for service in services if (pid := service.pid()) is not None}


def ensure_admin_password(settings: Settings) -> tuple[str, bool]:
    """The admin password from the passwords file, written (mode 0600) with a new one if absent; and
    whether it was created now."""
    path = passwords_file(settings)
    try:
        password = json.loads(path.read_text(encoding="utf-8")).get(ADMIN_USER)
    except FileNotFoundError:
        password = None
    except (OSError, ValueError, AttributeError) as exc:
        raise QuickstartError(f"the Airflow passwords file {path} is not a JSON object: {exc}") from None
    if isinstance(password, str) and password:
        return password, False
    password = secrets.token_urlsafe(12)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as handle:
        json.dump({ADMIN_USER: password}, handle)
        handle.write("\n")
    return password, True


def migrate(settings: Settings, env: dict[str, str]) -> None:
    """``airflow db migrate``: create or upgrade Airflow's tables; its output is shown if it fails."""
    settings.airflow_home.mkdir(parents=True, exist_ok=True)
    run_step("airflow db migrate", [str(settings.venv_bin / "airflow"), "db", "migrate"], env, settings)


def run_step(step: str, argv: list[str], env: dict[str, str], settings: Settings) -> None:
    log = settings.services_dir / "airflow-setup.log"
    log.parent.mkdir(parents=True, exist_ok=True)
    result = subprocess.run(
        argv, env={**os.environ, **env}, capture_output=True, text=True, check=False, cwd=settings.airflow_home
    )
    with open(log, "a", encoding="utf-8") as handle:
        handle.write(f"==== {step}\n{result.stdout}{result.stderr}")
    if result.returncode != 0:
        output = (result.stdout + result.stderr).strip()[-3000:]
        raise QuickstartError(f"step '{step}' failed (exit {result.returncode}); its output:\n{output}")


def start_airflow(settings: Settings, env: dict[str, str]) -> list[Service]:
    """Start every component, and the executor's workers (stopping any half-running set first, since they
    share a JWT secret); the settings are kept for :func:`recorded_environment`."""
    services = airflow_services(settings, env)
    stop_services([*services, *every_worker(settings)])
    require_free_port(settings.airflow_port, "Airflow API server", "AUTOPILOT_AIRFLOW_PORT")
    migrate(settings, env)
    record_environment(settings, env)
    services += worker_services(settings, env)
    for service in services:
        service.start()
    return services


def wait_for_api(settings: Settings, services: list[Service], timeout: float = 180.0) -> None:
    """Wait until the API server answers ``/api/v2/monitor/health``; fail with a log tail if a component dies."""
    wait_for_url(f"{settings.airflow_url}/api/v2/monitor/health", services, timeout, interval=1.0)


def unpause_when_parsed(settings: Settings, services: list[Service], password: str, timeout: float = 180.0) -> None:
    """Unpause the demo scheduler DAG and the service DAGs as soon as the dag-processor has stored them."""
    api = AirflowAPI.login(settings.airflow_url, ADMIN_USER, password)
    waiting = [DEMO_DAG_ID, *SERVICE_DAG_IDS]
    deadline = time.monotonic() + timeout
    while waiting and time.monotonic() < deadline:
        check_alive(services)
        reply = api.session.get(
            f"{api.url}/api/v2/dags", params={"dag_id_pattern": "autopilot", "limit": 100}, timeout=30
        )
        known = {dag["dag_id"]: dag for dag in reply.json().get("dags", [])} if reply.status_code == 200 else {}
        for dag_id in [d for d in waiting if d in known]:
            if known[dag_id]["is_paused"]:
                api.call("PATCH", f"/api/v2/dags/{dag_id}", f"unpausing {dag_id}", json={"is_paused": False})
            waiting.remove(dag_id)
        if waiting:
            time.sleep(2)
    if waiting:
        raise QuickstartError(
            f"Airflow did not parse the DAGs {', '.join(waiting)} within {timeout:.0f} s; see "
            f"{settings.services_dir / 'airflow-dag-processor.log'} and {snapshot_path(settings)}"
        )
