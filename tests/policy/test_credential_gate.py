"""The credential gate: below the queue's minimum lifetime, or unreadable, a queue submits 0 and says why."""

from __future__ import annotations

import datetime as dt

import pytest

from autopilot_ops.policy import JobCount, QueueConfig, Snapshot, decide
from autopilot_ops.policy.credentials import CredentialLifetime, credential_gate, describe_duration

NOW = dt.datetime(2026, 12, 2, 12, 0, tzinfo=dt.timezone.utc)


def snapshot(*credentials: CredentialLifetime) -> Snapshot:
    return Snapshot(
        queue=QueueConfig("Q1", prod_source_labels=("managed",), queue_limit=10),
        activated=(JobCount("managed", "SCORE", 5),),
        panda_data_age=0.0,
        now=NOW,
        credentials=credentials,
    )


def token(expires_in: float, minimum: float = 3600) -> CredentialLifetime:
    return CredentialLifetime("token", "/etc/panda/token", minimum, ("managed",), expires_in=expires_in)


def test_a_near_expiry_token_stops_submission_with_the_reason() -> None:
    decision = decide(snapshot(token(12 * 60 + 30)))
    assert decision.n == 0
    assert decision.reason[-2:] == ("credential token /etc/panda/token expires in 12 min < 1 h -> 0", "submit 0")


def test_a_token_with_enough_time_left_changes_nothing() -> None:
    assert decide(snapshot(token(2 * 3600))) == decide(snapshot())
    assert decide(snapshot(token(2 * 3600))).n == 5


def test_an_expired_or_unreadable_credential_stops_submission() -> None:
    assert decide(snapshot(token(-90))).reason[-2] == "credential token /etc/panda/token expired 1 min ago -> 0"
    unreadable = CredentialLifetime("token", "/x", 3600, error="token file /x unreadable: Permission denied")
    decision = decide(snapshot(token(7200), unreadable))
    assert (decision.n, decision.reason[-2]) == (0, "credential token file /x unreadable: Permission denied -> 0")


def test_a_minimum_of_zero_accepts_any_unexpired_credential() -> None:
    assert credential_gate((token(1, minimum=0),)) is None
    assert credential_gate((token(0, minimum=0),)) == "credential token /etc/panda/token expired 0 s ago -> 0"


def test_the_status_gate_comes_first() -> None:
    offline = Snapshot(queue=QueueConfig("Q1", status="offline"), credentials=(token(10),))
    assert decide(offline).reason == ("status offline -> 0", "submit 0")


@pytest.mark.parametrize(
    ("seconds", "text"),
    [(45, "45 s"), (60, "1 min"), (719.9, "11 min"), (3600, "1 h"), (9000, "2 h 30 min"), (273600, "3 d 4 h")],
)
def test_durations_read_as_people_say_them(seconds: float, text: str) -> None:
    assert describe_duration(seconds) == text


def test_a_lifetime_needs_exactly_one_of_its_expiry_and_its_error() -> None:
    with pytest.raises(ValueError, match="exactly one of expires_in and error"):
        CredentialLifetime("token", "/t", 3600)
    with pytest.raises(ValueError, match="exactly one of expires_in and error"):
        CredentialLifetime("token", "/t", 3600, expires_in=5.0, error="x")
    with pytest.raises(ValueError, match="credentials must hold CredentialLifetime items"):
        Snapshot(queue=QueueConfig("Q1"), credentials=("token /t",))  # type: ignore[arg-type]
