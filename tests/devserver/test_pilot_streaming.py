"""Pilot streaming's rule (``worker_module.py: ups_new_worker_distribution``) and its step over the stores."""

from __future__ import annotations

import json
import time
from collections.abc import Sequence

import pytest

from autopilot_ops.panda.devserver.command_store import CommandStore
from autopilot_ops.panda.devserver.database import Database
from autopilot_ops.panda.devserver.factory_store import FactoryStore
from autopilot_ops.panda.devserver.jobspec import build_job_spec
from autopilot_ops.panda.devserver.jobstore import JobStore
from autopilot_ops.panda.devserver.pilot_streaming import PilotStreaming, average_memory, new_worker_distribution
from autopilot_ops.panda.devserver.schedconfig import QueueConfigs
from autopilot_ops.panda.devserver.testing import DevServer

UPS = {"harvester": "h1", "capability": "ucore", "workflow": "pull_ups"}


def jobs(*types: str):
    """An ``activated`` callable listing these resource types (filtered like the SQL's ``IN``)."""

    def activated(only: Sequence[str] | None) -> list[str]:
        return [name for name in types if only is None or name in only]

    return activated


def no_memory(harvester_id: str) -> tuple[float, float]:
    raise AssertionError("the memory of the workers is looked at only for a queue with meanrss")


def test_without_jobs_one_basic_worker_is_asked_for_as_recorded():
    stats = {"h1": {"managed": {"MCORE": {"submitted": 1, "running": 1}}}}
    assert new_worker_distribution(UPS, stats, jobs(), no_memory) == {"h1": {"managed": {"SCORE": 1}}}


def test_each_activated_job_beyond_the_queued_workers_asks_for_one_more():
    stats = {"h1": {"managed": {"SCORE": {"submitted": 1, "running": 4}}}}
    result = new_worker_distribution(UPS, stats, jobs("SCORE", "SCORE", "SCORE"), no_memory)
    # queued 1 - 3 jobs = -2: two workers missing, plus one
    assert result == {"h1": {"managed": {"SCORE": 3}}}


def test_multi_core_jobs_stop_at_the_cores_to_submit():
    config = {**UPS, "corecount": 8}
    stats = {"h1": {"managed": {"MCORE": {"running": 100, "submitted": 10}}}}
    # running 800 cores: target max(320, 600) = 600, queued 80 cores, so 520 cores (65 workers) to submit; the
    # 10th job uses the last queued worker, it and the next 64 take 8 cores each, the 75th is not reached
    result = new_worker_distribution(config, stats, jobs(*["MCORE"] * 100), no_memory)
    assert result == {"h1": {"managed": {"MCORE": 65}}}


def test_a_resource_type_at_its_limit_gets_no_workers():
    config = {**UPS, "uconfig": {"resource_type_limits": {"MCORE": 3}}}
    stats = {"h1": {"managed": {"MCORE": {"running": 3}, "SCORE": {"running": 1}}}}
    result = new_worker_distribution(config, stats, jobs("MCORE", "MCORE", "SCORE"), no_memory)
    assert result == {"h1": {"managed": {"MCORE": 0, "SCORE": 2}}}


def test_over_the_memory_target_only_types_under_it_count():
    config = {**UPS, "meanrss": 2000}
    stats = {"h1": {"managed": {"SCORE_HIMEM": {"running": 10}}}}
    result = new_worker_distribution(
        config, stats, jobs("SCORE_HIMEM", "SCORE_HIMEM", "SCORE", "SCORE"), lambda harvester_id: (4000, 4000)
    )
    assert result == {"h1": {"managed": {"SCORE_HIMEM": 0, "SCORE": 3}}}


@pytest.mark.parametrize("config", [{**UPS, "harvester": None}, {**UPS, "harvester": "other"}])
def test_a_queue_without_its_instance_in_the_statistics_gets_nothing(config):
    stats = {"h1": {"managed": {"SCORE": {"running": 1}}}}
    assert new_worker_distribution(config, stats, jobs("SCORE"), no_memory) == {}


def test_average_memory_per_core_as_the_sql_computes_it():
    rows = [
        {"resource_type": "SCORE", "status": "running", "n_workers": 2},  # 2 x 1 core x 2000 MB
        {"resource_type": "SCORE_HIMEM", "status": "submitted", "n_workers": 1},  # 1 x 1 core x maxrss/8 MB
        {"resource_type": "NO_SUCH_TYPE", "status": "running", "n_workers": 5},  # dropped by the JOIN
    ]
    config = {"maxrss": 32000, "corecount": 8}
    assert average_memory(rows, config, ("running", "submitted")) == (4000 + 4000) // 3
    assert average_memory(rows, config, ("running",)) == 2000
    assert average_memory(rows, {"corecount": 8}, ("submitted",)) == 0  # no maxrss: no memory known


@pytest.fixture
def stores(tmp_path):
    database = Database(tmp_path / "db.sqlite")
    jobs_store = JobStore(database)
    queues = QueueConfigs(database)
    factory = FactoryStore(database)
    commands = CommandStore(database, queues)
    yield jobs_store, factory, commands, queues
    database.close()


def test_the_step_writes_one_command_per_queue_and_replaces_the_last(stores):
    jobs_store, factory, commands, queues = stores
    queues.set("UPS_QUEUE", UPS)
    queues.set("PULL_QUEUE", {"harvester": "h1", "capability": "ucore", "workflow": "pull"})
    for queue in ("UPS_QUEUE", "PULL_QUEUE"):
        factory.report_worker_stats("h1", queue, json.dumps({"managed": {"SCORE": {"submitted": 1}}}))
    jobs_store.submit([build_job_spec("UPS_QUEUE", "t", "", extra={"resource_type": "SCORE"}) for _ in range(4)], "me")
    step = PilotStreaming(jobs_store, factory, commands, queues)
    assert step.run() == {"UPS_QUEUE": {"h1": {"managed": {"SCORE": 4}}}}
    first = commands.commands("h1")
    assert step.run() == {"UPS_QUEUE": {"h1": {"managed": {"SCORE": 4}}}}
    second = commands.commands("h1")
    assert [(c["command"], c["params"], c["status"]) for c in second] == [
        ("SET_N_WORKERS_JOBTYPE:UPS_QUEUE", {"managed": {"SCORE": 4}}, "new")
    ]
    assert second[0]["command_id"] > first[0]["command_id"]


def test_the_step_skips_queues_without_fresh_statistics(stores):
    jobs_store, factory, commands, queues = stores
    queues.set("UPS_QUEUE", UPS)
    factory.report_worker_stats("h1", "UPS_QUEUE", json.dumps({"managed": {"SCORE": {"submitted": 1}}}))
    with factory.database.transaction() as cursor:
        cursor.execute("UPDATE harvester_worker_stats SET last_update = last_update - 3601")
    assert PilotStreaming(jobs_store, factory, commands, queues).run() == {}
    assert commands.commands() == []


def test_the_server_runs_the_step_on_its_period(tmp_path):
    with DevServer(tmp_path, pilot_streaming_period=0.05) as srv:
        srv.set_queue("UPS_QUEUE", **UPS)
        statistics = json.dumps({"managed": {"SCORE": {"running": 1}}})
        srv.server.context.factory.report_worker_stats("h1", "UPS_QUEUE", statistics)
        deadline = time.monotonic() + 10
        while not srv.commands("h1") and time.monotonic() < deadline:
            time.sleep(0.02)
        assert [c["command"] for c in srv.commands("h1")] == ["SET_N_WORKERS_JOBTYPE:UPS_QUEUE"]
