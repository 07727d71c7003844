"""The snapshot refuses bad input with an error naming the input and the field."""

from __future__ import annotations

import datetime as dt
from typing import Any

import pytest

from autopilot_ops.policy import Control, JobCount, PilotCounts, QueueConfig, RecentActivity, Snapshot, decide
from autopilot_ops.queues.model import QueueDefinition

NOW = dt.datetime(2026, 11, 26, 8, 0, tzinfo=dt.timezone.utc)


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        ({"status": "standby"}, "queue 'Q': status must be one of"),
        ({"max_pilots": -1}, "queue 'Q': max_pilots must be an integer >= 0 or None, got -1"),
        ({"max_per_cycle": 2.5}, "queue 'Q': max_per_cycle must be an integer >= 0 or None, got 2.5"),
        ({"queue_ratio": -0.5}, "queue 'Q': queue_ratio must be a finite number >= 0 or None, got -0.5"),
        ({"queue_ratio": float("nan")}, "queue 'Q': queue_ratio must be a finite number"),
        ({"jobs_per_pilot": 0}, "queue 'Q': jobs_per_pilot must be an integer >= 1, got 0"),
        ({"missed_rate_limit": 1.5}, "queue 'Q': missed_rate_limit must be a number in [0, 1] or None"),
        ({"stale_polls": 0}, "queue 'Q': stale_polls must be an integer >= 1, got 0"),
        ({"prod_source_labels": "managed"}, "queue 'Q': prod_source_labels must be a sequence of strings"),
    ],
)
def test_queue_config_names_the_bad_field(fields: dict[str, Any], message: str) -> None:
    with pytest.raises(ValueError, match=message.replace("[", r"\[").replace("]", r"\]")):
        QueueConfig("Q", **fields)


def test_queue_config_needs_a_name() -> None:
    with pytest.raises(ValueError, match="panda_queue must be a non-empty string"):
        QueueConfig("")


@pytest.mark.parametrize(
    ("build", "message"),
    [
        (lambda: PilotCounts(queued=-3), "PilotCounts: queued must be an integer >= 0, got -3"),
        (lambda: JobCount("managed", "SCORE", -1), r"JobCount\(managed, SCORE\): count must be"),
        (lambda: RecentActivity(attempts=2, missed=3), r"missed \(3\) exceeds attempts \(2\)"),
        (lambda: RecentActivity(ended=1, empty=2), r"empty \(2\) exceeds ended \(1\)"),
        (lambda: Control("site", "X", "op"), "Control: scope must be one of"),
        (lambda: Control("queue", "X", "op", fixed_number=-1), "control queue:X: fixed_number must be"),
        (
            lambda: Control("queue", "X", "op", expires_at=dt.datetime(2026, 1, 1)),
            "control queue:X: expires_at must be a timezone-aware datetime",
        ),
        (lambda: Snapshot(QueueConfig("Q"), instances=0), "snapshot of 'Q': instances must be an integer >= 1"),
        (lambda: Snapshot(QueueConfig("Q"), poll_period=0), "snapshot of 'Q': poll_period must be > 0"),
        (lambda: Snapshot(QueueConfig("Q"), panda_data_age=-1), "snapshot of 'Q': panda_data_age must be"),
        (lambda: Snapshot(QueueConfig("Q"), pilots=(1, 2, 3)), "snapshot of 'Q': pilots must be a PilotCounts"),
        (
            lambda: Snapshot(QueueConfig("Q"), activated=[("managed", "SCORE", 3)]),
            "snapshot of 'Q': activated must hold JobCount items",
        ),
        (lambda: Snapshot(QueueConfig("Q"), now=dt.datetime(2026, 1, 1)), "now must be a timezone-aware"),
        (
            lambda: Snapshot(QueueConfig("Q"), controls=[Control("queue", "Q", "op", paused=True, expires_at=NOW)]),
            r"snapshot of 'Q': now is needed to check the expiry of control queue:Q \(by op\)",
        ),
    ],
)
def test_bad_input_is_named(build: Any, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        build()


def test_lists_from_the_database_become_tuples() -> None:
    snapshot = Snapshot(
        QueueConfig("Q", prod_source_labels=["managed", "user"]),
        activated=[JobCount("user", "SCORE", 3)],
        controls=[Control("tag", "t", "op", max_per_cycle=2)],
        panda_data_age=0,
    )
    assert snapshot.queue.prod_source_labels == ("managed", "user")
    assert isinstance(snapshot.activated, tuple) and isinstance(snapshot.controls, tuple)
    assert decide(snapshot).n == 2


def test_queue_config_from_a_stored_queue_definition() -> None:
    definition = QueueDefinition(
        panda_queue="ANALY_TEST",
        site="TEST",
        status="test",
        prod_source_labels=["user"],
        queue_ratio=0.25,
        min_queued=2,
        max_pilots=40,
        max_per_cycle=10,
        jobs_per_pilot=2,
        cycle_period=120,
    )
    config = QueueConfig.from_row(definition.as_row())
    assert config == QueueConfig(
        "ANALY_TEST",
        status="test",
        prod_source_labels=("user",),
        queue_ratio=0.25,
        min_queued=2,
        max_pilots=40,
        max_per_cycle=10,
        jobs_per_pilot=2,
    )


def test_from_row_reads_a_knob_when_the_row_has_it() -> None:
    config = QueueConfig.from_row({"panda_queue": "Q", "site": "S", "test_pilots": 3, "keep_one_pilot": True})
    assert (config.test_pilots, config.keep_one_pilot) == (3, True)
