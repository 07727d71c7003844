"""A quick start brought up by ``autopilot up`` (its own ``AUTOPILOT_HOME`` and free ports) and a headless
Debian Chromium driven through Selenium; both stopped at the end, whatever happened."""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psycopg2
import psycopg2.extras
import pytest

CHROMIUM = Path("/usr/bin/chromium")
CHROMEDRIVER = Path("/usr/bin/chromedriver")
ARTIFACTS = Path(__file__).resolve().parents[2] / "test-artifacts"
AUTOPILOT = str(Path(sys.executable).with_name("autopilot"))
#: One or two per demo queue: enough for finished pilots on each, few enough for a quick ``up``.
DEMO_JOBS = 4
CHROMIUM_FLAGS = (
    "--headless=new",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
    "--disable-quic",
    "--window-size=1400,1000",
)


#: Marks a test that needs the browser; without it, the test is skipped before anything is started.
needs_chromium = pytest.mark.skipif(
    not (CHROMIUM.is_file() and CHROMEDRIVER.is_file()),
    reason="Debian's chromium and chromium-driver are not installed (scripts/browser-deps.sh installs them)",
)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@dataclass
class Quickstart:
    """A running quick start: where it lives, its URLs, its admin login and its database."""

    home: Path
    env: dict[str, str]
    up_output: str

    @property
    def airflow_url(self) -> str:
        return f"http://127.0.0.1:{self.env['AUTOPILOT_AIRFLOW_PORT']}"

    @property
    def panda_url(self) -> str:
        return f"http://127.0.0.1:{self.env['AUTOPILOT_PANDA_PORT']}"

    @property
    def admin_password(self) -> str:
        return json.loads((self.home / "airflow" / "passwords.json").read_text())["admin"]

    def rows(self, sql: str, *args: Any) -> list[dict[str, Any]]:
        """The rows of ``sql``; what it wrote is committed (``INSERT ... RETURNING``)."""
        port = self.env["AUTOPILOT_EMBEDDED_PG_PORT"]
        conn = psycopg2.connect(f"postgresql://postgres@127.0.0.1:{port}/autopilot", connect_timeout=10)
        try:
            with conn, conn.cursor(cursor_factory=psycopg2.extras.RealDictCursor) as cur:
                cur.execute(sql, args)
                return [dict(row) for row in cur.fetchall()]
        finally:
            conn.close()


def _autopilot(env: dict[str, str], cwd: Path, *args: str, timeout: float) -> subprocess.CompletedProcess[str]:
    return subprocess.run([AUTOPILOT, *args], env=env, cwd=cwd, capture_output=True, text=True, timeout=timeout,
                          check=False)


@pytest.fixture(scope="session")
def quickstart() -> Iterator[Quickstart]:
    """``autopilot up`` as the run command does it, isolated from any other instance; ``autopilot down`` after
    the session's last browser test (one quick start for every module)."""
    root = Path(tempfile.mkdtemp(prefix="autopilot-browser-"))
    root.chmod(0o755)  # as root, the embedded PostgreSQL runs as the postgres user and must reach its directory
    home = root / "home"
    env = {key: value for key, value in os.environ.items() if not key.startswith(("AIRFLOW", "AUTOPILOT_"))}
    env.update({
        "AUTOPILOT_HOME": str(home),
        "AUTOPILOT_PANDA_PORT": str(free_port()),
        "AUTOPILOT_AIRFLOW_PORT": str(free_port()),
        "AUTOPILOT_EMBEDDED_PG_PORT": str(free_port()),
        "AUTOPILOT_DEMO_JOBS": str(DEMO_JOBS),
    })
    try:
        up = _autopilot(env, root, "up", timeout=400)
        if up.returncode != 0:
            pytest.fail(f"autopilot up failed (exit {up.returncode}):\n{up.stdout[-3000:]}\n{up.stderr[-3000:]}")
        yield Quickstart(home, env, up.stdout)
    finally:
        down = _autopilot(env, root, "down", timeout=180)
        if down.returncode == 0:
            shutil.rmtree(root, ignore_errors=True)
        else:  # keep the logs for a look
            print(f"autopilot down failed, {root} kept:\n{down.stdout}\n{down.stderr}", file=sys.stderr)


@pytest.fixture
def browser(tmp_path: Path, request: pytest.FixtureRequest) -> Iterator[Any]:
    """Headless Chromium with a fresh profile; on failure its last page is kept in ``test-artifacts/``."""
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = str(CHROMIUM)
    for flag in (*CHROMIUM_FLAGS, f"--user-data-dir={tmp_path / 'chromium-profile'}"):
        options.add_argument(flag)
    # an explicit driver path: Selenium Manager is never asked to find or download anything
    driver = webdriver.Chrome(service=Service(str(CHROMEDRIVER)), options=options)
    driver.set_page_load_timeout(60)
    try:
        yield driver
    finally:
        report = getattr(request.node, "report_call", None)
        if report is not None and report.failed:
            ARTIFACTS.mkdir(exist_ok=True)
            driver.save_screenshot(str(ARTIFACTS / f"{request.node.name}-failure.png"))
            (ARTIFACTS / f"{request.node.name}-failure.html").write_text(driver.page_source)
        driver.quit()


@pytest.hookimpl(wrapper=True, tryfirst=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Iterator[None]:
    """Keep the call phase's report on the item, for the browser fixture's teardown to see a failure."""
    report = yield
    if report.when == "call":
        item.report_call = report  # type: ignore[attr-defined]
    return report
