"""The dev server stores a factory's values as PostgreSQL would: the fast reading of Harvester's own times gives
what the general one gives."""

from __future__ import annotations

import datetime

import pytest

from autopilot_ops.panda.devserver.columns import ColumnError, text, timestamp


@pytest.mark.parametrize(
    "value",
    [
        "datetime/2026-12-02 20:00:00.000000",
        "datetime/2026-12-02 20:00:00.123456",
        "datetime/1999-01-31 23:59:59.999999",
        "datetime/2026-1-2 3:04:05.5",
    ],
)
def test_a_harvester_time_reads_as_strptime_reads_it(value):
    expected = datetime.datetime.strptime(value.split("/")[-1], "%Y-%m-%d %H:%M:%S.%f").isoformat(sep=" ")
    assert timestamp(value) == expected


@pytest.mark.parametrize(
    "value", ["datetime/2026-13-02 20:00:00.000000", "datetime/2026-02-30 20:00:00.000000", "datetime/soon", 5]
)
def test_a_time_postgresql_cannot_read_is_refused(value):
    with pytest.raises(ColumnError):
        timestamp(value)


def test_text_keeps_short_strings_casts_numbers_and_refuses_long_or_odd_values():
    assert text("abc", 3) == "abc" and text(12, 5) == "12" and text(True, 5) == "true" and text(None, 1) is None
    with pytest.raises(ColumnError, match=r"varying\(3\)"):
        text("abcd", 3)
    with pytest.raises(ColumnError, match="dict"):
        text({"a": 1}, 10)
