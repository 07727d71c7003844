"""The prodSourceLabels of a queue's new pilots: a unified queue's split in proportion to activated jobs, the
``test`` label of test queues, and counts without a label."""

from __future__ import annotations

import dataclasses
import datetime as dt
from collections.abc import Callable

import pytest
from hypothesis import given
from hypothesis import strategies as st

from autopilot_ops.policy import ANY_LABEL, JobCount, PandaTarget, Snapshot, decide, split_by_label

from .conftest import NOW


def test_unified_queue_splits_in_proportion_to_activated_jobs() -> None:
    split = split_by_label(9, {"managed": 12, "user": 6}, ("managed", "user"))
    assert split.numbers == (("managed", 6), ("user", 3))
    assert split.reason == "labels: managed 6 (of 12 activated), user 3 (of 6)"


def test_largest_remainders_keep_the_sum_and_ties_go_to_the_label_listed_first() -> None:
    assert split_by_label(1, {"managed": 12, "user": 6}, ("managed", "user")).numbers == (("managed", 1),)
    assert split_by_label(3, {"managed": 1, "user": 1}, ("user", "managed")).numbers == (("user", 2), ("managed", 1))
    assert split_by_label(2, {"managed": 0, "user": 5}, ("managed", "user")).numbers == (("user", 2),)


def test_one_label_takes_every_pilot_and_says_nothing() -> None:
    split = split_by_label(4, {"user": 7, "managed": 99}, ("user",))
    assert split.numbers == (("user", 4),) and split.reason == ""


def test_no_pilot_no_label() -> None:
    assert split_by_label(0, {"managed": 5, "user": 5}, ("managed", "user")).numbers == ()


def test_nothing_activated_gives_the_first_label() -> None:
    split = split_by_label(2, {}, ("user", "managed"))
    assert split.numbers == (("user", 2),)
    assert split.reason.endswith("nothing activated: all to user, the first label")


def test_counts_without_a_label_are_counted_for_the_first_label_and_said() -> None:
    split = split_by_label(3, {ANY_LABEL: 10}, ("managed", "user", ANY_LABEL))
    assert split.numbers == (("managed", 3),)
    assert split.reason == "labels: managed 3 (of 10 activated), user 0 (of 0); *=10 counted for managed " \
        "(no per-label statistics)"


def test_test_queue_asks_for_test_jobs_as_pilot3_does() -> None:
    split = split_by_label(2, {"managed": 5}, ("managed", "user"), status="test")
    assert split.numbers == (("test", 2),) and split.reason == "labels: test 2 (status test)"


def test_a_queue_with_no_label_asks_for_managed() -> None:
    assert split_by_label(1, {}, ()).numbers == (("managed", 1),)


@given(
    n=st.integers(0, 500),
    managed=st.integers(0, 10_000),
    user=st.integers(0, 10_000),
    unlabelled=st.integers(0, 100),
)
def test_split_always_sums_to_n_and_stays_near_the_proportion(n: int, managed: int, user: int, unlabelled: int) -> None:
    split = split_by_label(n, {"managed": managed, "user": user, ANY_LABEL: unlabelled}, ("managed", "user"))
    numbers = dict(split.numbers)
    assert sum(numbers.values()) == n and all(k > 0 for k in numbers.values())
    total = managed + user + unlabelled
    if total and n:
        assert abs(numbers.get("user", 0) - n * user / total) < 1


def test_decide_gives_the_numbers_per_label_and_the_reason(make_snapshot: Callable[..., Snapshot]) -> None:
    snapshot = make_snapshot({"managed": 12, "user": 6, "ptest": 40}, prod_source_labels=("managed", "user"))
    decision = decide(snapshot)
    assert decision.n == 18 and decision.labels == (("managed", 12), ("user", 6))
    assert decision.reason[0] == "activated=18 (managed=12 user=6) [not served: ptest=40]"
    assert decision.reason[-2:] == ("labels: managed 12 (of 12 activated), user 6 (of 6)", "submit 18")


def test_caps_apply_before_the_split(make_snapshot: Callable[..., Snapshot]) -> None:
    decision = decide(make_snapshot({"managed": 12, "user": 6}, prod_source_labels=("managed", "user"),
                                    max_per_cycle=9))
    assert decision.n == 9 and decision.labels == (("managed", 6), ("user", 3))


def test_an_analysis_queue_counts_only_user_jobs(make_snapshot: Callable[..., Snapshot]) -> None:
    decision = decide(make_snapshot({"managed": 50, "user": 2}, prod_source_labels=("user",)))
    assert decision.n == 2 and decision.labels == (("user", 2),)


def test_counts_without_a_label_serve_every_queue(make_snapshot: Callable[..., Snapshot]) -> None:
    decision = decide(make_snapshot({ANY_LABEL: 4}, prod_source_labels=("user",)))
    assert decision.n == 4 and decision.labels == (("user", 4),)
    assert decision.reason[0] == "activated=4 (*=4)"


def test_test_queue_pilots_ask_for_test(make_snapshot: Callable[..., Snapshot]) -> None:
    decision = decide(make_snapshot({"managed": 5}, status="test", test_pilots=2))
    assert decision.labels == (("test", 2),) and "labels: test 2 (status test)" in decision.reason


@pytest.mark.parametrize("status", ["offline", "brokeroff"])
def test_no_pilots_no_labels(make_snapshot: Callable[..., Snapshot], status: str) -> None:
    assert decide(make_snapshot({"managed": 5}, status=status)).labels == ()


def test_resource_types_of_one_label_add_up(make_snapshot: Callable[..., Snapshot]) -> None:
    snapshot = make_snapshot(0, prod_source_labels=("managed", "user"))
    counts = (JobCount("managed", "SCORE", 2), JobCount("managed", "MCORE", 4), JobCount("user", "SCORE", 3))
    decision = decide(dataclasses.replace(snapshot, activated=counts))
    assert decision.labels == (("managed", 6), ("user", 3))


def test_panda_numbers_per_job_type_split_a_unified_queue(make_snapshot: Callable[..., Snapshot]) -> None:
    later = NOW + dt.timedelta(minutes=15)
    targets = [PandaTarget(7, "managed", "SCORE", 12, later), PandaTarget(7, "user", "SCORE", 3, later)]
    decision = decide(make_snapshot({"managed": 1, "user": 100}, prod_source_labels=("managed", "user"),
                                    panda_targets=targets))
    assert decision.n == 15 and decision.labels == (("managed", 12), ("user", 3))
    assert "labels: managed 12 (of 12 from PanDA), user 3 (of 3)" in decision.reason
    capped = decide(make_snapshot({"managed": 1, "user": 100}, prod_source_labels=("managed", "user"),
                                  panda_targets=targets, panda_workers="cap", max_per_cycle=5))
    assert capped.n == 5 and capped.labels == (("managed", 4), ("user", 1))
