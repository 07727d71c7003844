"""Fixtures for the scheduler core: a store with a local back end and queues, and a way to wait."""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path

import pytest

from autopilot_ops.backends.base import PilotSpec
from autopilot_ops.backends.local import LocalBackend
from autopilot_ops.store.backends import upsert_backend
from autopilot_ops.store.connection import Store


@pytest.fixture
def local_backend(store: Store, tmp_path: Path) -> LocalBackend:
    params = {"state_dir": str(tmp_path / "state"), "kill_grace_s": 1}
    with store.transaction() as cur:
        upsert_backend(cur, "local", "local", parameters=params)
    return LocalBackend("local", params)


@pytest.fixture
def make_spec(tmp_path: Path) -> Callable[..., PilotSpec]:
    def make(queue: str = "Q1", cycle_id: str = "c1", command: tuple[str, ...] = ("sh", "-c", "exit 0")) -> PilotSpec:
        return PilotSpec(queue=queue, cycle_id=cycle_id, scheduler="test", command=command, log_root=tmp_path / "logs")

    return make


def wait_for(predicate: Callable[[], bool], timeout: float = 30.0, interval: float = 0.1) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"condition not met within {timeout}s")
        time.sleep(interval)
