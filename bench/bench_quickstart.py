"""Time the run command from a fresh state: ``autopilot up`` until "all demo jobs finished", then ``autopilot
down``; print JSON. Medians over ``BENCH_REPEATS`` runs (default 3), each in a new ``AUTOPILOT_HOME`` on free
ports. With ``BENCH_PIP=1`` also time ``pip install -c constraints.txt -e .[dev]`` into a new virtualenv (the
install step of ``make run`` on a fresh clone; needs the package index or a warm pip cache).

Target (issue 7): a fresh clone reaches "all demo jobs finished" in < 3 min, installs included."""

from __future__ import annotations

import json
import os
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
AUTOPILOT = str(Path(sys.executable).with_name("autopilot"))
REPEATS = int(os.environ.get("BENCH_REPEATS", "3"))
TARGET_S = 180.0


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def timed_run(argv: list[str], env: dict[str, str], cwd: Path) -> float:
    start = time.perf_counter()
    result = subprocess.run(argv, env=env, cwd=cwd, capture_output=True, text=True, check=False)
    elapsed = time.perf_counter() - start
    if result.returncode != 0:
        raise SystemExit(f"{' '.join(argv)} failed:\n{result.stdout[-2000:]}{result.stderr[-2000:]}")
    return elapsed


def one_quickstart() -> tuple[float, float]:
    root = Path(tempfile.mkdtemp(prefix="bench-quickstart-"))
    root.chmod(0o755)  # as root, the embedded PostgreSQL runs as the postgres user
    env = {
        **os.environ,
        "AUTOPILOT_HOME": str(root / "home"),
        "AUTOPILOT_PANDA_PORT": str(free_port()),
        "AUTOPILOT_AIRFLOW_PORT": str(free_port()),
        "AUTOPILOT_EMBEDDED_PG_PORT": str(free_port()),
    }
    env.pop("AUTOPILOT_DSN", None)
    try:
        up = timed_run([AUTOPILOT, "up"], env, root)
        down = timed_run([AUTOPILOT, "down"], env, root)
    finally:
        subprocess.run([AUTOPILOT, "down"], env=env, cwd=root, capture_output=True, check=False)
        shutil.rmtree(root, ignore_errors=True)
    return up, down


def pip_install() -> float:
    """Seconds to create a virtualenv and install AutoPilot into it, as ``make`` does on a fresh clone."""
    venv = Path(tempfile.mkdtemp(prefix="bench-venv-"))
    try:
        make_venv = timed_run([sys.executable, "-m", "venv", str(venv)], dict(os.environ), REPO)
        pip = [str(venv / "bin" / "pip"), "install", "-q", "--disable-pip-version-check"]
        return make_venv + timed_run([*pip, "-c", "constraints.txt", "-e", ".[dev]"], dict(os.environ), REPO)
    finally:
        shutil.rmtree(venv, ignore_errors=True)


def main() -> None:
    ups, downs = zip(*(one_quickstart() for _ in range(REPEATS)), strict=True)
    report: dict[str, object] = {
        "repeats": REPEATS,
        "up_to_demo_done_s": {"median": round(statistics.median(ups), 1), "all": [round(t, 1) for t in ups]},
        "down_s": {"median": round(statistics.median(downs), 1), "all": [round(t, 1) for t in downs]},
    }
    if os.environ.get("BENCH_PIP") == "1":
        pip = pip_install()
        report["venv_and_pip_install_s"] = round(pip, 1)
        report["fresh_clone_estimate_s"] = round(pip + statistics.median(ups), 1)
        report["under_target"] = pip + statistics.median(ups) < TARGET_S
    print(json.dumps(report))


if __name__ == "__main__":
    main()
