"""The pilot's guard: one /bin/sh for all payloads, which kills the groups still watched when the pilot is gone."""

from __future__ import annotations

import os
import subprocess
import time

from autopilot_ops.pilot.guard import Guard


def alive(process: subprocess.Popen[bytes]) -> bool:
    return process.poll() is None


def test_at_the_pilots_end_the_guard_kills_the_watched_groups_only():
    guard = Guard()
    watched, released, other = (subprocess.Popen(["sleep", "30"], start_new_session=True) for _ in range(3))
    try:
        for process in (watched, released, other):
            guard.watch(process.pid)
        first = guard.pid
        guard.release(released.pid)
        guard.release(other.pid)
        guard.watch(other.pid)  # watched again: a group may come back under a reused number
        assert guard.pid == first  # one guard for every payload
        os.close(guard._pipe)  # what the pilot's death does to the pipe
        deadline = time.monotonic() + 10
        while (alive(watched) or alive(other)) and time.monotonic() < deadline:
            time.sleep(0.02)
        assert not alive(watched) and not alive(other)
        assert alive(released)
    finally:
        for process in (watched, released, other):
            process.kill()
            process.wait()


def test_a_dead_guard_is_replaced():
    guard = Guard()
    sleeper = subprocess.Popen(["sleep", "30"], start_new_session=True)
    try:
        guard.watch(sleeper.pid)
        first = guard._process
        first.kill()
        first.wait()
        guard.watch(sleeper.pid)
        assert guard.pid != first.pid and guard._process.poll() is None
    finally:
        sleeper.kill()
        sleeper.wait()
