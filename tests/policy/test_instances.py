"""Several scheduler instances serving one queue (two deployments on one database): each aims at its share of
the jobs and of the queue's bound, counts its own queued pilots against it, and the caps bound every instance's
pilots together."""

from __future__ import annotations

import dataclasses

from autopilot_ops.policy import PilotCounts, decide

from .conftest import build_snapshot


def test_each_instance_counts_its_own_pilots_against_its_share() -> None:
    both = build_snapshot(20, queued=13, instances=2, queue_limit=100)
    mine = dataclasses.replace(both, own_pilots=PilotCounts(queued=3))
    decision = decide(mine)
    assert decision.n == 7, decision.reason  # ceil(20 / 2) = 10 of its own, 3 queued
    assert "n_act=ceil(20/2 instances/1 jobs_per_pilot)=10" in decision.reason
    assert "target 10 - queued (this instance's) 3 -> 7" in decision.reason
    assert decide(both).n == 0, "counting every instance's pilots, the share looks full"


def test_the_queues_bound_is_shared_and_the_caps_bind_all_instances() -> None:
    mine = dataclasses.replace(build_snapshot(100, queued=7, instances=2, queue_limit=9),
                               own_pilots=PilotCounts(queued=2))
    decision = decide(mine)
    assert decision.n == 3, decision.reason  # Q_eff 9 -> its share ceil(9 / 2) = 5, 2 of its own queued
    assert "Q_eff share=ceil(9/2 instances)=5" in decision.reason
    capped = dataclasses.replace(build_snapshot(100, queued=10, running=3, instances=2, max_pilots=15),
                                 own_pilots=PilotCounts(queued=1))
    decision = decide(capped)
    assert decision.n == 2, decision.reason  # 49 by its share, but every instance's 13 alive leave room for 2
    assert "max_pilots 15 - alive 13 = 2: 49 -> 2" in decision.reason


def test_alone_an_instance_counts_every_pilot_as_before() -> None:
    alone = build_snapshot(20, queued=5, queue_limit=100)
    assert decide(alone).n == 15
    assert decide(dataclasses.replace(alone, own_pilots=PilotCounts(queued=5))).n == 15
