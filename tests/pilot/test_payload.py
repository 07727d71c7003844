"""The payload process: real subprocesses, their output files, exit codes, CPU time, and stopping."""

from __future__ import annotations

import os
import signal
import sys
import threading
import time

import psutil

from autopilot_ops.pilot.payload import Payload


def alive(pid: int) -> bool:
    """Whether ``pid`` runs; a zombie waiting for init to reap it counts as dead."""
    try:
        return psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False


def start(tmp_path, command, env=None, echo=None):
    payload = Payload(command, tmp_path, env or dict(os.environ), tmp_path / "out", tmp_path / "err", echo)
    done = threading.Event()
    payload.start(on_exit=done)
    return payload, done


def test_exit_code_and_output_files(tmp_path):
    payload, done = start(tmp_path, ["/bin/sh", "-c", "echo out; echo err >&2; exit 3"])
    assert done.wait(30)
    result = payload.result
    assert result.exit_code == 3 and result.signal is None and result.shell_code == 3
    assert (tmp_path / "out").read_text() == "out\n" and (tmp_path / "err").read_text() == "err\n"
    assert result.end_time >= result.start_time


def test_cpu_time_is_recorded(tmp_path):
    burn = "import time\nend = time.process_time() + 0.3\nwhile time.process_time() < end: pass\n"
    payload, done = start(tmp_path, [sys.executable, "-c", burn])
    assert done.wait(30)
    assert payload.result.exit_code == 0
    assert payload.result.cpu_time >= 0.25


def test_tree_rss_sampled(tmp_path):
    hog = "x = bytearray(64 * 1024 * 1024)\nimport time\ntime.sleep(30)\n"
    payload, _done = start(tmp_path, [sys.executable, "-c", hog])
    deadline = time.monotonic() + 20
    while payload.tree_rss_kb() < 64 * 1024 and time.monotonic() < deadline:
        time.sleep(0.05)
    payload.stop(grace=5)
    assert payload.result.max_rss_kb >= 64 * 1024
    assert payload.result.signal == signal.SIGTERM


def test_stop_escalates_to_sigkill(tmp_path):
    script = "trap '' TERM; echo ready; while :; do sleep 0.05; done"
    payload, done = start(tmp_path, ["/bin/sh", "-c", script])
    deadline = time.monotonic() + 20
    while "ready" not in (tmp_path / "out").read_text() and time.monotonic() < deadline:
        time.sleep(0.02)
    payload.stop(grace=0.3)
    assert done.is_set()
    assert payload.result.signal == signal.SIGKILL and payload.result.shell_code == 137


def test_orphans_are_killed(tmp_path):
    marker = tmp_path / "orphan.pid"
    _payload, done = start(tmp_path, ["/bin/sh", "-c", f"sleep 60 & echo $! > {marker}; exit 0"])
    assert done.wait(30)
    orphan = int(marker.read_text())
    deadline = time.monotonic() + 10
    while alive(orphan):
        assert time.monotonic() < deadline, f"orphan {orphan} still alive"
        time.sleep(0.02)


def test_echo_tees_output(tmp_path):
    read_out, write_out = os.pipe()
    with os.fdopen(write_out, "wb") as terminal_out, open(os.devnull, "wb") as terminal_err:
        _payload, done = start(tmp_path, ["/bin/sh", "-c", "echo live"], echo=(terminal_out, terminal_err))
        assert done.wait(30)
    with os.fdopen(read_out, "rb") as terminal:
        assert terminal.read() == b"live\n"
    assert (tmp_path / "out").read_text() == "live\n"
