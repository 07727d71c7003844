"""A quick start of its own for each test module: a fresh ``AUTOPILOT_HOME`` and free ports, so the tests never
meet a user's running instance; whatever ``autopilot up`` started is stopped by ``autopilot down`` at the end."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import tempfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

AUTOPILOT = str(Path(sys.executable).with_name("autopilot"))


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@dataclass
class Quickstart:
    """Runs ``autopilot up``/``down`` as the user would, with this instance's environment."""

    home: Path
    env: dict[str, str]

    def run(self, *args: str, timeout: float = 400) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [AUTOPILOT, *args], env=self.env, capture_output=True, text=True, timeout=timeout, cwd=self.home.parent
        )

    @property
    def airflow_home(self) -> Path:
        return self.home / "airflow"

    def service_pids(self) -> dict[str, str]:
        """The PID files' contents (``<pid> <start time>``) by service name."""
        return {path.stem: path.read_text().strip() for path in sorted((self.home / "services").glob("*.pid"))}


def make_quickstart(**overrides: str) -> Quickstart:
    # world-readable: as root, the embedded PostgreSQL runs as the postgres user and must reach its directory
    root = Path(tempfile.mkdtemp(prefix="autopilot-quickstart-"))
    root.chmod(0o755)
    home = root / "home"
    env = {
        **{key: value for key, value in os.environ.items() if not key.startswith(("AIRFLOW", "AUTOPILOT_"))},
        "AUTOPILOT_HOME": str(home),
        "AUTOPILOT_PANDA_PORT": str(free_port()),
        "AUTOPILOT_AIRFLOW_PORT": str(free_port()),
        "AUTOPILOT_EMBEDDED_PG_PORT": str(free_port()),
        **overrides,
    }
    return Quickstart(home, env)


@pytest.fixture
def new_quickstart() -> Iterator[Callable[..., Quickstart]]:
    """A factory of fresh quick starts; each one is brought down and removed after the test."""
    made: list[Quickstart] = []

    def factory(**overrides: str) -> Quickstart:
        made.append(make_quickstart(**overrides))
        return made[-1]

    yield factory
    for quickstart in made:
        quickstart.run("down", timeout=120)
        shutil.rmtree(quickstart.home.parent, ignore_errors=True)
