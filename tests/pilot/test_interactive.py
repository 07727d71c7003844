"""``autopilot pilot run --interactive`` on a real terminal (a pseudo-terminal): log lines and the payload's
output scroll above one status line that is cleared and redrawn at the bottom, in colour unless ``NO_COLOR``,
and a summary of the job closes the run."""

from __future__ import annotations

import json
import os
import pty
import re
import select
import subprocess
import time
from pathlib import Path

import pytest

from .conftest import pilot_env

ANSI = re.compile(r"\x1b\[[0-9;]*[A-Za-z]")


def run_on_a_terminal(command: list[str], env: dict[str, str], timeout: float = 60) -> tuple[int, str]:
    """Run ``command`` with stdout and stderr on one pseudo-terminal; its exit code and everything it wrote."""
    leader, follower = pty.openpty()
    process = subprocess.Popen(command, stdin=subprocess.DEVNULL, stdout=follower, stderr=follower, env=env)
    os.close(follower)
    output = b""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        ready, _, _ = select.select([leader], [], [], 0.2)
        if ready:
            try:
                chunk = os.read(leader, 65536)
            except OSError:  # the child closed the terminal
                break
            if not chunk:
                break
            output += chunk
        elif process.poll() is not None:
            break
    os.close(leader)
    return process.wait(10), output.decode(errors="replace")


def screen_lines(output: str) -> list[str]:
    """What stays on the screen: each line as its last ``\\r\\x1b[K``-cleared redraw leaves it."""
    lines = []
    for line in output.replace("\r\n", "\n").split("\n"):
        lines.append(ANSI.sub("", line.split("\r\x1b[K")[-1]))
    return lines


@pytest.fixture
def job_file(tmp_path: Path, make_script) -> Path:
    script = make_script("t.sh", 'echo "line one"; sleep 1.5; printf "no newline at the end" >&2\n')
    path = tmp_path / "job.json"
    path.write_text(json.dumps({"PandaID": 4242, "transformation": str(script), "jobPars": "", "outFiles": "",
                                "logFile": "NULL"}))
    return path


def test_the_status_line_stays_at_the_bottom_with_colours_and_a_summary(pilot, job_file) -> None:
    env = {**pilot_env(), "TERM": "xterm-256color"}
    env.pop("NO_COLOR", None)
    code, output = run_on_a_terminal(pilot.command("run", None, "--dry-run", "--interactive", "--keep-workdir",
                                                   "--job-file", str(job_file)), env)
    assert code == 0, output
    lines = screen_lines(output)
    mixed = [line for line in lines if "[autopilot] job" in line and re.search(r" (INFO|WARNING|ERROR) ", line)]
    assert mixed == [], "a log line shares a screen line with the status line"
    assert "line one" in lines and "no newline at the end" in lines, "payload lines each have a line of their own"
    assert "\x1b[32m[autopilot] job 4242 | running" in output, "the running phase in green"
    summary = "\n".join(lines[lines.index("[autopilot] summary"):])
    assert re.search(r"job 4242: finished, payload exit code 0", summary), summary
    assert re.search(r"stage-in [\d.]+ s, .*running [\d.]+ s.*; [\d.]+ s in all", summary), summary
    assert "work dir " in summary and "PanDA_Pilot-4242" in summary
    status_lines = [line for line in lines if line.startswith("[autopilot] job")]
    assert not status_lines or lines.index("[autopilot] summary") > max(lines.index(s) for s in status_lines)


def test_no_colour_with_no_color_or_off_a_terminal(pilot, job_file) -> None:
    env = {**pilot_env(), "TERM": "xterm", "NO_COLOR": "1"}
    code, output = run_on_a_terminal(pilot.command("run", None, "--dry-run", "--interactive", "--job-file",
                                                   str(job_file)), env)
    assert code == 0 and "\x1b[32m" not in output and "[autopilot] summary" in output
    piped = pilot.run(None, "--dry-run", "--interactive", "--job-file", str(job_file))
    assert piped.returncode == 0 and "\x1b[" not in piped.stderr
    assert "[autopilot] job 4242 | running" in piped.stderr and "job 4242: finished" in piped.stderr
